"""The companion classification trainer: ResNet-50 and MobileNetV2 on DCT (or RGB) inputs.

Detectron2-free (torch and torchvision only); ``tools/train_cls.py`` is its front end,
``freqdet.classification.convert`` brings the official release's and torchvision's weights
in, :func:`load_classifier` returns the model a checkpoint describes, and
``freqdet.detection.convert`` turns a classifier into Detectron2 backbone weights.
"""

from .checkpoints import load_classifier
from .models import ARCHITECTURES, LAYOUTS, build_classifier

__all__ = ["ARCHITECTURES", "LAYOUTS", "build_classifier", "load_classifier"]
