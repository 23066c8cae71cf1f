"""Detectron2's meta-architectures fed with DCT channels instead of pixels: one mechanism for all.

:class:`DCTInput` owns everything the input changes: the per-channel normalization (saved with
the weights, like Detectron2's ``pixel_mean``), reading the payload of
:mod:`freqdet.detection.inputs`, padding on the DCT grid while image sizes stay in pixels,
the channel gate's loss and the training visualization. Each DCT twin is the stock class with
that mixin first, so its heads, losses and post-processing are Detectron2's own:

========================  ===================================================================
twin                      stock class (``MODEL.META_ARCHITECTURE``)
========================  ===================================================================
DCTGeneralizedRCNN        GeneralizedRCNN (Faster, Mask, keypoint, Cascade, C4/DC5, PointRend)
DCTProposalNetwork        ProposalNetwork (RPN only)
DCTRetinaNet              RetinaNet
DCTFCOS                   FCOS (where the installed Detectron2 has it)
DCTPanopticFPN            PanopticFPN
DCTSemanticSegmentor      SemanticSegmentor (semantic FPN)
========================  ===================================================================

GeneralizedRCNN, PanopticFPN and the dense detectors read their images through
``preprocess_image``, which the mixin replaces; ProposalNetwork and SemanticSegmentor inline
their pixel normalization in ``forward``, so their twins restate that ``forward`` around
``preprocess_image`` and nothing else.
"""

import inspect
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.modeling import (
    META_ARCH_REGISTRY,
    GeneralizedRCNN,
    PanopticFPN,
    ProposalNetwork,
    RetinaNet,
    SemanticSegmentor,
)
from detectron2.modeling.postprocessing import detector_postprocess, sem_seg_postprocess
from detectron2.structures import ImageList

from ..dct import CELL, resolve_channels, upscaled_idct
from ..normalization import ChannelNormalization
from ..stats import NATURAL_PHOTO_STATS, natural_photo_stats
from . import inputs
from .backbone import DCTStem
from .config import dct_selection, dct_stats_from_config, wire_dtype
from .gate import gate_losses_and_metrics

try:
    from detectron2.modeling import FCOS
except ImportError:  # Detectron2 before FCOS
    FCOS = None


PADDING_CONSTRAINTS = "padding_constraints" in inspect.signature(ImageList.from_tensors).parameters


def cell_padding(backbone) -> Tuple[int, Optional[Dict[str, int]]]:
    """The backbone's ``size_divisibility`` and ``padding_constraints`` (Detectron2 after 0.6), in
    pixels, as the DCT grid's cells; ValueError where a pixel amount is not a whole number of cells,
    or where the installed Detectron2 cannot pad to the constraints."""
    constraints = getattr(backbone, "padding_constraints", None) or None

    def cells(value: int, key: str) -> int:
        if value % CELL:
            raise ValueError(
                f"the backbone's {key} is {value} pixels, not a multiple of the DCT cell ({CELL} pixels): "
                f"a DCT input can only be padded by whole cells; use a multiple of {CELL}"
            )
        return value // CELL

    divisibility = cells(backbone.size_divisibility, "size_divisibility")
    if constraints is not None and not PADDING_CONSTRAINTS:
        raise ValueError(
            f"the backbone asks for padding_constraints {constraints}, which this Detectron2 cannot apply "
            "(its ImageList.from_tensors has no padding_constraints): install a Detectron2 after 0.6, or use "
            "a backbone without them"
        )
    if constraints is not None:
        constraints = {k: cells(v, f"padding_constraints[{k!r}]") for k, v in constraints.items()}
    return divisibility, constraints


