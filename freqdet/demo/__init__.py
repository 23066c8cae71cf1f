"""Synthetic demo data that trains on a CPU: real JPEG files of shapes filled with gratings.

:mod:`.coco_shapes` (COCO instance annotations; ``freqdet_demo_train`` / ``_val`` in
Detectron2), :mod:`.dense_labels` (semantic, separated panoptic and keypoint labels derived
from those annotations; ``freqdet_demo_{split}_sem_seg``, ``_panoptic_separated``,
``_panoptic_stuffonly``, ``_keypoints``) and :mod:`.folder_shapes` (an ImageFolder for the
classifier), all made by :mod:`.drawing` into ``$FREQDET_CACHE`` on first use (:mod:`.cache`);
and :mod:`.photos`, the real photos that installed packages ship. No Detectron2 needed.
"""

from .cache import cache_root
from .coco_shapes import prepare_demo
from .dense_labels import dense_paths, prepare_dense_labels
from .folder_shapes import prepare_demo_folder
from .photos import packaged_photos

__all__ = [
    "cache_root",
    "dense_paths",
    "packaged_photos",
    "prepare_demo",
    "prepare_demo_folder",
    "prepare_dense_labels",
]
