"""The reference: the paper's input pipeline written plainly in numpy (float64 inside).

This is the readable specification the fast transform (:mod:`.separable`) is tested
against; use it to understand or check numbers, and the fast transform to produce them.

For an H x W image: Y is taken from the image upscaled 2x, Cb and Cr from the image
upscaled 4x and then 4:2:0 subsampled (2x2 averages), so all three planes are 2H x 2W and
their 8x8 DCT blocks share one grid of ceil(H/4) x ceil(W/4) cells, res2's grid: cell
(i, j) covers pixels [4i, 4i+4) x [4j, 4j+4) of the image.

Upscaling is bilinear with half-pixel centres and clamped edges (OpenCV's INTER_LINEAR,
torch's ``interpolate(..., align_corners=False)``). The colour transform is affine and
bilinear weights sum to one, so converting to YCbCr before upscaling is exact and cheaper.
Nothing is rounded: the result is the exact float value of the transform.
"""

from typing import Sequence, Union

import numpy as np

from .block import block_dct, block_idct
from .channels import (
    COMPONENTS,
    LUMA_UPSCALE,
    NUM_CHANNELS,
    PER_COMPONENT,
    cell_size,
    resolve_channels,
    split_by_component,
)
from .color import rgb_to_ycbcr, ycbcr_to_rgb


def upsample_bilinear(plane: np.ndarray, factor: int) -> np.ndarray:
    """Upscale a 2-D plane by an integer factor (half-pixel centres, clamped edges), float64."""
    out = np.asarray(plane, dtype=np.float64)
    for axis in (0, 1):
        n = out.shape[axis]
        src = (np.arange(n * factor) + 0.5) / factor - 0.5
        src = np.clip(src, 0, n - 1)
        lo = np.floor(src).astype(np.int64)
        hi = np.minimum(lo + 1, n - 1)
        shape = [1, 1]
        shape[axis] = -1
        frac = (src - lo).reshape(shape)
        out = np.take(out, lo, axis=axis) * (1 - frac) + np.take(out, hi, axis=axis) * frac
    return out


def subsample_420(plane: np.ndarray) -> np.ndarray:
    """4:2:0 chroma subsampling of an even-sized plane: the mean of each 2x2 block."""
    h, w = plane.shape
    return plane.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))


def upscaled_dct(
    image,
    channels: Union[int, Sequence[int]],
    input_format: str = "BGR",
    pattern: str = "square",
    luma_upscale: int = LUMA_UPSCALE,
) -> np.ndarray:
    """DCT channels of an (H, W, 3) uint8/float image as float32 ``(C, ceil(H/4), ceil(W/4))``.

    ``channels`` is a channel count (taken with ``pattern``) or a list of global indices
    (see :mod:`freqdet.dct.channels`); output channels follow the sorted selection.
    ``luma_upscale=1`` gives the paper's classification input instead: Y at the image's
    size and Cb/Cr upscaled 2x then 4:2:0, on a grid of ceil(H/8) x ceil(W/8) cells.
    """
    cell_size(luma_upscale)
    selection = resolve_channels(channels, pattern)
    ycbcr = rgb_to_ycbcr(image, input_format)
    wanted = split_by_component(selection)
    planes = []
    for component, ks in enumerate(wanted):
        if not ks:
            continue
        plane = ycbcr[..., component]
        if component == 0:
            plane = upsample_bilinear(plane, luma_upscale)
        else:
            plane = subsample_420(upsample_bilinear(plane, 2 * luma_upscale))
        planes.append(block_dct(plane)[..., ks])
    return np.concatenate(planes, axis=-1).transpose(2, 0, 1).copy()


def upscaled_idct(
    coeffs: np.ndarray, channels: Union[int, Sequence[int]], image_size, output_format: str = "BGR"
) -> np.ndarray:
    """Approximate inverse of :func:`upscaled_dct`: float32 (H, W, 3) image from some channels.

    Channels not in the selection count as zero, so this shows what a selection keeps.
    Each plane is inverse-transformed at 2H x 2W and brought back to H x W by 2x2 means;
    with all 192 channels the result is the input blurred by that resampling only.
    """
    selection = resolve_channels(channels)
    coeffs = np.asarray(coeffs, dtype=np.float64)
    if coeffs.ndim != 3 or coeffs.shape[0] != len(selection):
        raise ValueError(f"expected ({len(selection)}, h, w) coefficients, got {coeffs.shape}")
    height, width = image_size
    full = np.zeros((NUM_CHANNELS,) + coeffs.shape[1:])
    full[list(selection)] = coeffs
    planes = []
    for component in range(len(COMPONENTS)):
        per_block = full[PER_COMPONENT * component : PER_COMPONENT * (component + 1)].transpose(1, 2, 0)
        plane = subsample_420(block_idct(per_block).astype(np.float64))
        planes.append(plane[:height, :width])
    return ycbcr_to_rgb(np.stack(planes, axis=-1), output_format)
