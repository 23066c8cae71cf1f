"""Serve an exported detector without Detectron2: JPEG files, bytes or arrays to detections.

:func:`load` reads a model written by ``tools/export_model.py`` (ONNX, run by ONNX Runtime, or
TorchScript) with the metadata stored in it, and returns a :class:`DeployedModel`:

    model = freqdet.deploy.load("exported/model.onnx")
    detections = model("photo.jpg")          # or model(InMemory(data)), or model(bgr_array)
    detections.boxes, detections.scores, detections.classes, detections.masks
    freqdet.deploy.load("exported/classifier.onnx")("photo.jpg").top(5)   # a classifier's

Per image, as Detectron2's test loader and predictor do with the same weights: the picture is
read as freqdet's test mapper reads it (a JPEG's own Y, Cb and Cr planes, else decoded pixels;
EXIF orientation applied), resized as ``ResizeShortestEdge(MIN_SIZE_TEST, MAX_SIZE_TEST)``
resizes it by the frequency transform itself, and its wire coefficients enter the graph; out
come the detections in the resized image's pixels, which :func:`postprocess` brings to the file's
pixels as Detectron2's ``detector_postprocess`` does (boxes scaled and clipped, empty boxes
dropped, masks pasted into the image and thresholded, keypoints scaled).

This module imports neither Detectron2 nor :mod:`freqdet.detection`. It needs torch: freqdet's
transform (:mod:`freqdet.dct`) and its CPU kernel write torch tensors, and the mask pasting uses
``grid_sample``. Leaving torch out would take the kernel writing numpy arrays and the pasting
re-done in numpy; ONNX Runtime itself needs no torch.
"""

import json
import os
import warnings
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .dct import Geometry
from .dct.wire import WIRE_DTYPES, encode_image, encode_planes
from .io import InMemory, read_image, read_planes

METADATA_KEY = "freqdet.json"
ImageInput = Union[str, os.PathLike, InMemory, np.ndarray]


def image_size_tensor(size: Sequence[int]) -> torch.Tensor:
    """The graph's ``image_size`` input: (h, w) int64."""
    return torch.tensor([int(size[0]), int(size[1])], dtype=torch.int64)


def resized_size(height: int, width: int, short: int, max_size: int) -> Tuple[int, int]:
    """The test resize's (h, w): the short side to ``short`` pixels unless the long side would then
    pass ``max_size``, each side rounded half up (Detectron2's ``ResizeShortestEdge`` rule)."""
    scale = short / min(height, width)
    if max(height, width) * scale > max_size:
        scale = max_size / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


