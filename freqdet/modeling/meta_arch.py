"""DCTGeneralizedRCNN: Detectron2's GeneralizedRCNN fed with DCT channels instead of pixels."""
import logging
from typing import Dict, List, Sequence

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from detectron2.structures import ImageList

from ..config import dct_selection, dct_stats_from_config, wire_dtype
from ..data.mapper import mapped_coefficients
from ..dct import CELL, resolve_channels, upscaled_idct
from ..dct.wire import encode, from_wire
from .backbone import DCTStem
from .gate import gate_losses_and_metrics

logger = logging.getLogger(__name__)


@META_ARCH_REGISTRY.register()
class DCTGeneralizedRCNN(GeneralizedRCNN):
    """Mask / Faster R-CNN on the output of :class:`freqdet.DCTDatasetMapper`.

    Each input dict holds ``"dct"`` (C, h, w) in a wire dtype and ``"image_size"`` (H, W)
    in pixels, or ``"image"`` (3, H, W) uint8 pixels (with an optional ``"resize"``,
    ``"hflip"``, ``"vflip"`` to apply), which are transformed on the device and rounded as
    the wire dtype rounds (so ``DefaultPredictor`` works, and ``MODEL.DCT.TRANSFORM_ON
    "device"`` gives the numbers of the CPU path). On the device
    the coefficients become float32 and are normalized per
    channel (buffers ``dct_mean`` / ``dct_std``, saved in checkpoints like Detectron2's
    ``pixel_mean``), padded to ``SIZE_DIVISIBILITY`` (pixels, i.e. /4 cells), and the
    image sizes stay in pixels, so the stock RPN and ROI heads, the losses and the
    post-processing to ``"height"`` x ``"width"`` are Detectron2's own.
    """

    @configurable
    def __init__(
        self,
        *,
        channels: Sequence[int],
        dct_mean: Sequence[float],
        dct_std: Sequence[float],
        wire_dtype: str = "int16",
        gate_weight: float = 0.0,
        **kwargs,
    ):
        """
        Args:
            channels: the global DCT channel indices the backbone takes.
            dct_mean, dct_std: per-channel normalization of those channels.
            wire_dtype: how coefficients computed on the device from ``"image"`` are rounded.
            gate_weight: lambda, the weight of ``loss_gate`` when the backbone has a channel gate.
            kwargs: the arguments of Detectron2's ``GeneralizedRCNN``.
        """
        super().__init__(**kwargs)
        self.wire_dtype = wire_dtype
        self.gate_weight = gate_weight
        self.channels = resolve_channels(list(channels))
        n = len(self.channels)
        if len(dct_mean) != n or len(dct_std) != n:
            raise ValueError(f"need {n} DCT means and stds, got {len(dct_mean)} and {len(dct_std)}")
        # Persistent, unlike Detectron2's pixel_mean: the statistics and the channel selection
        # travel with the weights (FreqdetCheckpointer checks the selection when loading).
        self.register_buffer("dct_channels", torch.tensor(self.channels, dtype=torch.long))
        self.register_buffer("dct_mean", torch.tensor(dct_mean, dtype=torch.float32).view(-1, 1, 1))
        self.register_buffer("dct_std", torch.tensor(dct_std, dtype=torch.float32).view(-1, 1, 1))

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        selection = dct_selection(cfg)
        stats = dct_stats_from_config(cfg, selection)
        if stats is None:
            logger.warning(
                "No DCT statistics configured (MODEL.DCT.STATS_FILE / MEAN / STD): normalization is "
                "mean 0, std 1 until a checkpoint with them is loaded. tools/train_net.py computes "
                "them over the training set before training."
            )
            stats = (np.zeros(len(selection)), np.ones(len(selection)))
        ret.update(
            channels=selection,
            dct_mean=stats[0].tolist(),
            dct_std=stats[1].tolist(),
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
        if "dct" in x or "dct_luma" in x:
            on_device = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in x.items()}
            return mapped_coefficients(on_device, self.channels)
        if "image" in x:
            pixels = x["image"].to(self.device)[None]
            geometry = dict(resize=x.get("resize"), hflip=x.get("hflip", False), vflip=x.get("vflip", False))
            return from_wire(encode(pixels, self.channels, self.input_format, self.wire_dtype, **geometry)[0], self.channels)
        raise KeyError(
            "DCTGeneralizedRCNN inputs need 'dct' and 'image_size' (map dataset dicts with "
            "freqdet.DCTDatasetMapper) or an 'image' of uint8 pixels"
        )

    @staticmethod
    def pixel_size(x: Dict[str, torch.Tensor]):
        if "image_size" in x:
            return tuple(int(s) for s in x["image_size"])
        if "image" in x:
            return tuple(x.get("resize") or x["image"].shape[-2:])
        raise KeyError("an input with 'dct' also needs 'image_size', its (H, W) in pixels")

    def preprocess_image(self, batched_inputs: List[Dict[str, torch.Tensor]]) -> ImageList:
        """Normalize the DCT channels on the device and batch them; image sizes stay in pixels."""
        tensors = [(self.coefficients(x) - self.dct_mean) / self.dct_std for x in batched_inputs]
        cells = ImageList.from_tensors(tensors, self.backbone.size_divisibility // CELL)
        sizes = [self.pixel_size(x) for x in batched_inputs]
        for (h, w), (ch, cw) in zip(sizes, cells.image_sizes):
            if (-(-h // CELL), -(-w // CELL)) != (ch, cw):
                raise ValueError(f"input 'image_size' {(h, w)} does not match its {ch}x{cw} DCT grid")
        return ImageList(cells.tensor, sizes)

    def visualize_training(self, batched_inputs, proposals):
        """Detectron2's training visualization, drawn on the image rebuilt from the DCT channels."""
        rebuilt = []
        for x in batched_inputs:
            coeffs = self.coefficients(x).cpu().numpy()
            image = upscaled_idct(coeffs, self.channels, self.pixel_size(x), self.input_format)
            rebuilt.append(dict(x, image=torch.from_numpy(np.clip(image, 0, 255).transpose(2, 0, 1).copy())))
        super().visualize_training(rebuilt, proposals)
