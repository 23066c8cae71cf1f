"""The training set's DCT statistics: computed once per run (by the main process, cached in
the output folder), so that the model normalizes its own data."""

import logging
import os
from typing import List, Sequence

import detectron2.utils.comm as comm
from detectron2.data import DatasetCatalog

from ..dct import NUM_CHANNELS
from ..stats import ChannelStats, cached_stats, compute_stats
from . import inputs
from .config import dct_selection, dct_stats_from_config, on_bad_image
from .mapper import DCTDatasetMapper, is_dct_model

logger = logging.getLogger(__name__)


def measure_training_set(dicts: List[dict], mapper: DCTDatasetMapper, num_images: int) -> ChannelStats:
    """Per-channel mean and std of all 192 channels over ``num_images`` of ``dicts`` (0: all),
    spread evenly, each image mapped by ``mapper.for_statistics()`` (so as the model's test-time
    mapper maps it), with a progress bar: what the yacs and the LazyConfig paths both compute."""
    mapper = mapper.for_statistics(mapper.bad_images.path if mapper.bad_images is not None else None)
    channels = list(range(NUM_CHANNELS))
    logger.info(
        f"Computing DCT channel statistics over {min(num_images or len(dicts), len(dicts))} of the "
        f"{len(dicts)} training images ({num_images or 'all'} asked)"
    )

    def coefficients(d):
        mapped = mapper(d)
        return (
            None
            if mapped is None
            else inputs.coefficients(mapped, channels, "cpu", mapper.image_format, mapper.wire_dtype)
        )

    return compute_stats(dicts, coefficients, channels, num_images)


def compute_config_stats(cfg, num_images: int) -> ChannelStats:
    """Per-channel mean and std of all 192 channels over the config's training sets.

    Images are mapped as at test time (``DCTDatasetMapper`` in inference mode, the
    config's source and geometry), so the statistics describe what the model normalizes.
    Unusable images follow ``INPUT.DCT.ON_BAD_IMAGE``: they stop the pass, or are left out
    and listed in ``OUTPUT_DIR/skipped_images.tsv``.
    """
    bad_image_log = os.path.join(cfg.OUTPUT_DIR, "skipped_images.tsv") if on_bad_image(cfg) == "skip" else None
    mapper = DCTDatasetMapper(cfg, is_train=False, bad_image_log=bad_image_log)
    return measure_training_set(training_dicts(cfg.DATASETS.TRAIN), mapper, num_images)


def training_dicts(names: Sequence[str]) -> List[dict]:
    """Every dataset dict of the named datasets, in order (none filtered out)."""
    dicts = []
    for name in names:
        dicts.extend(DatasetCatalog.get(name))
    return dicts


def ensure_dct_stats(cfg):
    """Return ``cfg`` with DCT statistics: computed over the training set when none are configured.

    The main process computes them (with a progress bar) into ``OUTPUT_DIR/dct_stats.json``
    unless that file holds them already, for the same training sets and number of images (e.g.
    on ``--resume``); other processes wait and read it. A file that cannot be read is recomputed.
    """
    if not is_dct_model(cfg) or dct_stats_from_config(cfg, dct_selection(cfg)) is not None:
        return cfg
    path = os.path.join(cfg.OUTPUT_DIR, "dct_stats.json")

    def compute() -> ChannelStats:
        stats = compute_config_stats(cfg, cfg.MODEL.DCT.STATS_NUM_IMAGES)
        logger.info(f"DCT channel statistics of {stats.info['num_images']} training images written to {path}")
        return stats

    measured = {"datasets": list(cfg.DATASETS.TRAIN), "images_asked": cfg.MODEL.DCT.STATS_NUM_IMAGES}
    cached_stats(path, dct_selection(cfg), compute, comm.is_main_process(), comm.synchronize, **measured)
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.DCT.STATS_FILE = path
    cfg.freeze()
    return cfg
