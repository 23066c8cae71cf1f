"""The built-in demo datasets in Detectron2's catalogs.

Per split (``train``, ``val``), all on the same JPEGs (:mod:`freqdet.demo`):

- ``freqdet_demo_{split}``: instance detection and segmentation (COCO format,
  ``evaluator_type`` "coco");
- ``freqdet_demo_{split}_sem_seg``: semantic segmentation, background + the 6 classes
  (``load_sem_seg`` dicts, ``evaluator_type`` "sem_seg");
- ``freqdet_demo_{split}_panoptic_separated`` and ``freqdet_demo_{split}_panoptic_stuffonly``:
  Detectron2's separated panoptic form (Panoptic FPN), registered by its own
  ``register_coco_panoptic_separated`` (``evaluator_type`` "coco_panoptic_seg" and "sem_seg");
- ``freqdet_demo_{split}_keypoints``: the instances with two keypoints each, the ends of the
  object along x (``evaluator_type`` "coco"; a config sets ``TEST.KEYPOINT_OKS_SIGMAS`` to
  :data:`DEMO_KEYPOINT_OKS_SIGMAS`).

The files are generated on first load; the semantic, panoptic and keypoint labels are
derived from the instance annotations (:func:`freqdet.demo.prepare_dense_labels`).
"""

import os
from typing import Callable, Optional

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json, load_sem_seg, register_coco_panoptic_separated

from ..demo.coco_shapes import CLASSES, SPLITS, demo_root, prepare_demo, split_paths
from ..demo.dense_labels import (
    KEYPOINT_CONNECTION_RULES,
    KEYPOINT_FLIP_MAP,
    KEYPOINT_NAMES,
    PANOPTIC_STUFF_CLASSES,
    SEM_SEG_CLASSES,
    STUFF_CATEGORY_ID,
    dense_paths,
    prepare_dense_labels,
)

DEMO_INSTANCE_DATASETS = tuple(f"freqdet_demo_{split}" for split in SPLITS)
DEMO_SEM_SEG_DATASETS = tuple(f"freqdet_demo_{split}_sem_seg" for split in SPLITS)
DEMO_PANOPTIC_DATASETS = tuple(
    f"freqdet_demo_{split}_panoptic_{form}" for split in SPLITS for form in ("separated", "stuffonly")
)
DEMO_KEYPOINT_DATASETS = tuple(f"freqdet_demo_{split}_keypoints" for split in SPLITS)
DEMO_DATASETS = DEMO_INSTANCE_DATASETS + DEMO_SEM_SEG_DATASETS + DEMO_PANOPTIC_DATASETS + DEMO_KEYPOINT_DATASETS
"""Every built-in demo dataset's name."""

DEMO_KEYPOINT_OKS_SIGMAS = (0.05, 0.05)
"""``TEST.KEYPOINT_OKS_SIGMAS`` for the ``*_keypoints`` datasets (one per keypoint, in
``keypoint_names`` order; Detectron2's default has COCO's 17 and fails on these)."""

_THING_IDS = {i + 1: i for i in range(len(CLASSES))}


def register_demo_datasets(root: Optional[str] = None) -> None:
    """Register every demo dataset (:data:`DEMO_DATASETS`) of the demo in ``root`` (default
    :func:`freqdet.demo.coco_shapes.demo_root`); the files are generated on first load."""
    root = os.path.normpath(root or demo_root())
    _register_instances(root)
    for split in SPLITS:
        _register_sem_seg(split, root)
        _register_panoptic(split, root)
        _register_keypoints(split, root)


def _register_instances(root: str) -> None:
    for split in SPLITS:
        name = f"freqdet_demo_{split}"
        if name in DatasetCatalog.list():
            continue
        json_file, image_dir = split_paths(split, root)

        def load(json_file=json_file, image_dir=image_dir, name=name):
            prepare_demo(os.path.dirname(json_file))
            return load_coco_json(json_file, image_dir, name)

        DatasetCatalog.register(name, load)
        MetadataCatalog.get(name).set(
            json_file=json_file,
            image_root=image_dir,
            evaluator_type="coco",
            thing_classes=list(CLASSES),
            thing_dataset_id_to_contiguous_id=dict(_THING_IDS),
        )


def _labels_first(load: Callable[[], list], root: str) -> Callable[[], list]:
    """``load`` that first derives the demo's dense labels (once per cache)."""

    def wrapped():
        prepare_dense_labels(root)
        return load()

    return wrapped


def _register_sem_seg(split: str, root: str) -> None:
    name = f"freqdet_demo_{split}_sem_seg"
    if name in DatasetCatalog.list():
        return
    _, image_dir = split_paths(split, root)
    sem_seg_root = dense_paths(split, root).sem_seg_root
    DatasetCatalog.register(
        name, _labels_first(lambda: load_sem_seg(sem_seg_root, image_dir, gt_ext="png", image_ext="jpg"), root)
    )
    MetadataCatalog.get(name).set(
        image_root=image_dir,
        sem_seg_root=sem_seg_root,
        evaluator_type="sem_seg",
        ignore_label=255,
        stuff_classes=list(SEM_SEG_CLASSES),
    )


def _register_panoptic(split: str, root: str) -> None:
    """Detectron2's ``register_coco_panoptic_separated`` (``_separated`` and ``_stuffonly``),
    its lazy loaders wrapped so that the labels exist when they run."""
    prefix = f"freqdet_demo_{split}_panoptic"
    names = (f"{prefix}_separated", f"{prefix}_stuffonly")
    if any(name in DatasetCatalog.list() for name in names):
        return
    json_file, image_dir = split_paths(split, root)
    paths = dense_paths(split, root)
    metadata = {
        "thing_classes": list(CLASSES),
        "thing_dataset_id_to_contiguous_id": dict(_THING_IDS),
        "stuff_classes": list(PANOPTIC_STUFF_CLASSES),
        # as Detectron2's COCO: 0 is "things" in the stuff labels, the stuff categories follow
        "stuff_dataset_id_to_contiguous_id": {0: 0, STUFF_CATEGORY_ID: 1},
    }
    register_coco_panoptic_separated(
        prefix, metadata, image_dir, paths.panoptic_root, paths.panoptic_json, paths.panoptic_stuff_root, json_file
    )
    for name in names:
        load = DatasetCatalog.pop(name)
        DatasetCatalog.register(name, _labels_first(load, root))


def _register_keypoints(split: str, root: str) -> None:
    name = f"freqdet_demo_{split}_keypoints"
    if name in DatasetCatalog.list():
        return
    _, image_dir = split_paths(split, root)
    json_file = dense_paths(split, root).keypoints_json
    DatasetCatalog.register(name, _labels_first(lambda: load_coco_json(json_file, image_dir, name), root))
    MetadataCatalog.get(name).set(
        json_file=json_file,
        image_root=image_dir,
        evaluator_type="coco",
        thing_classes=list(CLASSES),
        thing_dataset_id_to_contiguous_id=dict(_THING_IDS),
        keypoint_names=list(KEYPOINT_NAMES),
        keypoint_flip_map=[tuple(pair) for pair in KEYPOINT_FLIP_MAP],
        keypoint_connection_rules=[tuple(rule) for rule in KEYPOINT_CONNECTION_RULES],
    )
