"""Export a trained detector to TorchScript or ONNX, taking what crosses the bus.

The exported graph of a DCT detector takes the wire coefficients of one image, ``dct``
``(C, ceil(h/4), ceil(w/4))`` in the dtype it was trained on, and ``image_size``, ``(h, w)``
int64, the size in pixels of the resized image they describe. Inside the graph: the wire's
decoding, the per-channel normalization, padding on the DCT grid, the network and
Detectron2's inference up to its post-processing (R-CNNs; RetinaNet). The outputs are the detections in the
resized image's pixels (``boxes`` x0 y0 x1 y1, ``scores``, ``classes``; ``mask_probs``
``(N, 1, M, M)`` and ``keypoints`` ``(N, K, 3)`` where the model has those heads);
Detectron2 applies its ``detector_postprocess`` (boxes scaled to the file, masks pasted)
outside its models, and so does :mod:`freqdet.deploy`. An RGB ``GeneralizedRCNN`` (the
baseline) exports the same way with ``image`` ``(3, h, w)`` uint8 pixels as its input.

The graphs are traced: ``torch.jit.trace`` records one run on a sample, with the image size a
tensor input (:func:`freqdet.detection.inputs.pixel_size`) and every size computed from it, so
the graph runs on images of any size. The metadata (:func:`export_metadata`: the channel
selection, the wire dtype, the statistics and where they came from, the test resize, the class
names, freqdet's version) is stored in the file, where :func:`freqdet.deploy.load` reads it.
"""

from contextlib import ExitStack, contextmanager
from typing import Dict, Optional, Tuple
from unittest import mock

import torch
from torch import nn

import freqdet

from .. import exporting
from ..deploy import image_size_tensor
from .meta_arch import DCTInput

METHODS = ("tracing", "scripting")


def refusal(cfg, model: nn.Module, method: str, fmt: str) -> Optional[str]:
    """Why this model or config cannot be exported (one line), or None."""
    from detectron2.modeling import GeneralizedRCNN, RetinaNet

    name = type(model).__name__
    if method == "scripting":
        return (
            "--export-method scripting is not supported: the DCT input's preprocessing (wire decoding, "
            "per-channel normalization, padding on the cell grid) reads Python dicts TorchScript cannot compile; "
            "use --export-method tracing, whose graphs take images of any size"
        )
    if not isinstance(model, (GeneralizedRCNN, RetinaNet)):
        return (
            f"{name} ({cfg.MODEL.META_ARCHITECTURE}) does not export: tools/export_model.py exports the R-CNN "
            "family (Faster, Mask, keypoint and Cascade R-CNN) and RetinaNet, DCT or RGB; the other dense "
            "detectors, the RPN alone and the segmentors keep their post-processing inside forward, which a "
            "trace would fix to the sample's size"
        )
    if fmt == "onnx" and getattr(getattr(model, "roi_heads", None), "keypoint_on", False):
        return (
            "keypoint R-CNN does not export to ONNX: Detectron2's heatmaps_to_keypoints is a scripted loop whose "
            "indexing torch.onnx cannot convert; use --format torchscript"
        )
    if isinstance(model, DCTInput):
        if cfg.INPUT.DCT.SOURCE == "jpeg":
            return (
                "INPUT.DCT.SOURCE 'jpeg' does not export: the graph takes coefficients on the training grid, "
                "which freqdet.deploy computes from the file's planes; export the same weights with "
                "INPUT.DCT.SOURCE planes"
            )
        if cfg.INPUT.DCT.PREPROCESS == "release":
            return (
                "INPUT.DCT.PREPROCESS 'release' does not export: the release's input is padded in pixels "
                "before its transform, which freqdet.deploy does not reproduce; use the test mapper's "
                "geometry (INPUT.DCT.PREPROCESS freqdet)"
            )
    return None


