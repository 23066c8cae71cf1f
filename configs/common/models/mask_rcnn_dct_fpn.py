"""Mask R-CNN R50-FPN on 24 DCT channels (LazyConfig): Detectron2's common/models/mask_rcnn_fpn.py
with its input switched by freqdet.detection.lazy.use_dct_input.

For fine-tuning frequency-domain ImageNet weights (tools/convert_weights.py): FrozenBN, and the
stride in the 3x3 convolutions, as torchvision's ResNet-50 and so the converted weights. Alone,
the model normalizes with the statistics freqdet ships; a checkpoint brings its own. In a config
of your own, call use_dct_input(model, dataloader, optimizer) on Detectron2's model instead, so
that the mappers follow and the training set's statistics are measured.
"""

from detectron2.model_zoo import get_config

from freqdet.detection.lazy import use_dct_input

model = get_config("common/models/mask_rcnn_fpn.py").model
use_dct_input(model, channels=24)
model.backbone.bottom_up.stages.stride_in_1x1 = False
