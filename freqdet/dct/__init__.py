"""Frequency-domain math of freqdet: numpy and torch only, never Detectron2.

- The channel layout and the grid (:mod:`.channels`): ``k = 8u + v`` row-major within a
  component, global index ``64 * component + k``, selections (``channel_indices``), and
  ``CELL``, the pixels per DCT cell.
- The transform that produces inputs (:mod:`.separable`): :func:`separable_dct` computes
  only the kept channels of a batch of images, on any device, absorbing a resize and
  flips (:class:`Geometry`), :func:`image_dct` the same of one image as decoded, and
  :func:`planes_dct` of a JPEG's own Y, Cb and Cr planes (what a data loader runs); its
  per-axis operators are built and cached in :mod:`.operators`; :mod:`.wire` encodes its
  output in a compact dtype for the trip to the device and decodes it there.
- The reference (:mod:`.reference`, :mod:`.block`, :mod:`.color`): the paper's pipeline
  written plainly in numpy (:func:`upscaled_dct`), JPEG's 8x8 block DCT
  (:func:`block_dct`) and colour transform (:func:`rgb_to_ycbcr`). The readable
  specification the fast transform is tested against.
"""

from .block import block_dct, block_idct, dct_matrix
from .channels import (
    CELL,
    COMPONENTS,
    LUMA_UPSCALE,
    NUM_CHANNELS,
    PATTERNS,
    PER_COMPONENT,
    SUPPORTED_COUNTS,
    cell_size,
    channel_indices,
    grid_size,
    resolve_channels,
    split_by_component,
    validate_channels,
    zigzag_order,
)
from .color import rgb_to_ycbcr, ycbcr_to_rgb
from .reference import upsample_bilinear, upscaled_dct, upscaled_idct
from .separable import Geometry, image_dct, kernel_routines, planes_dct, separable_dct
from .wire import WIRE_DTYPES

__all__ = [
    "CELL",
    "COMPONENTS",
    "Geometry",
    "LUMA_UPSCALE",
    "NUM_CHANNELS",
    "PATTERNS",
    "PER_COMPONENT",
    "SUPPORTED_COUNTS",
    "WIRE_DTYPES",
    "block_dct",
    "block_idct",
    "cell_size",
    "channel_indices",
    "dct_matrix",
    "grid_size",
    "image_dct",
    "kernel_routines",
    "planes_dct",
    "resolve_channels",
    "rgb_to_ycbcr",
    "separable_dct",
    "split_by_component",
    "upsample_bilinear",
    "upscaled_dct",
    "upscaled_idct",
    "validate_channels",
    "ycbcr_to_rgb",
    "zigzag_order",
]