class DetectorGraph(nn.Module):
    """One image's tensors in, the detections before ``detector_postprocess`` out (a tuple)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.dct = isinstance(model, DCTInput)
        heads = getattr(model, "roi_heads", None)  # None: RetinaNet
        self.outputs = ["boxes", "scores", "classes"]
        if getattr(heads, "mask_on", False):
            self.outputs.append("mask_probs")
        if getattr(heads, "keypoint_on", False):
            self.outputs.append("keypoints")
        self.inputs = ["dct", "image_size"] if self.dct else ["image"]
        self.eval()  # exporters restore the wrapper's mode afterwards, which would reach the model

    def forward(self, *tensors: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        if self.dct:
            x = {"dct": tensors[0], "image_size": tensors[1]}
        else:
            x = {"image": tensors[0]}
        if hasattr(self.model, "roi_heads"):
            instances = self.model.inference([x], do_postprocess=False)[0]
        else:  # RetinaNet's forward, up to its post-processing
            images = self.model.preprocess_image([x])
            features = self.model.backbone(images.tensor)
            features = [features[f] for f in self.model.head_in_features]
            instances = self.model.forward_inference(images, features, self.model.head(features))[0]
        fields = {
            "boxes": lambda: instances.pred_boxes.tensor,
            "scores": lambda: instances.scores,
            "classes": lambda: instances.pred_classes,
            "mask_probs": lambda: instances.pred_masks,
            "keypoints": lambda: instances.pred_keypoints,
        }
        return tuple(fields[name]() for name in self.outputs)


def sample_tensors(model: nn.Module, mapped: Dict) -> Tuple[torch.Tensor, ...]:
    """The graph's inputs from a test mapper's output for one image."""
    if isinstance(model, DCTInput):
        return mapped["dct"], image_size_tensor(mapped["image_size"])
    return (mapped["image"],)


def export_metadata(cfg, model: nn.Module, graph: DetectorGraph, statistics_source: str, fmt: str) -> Dict:
    """What a server needs besides the graph: its inputs and outputs, the test resize, the input
    (channels, wire dtype, statistics), the class names and freqdet's version."""
    from detectron2.data import MetadataCatalog

    names = list(cfg.DATASETS.TEST) or list(cfg.DATASETS.TRAIN)
    catalog = MetadataCatalog.get(names[0]) if names else None
    meta = {
        "freqdet_version": freqdet.__version__,
        "format": fmt,
        "architecture": cfg.MODEL.META_ARCHITECTURE,
        "inputs": graph.inputs,
        "outputs": graph.outputs,
        "input_format": cfg.INPUT.FORMAT,
        "min_size_test": int(cfg.INPUT.MIN_SIZE_TEST),
        "max_size_test": int(cfg.INPUT.MAX_SIZE_TEST),
        "mask_threshold": 0.5,
        "score_threshold": float(
            cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST
            if hasattr(model, "roi_heads")
            else cfg.MODEL.RETINANET.SCORE_THRESH_TEST
        ),
        "thing_classes": list(catalog.get("thing_classes", [])) if catalog is not None else [],
        "thing_dataset_id_to_contiguous_id": {
            str(k): v for k, v in (catalog.get("thing_dataset_id_to_contiguous_id", {}) if catalog else {}).items()
        },
    }
    if isinstance(model, DCTInput):
        norm = model.normalization
        meta.update(
            channels=list(model.channels),
            wire_dtype=model.wire_dtype,
            source=cfg.INPUT.DCT.SOURCE,
            statistics={
                "source": statistics_source,
                "mean": norm.mean.flatten().tolist(),
                "std": norm.std.flatten().tolist(),
            },
        )
    else:
        meta.update(pixel_mean=list(cfg.MODEL.PIXEL_MEAN), pixel_std=list(cfg.MODEL.PIXEL_STD))
    return meta


