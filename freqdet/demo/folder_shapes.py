"""The built-in classification demo: an ImageFolder of real JPEGs, one textured shape per image.

Four classes, disc or square x fine or coarse grating (:mod:`.drawing`), so the class
needs both shape and frequency; 80 training and 25 validation images per class, 160
pixels a side, JPEG quality 70-95 with 4:4:4, 4:2:2 or 4:2:0 chroma. Drawn from fixed
seeds on first use into ``$FREQDET_CACHE/cls_demo_v1``.
"""

import os

import numpy as np
from PIL import Image

from .cache import cache_root, stage
from .drawing import background, outline, paint_shape, textured_fill

SHAPES, TEXTURES = ("disc", "square"), ("fine", "coarse")
CLASSES = tuple(f"{s}_{t}" for s in SHAPES for t in TEXTURES)
SPLITS = {"train": (80, 10), "val": (25, 11)}  # images per class, seed
SIZE = 160
VERSION = 1


def draw_image(rng: np.random.Generator, shape: str, texture: str) -> np.ndarray:
    """One RGB uint8 picture of a textured shape near the centre."""
    image = background(rng, SIZE, SIZE)
    size = rng.uniform(70, 120)
    centre = rng.uniform(SIZE / 2 - 15, SIZE / 2 + 15, 2)
    polygon = outline(shape, centre[0], centre[1], size, rng.uniform(0, 2 * np.pi))
    image = paint_shape(image, polygon, textured_fill(rng, SIZE, SIZE, texture))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _write(folder: str) -> None:
    for split, (per_class, seed) in SPLITS.items():
        rng = np.random.default_rng(seed)
        for name in CLASSES:
            os.makedirs(os.path.join(folder, split, name))
            shape, texture = name.split("_")
            for i in range(per_class):
                pixels = draw_image(rng, shape, texture)
                quality, subsampling = int(rng.integers(70, 96)), int(rng.integers(0, 3))
                Image.fromarray(pixels).save(
                    os.path.join(folder, split, name, f"{i:04d}.jpg"), quality=quality, subsampling=subsampling
                )


def prepare_demo_folder(root: str = None) -> str:
    """Generate the demo ImageFolder (train/ and val/) once; returns its root."""
    root = root or os.path.join(cache_root(), f"cls_demo_v{VERSION}")
    return stage(root, _write, lambda r: all(os.path.isdir(os.path.join(r, split)) for split in SPLITS))
