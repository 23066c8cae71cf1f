"""Per-channel statistics of DCT coefficients: compute, cache, save, load, and pick by selection.

The one format, for detectors and classifiers alike, is a JSON object

    {"channels": [0, 1, ...], "mean": [...], "std": [...], ...}

with one mean and std per listed global channel index, plus whatever describes how they
were measured (``num_images``, ``num_cells``, ``crop``, ...). A file without
``"channels"`` (such as the official release's tables) holds all 192 channels, or exactly
the channels of the selection it is used with. :mod:`freqdet.normalization` applies them.

:func:`natural_photo_stats` is the table shipped with freqdet, the default of every model
that has no statistics of its own: all 192 channels measured on natural photographs with
the detection pipeline; :func:`measure_photos` is its recipe (``tools/compute_dct_stats.py
--photos`` runs it; the file records how).
"""

import json
import logging
import os
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
from tqdm import tqdm

from .atomic_write import write_atomically
from .dct import NUM_CHANNELS, Geometry, separable_dct, validate_channels
from .io import read_image

logger = logging.getLogger(__name__)

NATURAL_PHOTO_STATS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "natural_photo_stats.json")


class ChannelStats(NamedTuple):
    """Mean and std (float64) of ``channels`` (None: the selection's, in a file without them)."""

    channels: Optional[Tuple[int, ...]]
    mean: np.ndarray
    std: np.ndarray
    info: Dict = {}

    def pick(self, selection: Sequence[int], source: str = "the statistics") -> Tuple[np.ndarray, np.ndarray]:
        """(mean, std) of the selected channels, in the selection's order; ValueError naming
        ``source`` if they are not all there, or not finite and positive."""
        selection = list(selection)
        mean, std = self.mean, self.std
        if mean.shape != std.shape or mean.ndim != 1:
            raise ValueError(f"DCT statistics in {source} have {mean.shape} means and {std.shape} stds")
        if self.channels is not None:
            missing = sorted(set(selection) - set(self.channels))
            if missing:
                raise ValueError(
                    f"DCT statistics in {source} lack channels {missing}; they cover "
                    f"{len(self.channels)} channels: recompute them for this selection"
                )
            position = {c: i for i, c in enumerate(self.channels)}
            mean, std = mean[[position[c] for c in selection]], std[[position[c] for c in selection]]
        elif len(mean) == NUM_CHANNELS:
            mean, std = mean[selection], std[selection]
        elif len(mean) != len(selection):
            raise ValueError(
                f"DCT statistics in {source} have {len(mean)} values; expected {NUM_CHANNELS} "
                f"(all channels) or {len(selection)} (the selected ones)"
            )
        if not np.all(np.isfinite(mean)) or not np.all(std > 0):
            raise ValueError(f"DCT statistics in {source} need finite means and positive stds")
        return mean, std


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

    def result(self) -> Tuple[np.ndarray, np.ndarray]:
        if self.count == 0:
            raise ValueError("no coefficients were accumulated")
        mean = self.sum / self.count
        var = np.maximum(self.sum_sq / self.count - mean * mean, 0.0)
        return mean, np.sqrt(var)


def evenly_spaced(items: List, n: int) -> List:
    """``n`` items spread evenly over the list (all of them if n <= 0 or n >= len)."""
    if n <= 0 or n >= len(items):
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def compute_stats(
    items: Sequence,
    coefficients: Callable[[object], object],
    channels: Iterable[int],
    num_images: int = 0,
    desc: str = "DCT statistics",
) -> ChannelStats:
    """Mean and std of ``channels`` over ``num_images`` items (0: all), spread evenly, with a progress bar.

    ``coefficients`` maps an item (a dataset dict, a file path) to its (C, h, w)
    coefficients of those channels, e.g. a :class:`freqdet.DCTDatasetMapper` in inference
    mode followed by decoding, or to None for an item to leave out (an unusable image
    under a skip policy, which the callable reports); those are counted as ``num_skipped``.
    """
    channels = validate_channels(channels)
    chosen = evenly_spaced(list(items), num_images)
    running = RunningStats(len(channels))
    skipped = 0
    for item in tqdm(chosen, desc=desc, unit="img", mininterval=2.0):
        coeffs = coefficients(item)
        if coeffs is None:
            skipped += 1
            continue
        if coeffs.shape[0] != len(channels):
            raise ValueError(f"expected coefficients of {len(channels)} channels, got {coeffs.shape[0]}")
        running.update(coeffs.numpy() if isinstance(coeffs, torch.Tensor) else coeffs)
    mean, std = running.result()
    info = {"num_images": len(chosen) - skipped, "num_cells": running.count}
    if skipped:
        info["num_skipped"] = skipped
    return ChannelStats(channels, mean, std, info)


def save_stats(stats: ChannelStats, path: str) -> None:
    """Write the JSON atomically (the file either is complete or is not there)."""
    record = {
        "channels": list(stats.channels) if stats.channels is not None else None,
        "mean": np.asarray(stats.mean).tolist(),
        "std": np.asarray(stats.std).tolist(),
        **stats.info,
    }
    if record["channels"] is None:
        del record["channels"]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_atomically(path, lambda f: f.write(json.dumps(record, indent=1).encode()))


