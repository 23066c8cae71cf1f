"""The built-in demo datasets: real JPEG files of textured shapes (detection: COCO instance
annotations; classification: an ImageFolder, see :mod:`freqdet.classification.data`).

Detectron2-free but for :func:`register_demo_datasets`, which imports it when called.

Six categories: a disc, a square or a triangle, each filled with either a fine grating
(period 3.5-5 pixels) or a coarse one (period 10-16 pixels), so telling them apart
needs both shape and frequency. Untextured shapes of the same kinds are scattered as
distractors. Images are 192-288 pixels a side, saved as JPEG at quality 65-95 with 4:4:4,
4:2:2 or 4:2:0 chroma subsampling. Everything is drawn from a fixed seed, on first use,
into ``$FREQDET_CACHE/demo_v1`` (default ``~/.cache/freqdet``); the folder appears
atomically, so concurrent first uses are safe.

Registered as ``freqdet_demo_train`` (600 images) and ``freqdet_demo_val`` (100 images).
"""
import json
import logging
import math
import os
import shutil
import tempfile
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image, ImageDraw

logger = logging.getLogger(__name__)

VERSION = 1
SHAPES = ("disc", "square", "triangle")
TEXTURES = {"fine": (3.5, 5.0), "coarse": (10.0, 16.0)}
CLASSES = tuple(f"{shape}_{texture}" for shape in SHAPES for texture in TEXTURES)
SPLITS = {"train": (600, 0), "val": (100, 1)}  # number of images, seed
SIZE_RANGE = (192, 288)
OBJECT_SIZE = (36, 96)
SUBSAMPLING = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}


def cache_root() -> str:
    return os.path.expanduser(os.environ.get("FREQDET_CACHE", os.path.join("~", ".cache", "freqdet")))


def demo_root() -> str:
    return os.path.join(cache_root(), f"demo_v{VERSION}")


def split_paths(split: str, root: str = None) -> Tuple[str, str]:
    """(annotation json, image folder) of a split."""
    root = root or demo_root()
    return os.path.join(root, f"{split}.json"), os.path.join(root, split)


def _outline(shape: str, cx: float, cy: float, size: float, angle: float) -> List[Tuple[float, float]]:
    if shape == "disc":
        n, radius = 32, size / 2
    elif shape == "square":
        n, radius = 4, size / 2 * math.sqrt(2)
    else:
        n, radius = 3, size / math.sqrt(3) * 1.1
    return [
        (cx + radius * math.cos(angle + 2 * math.pi * i / n), cy + radius * math.sin(angle + 2 * math.pi * i / n))
        for i in range(n)
    ]


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth two-colour gradient with a few soft blobs and mild noise."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    theta = rng.uniform(0, 2 * np.pi)
    t = (xx * np.cos(theta) + yy * np.sin(theta)) / max(h, w)
    t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
    a, b = rng.uniform(30, 225, 3), rng.uniform(30, 225, 3)
    image = a + (b - a) * t[..., None]
    for _ in range(rng.integers(2, 5)):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(20, 70)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        image += blob[..., None] * rng.uniform(-50, 50, 3)
    return image + rng.normal(0, 3, image.shape)


def _grating(rng: np.random.Generator, h: int, w: int, period: float) -> np.ndarray:
    """A two-colour sinusoidal grating of the given period and a random orientation."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    theta = rng.uniform(0, np.pi)
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period + rng.uniform(0, 2 * np.pi))
    while True:
        c1, c2 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        if abs((c1 - c2) @ np.array([0.299, 0.587, 0.114])) > 70:
            break
    return c1 + (c2 - c1) * wave[..., None]


def _place(rng, h, w, taken, size) -> Tuple[float, float]:
    for _ in range(50):
        half = size * 0.75
        cx, cy = rng.uniform(half, w - half), rng.uniform(half, h - half)
        if all(abs(cx - x) > (size + s) * 0.8 or abs(cy - y) > (size + s) * 0.8 for x, y, s in taken):
            return cx, cy
    return None


def _polygon_area(points: List[Tuple[float, float]]) -> float:
    x, y = np.array(points).T
    return float(abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))) / 2)


def paint_shape(image: np.ndarray, outline, fill: np.ndarray) -> np.ndarray:
    """``image`` with the polygon ``outline`` filled by ``fill`` (same shape as the image)."""
    h, w = image.shape[:2]
    mask_image = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask_image).polygon(outline, fill=255)
    mask = np.asarray(mask_image, dtype=np.float64)[..., None] / 255
    return image * (1 - mask) + fill * mask


def textured_fill(rng: np.random.Generator, h: int, w: int, texture: str) -> np.ndarray:
    """A grating of the texture's period range ("fine" or "coarse")."""
    return _grating(rng, h, w, rng.uniform(*TEXTURES[texture]))


