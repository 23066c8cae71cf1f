"""DCTGeneralizedRCNN: Detectron2's GeneralizedRCNN fed with DCT channels instead of pixels."""
import logging
from typing import Dict, List, Sequence

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from detectron2.structures import ImageList

from ..config import dct_selection, dct_stats_from_config
from ..dct import CELL, resolve_channels, upscaled_idct
from ..dct.wire import from_wire

logger = logging.getLogger(__name__)


@META_ARCH_REGISTRY.register()
class DCTGeneralizedRCNN(GeneralizedRCNN):
    """Mask / Faster R-CNN on the output of :class:`freqdet.DCTDatasetMapper`.

    Each input dict holds ``"dct"`` (C, h, w) in a wire dtype and ``"image_size"`` (H, W)
    in pixels. On the device the coefficients become float32 and are normalized per
    channel (buffers ``dct_mean`` / ``dct_std``, saved in checkpoints like Detectron2's
    ``pixel_mean``), padded to ``SIZE_DIVISIBILITY`` (pixels, i.e. /4 cells), and the
    image sizes stay in pixels, so the stock RPN and ROI heads, the losses and the
    post-processing to ``"height"`` x ``"width"`` are Detectron2's own.
    """

    @configurable
    def __init__(self, *, channels: Sequence[int], dct_mean: Sequence[float], dct_std: Sequence[float], **kwargs):
        """
        Args:
            channels: the global DCT channel indices the backbone takes.
            dct_mean, dct_std: per-channel normalization of those channels.
            kwargs: the arguments of Detectron2's ``GeneralizedRCNN``.
        """
        super().__init__(**kwargs)
        self.channels = resolve_channels(list(channels))
        n = len(self.channels)
        if len(dct_mean) != n or len(dct_std) != n:
            raise ValueError(f"need {n} DCT means and stds, got {len(dct_mean)} and {len(dct_std)}")
        # Persistent, unlike Detectron2's pixel_mean: the statistics travel with the weights.
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
        ret.update(channels=selection, dct_mean=stats[0].tolist(), dct_std=stats[1].tolist())
        return ret

    def preprocess_image(self, batched_inputs: List[Dict[str, torch.Tensor]]) -> ImageList:
        """Normalize the DCT channels on the device and batch them; image sizes stay in pixels."""
        missing = [k for k in ("dct", "image_size") if k not in batched_inputs[0]]
        if missing:
            raise KeyError(
                f"DCTGeneralizedRCNN inputs lack {missing}: map dataset dicts with "
                "freqdet.DCTDatasetMapper, which ships 'dct' and 'image_size' instead of 'image'"
            )
        tensors = [(from_wire(x["dct"].to(self.device)) - self.dct_mean) / self.dct_std for x in batched_inputs]
        cells = ImageList.from_tensors(tensors, self.backbone.size_divisibility // CELL)
        sizes = [tuple(int(s) for s in x["image_size"]) for x in batched_inputs]
        for (h, w), (ch, cw) in zip(sizes, cells.image_sizes):
            if (-(-h // CELL), -(-w // CELL)) != (ch, cw):
                raise ValueError(f"input 'image_size' {(h, w)} does not match its {ch}x{cw} DCT grid")
        return ImageList(cells.tensor, sizes)

    def visualize_training(self, batched_inputs, proposals):
        """Detectron2's training visualization, drawn on the image rebuilt from the DCT channels."""
        rebuilt = []
        for x in batched_inputs:
            coeffs = from_wire(x["dct"]).cpu().numpy()
            image = upscaled_idct(coeffs, self.channels, tuple(x["image_size"]), self.input_format)
            rebuilt.append(dict(x, image=torch.from_numpy(np.clip(image, 0, 255).transpose(2, 0, 1).copy())))
        super().visualize_training(rebuilt, proposals)