def load_stats(path: str) -> ChannelStats:
    """Read a statistics JSON; ValueError naming the file if it is not one."""
    try:
        with open(path) as f:
            record = json.load(f)
        mean, std = np.asarray(record.pop("mean"), np.float64), np.asarray(record.pop("std"), np.float64)
        channels = record.pop("channels", None)
        channels = validate_channels(channels) if channels is not None else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(
            f"cannot read DCT statistics from {path!r} ({e}); it must be a JSON object with 'mean' "
            "and 'std' lists (and 'channels', the global indices they describe)"
        ) from e
    if channels is not None and not (len(channels) == len(mean) == len(std)):
        raise ValueError(
            f"DCT statistics in {path!r} list {len(channels)} channels but {len(mean)} means and {len(std)} stds"
        )
    return ChannelStats(channels, mean, std, record)


def load_matching(path: str, channels: Sequence[int], **info) -> Optional[ChannelStats]:
    """The statistics in ``path`` if the file exists, covers ``channels`` and records the
    same ``info`` values (e.g. ``crop``); else None (saying why, if the file exists)."""
    if not os.path.exists(path):
        return None
    stats = load_stats(path)
    covered = stats.channels is None or set(channels) <= set(stats.channels)
    differing = {k: (stats.info.get(k), v) for k, v in info.items() if stats.info.get(k) != v}
    if covered and not differing:
        return stats
    logger.warning(
        f"{path} holds DCT statistics of other channels or settings ({differing or 'channels'}); recomputing them"
    )
    return None


def natural_photo_stats() -> ChannelStats:
    """The statistics shipped with freqdet: all 192 channels over natural photographs, with the
    detection pipeline at COCO's training sizes (how, and on which photos, is in the file)."""
    return load_stats(NATURAL_PHOTO_STATS)


def cached_stats(
    path: str,
    channels: Sequence[int],
    compute: Callable[[], ChannelStats],
    main_process: bool = True,
    synchronize: Callable[[], None] = lambda: None,
    **info,
) -> ChannelStats:
    """The statistics cached in ``path``, computed once for all the processes of a run.

    The main process reuses the file when it covers ``channels`` and records the same
    ``info`` (e.g. ``crop``, the datasets), else it runs ``compute()`` and writes its result
    there with ``info``: a file it cannot read (truncated, not statistics) is a cache, so it is
    recomputed too, with a warning naming it. Then every process waits in ``synchronize`` (a
    barrier; nothing for a single process) and reads the file.
    """
    if main_process and _cached(path, channels, info) is None:
        stats = compute()
        save_stats(stats._replace(info={**stats.info, **info}), path)
    synchronize()
    stats = load_matching(path, channels, **info)
    if stats is None:
        raise ValueError(f"{path!r} holds no DCT statistics of channels {list(channels)} after they were computed")
    return stats


def _cached(path: str, channels: Sequence[int], info: Dict) -> Optional[ChannelStats]:
    try:
        return load_matching(path, channels, **info)
    except ValueError as e:
        logger.warning(f"{e}; it is a cache of the training set's statistics: recomputing them")
        return None


COCO_SHORT_SIDES = (640, 672, 704, 736, 768, 800)  # Detectron2's COCO training scales (shorter side)
COCO_MAX_SIZE = 1333


def shortest_edge_size(height: int, width: int, short_side: int, max_size: int) -> Tuple[int, int]:
    """(h, w) of an image resized so that its shorter side is ``short_side`` and its longer
    side at most ``max_size``, rounded to pixels: Detectron2's ``ResizeShortestEdge`` sizes."""
    scale = short_side / min(height, width)
    new_h, new_w = height * scale, width * scale
    if max(new_h, new_w) > max_size:
        shrink = max_size / max(new_h, new_w)
        new_h, new_w = new_h * shrink, new_w * shrink
    return int(new_h + 0.5), int(new_w + 0.5)


def measure_photos(
    paths: Sequence[str], short_sides: Sequence[int] = COCO_SHORT_SIDES, max_size: int = COCO_MAX_SIZE
) -> ChannelStats:
    """All 192 channels over each photo at each shorter side, unflipped and mirrored, with the
    detection pipeline: the recipe of :func:`natural_photo_stats` (``tools/compute_dct_stats.py
    --photos`` runs it on the photos that matplotlib and scikit-learn ship)."""
    channels = range(NUM_CHANNELS)

    def coefficients(item):
        path, side, hflip = item
        image = read_image(path, format="BGR")
        size = shortest_edge_size(image.shape[0], image.shape[1], side, max_size)
        pixels = torch.from_numpy(image).permute(2, 0, 1)[None]
        return separable_dct(pixels, channels, "BGR", geometry=Geometry(size, hflip))[0]

    items = [(p, side, hflip) for p in paths for side in short_sides for hflip in (False, True)]
    stats = compute_stats(items, coefficients, channels, desc="DCT statistics of photos")
    info = dict(
        stats.info,
        photos=[os.path.basename(p) for p in paths],
        short_sides=list(short_sides),
        max_size=max_size,
        mirrored=True,
        pipeline="detection: Y upscaled 2x, Cb/Cr 4x then 4:2:0, 8x8 DCT of each, exact floats",
        command="python tools/compute_dct_stats.py --photos",
    )
    return stats._replace(info=info)
