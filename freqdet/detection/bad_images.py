"""The record of training images skipped under ``cfg.INPUT.DCT.ON_BAD_IMAGE = "skip"``.

Each skipped file is logged with its reason and appended to a tab-separated file in the
output folder, once per data-loader worker that meets it (workers share the file); the
trainer counts its distinct files
into EventStorage as ``data/skipped_images``, and :class:`SkipBadImages` fills the slot
with the next image of the dataset. Nothing is ever replaced silently.
"""

import logging
import os

import torch
from detectron2.data import build_detection_train_loader
from detectron2.data.common import DatasetFromList
from detectron2.engine import HookBase

logger = logging.getLogger(__name__)


class BadImageLog:
    """Append-only record of skipped images: ``file<TAB>reason`` lines."""

    def __init__(self, path: str):
        self.path = path
        self._seen = set()

    def record(self, file_name: str, reason: str) -> None:
        if file_name in self._seen:
            return
        self._seen.add(file_name)
        logger.warning(f"skipping bad training image {file_name}: {reason} (listed in {self.path})")
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        line = f"{file_name}\t{' '.join(reason.split())}\n"
        with open(self.path, "a") as f:  # one short write per line: appends from workers stay whole
            f.write(line)


def skipped_images(path: str) -> dict:
    """{file: reason} of the images a run skipped so far (empty if none)."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return dict(line.rstrip("\n").split("\t", 1) for line in f if "\t" in line)


class SkipBadImages(torch.utils.data.Dataset):
    """Map-style dataset that maps each item, and for an item the mapper skips (returns None)
    takes the next one of the dataset instead, in order (the skip is recorded by the mapper)."""

    def __init__(self, dataset, mapper):
        self.dataset, self.mapper = dataset, mapper

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        for offset in range(len(self.dataset)):
            mapped = self.mapper(self.dataset[(index + offset) % len(self.dataset)])
            if mapped is not None:
                return mapped
        raise RuntimeError("every image of the training set was skipped as unusable; see skipped_images.tsv")


def build_train_loader(*, dataset, mapper, **kwargs):
    """Detectron2's ``build_detection_train_loader``, except that when ``mapper`` skips unusable
    images (a :class:`~freqdet.detection.mapper.DCTDatasetMapper` with a ``bad_image_log``) the
    next image in order takes a skipped one's place (:class:`SkipBadImages`): Detectron2's own
    would retry a random other image, which fails on Python 3.11. ``kwargs``: the other arguments
    of ``build_detection_train_loader`` (``total_batch_size``, ``num_workers``, ...)."""
    if getattr(mapper, "bad_images", None) is not None:
        dataset, mapper = SkipBadImages(DatasetFromList(list(dataset), copy=False), mapper), None
    return build_detection_train_loader(dataset=dataset, mapper=mapper, **kwargs)


class SkippedImagesHook(HookBase):
    """Puts the number of training images skipped so far (ON_BAD_IMAGE "skip") into EventStorage."""

    def __init__(self, path: str, period: int = 20):
        self.path, self.period = path, period

    def after_step(self):
        last = self.trainer.iter + 1 >= self.trainer.max_iter
        if (self.trainer.iter + 1) % self.period == 0 or last:
            count = len(skipped_images(self.path))
            self.trainer.storage.put_scalar("data/skipped_images", count, smoothing_hint=False)
            if last and count:
                logger.warning(f"{count} bad training images were skipped; they are listed in {self.path}")
