"""Mask R-CNN R50-FPN from scratch with large-scale jitter, 400 epochs, on 24 DCT channels.

Detectron2's new_baselines/mask_rcnn_R_50_FPN_400ep_LSJ.py (random initialization, SyncBN,
ResizeScale 0.1-2.0 + FixedSizeCrop 1024 + flip, 64 images per batch, AMP), with only the input
switched (freqdet.detection.lazy.model_zoo_with_dct_input; the crop and its padding are absorbed by the
frequency transform). tests/test_lazy.py holds every other key equal to Detectron2's. Detectron2's
model zoo reports 44.6 / 40.3 (100 ep), 46.3 / 41.7 (200 ep), 47.4 / 42.5 (400 ep) box / mask AP
on COCO val for its RGB recipe: its figures, not freqdet's; none is claimed for this config.
"""

from freqdet.detection.lazy import model_zoo_with_dct_input

model, dataloader, optimizer, lr_multiplier, train = model_zoo_with_dct_input(
    "new_baselines/mask_rcnn_R_50_FPN_400ep_LSJ.py", channels=24
)
