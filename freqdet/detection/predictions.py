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

    Each row shows the ground truth (left) and the predictions (right), drawn on the original
    image with Detectron2's Visualizer: instances scoring at least ``score_threshold`` where the
    model predicts instances (R-CNN, RetinaNet, Panoptic FPN), else the semantic segmentation
    (each pixel's most likely class), else the proposals of at least that objectness (an RPN).
    """
    metadata = MetadataCatalog.get(dataset_name)
    rows = []
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for d in evenly_spaced(DatasetCatalog.get(dataset_name), num_images):
            image = read_image(d["file_name"], format="RGB")
            truth = Visualizer(image, metadata, scale=2.0).draw_dataset_dict(d).get_image()
            predicted = draw_output(Visualizer(image, metadata, scale=2.0), model([mapper(d)])[0], score_threshold)
            rows.append(np.concatenate([truth, np.full((truth.shape[0], 8, 3), 255, np.uint8), predicted], axis=1))
    model.train(was_training)
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 8), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)
    return path


def draw_output(visualizer: Visualizer, output: dict, score_threshold: float) -> np.ndarray:
    """One image's model output drawn by ``visualizer`` (see :func:`draw_predictions`)."""
    if "instances" in output:
        instances = output["instances"].to("cpu")
        return visualizer.draw_instance_predictions(instances[instances.scores >= score_threshold]).get_image()
    if "sem_seg" in output:
        return visualizer.draw_sem_seg(output["sem_seg"].argmax(dim=0).to("cpu")).get_image()
    if "proposals" in output:
        proposals = output["proposals"].to("cpu")
        kept = proposals[proposals.objectness_logits.sigmoid() >= score_threshold]
        return visualizer.overlay_instances(boxes=kept.proposal_boxes.tensor.numpy()).get_image()
    raise ValueError(
        f"draw_predictions: the model's output holds none of instances, sem_seg, proposals: {sorted(output)}"
    )
