"""Mask R-CNN R50-FPN from scratch with large-scale jitter, 200 epochs, on 24 DCT channels.

Detectron2's new_baselines/mask_rcnn_R_50_FPN_200ep_LSJ.py (random initialization, SyncBN,
ResizeScale 0.1-2.0 + FixedSizeCrop 1024 + flip, 64 images per batch, AMP), with only the input
switched (freqdet.detection.lazy.use_dct_input; the crop and its padding are absorbed by the
frequency transform). tests/test_lazy.py holds every other key equal to Detectron2's. Detectron2's
model zoo reports 44.6 / 40.3 (100 ep), 46.3 / 41.7 (200 ep), 47.4 / 42.5 (400 ep) box / mask AP
on COCO val for its RGB recipe: its figures, not freqdet's; none is claimed for this config.
"""

from detectron2.model_zoo import get_config

from freqdet.detection.lazy import use_dct_input

_rgb = get_config("new_baselines/mask_rcnn_R_50_FPN_200ep_LSJ.py")
model, dataloader, optimizer, lr_multiplier, train = (
    _rgb.model,
    _rgb.dataloader,
    _rgb.optimizer,
    _rgb.lr_multiplier,
    _rgb.train,
)
use_dct_input(model, dataloader, optimizer, channels=24)
# Detectron2's file gives the heads' norm as a lambda building the same layer, which
# LazyConfig.save cannot write; its name in detectron2.layers.get_norm can be.
model.roi_heads.box_head.conv_norm = model.roi_heads.mask_head.conv_norm = "naiveSyncBN_N"
