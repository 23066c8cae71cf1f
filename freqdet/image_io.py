"""Reading images: JPEG through libjpeg-turbo, everything else through Pillow.

:func:`read_image` returns what Detectron2's ``detection_utils.read_image`` returns (same
formats, EXIF orientation applied the same way) but decodes JPEG with libjpeg-turbo via
PyTurboJPEG. JPEG is recognised by its bytes, not by the file name. Other formats, and
JPEG when the TurboJPEG library cannot be loaded, go through Pillow with a one-time
warning. Every failure to read or decode raises :class:`ImageDecodeError` naming the file
and the reason; a corrupt file never comes back as a partly grey picture.
"""
import io
import os
import warnings
from typing import Optional, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

FORMATS = ("BGR", "RGB", "L")
# Images with more pixels are refused before decoding (a "decompression bomb": a small file
# that would expand to gigabytes). Pillow's own default limit; pass max_pixels to change it.
MAX_IMAGE_PIXELS = 89_478_485
_EXIF_ORIENTATION = 0x0112
_JPEG_SOI = b"\xff\xd8"


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


_warned = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


_TURBO = None
_TURBO_LOADED = False


def turbojpeg_decoder():
    """The process-wide PyTurboJPEG decoder, or None (with a one-time warning) if unavailable."""
    global _TURBO, _TURBO_LOADED
    if not _TURBO_LOADED:
        _TURBO_LOADED = True
        try:
            from turbojpeg import TurboJPEG

            _TURBO = TurboJPEG()
        except (ImportError, OSError, RuntimeError) as e:
            _warn_once(
                "no-turbojpeg",
                f"freqdet: libjpeg-turbo's TurboJPEG library is unavailable ({e}); JPEGs are "
                "decoded with Pillow, which is slower. On Debian/Ubuntu: apt-get install "
                "libturbojpeg0, and pip install PyTurboJPEG.",
            )
    return _TURBO


def _read_bytes(path) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ImageDecodeError(path, f"cannot read the file ({e.strerror or e})") from e
    if not data:
        raise ImageDecodeError(path, "the file is empty (0 bytes)")
    return data


def _exif_orientation(image: Image.Image) -> Optional[int]:
    """The EXIF orientation tag, read as Detectron2's ``_apply_exif_orientation`` reads it."""
    if not hasattr(image, "getexif"):
        return None
    try:
        exif = image.getexif()
    except Exception:  # Detectron2 ignores unreadable EXIF the same way (its issue #1885)
        return None
    return exif.get(_EXIF_ORIENTATION) if exif is not None else None


def apply_orientation(array: np.ndarray, orientation: Optional[int]) -> np.ndarray:
    """Apply an EXIF orientation (1..8) to an (H, W, C) array as Pillow's transposes do."""
    a = array
    if orientation == 2:
        a = a[:, ::-1]
    elif orientation == 3:
        a = a[::-1, ::-1]
    elif orientation == 4:
        a = a[::-1]
    elif orientation == 5:
        a = a.transpose(1, 0, 2)
    elif orientation == 6:
        a = np.rot90(a, -1)
    elif orientation == 7:
        a = a.transpose(1, 0, 2)[::-1, ::-1]
    elif orientation == 8:
        a = np.rot90(a, 1)
    return np.ascontiguousarray(a)


def open_header(data: bytes, path) -> Image.Image:
    """Pillow's lazy open (header only); refusals as ImageDecodeError."""
    try:
        return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise ImageDecodeError(path, f"too large, refused before decoding ({e})") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageDecodeError(path, f"not a readable image ({e})") from e


def check_size(path, width: int, height: int, max_pixels: Optional[int]) -> None:
    """Refuse images larger than ``max_pixels`` from their header, before any decoding."""
    if max_pixels and width * height > max_pixels:
        raise ImageDecodeError(
            path, f"{width}x{height} pixels exceed the limit of {max_pixels} (a decompression bomb?); "
            "raise max_pixels (cfg.INPUT.DCT.MAX_IMAGE_PIXELS) if such images are expected"
        )


def _decode_turbo(turbo, data: bytes, path, fmt: str, max_pixels: Optional[int]) -> Optional[np.ndarray]:
    """Decode a JPEG with libjpeg-turbo; None for colour spaces it cannot convert (CMYK, YCCK)."""
    import turbojpeg as tj

    pixel_format = tj.TJPF_BGR if fmt == "BGR" else tj.TJPF_RGB
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            width, height, _, colorspace = turbo.decode_header(data)
            check_size(path, width, height, max_pixels)
            if colorspace in (tj.TJCS_CMYK, tj.TJCS_YCCK):
                return None
            array = turbo.decode(data, pixel_format=pixel_format, flags=tj.TJFLAG_STOPONWARNING)
        except OSError as e:
            raise ImageDecodeError(path, f"corrupt or unsupported JPEG ({e})") from e
    if caught:
        # libjpeg reports truncated or corrupt entropy-coded data as a warning and fills
        # the rest with grey; that picture must never reach training.
        raise ImageDecodeError(path, f"corrupt JPEG data ({caught[0].message})")
    return array


def _decode_pillow(data: bytes, path, fmt: str, max_pixels: Optional[int]) -> np.ndarray:
    image = open_header(data, path)
    check_size(path, *image.size, max_pixels)
    try:
        image.load()
        orientation = _exif_orientation(image)
        image = image.convert(fmt if fmt == "L" else "RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageDecodeError(path, f"not a readable image ({e})") from e
    array = np.asarray(image)
    if fmt == "L":
        array = array[:, :, None]
    elif fmt == "BGR":
        array = array[:, :, ::-1]
    return apply_orientation(array, orientation)


def read_image(
    path: Union[str, os.PathLike], format: str = "BGR", max_pixels: Optional[int] = MAX_IMAGE_PIXELS
) -> np.ndarray:
    """Read an image file as uint8 ``(H, W, 3)`` in ``"BGR"`` or ``"RGB"``, or ``(H, W, 1)`` for ``"L"``.

    Same result as Detectron2's ``read_image`` for these formats, EXIF orientation included.
    Raises :class:`ImageDecodeError` for missing, empty, truncated, corrupt or non-image
    files, and, before decoding, for images of more than ``max_pixels`` pixels (None: no limit).
    """
    if format not in FORMATS:
        raise ValueError(f"read_image format must be one of {FORMATS}, got {format!r}")
    data = _read_bytes(path)
    if data.startswith(_JPEG_SOI):
        turbo = turbojpeg_decoder()
        if turbo is not None:
            array = _decode_turbo(turbo, data, path, format, max_pixels)
            if array is not None:
                try:
                    orientation = _exif_orientation(open_header(data, path))
                except ImageDecodeError as e:
                    if isinstance(e.__cause__, Image.DecompressionBombError):  # as the Pillow path refuses it
                        raise
                    orientation = None
                if format == "L":
                    # Pillow's RGB -> L weights, as Detectron2's read_image applies them.
                    array = np.asarray(Image.fromarray(array).convert("L"))[:, :, None]
                return apply_orientation(array, orientation)
    else:
        _warn_once(
            "not-jpeg",
            f"freqdet: {os.fspath(path)!r} is not a JPEG; non-JPEG images are decoded with Pillow "
            "(this warning is shown once).",
        )
    return _decode_pillow(data, path, format, max_pixels)
