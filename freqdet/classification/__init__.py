"""The companion classification trainer: ResNet-50 and MobileNetV2 on DCT (or RGB) inputs.

Detectron2-free (torch and torchvision only); ``tools/train_cls.py`` is its front end and
``freqdet.classification.convert`` turns its checkpoints into Detectron2 backbone weights.
"""
from .models import ARCHITECTURES, build_classifier

__all__ = ["ARCHITECTURES", "build_classifier"]
