"""DCTGeneralizedRCNN: Detectron2's GeneralizedRCNN fed with DCT channels instead of pixels."""

from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from detectron2.structures import ImageList

from ..dct import CELL, resolve_channels, upscaled_idct
from ..normalization import ChannelNormalization
from ..stats import NATURAL_PHOTO_STATS, natural_photo_stats
from . import inputs
from .backbone import DCTStem
from .config import dct_selection, dct_stats_from_config, wire_dtype
from .gate import gate_losses_and_metrics


@META_ARCH_REGISTRY.register()
class DCTGeneralizedRCNN(GeneralizedRCNN):
    """Mask / Faster R-CNN on the output of :class:`freqdet.DCTDatasetMapper`.

    Each input dict (:mod:`freqdet.detection.inputs`) holds ``"dct"`` (C, h, w) in a wire
    dtype and ``"image_size"`` (H, W) in pixels, or ``"image"`` (3, H, W) uint8 pixels
    (with an optional ``"resize"``, ``"hflip"``, ``"vflip"`` to apply), which are
    transformed on the device and rounded as the wire dtype rounds (so ``DefaultPredictor``
    works, and ``MODEL.DCT.TRANSFORM_ON "device"`` gives the numbers of the CPU path). On
    the device the coefficients become float32 and are normalized per channel
    (:class:`freqdet.normalization.ChannelNormalization`, saved in checkpoints with the
    selection, like Detectron2's ``pixel_mean``), padded to ``SIZE_DIVISIBILITY`` (pixels,
    i.e. /4 cells), and the image sizes stay in pixels, so the stock RPN and ROI heads,
    the losses and the post-processing to ``"height"`` x ``"width"`` are Detectron2's own.
    """

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
        **kwargs,
    ):
        """
        Args:
            channels: the DCT channels the backbone takes: a count with ``pattern``, or the
                global indices.
            dct_mean, dct_std: per-channel normalization of those channels; None: the
                statistics freqdet ships (natural photographs), until a checkpoint brings
                its own.
            wire_dtype: how coefficients computed on the device from ``"image"`` are rounded.
            gate_weight: lambda, the weight of ``loss_gate`` when the backbone has a channel gate
                (``MODEL.DCT.GATE.LAMBDA``, whose default it shares).
            kwargs: the arguments of Detectron2's ``GeneralizedRCNN``.
        """
        super().__init__(**kwargs)
        self.wire_dtype = wire_dtype
        self.gate_weight = gate_weight
        # Persistent, unlike Detectron2's pixel_mean: the statistics and the channel selection
        # travel with the weights, and loading weights of another selection is refused.
        selection = resolve_channels(channels, pattern)
        if dct_mean is None or dct_std is None:
            dct_mean, dct_std = natural_photo_stats().pick(selection, NATURAL_PHOTO_STATS)
        self.normalization = ChannelNormalization(selection, dct_mean, dct_std)

    @property
    def channels(self):
        """The global DCT channel indices the model takes."""
        return self.normalization.channels

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
        return ret

    def forward(self, batched_inputs: List[Dict[str, torch.Tensor]]):
        """Detectron2's forward; in training with a channel gate, also ``loss_gate`` and gate metrics."""
        outputs = super().forward(batched_inputs)
        gate = self.gate
        if self.training and gate is not None:
            outputs.update(gate_losses_and_metrics(gate, self.channels, self.gate_weight))
        return outputs

    @property
    def gate(self):
        """The backbone's channel gate, or None (a view: its parameters belong to the backbone)."""
        stem = next((m for m in self.backbone.modules() if isinstance(m, DCTStem)), None)
        return stem.gate if stem is not None else None

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
        cells = ImageList.from_tensors(tensors, self.backbone.size_divisibility // CELL)
        for x, size in zip(batched_inputs, cells.image_sizes):
            inputs.check_grid(x, size)
        return ImageList(cells.tensor, [inputs.pixel_size(x) for x in batched_inputs])

    def visualize_training(self, batched_inputs, proposals):
        """Detectron2's training visualization, drawn on the image rebuilt from the DCT channels."""
        rebuilt = []
        for x in batched_inputs:
            coeffs = self.coefficients(x).cpu().numpy()
            image = upscaled_idct(coeffs, self.channels, inputs.pixel_size(x), self.input_format)
            rebuilt.append(dict(x, image=torch.from_numpy(np.clip(image, 0, 255).transpose(2, 0, 1).copy())))
        super().visualize_training(rebuilt, proposals)