class Detections(NamedTuple):
    """One image's detections in its own pixels: ``boxes`` (N, 4) float32 x0 y0 x1 y1, ``scores``
    (N,), ``classes`` (N,) int64, ``masks`` (N, H, W) bool or None, ``keypoints`` (N, K, 3) (x, y,
    score) or None, and ``image_size`` (H, W)."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    masks: Optional[np.ndarray]
    keypoints: Optional[np.ndarray]
    image_size: Tuple[int, int]

    def __len__(self) -> int:
        return len(self.scores)


def paste_masks(mask_probs: torch.Tensor, boxes: torch.Tensor, height: int, width: int, threshold: float):
    """(N, 1, M, M) mask probabilities in their boxes -> (N, height, width) bool masks of the image.

    Each box is the square mask's extent: a pixel whose centre lies at (x + 0.5, y + 0.5) reads the
    mask bilinearly at that point (mask cells are centred, zero outside), and is in the mask where
    the value is at least ``threshold``. Only pixels within a pixel of the box are read: beyond the
    box's edge a bilinear value is at most half a cell's (< 0.5)."""
    masks = torch.zeros(len(boxes), height, width, dtype=torch.bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        if x1 <= x0 or y1 <= y0:
            continue
        cols = torch.arange(max(int(np.floor(x0)) - 1, 0), min(int(np.ceil(x1)) + 1, width))
        rows = torch.arange(max(int(np.floor(y0)) - 1, 0), min(int(np.ceil(y1)) + 1, height))
        if not len(cols) or not len(rows):
            continue
        u = (cols.float() + 0.5 - x0) / (x1 - x0) * 2 - 1  # -1 and 1: the box's edges
        v = (rows.float() + 0.5 - y0) / (y1 - y0) * 2 - 1
        grid = torch.stack(torch.meshgrid(u, v, indexing="xy"), dim=-1)[None]
        values = F.grid_sample(mask_probs[i : i + 1].float(), grid, mode="bilinear", align_corners=False)[0, 0]
        masks[i, rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] = values >= threshold
    return masks


def postprocess(outputs: Dict[str, np.ndarray], resized: Tuple[int, int], size: Tuple[int, int], threshold: float):
    """The graph's outputs (in the ``resized`` image's pixels) -> :class:`Detections` in the pixels
    of the image of ``size`` (H, W)."""
    (h, w), (height, width) = resized, size
    scale = torch.tensor([width / w, height / h] * 2, dtype=torch.float32)
    boxes = torch.as_tensor(np.asarray(outputs["boxes"], np.float32)) * scale
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    keep = ((boxes[:, 2] - boxes[:, 0]) > 0) & ((boxes[:, 3] - boxes[:, 1]) > 0)
    boxes = boxes[keep]
    masks = keypoints = None
    if "mask_probs" in outputs:
        probs = torch.as_tensor(np.asarray(outputs["mask_probs"]))[keep]
        masks = paste_masks(probs, boxes, height, width, threshold).numpy()
    if "keypoints" in outputs:
        keypoints = np.asarray(outputs["keypoints"], np.float32)[keep.numpy()].copy()
        keypoints[:, :, 0] *= width / w
        keypoints[:, :, 1] *= height / h
    keep = keep.numpy()
    return Detections(
        boxes.numpy(),
        np.asarray(outputs["scores"], np.float32)[keep],
        np.asarray(outputs["classes"]).astype(np.int64)[keep],
        masks,
        keypoints,
        (height, width),
    )


class _OnnxGraph:
    def __init__(self, path: str, threads: Optional[int]):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = options.inter_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in meta:
            raise ValueError(f"{path!r} holds no freqdet metadata: export it with tools/export_model.py")
        self.metadata = json.loads(meta[METADATA_KEY])
        # An input the graph does not read (RetinaNet's image_size) is pruned from the ONNX file.
        self.needed = {i.name for i in self.session.get_inputs()}

    def __call__(self, tensors: Sequence[torch.Tensor]) -> List[np.ndarray]:
        feed = {name: t.numpy() for name, t in zip(self.metadata["inputs"], tensors) if name in self.needed}
        return self.session.run(self.metadata["outputs"], feed)


class _TorchScriptGraph:
    def __init__(self, path: str):
        extra = {METADATA_KEY: ""}
        with warnings.catch_warnings():  # torch 2.9+ marks TorchScript deprecated
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.*deprecated")
            self.module = torch.jit.load(path, map_location="cpu", _extra_files=extra)
        if not extra[METADATA_KEY]:
            raise ValueError(f"{path!r} holds no freqdet metadata: export it with tools/export_model.py")
        self.metadata = json.loads(extra[METADATA_KEY])

    def __call__(self, tensors: Sequence[torch.Tensor]) -> List[np.ndarray]:
        with torch.no_grad():
            outputs = self.module(*tensors)
        return [t.numpy() for t in ((outputs,) if isinstance(outputs, torch.Tensor) else outputs)]


class DeployedModel:
    """An exported detector and what its metadata says of its input (see the module's docstring)."""

    def __init__(self, graph):
        self.graph = graph
        self.metadata: Dict = graph.metadata
        self.dct = "dct" in self.metadata["inputs"]
        self.channels: Optional[List[int]] = self.metadata.get("channels")
        self.wire_dtype: Optional[str] = self.metadata.get("wire_dtype")
        self.input_format: str = self.metadata["input_format"]

    @property
    def class_names(self) -> List[str]:
        return list(self.metadata.get("thing_classes", []))

    def inputs(self, image: ImageInput) -> Tuple[Tuple[torch.Tensor, ...], Tuple[int, int], Tuple[int, int]]:
        """The graph's input tensors for an image file, :class:`~freqdet.io.InMemory` bytes or (H, W, 3)
        uint8 array in the model's ``input_format``, with the resized and the original (H, W)."""
        planes = None
        if not isinstance(image, np.ndarray) and self.dct and self.metadata.get("source", "planes") == "planes":
            planes = read_planes(image)
        if planes is not None:
            size = planes.shape
        else:
            if not isinstance(image, np.ndarray):
                image = read_image(image, format=self.input_format)
            size = image.shape[:2]
        resized = resized_size(*size, self.metadata["min_size_test"], self.metadata["max_size_test"])
        geometry = Geometry(resize=resized)
        if planes is not None:
            tensors = (encode_planes(planes, self.channels, self.wire_dtype, geometry), image_size_tensor(resized))
        elif self.dct:
            wire = encode_image(image, self.channels, self.input_format, self.wire_dtype, geometry)
            tensors = (wire, image_size_tensor(resized))
        else:  # an RGB baseline: Pillow's bilinear resize, as Detectron2's ResizeTransform of uint8 pixels
            pixels = np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize(resized[::-1], Image.BILINEAR))
            tensors = (torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1))),)
        return tensors, resized, tuple(int(s) for s in size)

    def check(self, dct: torch.Tensor) -> None:
        """ValueError in one line if coefficients do not fit the model (channels, wire dtype)."""
        expected = getattr(torch, self.wire_dtype)
        if dct.ndim != 3 or dct.shape[0] != len(self.channels) or dct.dtype != expected:
            raise ValueError(
                f"the model takes ({len(self.channels)}, rows, columns) {self.wire_dtype} coefficients of channels "
                f"{self.channels}, got {tuple(dct.shape)} {str(dct.dtype).replace('torch.', '')}: compute them "
                "with freqdet.dct.wire.encode_image for this selection and wire dtype"
            )

    def run(self, tensors: Sequence[torch.Tensor]) -> Dict[str, np.ndarray]:
        """The graph's raw outputs by name, for input tensors of one image."""
        if self.dct:
            self.check(tensors[0])
        return dict(zip(self.metadata["outputs"], self.graph(tensors)))

    def predict_coefficients(self, dct: torch.Tensor, resized: Tuple[int, int], size: Tuple[int, int]) -> Detections:
        """Detections for coefficients computed elsewhere, of an image resized to ``resized`` (h, w)
        from ``size`` (H, W), in the pixels of ``size``."""
        outputs = self.run((dct, image_size_tensor(resized)))
        return postprocess(outputs, tuple(resized), tuple(size), self.metadata["mask_threshold"])

    def __call__(self, image: ImageInput) -> Detections:
        """Detections of one image file, bytes (:class:`~freqdet.io.InMemory`) or array, in its pixels."""
        tensors, resized, size = self.inputs(image)
        return postprocess(self.run(tensors), resized, size, self.metadata["mask_threshold"])


