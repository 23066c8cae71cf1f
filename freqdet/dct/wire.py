"""Wire formats: how coefficients travel from the data loader to the device.

Bytes that cross from the loader to the GPU are the paper's point, so coefficients ship
in a compact dtype and become float32 on the device:

- ``"int16"``: rounded to integers, exact to the reference's rounding (every coefficient of
  an 8-bit image fits: |coefficient| <= 1024);
- ``"int8"``: divided by a fixed per-channel step and rounded to -127..127. The step is the
  channel's largest possible magnitude over 127 (so nothing ever clips), computed from the
  transform's operators (:func:`freqdet.dct.operators.axis_bounds`, edge cells included);
  for the DC channels it is about 8, one grey level of a cell's mean.
  Half the bytes of int16, like a JPEG quantization table chosen for the network;
- ``"float32"``: the exact values, twice the bytes of int16.

The dtype of a wire tensor says how to read it, so :func:`decode` needs only the selection.
The compressed-domain input (a JPEG's own coefficients, :mod:`freqdet.io.coefficients`)
travels as int16 on the file's block grids; :func:`decode_file_grid` resamples it to the
training grid on the device.
"""

from functools import lru_cache
from typing import Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .channels import LUMA_UPSCALE, PER_COMPONENT, grid_size, resolve_channels
from .operators import axis_bounds
from .separable import Geometry, image_dct, planes_dct, separable_dct

WIRE_DTYPES = {"int16": np.int16, "int8": np.int8, "float32": np.float32}
_INT8_MAX = 127


@lru_cache(maxsize=None)
def _int8_steps(selection: Tuple[int, ...]) -> Tuple[float, ...]:
    steps = []
    for index in selection:
        component, k = divmod(index, PER_COMPONENT)
        bounds = axis_bounds(component > 0)
        # Level-shifted samples lie in [-128, 127]; the transform is linear and separable.
        steps.append(128.0 * bounds[k // 8] * bounds[k % 8] / _INT8_MAX)
    return tuple(float(step) for step in steps)


def int8_steps(selection: Sequence[int]) -> np.ndarray:
    """The int8 quantization step of each selected channel (float64)."""
    return np.array(_int8_steps(tuple(selection)))


def _check(dtype: str) -> None:
    if dtype not in WIRE_DTYPES:
        raise ValueError(f"unknown wire dtype {dtype!r}; use one of {sorted(WIRE_DTYPES)}")


def _wire(selection, dtype: str, luma_upscale: int = LUMA_UPSCALE):
    """(selection resolved, torch dtype, int8 steps or None) of a wire dtype, checked."""
    _check(dtype)
    if dtype == "int8" and luma_upscale != LUMA_UPSCALE:
        raise ValueError(
            f"the int8 wire's steps are those of the detection grid (luma_upscale "
            f"{LUMA_UPSCALE}), not luma_upscale {luma_upscale}: use int16 or float32"
        )
    selection = resolve_channels(selection)
    return selection, getattr(torch, dtype), _int8_steps(selection) if dtype == "int8" else None


def encode(
    pixels: torch.Tensor,
    selection: Sequence[int],
    input_format: str,
    dtype: str,
    geometry: Geometry = Geometry(),
    luma_upscale: int = LUMA_UPSCALE,
) -> torch.Tensor:
    """(N, 3, H, W) pixels -> (N, C, ceil(h/4), ceil(w/4)) wire tensor, on the pixels' device
    (``luma_upscale=1``: the classification input on ceil(h/8) x ceil(w/8) cells).

    :func:`freqdet.dct.separable.separable_dct` of the selected channels (with the
    geometry it absorbs), divided by the int8 steps and rounded by the transform itself
    (on a CPU its C kernel writes the wire dtype directly).
    """
    selection, torch_dtype, steps = _wire(selection, dtype, luma_upscale)
    return separable_dct(
        pixels, selection, input_format, geometry=geometry, luma_upscale=luma_upscale, dtype=torch_dtype, steps=steps
    )


def encode_image(
    image: np.ndarray, selection: Sequence[int], input_format: str, dtype: str, geometry: Geometry = Geometry()
) -> torch.Tensor:
    """One (H, W, 3) uint8 image (any strides: flips, crops) -> (C, ceil(h/4), ceil(w/4)) wire tensor:
    :func:`encode` of it, by :func:`freqdet.dct.separable.image_dct` (one call into the CPU kernel)."""
    selection, torch_dtype, steps = _wire(selection, dtype)
    return image_dct(image, selection, input_format, geometry, dtype=torch_dtype, steps=steps)


def encode_planes(planes, selection: Sequence[int], dtype: str, geometry: Geometry = Geometry()) -> torch.Tensor:
    """A JPEG's own Y, Cb and Cr planes (:class:`freqdet.io.planes.YCbCrPlanes`) -> (C, ceil(h/4),
    ceil(w/4)) wire tensor: :func:`encode_image` of the picture, computed from the planes by
    :func:`freqdet.dct.separable.planes_dct`."""
    selection, torch_dtype, steps = _wire(selection, dtype)
    return planes_dct(planes, selection, geometry, dtype=torch_dtype, steps=steps)


def decode(tensor: torch.Tensor, selection: Sequence[int]) -> torch.Tensor:
    """Wire tensor ``(..., C, h, w)`` (on any device) -> float32 coefficients."""
    if tensor.dtype == torch.int8:
        steps = torch.as_tensor(int8_steps(selection), dtype=torch.float32, device=tensor.device)
        return tensor.float() * steps.view(-1, 1, 1)
    return tensor.float()


def decode_file_grid(luma: torch.Tensor, chroma: torch.Tensor, image_size: Tuple[int, int]) -> torch.Tensor:
    """Resample a JPEG's own channels, on its block grids, to the training grid of an
    ``image_size`` (H, W) pixel image: float32 (Cy + Cc, ceil(H/4), ceil(W/4)).

    Bilinear, with half-pixel centres: block centres land on the cells that cover the
    same place of the picture, whatever the resize.
    """
    size = grid_size(*image_size)
    parts = [p for p in (luma, chroma) if p.shape[0]]
    out = [F.interpolate(p.float()[None], size=size, mode="bilinear", align_corners=False)[0] for p in parts]
    return torch.cat(out, dim=0)
