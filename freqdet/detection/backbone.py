"""Frequency-domain ResNet and ResNet-FPN backbones: Detectron2's own, minus the stem.

The DCT input already lives on res2's grid (one cell per 4x4 pixels), so the stem's
stride-4 downsampling has nothing left to do. Everything else is Detectron2's ResNet: its
blocks and stages, ``DEPTH``, ``NORM``, ``FREEZE_AT``, ``OUT_FEATURES`` and parameter
names, so stock checkpoints load into res2..res5 except for the first res2 block's input
convolutions, which take C channels instead of 64.
"""

from typing import List, Optional, Sequence, Union

from detectron2.layers import CNNBlockBase, ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import FPN, ResNet
from detectron2.modeling.backbone.fpn import LastLevelMaxPool, LastLevelP6P7
from detectron2.modeling.backbone.resnet import BasicBlock, BottleneckBlock, DeformBottleneckBlock
from torch import nn

from ..dct import CELL, resolve_channels
from .config import dct_selection
from .gate import build_gate

ChannelsArg = Union[int, Sequence[int]]  # a channel count (with a pattern) or the global indices


class DCTStem(CNNBlockBase):
    """The stem of a frequency-domain ResNet: C channels in and out at a stride of 4 pixels.

    Without a gate it is the identity and exists so that Detectron2's ``ResNet`` sees the
    stride and channel count of its input; with one (``cfg.MODEL.DCT.GATE``) it switches
    channels on and off (:mod:`freqdet.detection.gate`).
    """

    def __init__(
        self,
        channels: ChannelsArg = 24,
        gate: Optional[nn.Module] = None,
        *,
        pattern: str = "square",
        norm: str = "",
        in_channels: Optional[int] = None,
        out_channels: Optional[int] = None,
    ):
        """
        Args:
            channels: the DCT channels it takes: a count (with ``pattern``) or the indices.
            gate: a channel gate, or None.
            norm, in_channels, out_channels: what Detectron2's ``BasicStem`` takes, so that
                LazyConfig recipes that set them on every stem (Detectron2's LSJ configs set
                ``stem.norm``) apply unchanged. There is nothing to normalize in an identity;
                the channel counts, when given, must be the selection's.
        """
        count = len(resolve_channels(channels, pattern))
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if value is not None and value != count:
                raise ValueError(
                    f"DCTStem takes and gives the {count} DCT channels of its selection, got {name}={value}"
                )
        super().__init__(count, count, CELL)
        self.gate = gate

    def forward(self, x):
        return x if self.gate is None else self.gate(x)

    def freeze(self):
        """``FREEZE_AT`` leaves the gate trainable: freezing it would fix the selection at its start."""
        return self


BLOCKS_PER_STAGE = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}


def dct_resnet_stages(
    channels: ChannelsArg = 24,
    depth: int = 50,
    *,
    pattern: str = "square",
    norm: str = "FrozenBN",
    stride_in_1x1: bool = False,
    num_groups: int = 1,
    width_per_group: int = 64,
    res2_out_channels: Optional[int] = None,
    res5_dilation: int = 1,
    deform_on_per_stage: Sequence[bool] = (False, False, False, False),
    deform_modulated: bool = False,
    deform_num_groups: int = 1,
) -> List[List[CNNBlockBase]]:
    """Detectron2's ResNet stages (``ResNet.make_default_stages``, with the options of
    ``cfg.MODEL.RESNETS``) for DCT inputs: res2 takes the selection's channel count instead of
    the stem's 64. ``res2_out_channels`` None: 64 for ResNet-18/34, 256 for the deeper ones."""
    in_channels = len(resolve_channels(channels, pattern))
    if depth not in BLOCKS_PER_STAGE:
        raise ValueError(f"ResNet depth must be one of {sorted(BLOCKS_PER_STAGE)}, got {depth}")
    basic = depth in (18, 34)
    if res2_out_channels is None:
        res2_out_channels = 64 if basic else 256
    if basic and (res2_out_channels != 64 or any(deform_on_per_stage) or res5_dilation != 1 or num_groups != 1):
        raise ValueError(
            "ResNet-18/34 need RES2_OUT_CHANNELS 64, RES5_DILATION 1, NUM_GROUPS 1 and no DEFORM_ON_PER_STAGE, "
            "as in Detectron2"
        )
    if res5_dilation not in (1, 2):
        raise ValueError(f"res5_dilation must be 1 or 2, got {res5_dilation}")
    out_channels, bottleneck_channels = res2_out_channels, num_groups * width_per_group
    stages = []
    for idx, num_blocks in enumerate(BLOCKS_PER_STAGE[depth]):
        dilation = res5_dilation if idx == 3 else 1
        first_stride = 1 if idx == 0 or (idx == 3 and dilation == 2) else 2
        kwargs = dict(
            num_blocks=num_blocks,
            stride_per_block=[first_stride] + [1] * (num_blocks - 1),
            in_channels=in_channels,
            out_channels=out_channels,
            norm=norm,
        )
        if basic:
            kwargs["block_class"] = BasicBlock
        else:
            kwargs.update(
                bottleneck_channels=bottleneck_channels,
                stride_in_1x1=stride_in_1x1,
                dilation=dilation,
                num_groups=num_groups,
                block_class=BottleneckBlock,
            )
            if deform_on_per_stage[idx]:
                kwargs.update(
                    block_class=DeformBottleneckBlock,
                    deform_modulated=deform_modulated,
                    deform_num_groups=deform_num_groups,
                )
        stages.append(ResNet.make_stage(**kwargs))
        in_channels, out_channels, bottleneck_channels = out_channels, out_channels * 2, bottleneck_channels * 2
    return stages


