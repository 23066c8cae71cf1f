"""Classifiers on DCT inputs (paper Sec. 4.1) and their RGB counterparts, from torchvision's models.

Two layouts of each DCT model (``layout``), both with torchvision's parameter names:

- ``"torchvision"`` (this package's own):
  ResNet-50-DCT is torchvision's ResNet-50 without its stem (conv1, bn1, maxpool): the
  (C, 56, 56) input of a 448 crop goes straight into layer1, whose first block takes C
  channels in its 1x1 convolution and its shortcut; strides (1, 2, 2, 2).
  MobileNetV2-DCT is torchvision's MobileNetV2 whose first convolution takes C channels
  at stride 1 instead of 3 at stride 2, for the (C, 112, 112) input of an 896 crop.
- ``"official"``, the networks of the official DCTNet release (github.com/kaix90/DCTNet),
  so that its checkpoints give its outputs:
  ResNet-50 as above but with layer2 at stride 1 (the release's ``ResNet`` builds it so:
  layer2 runs at 56x56 and layer4 ends at 14x14); MobileNetV2 without its first stage
  (the release's ``MobileNetV2DCT_Subset_woinp``, ``features[1:]``): the 112x112 input
  goes straight into the t=1 block, whose depthwise convolution, BatchNorm and pointwise
  convolution take C channels for C < 32, are unchanged for 32, and become a grouped
  192 -> 32 convolution for 192; no dropout before the classifier.

DCT models take raw coefficients, normalize them per channel on the device
(:class:`freqdet.normalization.ChannelNormalization`, saved in checkpoints with the
channels it describes) and may put a :class:`freqdet.gate.ChannelGate` after that.
"""

from typing import Optional, Sequence, Union

import torch
import torchvision
from torch import nn
from torchvision.ops.misc import Conv2dNormActivation

from ..dct import NUM_CHANNELS, resolve_channels
from ..gate import ChannelGate
from ..normalization import ChannelNormalization

ARCHITECTURES = ("resnet50", "mobilenet_v2")
LAYOUTS = ("torchvision", "official")
# The paper's crops: 448 (ResNet-50) and 896 (MobileNetV2) for DCT inputs, 224 for RGB.
DCT_CROP = {"resnet50": 448, "mobilenet_v2": 896}
RGB_CROP = 224


class DCTInput(nn.Module):
    """Per-channel normalization and an optional gate of DCT inputs, on the device."""

    def __init__(self, selection: Sequence[int], gate: Optional[ChannelGate] = None):
        super().__init__()
        self.normalization = ChannelNormalization(selection)
        self.gate = gate

    def set_stats(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.normalization.set_stats(mean, std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalization(x)
        return x if self.gate is None else self.gate(x)


def check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown classifier layout {layout!r}; use one of {LAYOUTS}")
    return layout


def check_channel_count(arch: str, layout: str, channels: int) -> None:
    """ValueError unless the network of ``arch`` in ``layout`` takes ``channels`` DCT channels."""
    if arch == "mobilenet_v2" and layout == "official" and not (channels <= 32 or channels == NUM_CHANNELS):
        raise ValueError(
            f"the official MobileNetV2 layout takes at most 32 DCT channels or all {NUM_CHANNELS} (the "
            f"release's MobileNetV2DCT_Subset_woinp), not {channels}: use layout 'torchvision' for them"
        )


def _kaiming(conv: nn.Conv2d) -> nn.Conv2d:
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


class ResNet50DCT(nn.Module):
    """ResNet-50 layers 1-4 (torchvision's names) on a (C, 56, 56) DCT input of the channels
    ``selection``; layer2 at stride 2 (``layout="torchvision"``) or 1 (``"official"``)."""

    def __init__(
        self,
        selection: Sequence[int],
        num_classes: int = 1000,
        gate: Optional[ChannelGate] = None,
        layout: str = "torchvision",
    ):
        super().__init__()
        self.layout = check_layout(layout)
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
            _kaiming(conv)
        if layout == "official":
            # The release's "change the stride from 2 to 1 to match the input size".
            self.layer2[0].conv2.stride = self.layer2[0].downsample[0].stride = (1, 1)
        self.avgpool, self.fc = base.avgpool, base.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.input(x)))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class MobileNetV2DCT(nn.Module):
    """MobileNetV2 (torchvision's names) on a (C, 112, 112) DCT input of the channels ``selection``:
    a first convolution of C channels at stride 1 (``layout="torchvision"``), or the
    release's network without a first stage (``"official"``; C at most 32, or 192)."""

    def __init__(
        self,
        selection: Sequence[int],
        num_classes: int = 1000,
        gate: Optional[ChannelGate] = None,
        layout: str = "torchvision",
    ):
        super().__init__()
        self.layout = check_layout(layout)
        channels = len(selection)
        self.input = DCTInput(selection, gate)
        if layout == "official":
            base = torchvision.models.mobilenet_v2(weights=None, num_classes=num_classes, dropout=0.0)
            features = nn.Sequential(*list(base.features)[1:])  # renumbered from 0, as the release's
            block = features[0].conv  # the t=1 block: depthwise 32 (conv.0), pointwise 32 -> 16 (conv.1, conv.2)
            if channels < 32:
                block[0] = Conv2dNormActivation(
                    channels,
                    channels,
                    kernel_size=3,
                    groups=channels,
                    norm_layer=nn.BatchNorm2d,
                    activation_layer=nn.ReLU6,
                )
                block[1] = _kaiming(nn.Conv2d(channels, block[1].out_channels, kernel_size=1, bias=False))
                _kaiming(block[0][0])
            elif channels == NUM_CHANNELS:
                width = block[0][0].out_channels
                block[0][0] = _kaiming(nn.Conv2d(channels, width, kernel_size=3, padding=1, groups=width, bias=False))
            else:
                check_channel_count("mobilenet_v2", layout, channels)
        else:
            base = torchvision.models.mobilenet_v2(weights=None, num_classes=num_classes)
            first = base.features[0]
            base.features[0] = Conv2dNormActivation(
                channels,
                first.out_channels,
                kernel_size=3,
                stride=1,
                norm_layer=nn.BatchNorm2d,
                activation_layer=nn.ReLU6,
            )
            features = base.features
        self.features, self.classifier = features, base.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(self.input(x)), 1)
        return self.classifier(torch.flatten(x, 1))


def build_classifier(
    arch: str,
    num_classes: int,
    channels: Union[None, int, Sequence[int]] = None,
    gate: Optional[ChannelGate] = None,
    layout: str = "torchvision",
) -> nn.Module:
    """A classifier: DCT input of the channels ``channels`` (global indices, or a count of the
    square pattern as :func:`freqdet.dct.resolve_channels` takes it) in the given ``layout``,
    or torchvision's RGB model when None."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; use one of {ARCHITECTURES}")
    check_layout(layout)
    if channels is None:
        if gate is not None:
            raise ValueError("the channel gate needs DCT inputs")
        if layout != "torchvision":
            raise ValueError(f"layout {layout!r} is a DCT network; RGB models have torchvision's layout only")
        extra = {"zero_init_residual": True} if arch == "resnet50" else {}
        return getattr(torchvision.models, arch)(weights=None, num_classes=num_classes, **extra)
    model_class = ResNet50DCT if arch == "resnet50" else MobileNetV2DCT
    return model_class(resolve_channels(channels), num_classes, gate, layout)
