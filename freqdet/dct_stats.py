"""Per-channel mean and std of DCT coefficients over a dataset, as the model normalizes them."""
import json
import logging
import os
from typing import Dict, List

import numpy as np
import torch
from tqdm import tqdm

from .dct import NUM_CHANNELS
from .files import write_atomically

logger = logging.getLogger(__name__)


class RunningStats:
    """Streaming per-channel mean and std over cells of (C, h, w) arrays (float64 sums)."""

    def __init__(self, channels: int):
        self.count = 0
        self.sum = np.zeros(channels)
        self.sum_sq = np.zeros(channels)

    def update(self, coeffs) -> None:
        x = np.asarray(coeffs, dtype=np.float64).reshape(len(self.sum), -1)
        self.count += x.shape[1]
        self.sum += x.sum(axis=1)
        self.sum_sq += (x * x).sum(axis=1)

    def result(self):
        if self.count == 0:
            raise ValueError("no coefficients were accumulated")
        mean = self.sum / self.count
        var = np.maximum(self.sum_sq / self.count - mean * mean, 0.0)
        return mean, np.sqrt(var)


def evenly_spaced(items: List, n: int) -> List:
    """``n`` items spread evenly over the list (all of them if n >= len)."""
    if n <= 0 or n >= len(items):
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def compute_dct_stats(dataset_dicts: List[Dict], coefficients, num_images: int = 0, desc: str = "DCT statistics") -> Dict:
    """Mean and std of all 192 channels over ``num_images`` images (0: all) of a dataset.

    ``coefficients`` maps a dataset dict to its (192, h, w) coefficients, e.g. a
    :class:`freqdet.DCTDatasetMapper` in inference mode (images resized as at test time)
    followed by :func:`freqdet.data.mapper.mapped_coefficients`.
    """
    chosen = evenly_spaced(dataset_dicts, num_images)
    stats = RunningStats(NUM_CHANNELS)
    for d in tqdm(chosen, desc=desc, unit="img", mininterval=2.0):
        coeffs = coefficients(d)
        if coeffs.shape[0] != NUM_CHANNELS:
            raise ValueError(f"the mapper must ship all {NUM_CHANNELS} channels, got {coeffs.shape[0]}")
        stats.update(coeffs.numpy() if isinstance(coeffs, torch.Tensor) else coeffs)
    mean, std = stats.result()
    return {"mean": mean.tolist(), "std": std.tolist(), "num_images": len(chosen), "num_cells": stats.count}


def save_dct_stats(stats: Dict, path: str) -> None:
    """Write a stats JSON atomically (the file either is complete or is not there)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_atomically(path, lambda f: f.write(json.dumps(stats, indent=1).encode()))
