"""What freqdet's command-line tools share: ``--register-coco``, COCO-format datasets registered
from the command line, with their class names and class count."""

import argparse
import json
import os
from typing import List, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances


def add_register_coco_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--register-coco",
        nargs=3,
        action="append",
        default=[],
        metavar=("NAME", "JSON", "IMAGE_DIR"),
        help="register a COCO-format dataset (instances JSON and image folder) under NAME, for "
        "DATASETS.TRAIN / DATASETS.TEST; repeatable",
    )


def register_coco(name: str, json_file: str, image_dir: str) -> List[str]:
    """Register a COCO-format instances dataset as Detectron2's ``register_coco_instances`` does,
    with its class names and category-id mapping read from the JSON now (sorted by category id,
    as Detectron2's loader maps them), so the metadata is complete before the dataset is first
    loaded. Returns the class names."""
    for path, kind in ((json_file, "annotation JSON"), (image_dir, "image folder")):
        if not os.path.exists(path):
            raise ValueError(f"--register-coco {name}: the {kind} {path!r} does not exist")
    try:
        with open(json_file) as f:
            categories = sorted(json.load(f)["categories"], key=lambda c: c["id"])
        classes = [c["name"] for c in categories]
        id_map = {c["id"]: i for i, c in enumerate(categories)}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(
            f"--register-coco {name}: {json_file!r} is not a COCO instances JSON with 'categories' ({e})"
        ) from e
    if name in DatasetCatalog.list():
        registered = MetadataCatalog.get(name)
        if (registered.get("json_file", None), registered.get("image_root", None)) == (json_file, image_dir):
            return classes
        raise ValueError(f"--register-coco {name}: a dataset of that name is registered already; pick another name")
    register_coco_instances(
        name, {"thing_classes": classes, "thing_dataset_id_to_contiguous_id": id_map}, json_file, image_dir
    )
    return classes


def register_coco_datasets(specs: Sequence[Sequence[str]]) -> dict:
    """Register each (name, json, image dir) of ``--register-coco``; {name: class names}."""
    return {name: register_coco(name, json_file, image_dir) for name, json_file, image_dir in specs}


def classes_override(cfg, registered: dict, opts: Sequence[str]) -> List[str]:
    """``MODEL.ROI_HEADS.NUM_CLASSES N`` for a training set registered from the command line,
    unless the overrides set it: a user's dataset needs no hand-counted classes."""
    train = [registered[n] for n in cfg.DATASETS.TRAIN if n in registered]
    if not train or "MODEL.ROI_HEADS.NUM_CLASSES" in list(opts)[0::2]:
        return []
    count = len(train[0])
    if any(len(c) != count for c in train):
        raise ValueError(
            f"the training sets {list(cfg.DATASETS.TRAIN)} have different numbers of classes; "
            "set MODEL.ROI_HEADS.NUM_CLASSES"
        )
    return ["MODEL.ROI_HEADS.NUM_CLASSES", count]
