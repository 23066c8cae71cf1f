"""Classification data: ImageFolder datasets, the paper's DCT input transform, and a demo set.

DCT input (paper Sec. 3.1, classification): a random-resized crop of S x S pixels (448 for
ResNet-50, 896 for MobileNetV2), Y taken at the crop's size and Cb/Cr upscaled 2x then
4:2:0 subsampled, in 8x8 blocks: (C, S/8, S/8) channels. The crop's resize and flip are
absorbed by the frequency transform (:func:`freqdet.dct.stencil.stencil_dct` with
``luma_upscale=1``), which computes only the kept channels from the decoded JPEG.
Evaluation resizes the shorter side to S / 0.875 and takes the centre S x S, as the
standard ImageNet recipe does.
"""
import os
import shutil
import tempfile
from typing import Sequence

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image
from torchvision.datasets import ImageFolder

from .. import demo_data
from ..dct.wire import encode
from ..image_io import read_image

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
EVAL_CROP_RATIO = 0.875


class DCTCropTransform:
    """Image path -> (C, S/8, S/8) int16 DCT channels of a crop (random in training, centred otherwise)."""

    def __init__(self, crop: int, channels: Sequence[int], train: bool, scale=(0.08, 1.0)):
        if crop % 8:
            raise ValueError(f"the crop must be a multiple of 8 pixels (one DCT block), got {crop}")
        self.crop, self.channels, self.train, self.scale = crop, list(channels), train, scale

    def box(self, height: int, width: int):
        """(top, left, height, width) of the region that becomes the S x S crop."""
        if self.train:
            shape_only = torch.empty(1, 1, 1).expand(3, height, width)
            return T.RandomResizedCrop.get_params(shape_only, self.scale, (3 / 4, 4 / 3))
        side = min(height, width) * EVAL_CROP_RATIO
        top, left = int(round((height - side) / 2)), int(round((width - side) / 2))
        return top, left, max(1, int(round(side))), max(1, int(round(side)))

    def __call__(self, path) -> torch.Tensor:
        image = read_image(path, format="RGB")
        top, left, h, w = self.box(*image.shape[:2])
        region = np.ascontiguousarray(image[top : top + h, left : left + w].transpose(2, 0, 1), dtype=np.float32)
        hflip = self.train and bool(torch.rand(1) < 0.5)
        return encode(torch.from_numpy(region)[None], self.channels, "RGB", "int16", resize=(self.crop, self.crop),
                      hflip=hflip, luma_upscale=1)[0]


def rgb_transform(crop: int, train: bool, scale=(0.08, 1.0)):
    """The standard RGB recipe: random-resized crop and flip, or resize + centre crop."""
    if train:
        steps = [T.RandomResizedCrop(crop, scale=scale), T.RandomHorizontalFlip()]
    else:
        steps = [T.Resize(int(round(crop / EVAL_CROP_RATIO))), T.CenterCrop(crop)]
    return T.Compose([*steps, T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def read_rgb(path) -> Image.Image:
    return Image.fromarray(read_image(path, format="RGB"))


def image_folder(root: str, transform, dct: bool) -> ImageFolder:
    """An ImageFolder (one folder per class) read through freqdet's JPEG decoder."""
    loader = (lambda path: path) if dct else read_rgb
    return ImageFolder(root, transform=transform, loader=loader)


# The built-in demo: one textured shape per image; the class is shape x grating frequency.
DEMO_SHAPES, DEMO_TEXTURES = ("disc", "square"), ("fine", "coarse")
DEMO_CLASSES = tuple(f"{s}_{t}" for s in DEMO_SHAPES for t in DEMO_TEXTURES)
DEMO_SPLITS = {"train": (80, 10), "val": (25, 11)}  # images per class, seed
DEMO_SIZE = 160
DEMO_VERSION = 1


def draw_demo_image(rng: np.random.Generator, shape: str, texture: str) -> np.ndarray:
    image = demo_data._background(rng, DEMO_SIZE, DEMO_SIZE)
    size = rng.uniform(70, 120)
    centre = rng.uniform(DEMO_SIZE / 2 - 15, DEMO_SIZE / 2 + 15, 2)
    outline = demo_data._outline(shape, centre[0], centre[1], size, rng.uniform(0, 2 * np.pi))
    image = demo_data.paint_shape(image, outline, demo_data.textured_fill(rng, DEMO_SIZE, DEMO_SIZE, texture))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def prepare_demo_folder(root: str = None) -> str:
    """Generate the demo ImageFolder (train/ and val/, real JPEGs) once; returns its root."""
    root = root or os.path.join(demo_data.cache_root(), f"cls_demo_v{DEMO_VERSION}")
    if all(os.path.isdir(os.path.join(root, split)) for split in DEMO_SPLITS):
        return root
    parent = os.path.dirname(os.path.abspath(root))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".cls-demo-", dir=parent)
    try:
        for split, (per_class, seed) in DEMO_SPLITS.items():
            rng = np.random.default_rng(seed)
            for name in DEMO_CLASSES:
                os.makedirs(os.path.join(staging, split, name))
                shape, texture = name.split("_")
                for i in range(per_class):
                    pixels = draw_demo_image(rng, shape, texture)
                    quality, subsampling = int(rng.integers(70, 96)), int(rng.integers(0, 3))
                    Image.fromarray(pixels).save(os.path.join(staging, split, name, f"{i:04d}.jpg"),
                                                 quality=quality, subsampling=subsampling)
        try:
            os.rename(staging, root)
        except OSError:
            if not all(os.path.isdir(os.path.join(root, split)) for split in DEMO_SPLITS):
                raise
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging)
    return root
