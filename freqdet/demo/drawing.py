"""Drawing the demo pictures: smooth backgrounds, shapes filled with sinusoidal gratings."""

import math
from typing import List, Optional, Tuple

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("disc", "square", "triangle")
TEXTURES = {"fine": (3.5, 5.0), "coarse": (10.0, 16.0)}  # grating periods in pixels


def outline(shape: str, cx: float, cy: float, size: float, angle: float) -> List[Tuple[float, float]]:
    """The polygon of a disc (32 sides), square or triangle of ``size`` centred at (cx, cy)."""
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


def background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
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


def grating(rng: np.random.Generator, h: int, w: int, period: float) -> np.ndarray:
    """A two-colour sinusoidal grating of the given period and a random orientation."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    theta = rng.uniform(0, np.pi)
    wave = 0.5 + 0.5 * np.sin(
        2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period + rng.uniform(0, 2 * np.pi)
    )
    while True:
        c1, c2 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        if abs((c1 - c2) @ np.array([0.299, 0.587, 0.114])) > 70:
            break
    return c1 + (c2 - c1) * wave[..., None]


def place(rng, h, w, taken, size) -> Optional[Tuple[float, float]]:
    """A centre for a shape of ``size`` away from the ``taken`` (x, y, size) ones, or None."""
    for _ in range(50):
        half = size * 0.75
        cx, cy = rng.uniform(half, w - half), rng.uniform(half, h - half)
        if all(abs(cx - x) > (size + s) * 0.8 or abs(cy - y) > (size + s) * 0.8 for x, y, s in taken):
            return cx, cy
    return None


def polygon_area(points: List[Tuple[float, float]]) -> float:
    x, y = np.array(points).T
    return float(abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))) / 2)


def paint_shape(image: np.ndarray, polygon, fill: np.ndarray) -> np.ndarray:
    """``image`` with ``polygon`` filled by ``fill`` (same shape as the image)."""
    h, w = image.shape[:2]
    mask_image = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask_image).polygon(polygon, fill=255)
    mask = np.asarray(mask_image, dtype=np.float64)[..., None] / 255
    return image * (1 - mask) + fill * mask


def textured_fill(rng: np.random.Generator, h: int, w: int, texture: str) -> np.ndarray:
    """A grating of the texture's period range ("fine" or "coarse")."""
    return grating(rng, h, w, rng.uniform(*TEXTURES[texture]))
