"""The official DCTNet release's conventions (github.com/kaix90/DCTNet), so that its checkpoints
see the inputs they were trained on.

- :func:`official_stats`: the release's fixed 192-channel normalization tables, which no
  checkpoint of it carries. They are package data (``official_stats/*.json``, in
  :mod:`freqdet.stats`' format, each naming its source file in the release):
  ``"classification"`` normalizes its ImageNet models (its std is the std over images of
  each channel's per-image mean, so AC stds are tiny), ``"detection"`` its Mask / Faster
  R-CNN configs.
- :class:`OfficialEvalTransform`: its ImageNet validation pipeline, step for step, with the
  libraries it used (OpenCV and libjpeg-turbo): resize the shorter side to S / 0.875
  (512 for ResNet-50, 1024 for MobileNetV2) with ``cv2.INTER_LINEAR`` on uint8 BGR (no
  antialiasing; the long side truncated by ``int()``), centre-crop S (offset
  ``round((h - S) / 2)``, Python's rounding), upscale the crop 2x with ``cv2.INTER_LINEAR``,
  encode the crop and the 2x image as JPEG quality 100 with 4:2:0 chroma and read their
  coefficients back: Y from the crop, Cb/Cr from the 2x image.

This package's own evaluation transform (:class:`~.data.DCTCropTransform`) crops before it
resizes, antialiases and stays in float; on real photos its Y coefficients differ from the
release's by a few percent RMS or more, which an official checkpoint notices.
"""

import os
from typing import Sequence

import numpy as np
import torch

from ..dct import split_by_component
from ..io import read_image
from ..release_pipeline import opencv, reencoded_planes
from ..stats import ChannelStats, load_stats
from .data import EVAL_CROP_RATIO

TABLES = ("classification", "detection")
_TABLE_DIR = os.path.join(os.path.dirname(__file__), "official_stats")


def official_stats(table: str) -> ChannelStats:
    """The release's ``"classification"`` or ``"detection"`` table (all 192 channels, with its source in ``info``)."""
    if table not in TABLES:
        raise ValueError(f"unknown official normalization table {table!r}; use one of {TABLES}")
    return load_stats(os.path.join(_TABLE_DIR, f"{table}.json"))


def table_provenance(table: str) -> str:
    """One line naming a table and its source, as checkpoints record it."""
    return f"the official release's {table} table ({official_stats(table).info['source']})"


def resize_shorter_side(image: np.ndarray, size: int) -> np.ndarray:
    """The release's ``Resize(size)``: shorter side to ``size``, the other ``int(size * long / short)``,
    ``cv2.INTER_LINEAR`` on the uint8 image; unchanged if the shorter side is ``size`` already."""
    cv2 = opencv()
    h, w = image.shape[:2]
    if min(h, w) == size:
        return image
    out_h, out_w = (int(size * h / w), size) if w < h else (size, int(size * w / h))
    return cv2.resize(image, (out_w, out_h), interpolation=cv2.INTER_LINEAR)


class OfficialEvalTransform:
    """Image path -> (C, S/8, S/8) int16 DCT channels exactly as the release's validation loader
    computes them (before its normalization, which the model applies)."""

    def __init__(self, crop: int, channels: Sequence[int], resize: int = 0):
        if crop % 8:
            raise ValueError(f"the crop must be a multiple of 8 pixels (one DCT block), got {crop}")
        self.crop, self.channels = crop, list(channels)
        self.resize = resize or int(round(crop / EVAL_CROP_RATIO))
        if self.resize < crop:
            raise ValueError(f"the shorter side is resized to {self.resize} pixels, less than the crop {crop}")
        self.luma, cb, cr = split_by_component(self.channels)
        self.chroma = (cb, cr)
        opencv()

    def coefficients(self, image: np.ndarray, chroma: bool) -> np.ndarray:
        """(rows, cols, 64) coefficients of Y or Cb|Cr (stacked on the last axis) of a uint8 BGR
        image re-encoded as the release re-encodes it (:func:`freqdet.release_pipeline.reencoded_planes`)."""
        planes = reencoded_planes(image)
        if chroma:
            return np.concatenate([planes[1][:, :, self.chroma[0]], planes[2][:, :, self.chroma[1]]], axis=2)
        return planes[0][:, :, self.luma]

    def __call__(self, path) -> torch.Tensor:
        cv2 = opencv()
        image = resize_shorter_side(read_image(path, format="BGR"), self.resize)
        h, w = image.shape[:2]
        top, left = int(round((h - self.crop) * 0.5)), int(round((w - self.crop) * 0.5))
        crop = image[top : top + self.crop, left : left + self.crop]
        upscaled = cv2.resize(crop, (2 * self.crop, 2 * self.crop), interpolation=cv2.INTER_LINEAR)
        planes = np.concatenate(
            [self.coefficients(crop, chroma=False), self.coefficients(upscaled, chroma=True)], axis=2
        )
        return torch.from_numpy(np.ascontiguousarray(planes.transpose(2, 0, 1)))