class Classification(NamedTuple):
    """One image's class ``logits`` (K,) and the class names (K, or empty)."""

    logits: np.ndarray
    classes: List[str]

    def top(self, k: int = 5) -> List[Tuple[Union[str, int], float]]:
        """The ``k`` likeliest classes (names where known, else indices) and their softmax probabilities."""
        p = np.exp(self.logits - self.logits.max())
        p /= p.sum()
        best = np.argsort(-p, kind="stable")[:k]
        return [(self.classes[i] if self.classes else int(i), float(p[i])) for i in best]


class DeployedClassifier:
    """An exported classifier of :mod:`freqdet.classification`: an image's centre crop (the
    evaluation transform, :class:`freqdet.classification.data.DCTCropTransform`) to class logits."""

    def __init__(self, graph):
        from .classification.data import DCTCropTransform

        self.graph, self.metadata = graph, graph.metadata
        self.channels, self.wire_dtype = self.metadata["channels"], self.metadata["wire_dtype"]
        self.transform = DCTCropTransform(self.metadata["crop"], self.channels, train=False)

    def __call__(self, image: Union[str, os.PathLike, InMemory]) -> Classification:
        """The class logits of one image file (or :class:`~freqdet.io.InMemory` bytes)."""
        (logits,) = self.graph((self.transform(image)[None],))
        return Classification(logits[0], list(self.metadata.get("classes", [])))


def load(path: Union[str, os.PathLike], threads: Optional[int] = None) -> Union[DeployedModel, DeployedClassifier]:
    """The exported model at ``path`` (a detector, or a classifier), ``.onnx`` through ONNX Runtime
    (``threads``: its thread pools' size; None: ONNX Runtime's default), else TorchScript (on torch's
    threads)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no exported model at {path!r}: write one with tools/export_model.py")
    graph = _OnnxGraph(path, threads) if path.endswith(".onnx") else _TorchScriptGraph(path)
    if graph.metadata.get("task") == "classification":
        return DeployedClassifier(graph)
    model = DeployedModel(graph)
    if model.dct and model.wire_dtype not in WIRE_DTYPES:
        raise ValueError(f"{path!r}: unknown wire dtype {model.wire_dtype!r} in its metadata")
    return model
