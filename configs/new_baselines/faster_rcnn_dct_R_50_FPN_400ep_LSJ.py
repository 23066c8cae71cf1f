"""Faster R-CNN R50-FPN from scratch with large-scale jitter, 400 epochs, on 24 DCT channels:
mask_rcnn_dct_R_50_FPN_400ep_LSJ.py without the mask head (Detectron2 ships no Faster R-CNN LSJ
recipe; no COCO figure is claimed for this one)."""

from freqdet.detection.lazy import without_masks

from .mask_rcnn_dct_R_50_FPN_400ep_LSJ import dataloader, lr_multiplier, model, optimizer, train

without_masks(model, dataloader)
__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]
