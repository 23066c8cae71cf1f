"""Frequency-domain math of freqdet: numpy and torch only, never Detectron2.

The numpy functions here are the readable reference (float64 inside); :mod:`.batched`
holds the torch versions that run on a batch on any device.
"""
from . import batched
from .channels import (
    COMPONENTS,
    NUM_CHANNELS,
    PATTERNS,
    PER_COMPONENT,
    SUPPORTED_COUNTS,
    channel_indices,
    channel_name,
    resolve_channels,
    split_by_component,
    validate_channels,
    zigzag_order,
)
from .color import rgb_to_ycbcr, ycbcr_to_rgb
from .pipeline import CELL, upsample_bilinear, upscaled_dct, upscaled_idct
from .transform import block_dct, block_idct, dct_matrix

__all__ = [
    "COMPONENTS",
    "NUM_CHANNELS",
    "PATTERNS",
    "PER_COMPONENT",
    "SUPPORTED_COUNTS",
    "CELL",
    "batched",
    "block_dct",
    "block_idct",
    "channel_indices",
    "channel_name",
    "dct_matrix",
    "resolve_channels",
    "rgb_to_ycbcr",
    "split_by_component",
    "upsample_bilinear",
    "upscaled_dct",
    "upscaled_idct",
    "validate_channels",
    "ycbcr_to_rgb",
    "zigzag_order",
]
