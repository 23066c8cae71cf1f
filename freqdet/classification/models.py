"""Classifiers on DCT inputs (paper Sec. 4.1) and their RGB counterparts, from torchvision's models.

- ResNet-50-DCT: torchvision's ResNet-50 without its stem (conv1, bn1, maxpool): the
  (C, 56, 56) input of a 448 crop goes straight into layer1, whose first block takes C
  channels in its 1x1 convolution and its shortcut.
- MobileNetV2-DCT: torchvision's MobileNetV2 whose first convolution takes C channels at
  stride 1 instead of 3 at stride 2: the (C, 112, 112) input of an 896 crop then meets
  the rest of the network at the resolution a 224 RGB image would.

DCT models take raw coefficients, normalize them per channel on the device
(:class:`freqdet.normalization.ChannelNormalization`, saved in checkpoints with the
channels it describes) and may put a :class:`freqdet.gate.ChannelGate` after that.
"""
from typing import Optional, Sequence, Union

import torch
import torchvision
from torch import nn
from torchvision.ops.misc import Conv2dNormActivation

from ..dct import resolve_channels
from ..gate import ChannelGate
from ..normalization import ChannelNormalization, legacy_keys_hook

ARCHITECTURES = ("resnet50", "mobilenet_v2")
# The paper's crops: 448 (ResNet-50) and 896 (MobileNetV2) for DCT inputs, 224 for RGB.
DCT_CROP = {"resnet50": 448, "mobilenet_v2": 896}
RGB_CROP = 224


class DCTInput(nn.Module):
    """Per-channel normalization and an optional gate of DCT inputs, on the device."""

    def __init__(self, selection: Sequence[int], gate: Optional[ChannelGate] = None):
        super().__init__()
        self.normalization = ChannelNormalization(selection)
        self.gate = gate
        self._register_load_state_dict_pre_hook(legacy_keys_hook)  # input.dct_mean / dct_std before the move

    def set_stats(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.normalization.set_stats(mean, std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalization(x)
        return x if self.gate is None else self.gate(x)


class ResNet50DCT(nn.Module):
    """ResNet-50 layers 1-4 (torchvision's names) on a (C, 56, 56) DCT input of the channels ``selection``."""

    def __init__(self, selection: Sequence[int], num_classes: int = 1000, gate: Optional[ChannelGate] = None):
        super().__init__()
        channels = len(selection)
        # Zero-initialized last BN of each block: every residual block starts as the identity,
        # which keeps training from scratch stable (Goyal et al., 2017).
        base = torchvision.models.resnet50(weights=None, num_classes=num_classes, zero_init_residual=True)
        self.input = DCTInput(selection, gate)
        self.layer1, self.layer2, self.layer3, self.layer4 = base.layer1, base.layer2, base.layer3, base.layer4
        first = self.layer1[0]
        first.conv1 = nn.Conv2d(channels, first.conv1.out_channels, kernel_size=1, bias=False)
        first.downsample[0] = nn.Conv2d(channels, first.downsample[0].out_channels, kernel_size=1, bias=False)
        for conv in (first.conv1, first.downsample[0]):
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        self.avgpool, self.fc = base.avgpool, base.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.input(x)))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class MobileNetV2DCT(nn.Module):
    """MobileNetV2 whose first convolution takes a (C, 112, 112) DCT input of the channels ``selection`` at stride 1."""

    def __init__(self, selection: Sequence[int], num_classes: int = 1000, gate: Optional[ChannelGate] = None):
        super().__init__()
        channels = len(selection)
        base = torchvision.models.mobilenet_v2(weights=None, num_classes=num_classes)
        self.input = DCTInput(selection, gate)
        first = base.features[0]
        base.features[0] = Conv2dNormActivation(channels, first.out_channels, kernel_size=3, stride=1,
                                                norm_layer=nn.BatchNorm2d, activation_layer=nn.ReLU6)
        self.features, self.classifier = base.features, base.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(self.input(x)), 1)
        return self.classifier(torch.flatten(x, 1))


def build_classifier(arch: str, num_classes: int, channels: Union[None, int, Sequence[int]] = None,
                     gate: Optional[ChannelGate] = None) -> nn.Module:
    """A classifier: DCT input of the channels ``channels`` (global indices, or a count of the
    square pattern as :func:`freqdet.dct.resolve_channels` takes it), or torchvision's RGB
    model when None."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; use one of {ARCHITECTURES}")
    if channels is None:
        if gate is not None:
            raise ValueError("the channel gate needs DCT inputs")
        extra = {"zero_init_residual": True} if arch == "resnet50" else {}
        return getattr(torchvision.models, arch)(weights=None, num_classes=num_classes, **extra)
    model_class = ResNet50DCT if arch == "resnet50" else MobileNetV2DCT
    return model_class(resolve_channels(channels), num_classes, gate)