class DCTInput:
    """The DCT input of a Detectron2 meta-architecture (put it first among the bases).

    Each input dict holds ``"dct"`` (C, h, w) in a wire dtype and ``"image_size"`` (H, W) in
    pixels, or ``"image"`` (3, H, W) uint8 pixels (with an optional ``"resize"``, ``"hflip"``,
    ``"vflip"`` to apply), which are transformed on the device and rounded as the wire dtype rounds
    (so ``DefaultPredictor`` works, and ``MODEL.DCT.TRANSFORM_ON "device"`` gives the numbers of
    the CPU path). On the device the coefficients become float32 and are normalized per channel
    (:class:`freqdet.normalization.ChannelNormalization`, saved in checkpoints with the selection),
    padded to ``SIZE_DIVISIBILITY`` (pixels, i.e. /4 cells), and the image sizes stay in pixels,
    so the stock heads, losses and post-processing to ``"height"`` x ``"width"`` are Detectron2's.
    """

    stock_takes_input_format = True  # False where the stock class keeps no INPUT.FORMAT of its own

    @configurable
    def __init__(
        self,
        *,
        channels: Union[int, Sequence[int]],
        pattern: str = "square",
        dct_mean: Optional[Sequence[float]] = None,
        dct_std: Optional[Sequence[float]] = None,
        wire_dtype: str = "int16",
        gate_weight: float = 0.01,
        input_format: str = "BGR",
        **kwargs,
    ):
        """
        Args:
            channels: the DCT channels the backbone takes: a count with ``pattern``, or the
                global indices.
            dct_mean, dct_std: per-channel normalization of those channels; None: the
                statistics freqdet ships (natural photographs), until a checkpoint or the
                training set brings its own.
            wire_dtype: how coefficients computed on the device from ``"image"`` are rounded.
            gate_weight: lambda, the weight of ``loss_gate`` when the backbone has a channel gate
                (``MODEL.DCT.GATE.LAMBDA``, whose default it shares).
            input_format: the pixel order of ``"image"`` inputs (``INPUT.FORMAT``).
            kwargs: the arguments of the stock meta-architecture.
        """
        if self.stock_takes_input_format:
            kwargs["input_format"] = input_format
        super().__init__(**kwargs)
        self.input_format = input_format
        self.wire_dtype = wire_dtype
        self.gate_weight = gate_weight
        # Persistent, unlike Detectron2's pixel_mean: the statistics and the channel selection
        # travel with the weights, and loading weights of another selection is refused.
        selection = resolve_channels(channels, pattern)
        if dct_mean is None or dct_std is None:
            dct_mean, dct_std = natural_photo_stats().pick(selection, NATURAL_PHOTO_STATS)
        self.normalization = ChannelNormalization(selection, dct_mean, dct_std)

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        selection = dct_selection(cfg)
        stats = dct_stats_from_config(cfg, selection)  # None: the shipped ones, until training computes its own
        ret.update(
            channels=selection,
            dct_mean=stats[0].tolist() if stats is not None else None,
            dct_std=stats[1].tolist() if stats is not None else None,
            wire_dtype=wire_dtype(cfg),
            gate_weight=cfg.MODEL.DCT.GATE.LAMBDA,
        )
        ret.setdefault("input_format", cfg.INPUT.FORMAT)
        return ret

    @property
    def channels(self):
        """The global DCT channel indices the model takes."""
        return self.normalization.channels

    @property
    def gate(self):
        """The backbone's channel gate, or None (a view: its parameters belong to the backbone)."""
        stem = next((m for m in self.backbone.modules() if isinstance(m, DCTStem)), None)
        return stem.gate if stem is not None else None

    def forward(self, batched_inputs: List[Dict[str, torch.Tensor]]):
        """The stock forward; in training with a channel gate, also ``loss_gate`` and gate metrics."""
        return self.with_gate_losses(super().forward(batched_inputs))

    def with_gate_losses(self, outputs):
        """``outputs`` (a dict of losses in training) with the channel gate's loss and metrics added."""
        gate = self.gate
        if self.training and gate is not None:
            outputs.update(gate_losses_and_metrics(gate, self.channels, self.gate_weight))
        return outputs

    def coefficients(self, x: Dict[str, torch.Tensor]) -> torch.Tensor:
        """The float32 DCT channels of one input, on the model's device."""
        return inputs.coefficients(x, self.channels, self.device, self.input_format, self.wire_dtype)

    def preprocess_image(self, batched_inputs: List[Dict[str, torch.Tensor]]) -> ImageList:
        """Normalize the DCT channels on the device and batch them; image sizes stay in pixels.

        In float32 under mixed precision too (``SOLVER.AMP.ENABLED``, ``train.amp.enabled``): the
        wire's decoding, a transform on the device and the normalization leave autocast's
        half precision to the network itself."""
        with torch.autocast(self.device.type, enabled=False):
            tensors = [self.normalization(self.coefficients(x)) for x in batched_inputs]
        divisibility, constraints = cell_padding(self.backbone)
        if constraints is not None:
            cells = ImageList.from_tensors(tensors, divisibility, padding_constraints=constraints)
        else:
            cells = ImageList.from_tensors(tensors, divisibility)
        for x, size in zip(batched_inputs, cells.image_sizes):
            inputs.check_grid(x, size)
        return ImageList(cells.tensor, [inputs.pixel_size(x) for x in batched_inputs])

    def pad_targets(self, targets: List[torch.Tensor], pad_value: float) -> torch.Tensor:
        """Dense targets (pixels) batched to the padded input's size, as the stock classes pad them."""
        constraints = getattr(self.backbone, "padding_constraints", None)
        if constraints:
            return ImageList.from_tensors(targets, self.backbone.size_divisibility, pad_value, constraints).tensor
        return ImageList.from_tensors(targets, self.backbone.size_divisibility, pad_value).tensor

    def visualize_training(self, batched_inputs, *args):
        """Detectron2's training visualization, drawn on the image rebuilt from the DCT channels."""
        rebuilt = []
        for x in batched_inputs:
            coeffs = self.coefficients(x).cpu().numpy()
            image = upscaled_idct(coeffs, self.channels, inputs.pixel_size(x), self.input_format)
            rebuilt.append(dict(x, image=torch.from_numpy(np.clip(image, 0, 255).transpose(2, 0, 1).copy())))
        super().visualize_training(rebuilt, *args)


