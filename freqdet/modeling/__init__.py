"""Detectron2 models on DCT inputs; importing this registers them."""
from .backbone import DCTStem, build_resnet_dct_backbone, build_resnet_dct_fpn_backbone
from .gate import GATE_REGISTRY, GumbelChannelGate, build_gate
from .meta_arch import DCTGeneralizedRCNN

__all__ = [
    "DCTStem",
    "DCTGeneralizedRCNN",
    "GATE_REGISTRY",
    "GumbelChannelGate",
    "build_gate",
    "build_resnet_dct_backbone",
    "build_resnet_dct_fpn_backbone",
]
