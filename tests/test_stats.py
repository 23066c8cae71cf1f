"""Per-channel statistics: streaming sums equal numpy's, one JSON format, picking by selection."""

import json

import numpy as np
import pytest
import torch

from freqdet.stats import (
    COCO_MAX_SIZE,
    COCO_SHORT_SIDES,
    ChannelStats,
    cached_stats,
    compute_stats,
    evenly_spaced,
    load_matching,
    load_stats,
    save_stats,
    shortest_edge_size,
)


def test_matches_numpy_over_all_cells(rng, tmp_path):
    arrays = [
        rng.normal(rng.uniform(-100, 100, (192, 1, 1)), rng.uniform(1, 50, (192, 1, 1)), (192, h, w))
        for h, w in [(5, 7), (9, 4), (6, 6)]
    ]
    stats = compute_stats(range(3), lambda i: torch.from_numpy(arrays[i]), range(192))
    flat = np.concatenate([a.reshape(192, -1) for a in arrays], axis=1)
    np.testing.assert_allclose(stats.mean, flat.mean(axis=1), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(stats.std, flat.std(axis=1), rtol=1e-7)
    assert stats.info == {"num_cells": flat.shape[1], "num_images": 3}
    save_stats(stats, str(tmp_path / "s.json"))
    record = json.loads((tmp_path / "s.json").read_text())
    assert record["channels"] == list(range(192)) and record["mean"] == stats.mean.tolist()
    loaded = load_stats(str(tmp_path / "s.json"))
    assert loaded.channels == tuple(range(192)) and np.array_equal(loaded.std, stats.std)


def test_pick_by_selection_and_refusals(tmp_path):
    stats = ChannelStats((0, 5, 64, 130), np.array([1.0, 2.0, 3.0, 4.0]), np.array([5.0, 6.0, 7.0, 8.0]))
    mean, std = stats.pick([5, 130])
    assert mean.tolist() == [2.0, 4.0] and std.tolist() == [6.0, 8.0]
    with pytest.raises(ValueError, match=r"lack channels \[1\]"):
        stats.pick([0, 1], "here")
    # Files from before channels were recorded: 192 values, or the selection's own.
    legacy = ChannelStats(None, np.arange(192.0), np.ones(192))
    assert legacy.pick([3, 100])[0].tolist() == [3.0, 100.0]
    assert ChannelStats(None, np.array([7.0, 8.0]), np.ones(2)).pick([3, 100])[0].tolist() == [7.0, 8.0]
    with pytest.raises(ValueError, match="expected 192"):
        ChannelStats(None, np.ones(5), np.ones(5)).pick([1, 2])
    with pytest.raises(ValueError, match="positive stds"):
        ChannelStats(None, np.ones(2), np.array([1.0, 0.0])).pick([1, 2])
    (tmp_path / "bad.json").write_text('{"mean": [1]}')
    with pytest.raises(ValueError, match="bad.json"):
        load_stats(str(tmp_path / "bad.json"))


def test_load_matching_checks_channels_and_settings(tmp_path):
    path = str(tmp_path / "s.json")
    assert load_matching(path, [0, 1]) is None
    save_stats(ChannelStats((0, 1, 2), np.zeros(3), np.ones(3), {"crop": 64}), path)
    assert load_matching(path, [0, 2], crop=64).channels == (0, 1, 2)
    assert load_matching(path, [0, 3], crop=64) is None
    assert load_matching(path, [0, 1], crop=128) is None


def test_evenly_spaced():
    assert evenly_spaced(list(range(10)), 3) == [0, 4, 9]
    assert evenly_spaced([1, 2], 0) == [1, 2] and evenly_spaced([1, 2], 5) == [1, 2]


def test_cached_stats_are_computed_once_and_recomputed_for_other_settings(tmp_path):
    path = str(tmp_path / "dct_stats.json")
    calls, waits = [], []

    def compute():
        calls.append(1)
        return ChannelStats((0, 1, 2), np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0]), {"num_images": 7})

    first = cached_stats(path, [0, 2], compute, True, lambda: waits.append(1), crop=128)
    assert first.channels == (0, 1, 2) and first.info == {"num_images": 7, "crop": 128}
    again = cached_stats(path, [1], compute, True, lambda: waits.append(1), crop=128)
    assert np.array_equal(again.mean, first.mean) and len(calls) == 1 and len(waits) == 2
    # Another process reads what the main one wrote, and computes nothing.
    assert cached_stats(path, [1], lambda: pytest.fail("computed twice"), False, crop=128).info["crop"] == 128
    # Another crop, or channels the file lacks: computed again.
    cached_stats(path, [0], compute, True, crop=256)
    assert len(calls) == 2 and load_stats(path).info["crop"] == 256


def test_shortest_edge_sizes_are_detectron2s():
    from detectron2.data.transforms import ResizeShortestEdge

    for height, width in [(427, 640), (600, 512), (1, 1), (7, 9), (3000, 200), (801, 1334), (480, 480)]:
        for side in COCO_SHORT_SIDES:
            expected = ResizeShortestEdge.get_output_shape(height, width, side, COCO_MAX_SIZE)
            assert shortest_edge_size(height, width, side, COCO_MAX_SIZE) == tuple(expected)
