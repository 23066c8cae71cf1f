"""Classification data: ImageFolder datasets, the paper's DCT input transform, and a demo set.

DCT input (paper Sec. 3.1, classification): a random-resized crop of S x S pixels (448 for
ResNet-50, 896 for MobileNetV2), Y taken at the crop's size and Cb/Cr upscaled 2x then
4:2:0 subsampled, in 8x8 blocks: (C, S/8, S/8) channels. The crop's resize and flip are
absorbed by the frequency transform (:func:`freqdet.dct.separable_dct` with
``luma_upscale=1``), which computes only the kept channels from the decoded JPEG.
Evaluation resizes the shorter side to S / 0.875 and takes the centre S x S, as the
standard ImageNet recipe does.
"""

from typing import Sequence

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image
from torchvision.datasets import ImageFolder

from ..dct import Geometry
from ..dct.wire import encode
from ..io import read_image

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
        return encode(
            torch.from_numpy(region)[None],
            self.channels,
            "RGB",
            "int16",
            Geometry(resize=(self.crop, self.crop), hflip=hflip),
            luma_upscale=1,
        )[0]


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
