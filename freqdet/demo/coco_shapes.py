"""The built-in detection demo: real JPEG files of textured shapes with COCO instance annotations.

Six categories: a disc, a square or a triangle, each filled with either a fine grating
(period 3.5-5 pixels) or a coarse one (period 10-16 pixels), so telling them apart
needs both shape and frequency. Untextured shapes of the same kinds are scattered as
distractors. Images are 192-288 pixels a side, saved as JPEG at quality 65-95 with 4:4:4,
4:2:2 or 4:2:0 chroma subsampling. Everything is drawn from a fixed seed, on first use,
into ``$FREQDET_CACHE/demo_v1`` (default ``~/.cache/freqdet``); the folder appears
atomically, so concurrent first uses are safe.

Detectron2 sees them as ``freqdet_demo_train`` (600 images) and ``freqdet_demo_val`` (100
images), registered by :mod:`freqdet.detection.datasets`.
"""

import json
import logging
import os
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image

from .cache import cache_root, stage
from .drawing import SHAPES, TEXTURES, background, outline, paint_shape, place, polygon_area, textured_fill

logger = logging.getLogger(__name__)

VERSION = 1
CLASSES = tuple(f"{shape}_{texture}" for shape in SHAPES for texture in TEXTURES)
SPLITS = {"train": (600, 0), "val": (100, 1)}  # number of images, seed
SIZE_RANGE = (192, 288)
OBJECT_SIZE = (36, 96)
SUBSAMPLING = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}


def demo_root() -> str:
    return os.path.join(cache_root(), f"demo_v{VERSION}")


def split_paths(split: str, root: str = None) -> Tuple[str, str]:
    """(annotation json, image folder) of a split."""
    root = root or demo_root()
    return os.path.join(root, f"{split}.json"), os.path.join(root, split)


def draw_image(rng: np.random.Generator) -> Tuple[np.ndarray, List[Dict]]:
    """One RGB uint8 image and its objects (category index, polygon)."""
    h, w = (int(v) for v in rng.integers(SIZE_RANGE[0], SIZE_RANGE[1] + 1, 2))
    image = background(rng, h, w)
    taken, objects = [], []
    n_objects, n_distractors = int(rng.integers(1, 5)), int(rng.integers(0, 3))
    for i in range(n_objects + n_distractors):
        size = rng.uniform(*OBJECT_SIZE)
        spot = place(rng, h, w, taken, size)
        if spot is None:
            continue
        taken.append(spot + (size,))
        shape = SHAPES[rng.integers(len(SHAPES))]
        polygon = outline(shape, spot[0], spot[1], size, rng.uniform(0, 2 * np.pi))
        if i < n_objects:
            texture = list(TEXTURES)[rng.integers(len(TEXTURES))]
            fill = textured_fill(rng, h, w, texture)
            objects.append({"category": CLASSES.index(f"{shape}_{texture}"), "polygon": polygon})
        else:
            fill = np.broadcast_to(rng.uniform(0, 255, 3), image.shape)
        image = paint_shape(image, polygon, fill)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), objects


def _annotation(obj: Dict, image_id: int, ann_id: int, h: int, w: int) -> Dict:
    clipped = [(min(max(x, 0.0), w), min(max(y, 0.0), h)) for x, y in obj["polygon"]]
    xs, ys = [p[0] for p in clipped], [p[1] for p in clipped]
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": obj["category"] + 1,
        "segmentation": [[round(v, 2) for p in clipped for v in p]],
        "area": polygon_area(clipped),
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
        images.append(
            {
                "id": image_id,
                "file_name": name,
                "height": h,
                "width": w,
                "jpeg_quality": quality,
                "chroma_subsampling": SUBSAMPLING[subsampling],
            }
        )
        for obj in objects:
            annotations.append(_annotation(obj, image_id, len(annotations) + 1, h, w))
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(CLASSES)]
    with open(json_file, "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)


def prepare_demo(root: str = None) -> str:
    """Generate the demo dataset into ``root`` unless it is there already; returns the root."""
    root = root or demo_root()

    def build(folder: str) -> None:
        logger.info(f"Generating the freqdet demo dataset into {root} (once; a few seconds) ...")
        for split in SPLITS:
            generate_split(split, folder)

    return stage(root, build, lambda r: all(os.path.exists(split_paths(s, r)[0]) for s in SPLITS))