def statistics_source(cfg, loaded_keys) -> str:
    """Where a DCT model's normalization came from, in words (``loaded_keys``: the model keys of the
    weights loaded into it, :attr:`FreqdetCheckpointer.loaded_model_keys`)."""
    if "normalization.mean" in loaded_keys:
        return f"the weights file {cfg.MODEL.WEIGHTS}"
    if len(cfg.MODEL.DCT.MEAN):
        return "cfg.MODEL.DCT.MEAN/STD"
    if cfg.MODEL.DCT.STATS_FILE:
        return f"cfg.MODEL.DCT.STATS_FILE {cfg.MODEL.DCT.STATS_FILE}"
    untrained = "the model was never trained" if not cfg.MODEL.WEIGHTS else "its weights carry none"
    return f"freqdet's statistics of natural photographs ({untrained})"


# Detectron2's modules that split a batch's detections per image by counts taken with len().
_SPLITTING_MODULES = (
    "detectron2.modeling.roi_heads.fast_rcnn",
    "detectron2.modeling.roi_heads.mask_head",
    "detectron2.modeling.roi_heads.keypoint_head",
)


def _decode_level(self, anchors, pred_scores, pred_deltas, score_thresh, topk_candidates, image_size):
    """Detectron2's ``DenseDetector._decode_per_level_predictions`` with its cap on candidates kept a
    value of the graph: ``min(topk_candidates, n)`` in Python would fix it to the sample's branch."""
    from detectron2.structures import Boxes, Instances

    keep = pred_scores > score_thresh
    scores = pred_scores[keep]
    candidates = torch.nonzero(keep)  # (K, 2): anchor, class
    count = candidates.shape[0]  # a tensor while tracing
    cap = torch.clamp(count, max=topk_candidates) if isinstance(count, torch.Tensor) else min(count, topk_candidates)
    scores, order = scores.topk(cap)
    anchor_idxs, classes = candidates[order].unbind(dim=1)
    boxes = self.box2box_transform.apply_deltas(pred_deltas[anchor_idxs], anchors.tensor[anchor_idxs])
    return Instances(image_size, pred_boxes=Boxes(boxes), scores=scores, pred_classes=classes)


@contextmanager
def traced_lengths():
    """While exporting: ``len()`` in the modules that split detections per image calls
    ``__len__``, which under the tracer stays a value of the graph, so the number of proposals
    and detections is not fixed to the sample's (builtin ``len`` would make it a constant)."""
    from detectron2.modeling.meta_arch.dense_detector import DenseDetector

    with ExitStack() as stack:
        for module in _SPLITTING_MODULES:
            stack.enter_context(mock.patch(f"{module}.len", side_effect=lambda obj: obj.__len__(), create=True))
        stack.enter_context(mock.patch.object(DenseDetector, "_decode_per_level_predictions", _decode_level))
        yield


def export(model: nn.Module, sample: Tuple[torch.Tensor, ...], fmt: str, path: str, metadata: Dict) -> str:
    """Write ``model`` (weights loaded) as ``fmt`` to ``path``, the image size and the number of
    detections dynamic; returns the path."""
    graph = DetectorGraph(model.eval())
    dynamic = {"dct": {1: "rows", 2: "columns"}} if graph.dct else {"image": {1: "height", 2: "width"}}
    dynamic.update({name: {0: "detections"} for name in graph.outputs})
    return exporting.write(graph, sample, fmt, path, metadata, dynamic, contexts=[traced_lengths])


def export_detector(cfg, model: nn.Module, sample_image: str, fmt: str, path: str, statistics: str):
    """The whole export of a detector built from ``cfg``: traced on ``sample_image`` as the test
    mapper maps it, written with its metadata. Returns (path, metadata, the mapped sample)."""
    from .mapper import build_mapper

    mapped = build_mapper(cfg, is_train=False)({"file_name": sample_image})
    metadata = export_metadata(cfg, model, DetectorGraph(model), statistics, fmt)
    return export(model, sample_tensors(model, mapped), fmt, path, metadata), metadata, mapped
