"""One switch from pixels to DCT inputs for any supported Detectron2 yacs config.

``freqdet.use_dct_input(cfg, channels=24)`` takes a config of Detectron2's model zoo, of a
project (after its ``add_*_config``) or a user's own, and changes only its input: the
meta-architecture and the backbone become their DCT twins (:data:`.meta_arch.TWINS`,
:data:`.backbone.BACKBONE_TWINS`), freqdet's keys are added if missing and the channels set.
The tools take it as ``--dct-input N`` (:mod:`.cli`).

Detectron2's configs start from RGB ImageNet weights (``detectron2://ImageNetPretrained/...``)
and FrozenBN. A DCT backbone has no pixel stem and its res2 takes C channels, so those weights
do not fit it: the switch refuses them in one line naming the two ways on, a DCT backbone
converted by ``tools/convert_weights.py`` as ``MODEL.WEIGHTS``, or training from scratch
(``weights=""`` with a norm that learns, e.g. ``norm="GN"``).
"""

from typing import Optional, Sequence, Union

from detectron2.config import CfgNode

from ..dct import resolve_channels
from .backbone import BACKBONE_TWINS
from .config import add_freqdet_config
from .meta_arch import dct_twin

RGB_WEIGHT_PREFIXES = ("detectron2://", "catalog://", "https://dl.fbaipublicfiles.com/detectron2/")


def rgb_weights(weights: str) -> bool:
    """Whether ``MODEL.WEIGHTS`` names one of Detectron2's published (RGB) checkpoints."""
    return str(weights).startswith(RGB_WEIGHT_PREFIXES)


def dct_backbone_name(name: str) -> str:
    """The DCT twin of a ``MODEL.BACKBONE.NAME``; ValueError naming the supported ones."""
    if name in BACKBONE_TWINS.values():
        return name
    if name not in BACKBONE_TWINS:
        raise ValueError(
            f"cfg.MODEL.BACKBONE.NAME is {name!r}, which has no DCT form: freqdet takes Detectron2's ResNet "
            f"backbones ({', '.join(sorted(BACKBONE_TWINS))}); ViTs, RegNets and other stems have no res2 for "
            "the DCT channels"
        )
    return BACKBONE_TWINS[name]


def use_dct_input(
    cfg: CfgNode,
    channels: Union[int, Sequence[int]] = 24,
    pattern: str = "square",
    *,
    weights: Optional[str] = None,
    norm: Optional[str] = None,
) -> CfgNode:
    """Switch a yacs config to DCT inputs, in place (and return it); every other key stays.

    Args:
        cfg: a Detectron2 config whose ``MODEL.META_ARCHITECTURE`` has a DCT twin (GeneralizedRCNN,
            ProposalNetwork, RetinaNet, FCOS, PanopticFPN, SemanticSegmentor) and whose backbone is
            one of Detectron2's ResNet builders (plain, FPN, RetinaNet's FPN).
        channels, pattern: the DCT channels, a count with a pattern or the global indices
            (``MODEL.DCT.CHANNELS`` / ``PATTERN``, or ``INDICES``).
        weights: None keeps ``MODEL.WEIGHTS``; a path sets it (a DCT checkpoint, e.g. converted by
            ``tools/convert_weights.py``); ``""`` trains from scratch and sets
            ``MODEL.BACKBONE.FREEZE_AT`` 0 (random weights have nothing to freeze).
        norm: None keeps ``MODEL.RESNETS.NORM``; else its new value (from scratch: "GN", "BN", "SyncBN").

    Raises ValueError in one line for an architecture or backbone without a DCT form, and for
    ``MODEL.WEIGHTS`` of Detectron2's RGB checkpoints.
    """
    meta_architecture = dct_twin(cfg.MODEL.META_ARCHITECTURE).__name__
    backbone = dct_backbone_name(cfg.MODEL.BACKBONE.NAME)
    selection = resolve_channels(channels, pattern) if isinstance(channels, int) else resolve_channels(list(channels))
    check_dct_weights(cfg.MODEL.WEIGHTS if weights is None else weights)  # before any change
    frozen = cfg.is_frozen()
    cfg.defrost()
    if "DCT" not in cfg.MODEL:
        add_freqdet_config(cfg)
    cfg.MODEL.META_ARCHITECTURE, cfg.MODEL.BACKBONE.NAME = meta_architecture, backbone
    if isinstance(channels, int):
        cfg.MODEL.DCT.CHANNELS, cfg.MODEL.DCT.PATTERN, cfg.MODEL.DCT.INDICES = channels, pattern, []
    else:
        cfg.MODEL.DCT.INDICES = list(selection)
    if weights is not None:
        cfg.MODEL.WEIGHTS = weights
        if weights == "":
            cfg.MODEL.BACKBONE.FREEZE_AT = 0
    if norm is not None:
        cfg.MODEL.RESNETS.NORM = norm
    if frozen:
        cfg.freeze()
    return cfg


def check_dct_weights(weights: str) -> None:
    """ValueError if ``MODEL.WEIGHTS`` of a DCT config are Detectron2's RGB ones (they have a pixel stem
    and a res2 of 64 input channels)."""
    if rgb_weights(weights):
        raise ValueError(
            f"cfg.MODEL.WEIGHTS is {weights!r}, Detectron2's weights for RGB pixels, which a DCT model cannot "
            "take (no pixel stem; res2 takes the DCT channels): give a DCT backbone converted by "
            'tools/convert_weights.py as MODEL.WEIGHTS, or train from scratch with MODEL.WEIGHTS "" '
            "MODEL.RESNETS.NORM GN (or BN, SyncBN) MODEL.BACKBONE.FREEZE_AT 0"
        )
