"""The compressed-domain input: a JPEG's own DCT coefficients, read without decoding pixels.

A JPEG already stores 8x8 block DCT coefficients (level-shifted, orthonormal: the
convention of :mod:`freqdet.dct`), quantized, on its own grids: Y in 8x8-pixel blocks,
Cb/Cr in blocks as large as their subsampling makes them. This path reads them with
libjpeg's entropy decoder only (``freqdet.io._jpeg``, built from ``jpeg_coefficients.c``
beside this file: no inverse DCT, no upsampling, no
colour conversion, no resize), multiplies by the quantization tables, keeps the selected
channels and ships them as int16 on the file's grids. On the device they are resampled to
the training grid (one cell per 4x4 pixels of the augmented image;
:func:`freqdet.dct.wire.decode_file_grid`).

This is not the paper's input: a file's block (u, v) is a frequency of 8x8 pixels of the
original image, where the paper's is a frequency of 4x4 pixels of the resized image
(upscaled 2x). At COCO's scale (images enlarged about 1.7x) a file's channel k holds
frequencies about 3.4 times lower than the paper's channel k, so the same selection sees
less detail. Geometry is handled on block grids: horizontal/vertical flips reverse the
blocks and negate odd horizontal/vertical frequencies, EXIF orientations also transpose
(u, v); both are exact when the image size is a multiple of the block size, and off by
the padding of the last block otherwise.
"""

from typing import NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch

from ..dct import PER_COMPONENT, split_by_component
from .exif import flip_coefficients, orient_coefficients, orientation_flips, read_orientation
from .header import MAX_IMAGE_PIXELS, ImageDecodeError, check_size, is_jpeg, open_header, read_bytes

_GRAYSCALE, _YCBCR = 1, 3  # libjpeg's J_COLOR_SPACE values


def _reader():
    try:
        from . import _jpeg
    except ImportError as e:
        raise RuntimeError(
            "the compressed-domain path needs freqdet's JPEG coefficient reader (freqdet.io._jpeg), "
            "which was not built: install libjpeg's headers (Debian: apt-get install libjpeg-dev) "
            "and re-run tools/setup.sh (or pip install -e . again)"
        ) from e
    return _jpeg


class JpegCoefficients(NamedTuple):
    """Dequantized coefficients of a JPEG, per component ``(rows, cols, 64)`` int16 (k = 8u + v)."""

    height: int
    width: int
    planes: Tuple[np.ndarray, ...]  # Y, and Cb, Cr unless grayscale

    def oriented(self, orientation: Optional[int]) -> "JpegCoefficients":
        """Apply an EXIF orientation (1..8) as Detectron2's read_image does to pixels."""
        planes = tuple(orient_coefficients(p, orientation) for p in self.planes)
        transposed = orientation_flips(orientation)[0]
        return JpegCoefficients(*((self.width, self.height) if transposed else (self.height, self.width)), planes)

    def flipped(self, hflip: bool, vflip: bool) -> "JpegCoefficients":
        """Mirror the block grids (see :func:`freqdet.io.exif.flip_coefficients`)."""
        if not (hflip or vflip):
            return self
        return JpegCoefficients(self.height, self.width, tuple(flip_coefficients(p, hflip, vflip) for p in self.planes))

    def select(self, selection: Sequence[int]) -> Tuple[torch.Tensor, torch.Tensor]:
        """(luma (Cy, rows, cols), chroma (Cc, rows', cols')) int16 tensors of the selected channels.

        A grayscale file has no chroma: its Cb/Cr channels are zero, as they are for a
        grey picture in the pixel path.
        """
        luma_ks, cb_ks, cr_ks = split_by_component(selection)
        luma = torch.from_numpy(np.ascontiguousarray(self.planes[0][:, :, luma_ks].transpose(2, 0, 1)))
        if len(self.planes) == 3:
            chroma = np.concatenate([self.planes[1][:, :, cb_ks], self.planes[2][:, :, cr_ks]], axis=2)
            chroma = torch.from_numpy(np.ascontiguousarray(chroma.transpose(2, 0, 1)))
        else:
            chroma = torch.zeros((len(cb_ks) + len(cr_ks),) + self.planes[0].shape[:2], dtype=torch.int16)
        return luma, chroma


def read_jpeg_coefficients(path, max_pixels: Optional[int] = MAX_IMAGE_PIXELS) -> JpegCoefficients:
    """Read and dequantize a JPEG's coefficients, EXIF orientation applied.

    Raises :class:`freqdet.ImageDecodeError` for files that are not readable baseline or
    progressive JPEGs in YCbCr or grayscale (CMYK and RGB JPEGs need the pixel path).
    """
    return decode_jpeg_coefficients(read_bytes(path), path, max_pixels)


def decode_jpeg_coefficients(
    data: bytes, path="<JPEG in memory>", max_pixels: Optional[int] = MAX_IMAGE_PIXELS
) -> JpegCoefficients:
    """:func:`read_jpeg_coefficients` of a JPEG already in memory (``path`` names it in errors)."""
    if not is_jpeg(data):
        raise ImageDecodeError(path, "not a JPEG file; the compressed-domain path reads JPEGs only")
    header = open_header(data, path)
    check_size(path, *header.size, max_pixels)
    try:
        width, height, color_space, components = _reader().read_coefficients(data)
    except ValueError as e:
        raise ImageDecodeError(path, f"corrupt or unsupported JPEG ({e})") from e
    if color_space not in (_GRAYSCALE, _YCBCR):
        raise ImageDecodeError(path, f"JPEG colour space {color_space} is not YCbCr or grayscale; use the pixel path")
    planes = []
    for rows, cols, _, _, coefficients, quantization in components:
        quantized = np.frombuffer(coefficients, dtype=np.int16).reshape(rows, cols, PER_COMPONENT)
        steps = np.frombuffer(quantization, dtype=np.uint16).astype(np.int32)
        planes.append(np.clip(quantized * steps, -32768, 32767).astype(np.int16))
    return JpegCoefficients(height, width, tuple(planes)).oriented(read_orientation(header))


def check_available() -> None:
    """Raise a RuntimeError saying how to build the JPEG coefficient reader if it is missing."""
    _reader()
