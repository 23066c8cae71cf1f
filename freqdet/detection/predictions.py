"""A picture of a model's predictions next to the ground truth, for a few images of a dataset."""

import os

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.visualizer import Visualizer
from PIL import Image

from ..io import read_image
from ..stats import evenly_spaced


def draw_predictions(model, mapper, dataset_name: str, num_images: int, path: str, score_threshold: float = 0.5) -> str:
    """Run ``model`` on ``num_images`` images spread over a dataset and save a PNG grid.

    Each row shows the ground truth (left) and the predictions scoring at least
    ``score_threshold`` (right), drawn on the original image with Detectron2's Visualizer.
    """
    metadata = MetadataCatalog.get(dataset_name)
    rows = []
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for d in evenly_spaced(DatasetCatalog.get(dataset_name), num_images):
            image = read_image(d["file_name"], format="RGB")
            instances = model([mapper(d)])[0]["instances"].to("cpu")
            instances = instances[instances.scores >= score_threshold]
            truth = Visualizer(image, metadata, scale=2.0).draw_dataset_dict(d).get_image()
            predicted = Visualizer(image, metadata, scale=2.0).draw_instance_predictions(instances).get_image()
            rows.append(np.concatenate([truth, np.full((truth.shape[0], 8, 3), 255, np.uint8), predicted], axis=1))
    model.train(was_training)
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 8), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)
    return path
