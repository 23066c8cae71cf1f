"""Wire formats: how coefficients travel from the data loader to the device.

Bytes that cross from the loader to the GPU are the paper's point, so coefficients ship
in a compact dtype and become float32 on the device:

- ``"int16"``: rounded to integers, exact to the reference's rounding (every coefficient of
  an 8-bit image fits: |coefficient| <= 1024);
- ``"int8"``: divided by a fixed per-channel step and rounded to -127..127. The step is the
  channel's largest possible magnitude over 127 (so nothing ever clips), computed from the
  transform's operators (:func:`freqdet.dct.stencil.axis_bounds`, edge cells included);
  for the DC channels it is about 8, one grey level of a cell's mean.
  Half the bytes of int16, like a JPEG quantization table chosen for the network;
- ``"float32"``: the exact values, twice the bytes of int16.

The dtype of a wire tensor says how to read it, so :func:`from_wire` needs only the selection.
"""
from functools import lru_cache
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from .channels import PER_COMPONENT
from .stencil import axis_bounds

WIRE_DTYPES = {"int16": np.int16, "int8": np.int8, "float32": np.float32}
_INT8_MAX = 127


@lru_cache(maxsize=None)
def _int8_steps(selection: Tuple[int, ...]) -> np.ndarray:
    steps = []
    for index in selection:
        component, k = divmod(index, PER_COMPONENT)
        bounds = axis_bounds(component > 0)
        # Level-shifted samples lie in [-128, 127]; the transform is linear and separable.
        steps.append(128.0 * bounds[k // 8] * bounds[k % 8] / _INT8_MAX)
    return np.array(steps)


def int8_steps(selection: Sequence[int]) -> np.ndarray:
    """The int8 quantization step of each selected channel (float64)."""
    return _int8_steps(tuple(selection))


def _check(dtype: str) -> None:
    if dtype not in WIRE_DTYPES:
        raise ValueError(f"unknown wire dtype {dtype!r}; use one of {sorted(WIRE_DTYPES)}")


def quantize(coeffs: torch.Tensor, dtype: str, selection: Sequence[int]) -> torch.Tensor:
    """Float coefficients ``(..., C, h, w)`` -> the wire dtype, on whatever device they are."""
    _check(dtype)
    if dtype == "float32":
        return coeffs.float()
    if dtype == "int16":
        # No clamp needed: |coefficient| <= 1024 for 8-bit images, resized or not.
        return torch.round(coeffs).to(torch.int16)
    steps = torch.as_tensor(int8_steps(selection), dtype=coeffs.dtype, device=coeffs.device).view(-1, 1, 1)
    return torch.div(coeffs, steps).round_().clamp_(-_INT8_MAX, _INT8_MAX).to(torch.int8)


def wire_encoding(dtype: str, selection: Sequence[int]) -> Tuple[torch.dtype, Optional[np.ndarray]]:
    """(torch dtype, per-channel steps or None) that make :func:`freqdet.dct.stencil.stencil_dct`
    emit the wire format directly; the same values as :func:`quantize` of its float output."""
    _check(dtype)
    steps = int8_steps(selection) if dtype == "int8" else None
    return getattr(torch, dtype), steps


def from_wire(tensor: torch.Tensor, selection: Sequence[int]) -> torch.Tensor:
    """Wire tensor ``(..., C, h, w)`` (on any device) -> float32 coefficients."""
    if tensor.dtype == torch.int8:
        steps = torch.as_tensor(int8_steps(selection), dtype=torch.float32, device=tensor.device)
        return tensor.float() * steps.view(-1, 1, 1)
    return tensor.float()