@META_ARCH_REGISTRY.register()
class DCTGeneralizedRCNN(DCTInput, GeneralizedRCNN):
    """GeneralizedRCNN (Faster / Mask / keypoint / Cascade R-CNN, C4 and DC5, PointRend's instance
    heads) on the output of :class:`freqdet.DCTDatasetMapper` (see :class:`DCTInput`)."""


@META_ARCH_REGISTRY.register()
class DCTRetinaNet(DCTInput, RetinaNet):
    """RetinaNet on DCT inputs (see :class:`DCTInput`)."""


@META_ARCH_REGISTRY.register()
class DCTPanopticFPN(DCTInput, PanopticFPN):
    """Panoptic FPN on DCT inputs; its ``"sem_seg"`` targets stay in pixels (see :class:`DCTInput`)."""


@META_ARCH_REGISTRY.register()
class DCTProposalNetwork(DCTInput, ProposalNetwork):
    """The RPN alone on DCT inputs (see :class:`DCTInput`)."""

    stock_takes_input_format = False

    def forward(self, batched_inputs):
        """ProposalNetwork's forward, reading the DCT input: RPN losses in training, else
        ``{"proposals": Instances}`` in the file's pixels."""
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        gt_instances = (
            [x["instances"].to(self.device) for x in batched_inputs] if "instances" in batched_inputs[0] else None
        )
        proposals, losses = self.proposal_generator(images, features, gt_instances)
        if self.training:
            return self.with_gate_losses(losses)
        return [
            {"proposals": detector_postprocess(p, x.get("height", size[0]), x.get("width", size[1]))}
            for p, x, size in zip(proposals, batched_inputs, images.image_sizes)
        ]


@META_ARCH_REGISTRY.register()
class DCTSemanticSegmentor(DCTInput, SemanticSegmentor):
    """The semantic FPN on DCT inputs; its ``"sem_seg"`` targets and outputs are in pixels."""

    stock_takes_input_format = False

    def forward(self, batched_inputs):
        """SemanticSegmentor's forward, reading the DCT input: losses in training, else
        ``{"sem_seg": (K, height, width) logits}``."""
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        targets = None
        if "sem_seg" in batched_inputs[0]:
            labels = [x["sem_seg"].to(self.device) for x in batched_inputs]
            targets = self.pad_targets(labels, self.sem_seg_head.ignore_value)
        results, losses = self.sem_seg_head(features, targets)
        if self.training:
            return self.with_gate_losses(losses)
        return [
            {"sem_seg": sem_seg_postprocess(r, size, x.get("height", size[0]), x.get("width", size[1]))}
            for r, x, size in zip(results, batched_inputs, images.image_sizes)
        ]


if FCOS is not None:

    @META_ARCH_REGISTRY.register()
    class DCTFCOS(DCTInput, FCOS):
        """FCOS on DCT inputs (see :class:`DCTInput`)."""


TWINS = {
    GeneralizedRCNN: DCTGeneralizedRCNN,
    ProposalNetwork: DCTProposalNetwork,
    RetinaNet: DCTRetinaNet,
    PanopticFPN: DCTPanopticFPN,
    SemanticSegmentor: DCTSemanticSegmentor,
}  # Detectron2's meta-architecture -> its DCT twin
if FCOS is not None:
    TWINS[FCOS] = DCTFCOS


def dct_twin(meta_architecture: Union[str, type]) -> type:
    """The DCT twin of a stock meta-architecture (a class or its registered name); a DCT class is
    its own twin; ValueError naming the supported ones otherwise."""
    cls = META_ARCH_REGISTRY.get(meta_architecture) if isinstance(meta_architecture, str) else meta_architecture
    if isinstance(cls, type) and issubclass(cls, DCTInput):
        return cls
    if cls in TWINS:
        return TWINS[cls]
    name = getattr(cls, "__name__", repr(cls))
    stock = next((base for base in getattr(cls, "__mro__", ()) if base in TWINS), None)
    if stock is not None:
        raise ValueError(
            f"{name} subclasses Detectron2's {stock.__name__}; its DCT form is a class of your own: "
            f"class DCT{name}(freqdet.detection.meta_arch.DCTInput, {name}), registered in META_ARCH_REGISTRY"
        )
    raise ValueError(
        f"no DCT form of the meta-architecture {name!r}: freqdet has one for "
        f"{', '.join(sorted(c.__name__ for c in TWINS))} (Panoptic-DeepLab and other projects' models build "
        "their input inside themselves)"
    )
