"""A test oracle: the paper's pipeline written a second way, in torch on a batch, on any device.

Upscaling by ``F.interpolate`` (bilinear, half-pixel centres) and 4:2:0 by ``avg_pool2d``
instead of the numpy reference's explicit loops; the tests hold the two equal, and use this
one where a batch on a device is handier. Layouts are channel-first: images
``(N, 3, H, W)``, planes ``(..., H, W)``, coefficients ``(..., 64, h, w)``.
"""

from typing import Sequence, Union

import torch
import torch.nn.functional as F

from freqdet.dct.block import BLOCK, DCT_MATRIX, LEVEL_SHIFT
from freqdet.dct.channels import LUMA_UPSCALE, cell_size, resolve_channels, split_by_component
from freqdet.dct.color import RGB_TO_YCBCR, YCBCR_OFFSET, YCBCR_TO_RGB, check_format


def _float(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _const(array, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(array, dtype=like.dtype, device=like.device)


def _check_images(images: torch.Tensor) -> torch.Tensor:
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (N, 3, H, W), got {tuple(images.shape)}")
    return _float(images)


def rgb_to_ycbcr(images: torch.Tensor, input_format: str = "RGB") -> torch.Tensor:
    """(N, 3, H, W) RGB or BGR (0..255) -> (N, 3, H, W) Y, Cb, Cr, unrounded."""
    x = _check_images(images)
    if check_format(input_format) == "BGR":
        x = x.flip(1)
    out = torch.einsum("ck,nkhw->nchw", _const(RGB_TO_YCBCR, x), x)
    return out + _const(YCBCR_OFFSET, x).view(1, 3, 1, 1)


def ycbcr_to_rgb(ycbcr: torch.Tensor, output_format: str = "RGB") -> torch.Tensor:
    """Inverse of :func:`rgb_to_ycbcr`, neither clipped nor rounded."""
    x = _check_images(ycbcr) - _const(YCBCR_OFFSET, _float(ycbcr)).view(1, 3, 1, 1)
    rgb = torch.einsum("ck,nkhw->nchw", _const(YCBCR_TO_RGB, x), x)
    return rgb.flip(1) if check_format(output_format) == "BGR" else rgb


def block_dct(planes: torch.Tensor) -> torch.Tensor:
    """(..., H, W) samples in 0..255 -> (..., 64, ceil(H/8), ceil(W/8)), edge-padded like JPEG."""
    x = _float(planes)
    if x.dim() < 2:
        raise ValueError(f"block_dct expects planes of shape (..., H, W), got {tuple(x.shape)}")
    lead, (h, w) = x.shape[:-2], x.shape[-2:]
    x = x.reshape(-1, 1, h, w) - LEVEL_SHIFT
    pad_h, pad_w = -h % BLOCK, -w % BLOCK
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    bh, bw = x.shape[-2] // BLOCK, x.shape[-1] // BLOCK
    blocks = x.reshape(-1, bh, BLOCK, bw, BLOCK).transpose(2, 3)  # (M, bh, bw, y, x)
    m = _const(DCT_MATRIX, x)
    coeffs = (m @ blocks @ m.T).reshape(-1, bh, bw, BLOCK * BLOCK)
    return coeffs.permute(0, 3, 1, 2).reshape(*lead, BLOCK * BLOCK, bh, bw)


def block_idct(coeffs: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`block_dct`: (..., 64, h, w) -> (..., 8h, 8w) samples (level shift restored)."""
    c = _float(coeffs)
    if c.dim() < 3 or c.shape[-3] != BLOCK * BLOCK:
        raise ValueError(f"block_idct expects coefficients of shape (..., 64, h, w), got {tuple(c.shape)}")
    lead, (bh, bw) = c.shape[:-3], c.shape[-2:]
    c = c.reshape(-1, BLOCK, BLOCK, bh, bw).permute(0, 3, 4, 1, 2)  # (M, bh, bw, u, v)
    m = _const(DCT_MATRIX, c)
    blocks = (m.T @ c @ m).transpose(2, 3)  # (M, bh, y, bw, x)
    return blocks.reshape(*lead, bh * BLOCK, bw * BLOCK) + LEVEL_SHIFT


def upscaled_dct(
    images: torch.Tensor,
    channels: Union[int, Sequence[int]],
    input_format: str = "BGR",
    pattern: str = "square",
    luma_upscale: int = LUMA_UPSCALE,
) -> torch.Tensor:
    """The paper's detection pipeline on a batch: (N, 3, H, W) -> (N, C, ceil(H/4), ceil(W/4)).

    Same definition as :func:`freqdet.dct.upscaled_dct` (bilinear upscaling with
    half-pixel centres, 4:2:0 by 2x2 averaging; ``luma_upscale=1`` for classification),
    computed on the images' device.
    """
    cell_size(luma_upscale)
    selection = resolve_channels(channels, pattern)
    ycbcr = rgb_to_ycbcr(images, input_format)
    out = []
    for component, ks in enumerate(split_by_component(selection)):
        if not ks:
            continue
        plane = ycbcr[:, component : component + 1]
        factor = luma_upscale if component == 0 else 2 * luma_upscale
        if factor > 1:
            plane = F.interpolate(plane, scale_factor=factor, mode="bilinear", align_corners=False)
        if component > 0:
            plane = F.avg_pool2d(plane, 2)
        out.append(block_dct(plane[:, 0])[:, ks])
    return torch.cat(out, dim=1)
