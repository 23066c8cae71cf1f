"""The official DCTNet release's preprocessing, step for step, with the libraries it used (OpenCV
and libjpeg-turbo), so that its trained models see the inputs they were trained on.

The release computes DCT inputs by re-encoding images as JPEG quality 100 (all quantizers 1)
with 4:2:0 chroma and reading the coefficients back. Its detection input
(``segmentation/mmdet/datasets/pipelines`` ``Resize`` / ``Pad`` / ``ToDCTUpscaledStatic`` of its
test configs) is :func:`detection_input`:

1. mmcv's keep-ratio resize to (1333, 800): ``scale = min(1333 / long side, 800 / short
   side)``, new size ``int(side * scale + 0.5)``, ``cv2.INTER_LINEAR`` on uint8 BGR;
2. zero padding at the bottom and right to a multiple of 32 pixels, before the transform;
3. the padded image upscaled 2x and 4x with ``cv2.INTER_LINEAR``, each re-encoded: Y from
   the 2x image and Cb / Cr from the 4x one (4:2:0 halves them), so that all three lie on
   one grid of (padded size) / 4 cells.

Its classification input is :class:`freqdet.classification.official.OfficialEvalTransform`.
Detectron2-free; OpenCV is an optional dependency (``pip install opencv-python-headless``).
"""

from typing import NamedTuple, Sequence, Tuple

import numpy as np
import torch

from .dct import split_by_component
from .io import decode_jpeg_coefficients
from .io.pixels import turbojpeg_decoder

RELEASE_SCALE = (1333, 800)  # its test configs' img_scale: (long side, short side)
RELEASE_PAD = 32  # its Pad(size_divisor=32)


def opencv():
    """The cv2 module; RuntimeError saying how to install it if it is missing."""
    try:
        import cv2
    except ImportError as e:
        raise RuntimeError(
            "the official release's preprocessing needs OpenCV: pip install opencv-python-headless "
            "(or pip install freqdet[official])"
        ) from e
    return cv2


def reencoded_planes(image: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Y, Cb and Cr coefficient planes, each (rows, cols, 64) int16 with k = 8u + v, of a
    uint8 BGR image encoded by libjpeg-turbo as JPEG quality 100 with 4:2:0 chroma."""
    import turbojpeg

    encoder = turbojpeg_decoder()
    if encoder is None:
        raise RuntimeError(
            "the official release's preprocessing needs libjpeg-turbo's TurboJPEG library "
            "(Debian: apt-get install libturbojpeg0; pip install PyTurboJPEG)"
        )
    data = encoder.encode(
        np.ascontiguousarray(image), quality=100, jpeg_subsample=turbojpeg.TJSAMP_420, pixel_format=turbojpeg.TJPF_BGR
    )
    return tuple(decode_jpeg_coefficients(data, "a re-encoded image", max_pixels=None).planes)


def keep_ratio_size(height: int, width: int, scale: Tuple[int, int] = RELEASE_SCALE) -> Tuple[Tuple[int, int], float]:
    """((h, w), scale factor) of mmcv's keep-ratio resize to ``scale`` (long side, short side)."""
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    return (int(height * float(factor) + 0.5), int(width * float(factor) + 0.5)), factor


class DetectionInput(NamedTuple):
    """What the release's test pipeline makes of an image."""

    coefficients: torch.Tensor  # (C, padded h / 4, padded w / 4) int16, the selected channels
    image_size: Tuple[int, int]  # (h, w) after the resize, before the padding: its img_shape
    scale_factor: float  # resized / original, one factor for both axes


def detection_input(
    image: np.ndarray, channels: Sequence[int], scale: Tuple[int, int] = RELEASE_SCALE
) -> DetectionInput:
    """The release's detection input of a uint8 BGR image (see the module's docstring)."""
    cv2 = opencv()
    (h, w), factor = keep_ratio_size(image.shape[0], image.shape[1], scale)
    resized = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    padded_h, padded_w = -(-h // RELEASE_PAD) * RELEASE_PAD, -(-w // RELEASE_PAD) * RELEASE_PAD
    padded = np.zeros((padded_h, padded_w, 3), np.uint8)
    padded[:h, :w] = resized
    luma, cb, cr = split_by_component(channels)
    y = reencoded_planes(cv2.resize(padded, (2 * padded_w, 2 * padded_h), interpolation=cv2.INTER_LINEAR))[0]
    _, cb_plane, cr_plane = reencoded_planes(
        cv2.resize(padded, (4 * padded_w, 4 * padded_h), interpolation=cv2.INTER_LINEAR)
    )
    planes = np.concatenate([y[:, :, luma], cb_plane[:, :, cb], cr_plane[:, :, cr]], axis=2)
    return DetectionInput(torch.from_numpy(np.ascontiguousarray(planes.transpose(2, 0, 1))), (h, w), factor)
