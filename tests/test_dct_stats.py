"""Streaming per-channel statistics equal numpy's over the concatenated coefficients."""
import json

import numpy as np
import torch

from freqdet.dct_stats import compute_dct_stats, evenly_spaced, save_dct_stats


def test_matches_numpy_over_all_cells(rng, tmp_path):
    arrays = [rng.normal(rng.uniform(-100, 100, (192, 1, 1)), rng.uniform(1, 50, (192, 1, 1)), (192, h, w))
              for h, w in [(5, 7), (9, 4), (6, 6)]]
    stats = compute_dct_stats([{"i": i} for i in range(3)], lambda d: torch.from_numpy(arrays[d["i"]]))
    flat = np.concatenate([a.reshape(192, -1) for a in arrays], axis=1)
    np.testing.assert_allclose(stats["mean"], flat.mean(axis=1), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(stats["std"], flat.std(axis=1), rtol=1e-7)
    assert stats["num_cells"] == flat.shape[1] and stats["num_images"] == 3
    save_dct_stats(stats, str(tmp_path / "s.json"))
    assert json.loads((tmp_path / "s.json").read_text())["mean"] == stats["mean"]


def test_evenly_spaced():
    assert evenly_spaced(list(range(10)), 3) == [0, 4, 9]
    assert evenly_spaced([1, 2], 0) == [1, 2] and evenly_spaced([1, 2], 5) == [1, 2]