def build_dct_resnet(
    channels: ChannelsArg = 24,
    depth: int = 50,
    *,
    pattern: str = "square",
    norm: str = "FrozenBN",
    stride_in_1x1: bool = False,
    freeze_at: int = 0,
    out_features: Sequence[str] = ("res2", "res3", "res4", "res5"),
    gate: Optional[nn.Module] = None,
    **stage_options,
) -> ResNet:
    """A frequency-domain ResNet from keywords (for LazyConfig, ``LazyCall(build_dct_resnet)``):
    :class:`DCTStem` and :func:`dct_resnet_stages`, in Detectron2's ``ResNet``.

    ``channels``: a count with ``pattern``, or the indices; ``stride_in_1x1``: where the stride
    of a bottleneck lies; ``gate``: a channel gate module (e.g. ``freqdet.gate.ChannelGate``) or
    None; ``stage_options``: the other arguments of :func:`dct_resnet_stages`."""
    stages = dct_resnet_stages(
        channels, depth, pattern=pattern, norm=norm, stride_in_1x1=stride_in_1x1, **stage_options
    )
    return ResNet(
        DCTStem(channels, gate, pattern=pattern), stages, out_features=list(out_features), freeze_at=freeze_at
    )


def build_resnet_dct(cfg, channels: ChannelsArg) -> ResNet:
    """Detectron2's ResNet from ``cfg.MODEL.RESNETS`` with a :class:`DCTStem` of ``channels``.

    The stages are built as Detectron2's ``build_resnet_backbone`` builds them, from the
    same keys (DEPTH, NORM, NUM_GROUPS, WIDTH_PER_GROUP, RES2_OUT_CHANNELS, STRIDE_IN_1X1,
    RES5_DILATION, DEFORM_*), except that res2 takes ``channels`` instead of the stem's
    output (:func:`dct_resnet_stages`, :class:`DCTStem`). (Building Detectron2's stem and swapping it would not
    do: its norm layer on C channels fails for GN when C is not a multiple of 32.)
    """
    r = cfg.MODEL.RESNETS
    stages = dct_resnet_stages(
        channels,
        r.DEPTH,
        norm=r.NORM,
        stride_in_1x1=r.STRIDE_IN_1X1,
        num_groups=r.NUM_GROUPS,
        width_per_group=r.WIDTH_PER_GROUP,
        res2_out_channels=r.RES2_OUT_CHANNELS,
        res5_dilation=r.RES5_DILATION,
        deform_on_per_stage=r.DEFORM_ON_PER_STAGE,
        deform_modulated=r.DEFORM_MODULATED,
        deform_num_groups=r.DEFORM_NUM_GROUPS,
    )
    stem = DCTStem(channels, build_gate(cfg, len(resolve_channels(channels))))  # after the stages: their init first
    return ResNet(stem, stages, out_features=r.OUT_FEATURES, freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT)


@BACKBONE_REGISTRY.register()
def build_resnet_dct_backbone(cfg, input_shape: ShapeSpec = None) -> ResNet:
    """Frequency-domain ResNet; its input channels are the selection of ``cfg.MODEL.DCT``."""
    return build_resnet_dct(cfg, dct_selection(cfg))


def build_dct_fpn(cfg, top_block: str = "maxpool") -> FPN:
    """Frequency-domain ResNet + FPN from ``cfg``, as Detectron2's FPN builders: ``top_block``
    "maxpool" (``LastLevelMaxPool``: p2..p6, R-CNN) or "p6p7" (``LastLevelP6P7`` on res5: p3..p7,
    RetinaNet)."""
    bottom_up = build_resnet_dct_backbone(cfg)
    out_channels = cfg.MODEL.FPN.OUT_CHANNELS
    if top_block == "maxpool":
        top = LastLevelMaxPool()
    elif top_block == "p6p7":
        top = LastLevelP6P7(bottom_up.output_shape()["res5"].channels, out_channels)
    else:
        raise ValueError(f"top_block must be 'maxpool' or 'p6p7', got {top_block!r}")
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=out_channels,
        norm=cfg.MODEL.FPN.NORM,
        top_block=top,
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )


@BACKBONE_REGISTRY.register()
def build_resnet_dct_fpn_backbone(cfg, input_shape: ShapeSpec = None) -> FPN:
    """Frequency-domain ResNet + FPN (p2..p6 at pixel strides 4..64), as ``build_resnet_fpn_backbone``.

    ``input_shape`` is ignored: the input channels are the selection of ``cfg.MODEL.DCT``.
    """
    return build_dct_fpn(cfg, "maxpool")


@BACKBONE_REGISTRY.register()
def build_retinanet_resnet_dct_fpn_backbone(cfg, input_shape: ShapeSpec = None) -> FPN:
    """Frequency-domain ResNet + FPN with P6/P7 from res5 (p3..p7), as ``build_retinanet_resnet_fpn_backbone``."""
    return build_dct_fpn(cfg, "p6p7")


# Detectron2's ResNet backbone builders -> their frequency-domain twins (MODEL.BACKBONE.NAME).
BACKBONE_TWINS = {
    "build_resnet_backbone": "build_resnet_dct_backbone",
    "build_resnet_fpn_backbone": "build_resnet_dct_fpn_backbone",
    "build_retinanet_resnet_fpn_backbone": "build_retinanet_resnet_dct_fpn_backbone",
}