def draw_image(rng: np.random.Generator) -> Tuple[np.ndarray, List[Dict]]:
    """One RGB uint8 image and its objects (category index, polygon)."""
    h, w = (int(v) for v in rng.integers(SIZE_RANGE[0], SIZE_RANGE[1] + 1, 2))
    image = _background(rng, h, w)
    taken, objects = [], []
    n_objects, n_distractors = int(rng.integers(1, 5)), int(rng.integers(0, 3))
    for i in range(n_objects + n_distractors):
        size = rng.uniform(*OBJECT_SIZE)
        spot = _place(rng, h, w, taken, size)
        if spot is None:
            continue
        taken.append(spot + (size,))
        shape = SHAPES[rng.integers(len(SHAPES))]
        outline = _outline(shape, spot[0], spot[1], size, rng.uniform(0, 2 * np.pi))
        if i < n_objects:
            texture = list(TEXTURES)[rng.integers(len(TEXTURES))]
            fill = textured_fill(rng, h, w, texture)
            objects.append({"category": CLASSES.index(f"{shape}_{texture}"), "polygon": outline})
        else:
            fill = np.broadcast_to(rng.uniform(0, 255, 3), image.shape)
        image = paint_shape(image, outline, fill)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), objects


def _annotation(obj: Dict, image_id: int, ann_id: int, h: int, w: int) -> Dict:
    clipped = [(min(max(x, 0.0), w), min(max(y, 0.0), h)) for x, y in obj["polygon"]]
    xs, ys = [p[0] for p in clipped], [p[1] for p in clipped]
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": obj["category"] + 1,
        "segmentation": [[round(v, 2) for p in clipped for v in p]],
        "area": _polygon_area(clipped),
        "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)],
        "iscrowd": 0,
    }


def generate_split(split: str, root: str) -> None:
    """Draw one split into ``root`` (deterministic for a given split)."""
    count, seed = SPLITS[split]
    rng = np.random.default_rng(seed)
    json_file, image_dir = split_paths(split, root)
    os.makedirs(image_dir, exist_ok=True)
    images, annotations = [], []
    for image_id in range(1, count + 1):
        pixels, objects = draw_image(rng)
        h, w = pixels.shape[:2]
        name = f"{image_id:06d}.jpg"
        quality, subsampling = int(rng.integers(65, 96)), int(rng.integers(0, 3))
        Image.fromarray(pixels).save(os.path.join(image_dir, name), quality=quality, subsampling=subsampling)
        images.append({"id": image_id, "file_name": name, "height": h, "width": w,
                       "jpeg_quality": quality, "chroma_subsampling": SUBSAMPLING[subsampling]})
        for obj in objects:
            annotations.append(_annotation(obj, image_id, len(annotations) + 1, h, w))
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(CLASSES)]
    with open(json_file, "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)


def prepare_demo(root: str = None) -> str:
    """Generate the demo dataset into ``root`` unless it is there already; returns the root."""
    root = root or demo_root()
    if all(os.path.exists(split_paths(s, root)[0]) for s in SPLITS):
        return root
    parent = os.path.dirname(os.path.abspath(root))
    os.makedirs(parent, exist_ok=True)
    logger.info(f"Generating the freqdet demo dataset into {root} (once; a few seconds) ...")
    staging = tempfile.mkdtemp(prefix=".demo-", dir=parent)
    try:
        for split in SPLITS:
            generate_split(split, staging)
        try:
            os.rename(staging, root)
        except OSError:
            if not all(os.path.exists(split_paths(s, root)[0]) for s in SPLITS):
                raise
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging)
    return root


def register_demo_datasets(root: str = None) -> None:
    """Register ``freqdet_demo_train`` / ``freqdet_demo_val``; files are generated on first load."""
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import load_coco_json

    for split in SPLITS:
        name = f"freqdet_demo_{split}"
        if name in DatasetCatalog.list():
            continue
        json_file, image_dir = split_paths(split, root)

        def load(split=split, json_file=json_file, image_dir=image_dir, name=name):
            prepare_demo(os.path.dirname(json_file))
            return load_coco_json(json_file, image_dir, name)

        DatasetCatalog.register(name, load)
        MetadataCatalog.get(name).set(
            json_file=json_file, image_root=image_dir, evaluator_type="coco", thing_classes=list(CLASSES)
        )
