"""Frequency-domain ResNet and ResNet-FPN backbones: Detectron2's own, minus the stem.

The DCT input already lives on res2's grid (one cell per 4x4 pixels), so the stem's
stride-4 downsampling has nothing left to do. Everything else is Detectron2's ResNet: its
blocks and stages, ``DEPTH``, ``NORM``, ``FREEZE_AT``, ``OUT_FEATURES`` and parameter
names, so stock checkpoints load into res2..res5 except for the first res2 block's input
convolutions, which take C channels instead of 64.
"""

from detectron2.layers import CNNBlockBase, ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import FPN, ResNet
from detectron2.modeling.backbone.fpn import LastLevelMaxPool
from detectron2.modeling.backbone.resnet import BasicBlock, BottleneckBlock, DeformBottleneckBlock
from torch import nn

from ..dct import CELL
from .config import dct_selection
from .gate import build_gate


class DCTStem(CNNBlockBase):
    """The stem of a frequency-domain ResNet: C channels in and out at a stride of 4 pixels.

    Without a gate it is the identity and exists so that Detectron2's ``ResNet`` sees the
    stride and channel count of its input; with one (``cfg.MODEL.DCT.GATE``) it switches
    channels on and off (:mod:`freqdet.detection.gate`).
    """

    def __init__(self, channels: int, gate: nn.Module = None):
        super().__init__(channels, channels, CELL)
        self.gate = gate

    def forward(self, x):
        return x if self.gate is None else self.gate(x)

    def freeze(self):
        """``FREEZE_AT`` leaves the gate trainable: freezing it would fix the selection at its start."""
        return self


def build_resnet_dct(cfg, channels: int) -> ResNet:
    """Detectron2's ResNet from ``cfg.MODEL.RESNETS`` with a :class:`DCTStem` of ``channels``.

    The stages are built as Detectron2's ``build_resnet_backbone`` builds them, from the
    same keys (DEPTH, NORM, NUM_GROUPS, WIDTH_PER_GROUP, RES2_OUT_CHANNELS, STRIDE_IN_1X1,
    RES5_DILATION, DEFORM_*), except that res2 takes ``channels`` instead of the stem's
    output. (Building Detectron2's stem and swapping it would not do: its norm layer on
    C channels fails for GN when C is not a multiple of 32.)
    """
    r = cfg.MODEL.RESNETS
    depth, out_channels = r.DEPTH, r.RES2_OUT_CHANNELS
    blocks_per_stage = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}
    if depth not in blocks_per_stage:
        raise ValueError(f"cfg.MODEL.RESNETS.DEPTH must be one of {sorted(blocks_per_stage)}, got {depth}")
    basic = depth in (18, 34)
    if basic and (out_channels != 64 or any(r.DEFORM_ON_PER_STAGE) or r.RES5_DILATION != 1 or r.NUM_GROUPS != 1):
        raise ValueError(
            "ResNet-18/34 need MODEL.RESNETS.RES2_OUT_CHANNELS 64, RES5_DILATION 1, NUM_GROUPS 1 "
            "and no DEFORM_ON_PER_STAGE, as in Detectron2"
        )
    if r.RES5_DILATION not in (1, 2):
        raise ValueError(f"cfg.MODEL.RESNETS.RES5_DILATION must be 1 or 2, got {r.RES5_DILATION}")
    in_channels, bottleneck_channels = channels, r.NUM_GROUPS * r.WIDTH_PER_GROUP
    stages = []
    for idx, num_blocks in enumerate(blocks_per_stage[depth]):
        dilation = r.RES5_DILATION if idx == 3 else 1
        first_stride = 1 if idx == 0 or (idx == 3 and dilation == 2) else 2
        kwargs = dict(
            num_blocks=num_blocks,
            stride_per_block=[first_stride] + [1] * (num_blocks - 1),
            in_channels=in_channels,
            out_channels=out_channels,
            norm=r.NORM,
        )
        if basic:
            kwargs["block_class"] = BasicBlock
        else:
            kwargs.update(
                bottleneck_channels=bottleneck_channels,
                stride_in_1x1=r.STRIDE_IN_1X1,
                dilation=dilation,
                num_groups=r.NUM_GROUPS,
                block_class=BottleneckBlock,
            )
            if r.DEFORM_ON_PER_STAGE[idx]:
                kwargs.update(
                    block_class=DeformBottleneckBlock,
                    deform_modulated=r.DEFORM_MODULATED,
                    deform_num_groups=r.DEFORM_NUM_GROUPS,
                )
        stages.append(ResNet.make_stage(**kwargs))
        in_channels, out_channels, bottleneck_channels = out_channels, out_channels * 2, bottleneck_channels * 2
    stem = DCTStem(channels, build_gate(cfg, channels))
    return ResNet(stem, stages, out_features=r.OUT_FEATURES, freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT)


@BACKBONE_REGISTRY.register()
def build_resnet_dct_backbone(cfg, input_shape: ShapeSpec = None) -> ResNet:
    """Frequency-domain ResNet; its input channels are the selection of ``cfg.MODEL.DCT``."""
    return build_resnet_dct(cfg, len(dct_selection(cfg)))


@BACKBONE_REGISTRY.register()
def build_resnet_dct_fpn_backbone(cfg, input_shape: ShapeSpec = None) -> FPN:
    """Frequency-domain ResNet + FPN (p2..p6 at pixel strides 4..64), as ``build_resnet_fpn_backbone``.

    ``input_shape`` is ignored: the input channels are the selection of ``cfg.MODEL.DCT``.
    """
    bottom_up = build_resnet_dct_backbone(cfg)
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelMaxPool(),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
