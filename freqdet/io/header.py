"""A file's bytes and header, read before any decoding: the size limit and :class:`ImageDecodeError`."""

import io
from typing import Optional

from PIL import Image, JpegImagePlugin, UnidentifiedImageError

# Images with more pixels are refused before decoding (a "decompression bomb": a small file
# that would expand to gigabytes). Pillow's own default limit; pass max_pixels to change it.
MAX_IMAGE_PIXELS = 89_478_485
JPEG_SOI = b"\xff\xd8"


class ImageDecodeError(ValueError):
    """An image file could not be read or decoded; ``path`` and ``reason`` say which and why.

    ``ImageDecodeError(message)`` with one argument rebuilds the error from its message, as
    PyTorch's DataLoader does to re-raise a worker's exception in the main process.
    """

    def __init__(self, path, reason: Optional[str] = None):
        if reason is None:
            self.path, self.reason = None, None
            super().__init__(str(path))
            return
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot decode image {self.path!r}: {reason}")


class InMemory:
    """An encoded image held in memory (a file's bytes), read wherever a path is: ``read_image``,
    ``read_planes``; ``name`` stands for the path in errors."""

    def __init__(self, data: bytes, name: str = "<bytes in memory>"):
        self.data, self.name = bytes(data), name

    def __str__(self) -> str:
        return self.name


def read_bytes(path) -> bytes:
    """The whole file (or an :class:`InMemory`'s bytes); ImageDecodeError if it cannot be read or is empty."""
    if isinstance(path, InMemory):
        data = path.data
        if not data:
            raise ImageDecodeError(path, "the image is empty (0 bytes)")
        return data
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ImageDecodeError(path, f"cannot read the file ({e.strerror or e})") from e
    if not data:
        raise ImageDecodeError(path, "the file is empty (0 bytes)")
    return data


def is_jpeg(data: bytes) -> bool:
    """JPEG is recognised by its bytes (the start-of-image marker), not by the file name."""
    return data.startswith(JPEG_SOI)


def open_header(data: bytes, path) -> Image.Image:
    """Pillow's lazy open (header only); refusals as ImageDecodeError.

    A JPEG opens without Pillow's own pixel limit (``PIL.Image.MAX_IMAGE_PIXELS``, which warns
    from 89 Mpx and refuses from 179 Mpx whatever the caller allows): the caller's
    :func:`check_size` is the one limit. Other formats keep Pillow's limit as well."""
    try:
        if is_jpeg(data):
            return JpegImagePlugin.JpegImageFile(io.BytesIO(data))
        return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise ImageDecodeError(path, f"too large, refused before decoding ({e})") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageDecodeError(path, f"not a readable image ({e})") from e


def check_size(path, width: int, height: int, max_pixels: Optional[int]) -> None:
    """Refuse images larger than ``max_pixels`` from their header, before any decoding."""
    if max_pixels and width * height > max_pixels:
        raise ImageDecodeError(
            path,
            f"{width}x{height} pixels exceed the limit of {max_pixels} (a decompression bomb?); "
            "raise max_pixels (cfg.INPUT.DCT.MAX_IMAGE_PIXELS) if such images are expected",
        )
