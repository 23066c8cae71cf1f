"""The built-in demo datasets in Detectron2's catalogs: ``freqdet_demo_train`` and ``freqdet_demo_val``."""

import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from ..demo.coco_shapes import CLASSES, SPLITS, prepare_demo, split_paths

DEMO_DATASETS = tuple(f"freqdet_demo_{split}" for split in SPLITS)


def register_demo_datasets(root: str = None) -> None:
    """Register the demo splits (COCO format, ``evaluator_type`` "coco"); the files are
    generated on first load (:func:`freqdet.demo.prepare_demo`)."""
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
            thing_dataset_id_to_contiguous_id={i + 1: i for i in range(len(CLASSES))},
        )
