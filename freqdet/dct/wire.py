"""Wire formats: how coefficients travel from the data loader to the device.

Bytes that cross from the loader to the GPU are the paper's point, so coefficients ship
in a compact dtype and become float32 on the device. "int16" holds every coefficient
of an 8-bit image exactly up to rounding (|coefficient| <= 1024); "float32" ships the
exact values at twice the bytes.
"""
import numpy as np
import torch

WIRE_DTYPES = {"int16": np.int16, "float32": np.float32}


def to_wire(coeffs: np.ndarray, dtype: str) -> np.ndarray:
    """Float coefficients -> the wire dtype (int16 rounds half to even)."""
    if dtype not in WIRE_DTYPES:
        raise ValueError(f"unknown wire dtype {dtype!r}; use one of {sorted(WIRE_DTYPES)}")
    if dtype == "int16":
        info = np.iinfo(np.int16)
        return np.clip(np.rint(coeffs), info.min, info.max).astype(np.int16)
    return np.ascontiguousarray(coeffs, dtype=np.float32)


def from_wire(tensor: torch.Tensor) -> torch.Tensor:
    """Wire tensor (on any device) -> float32 coefficients."""
    return tensor.float()
