"""Faster R-CNN R50-FPN on 24 DCT channels (LazyConfig): mask_rcnn_dct_fpn.py without the mask head."""

from freqdet.detection.lazy import without_masks

from .mask_rcnn_dct_fpn import model

without_masks(model)
