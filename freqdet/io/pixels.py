"""Reading images: JPEG through libjpeg-turbo, everything else through Pillow.

:func:`read_image` returns what Detectron2's ``detection_utils.read_image`` returns (same
formats, EXIF orientation applied the same way) but decodes JPEG with libjpeg-turbo via
PyTurboJPEG. JPEG is recognised by its bytes, not by the file name. Other formats, and
JPEG when the TurboJPEG library cannot be loaded, go through Pillow with a one-time
warning. Every failure to read or decode raises :class:`ImageDecodeError` naming the file
and the reason; a corrupt file never comes back as a partly grey picture.
"""

import os
import warnings
from typing import Optional, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from .exif import orient_pixels, read_orientation
from .header import MAX_IMAGE_PIXELS, ImageDecodeError, check_size, is_jpeg, open_header, read_bytes

FORMATS = ("BGR", "RGB", "L")
_warned = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


_TURBO = None
_TURBO_LOADED = False
# PyTurboJPEG (1.x and 2.x) reports a failed libjpeg-turbo call through this method of its
# TurboJPEG class (name-mangled from ``__report_error``), which turns libjpeg's warnings into
# Python warnings; these are the private attributes it reads the error with.
_REPORT_HOOKS = ("_TurboJPEG__report_error", "_TurboJPEG__get_error_code", "_TurboJPEG__get_error_string")


class LibjpegWarning(Exception):
    """A warning of libjpeg-turbo's own (corrupt or truncated data) during a decode."""


def _strict_decoder():
    """A TurboJPEG whose libjpeg warnings raise :class:`LibjpegWarning` instead of warning: a
    decode that libjpeg completed with grey filler must fail, and only libjpeg's warnings may
    fail it (no process-wide warning state, which other threads and libraries share)."""
    from turbojpeg import TJERR_WARNING, TurboJPEG

    class StrictTurboJPEG(TurboJPEG):
        def _TurboJPEG__report_error(self, handle):
            get_code = self._TurboJPEG__get_error_code
            if get_code is not None and get_code(handle) == TJERR_WARNING:
                raise LibjpegWarning(self._TurboJPEG__get_error_string(handle))
            super()._TurboJPEG__report_error(handle)

    decoder = StrictTurboJPEG()
    missing = [name for name in _REPORT_HOOKS if not hasattr(decoder, name)]
    if missing:
        import turbojpeg

        raise RuntimeError(
            f"this PyTurboJPEG ({getattr(turbojpeg, '__version__', '?')}) has no {missing[0]}, through which "
            "freqdet tells libjpeg's corrupt-data warnings from other warnings; install PyTurboJPEG 1.7 to 2.x"
        )
    return decoder


def turbojpeg_decoder():
    """The process-wide PyTurboJPEG decoder (libjpeg's warnings raise :class:`LibjpegWarning`), or
    None (with a one-time warning) if unavailable."""
    global _TURBO, _TURBO_LOADED
    if not _TURBO_LOADED:
        _TURBO_LOADED = True
        try:
            _TURBO = _strict_decoder()
        except (ImportError, OSError, RuntimeError) as e:
            _warn_once(
                "no-turbojpeg",
                f"freqdet: libjpeg-turbo's TurboJPEG library is unavailable ({e}); JPEGs are "
                "decoded with Pillow, which is slower. On Debian/Ubuntu: apt-get install "
                "libturbojpeg0, and pip install PyTurboJPEG.",
            )
    return _TURBO


def decode_strictly(turbo, data: bytes, path, max_pixels: Optional[int], decode):
    """``decode(width, height, subsampling, colorspace)`` of a JPEG's header (read by libjpeg-turbo,
    its size checked first), with every libjpeg error or warning raised as :class:`ImageDecodeError`:
    libjpeg reports truncated or corrupt entropy-coded data as a warning and fills the rest with
    grey, a picture that must never reach training. ``turbo`` is :func:`turbojpeg_decoder`'s;
    Python warnings raised meanwhile (a dependency's deprecation) pass through untouched."""
    try:
        width, height, subsampling, colorspace = turbo.decode_header(data)
        check_size(path, width, height, max_pixels)
        return decode(width, height, subsampling, colorspace)
    except LibjpegWarning as e:
        raise ImageDecodeError(path, f"corrupt JPEG data ({e})") from e
    except OSError as e:
        raise ImageDecodeError(path, f"corrupt or unsupported JPEG ({e})") from e


def jpeg_orientation(data: bytes, path) -> Optional[int]:
    """A JPEG's EXIF orientation, or None where its header cannot be read by Pillow."""
    try:
        return read_orientation(open_header(data, path))
    except ImageDecodeError:
        return None


def _decode_turbo(turbo, data: bytes, path, fmt: str, max_pixels: Optional[int]) -> Optional[np.ndarray]:
    """Decode a JPEG with libjpeg-turbo; None for colour spaces it cannot convert (CMYK, YCCK)."""
    import turbojpeg as tj

    pixel_format = tj.TJPF_BGR if fmt == "BGR" else tj.TJPF_RGB

    def decode(width, height, subsampling, colorspace):
        if colorspace in (tj.TJCS_CMYK, tj.TJCS_YCCK):
            return None
        return turbo.decode(data, pixel_format=pixel_format, flags=tj.TJFLAG_STOPONWARNING)

    return decode_strictly(turbo, data, path, max_pixels, decode)


def _decode_pillow(data: bytes, path, fmt: str, max_pixels: Optional[int]) -> np.ndarray:
    image = open_header(data, path)
    check_size(path, *image.size, max_pixels)
    try:
        image.load()
        orientation = read_orientation(image)
        image = image.convert(fmt if fmt == "L" else "RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageDecodeError(path, f"not a readable image ({e})") from e
    array = np.asarray(image)
    if fmt == "L":
        array = array[:, :, None]
    elif fmt == "BGR":
        array = array[:, :, ::-1]
    return orient_pixels(array, orientation)


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
    data = read_bytes(path)
    if is_jpeg(data):
        turbo = turbojpeg_decoder()
        if turbo is not None:
            array = _decode_turbo(turbo, data, path, format, max_pixels)
            if array is not None:
                orientation = jpeg_orientation(data, path)
                if format == "L":
                    # Pillow's RGB -> L weights, as Detectron2's read_image applies them.
                    array = np.asarray(Image.fromarray(array).convert("L"))[:, :, None]
                return orient_pixels(array, orientation)
    else:
        _warn_once(
            "not-jpeg",
            f"freqdet: {str(path)!r} is not a JPEG; non-JPEG images are decoded with Pillow "
            "(this warning is shown once).",
        )
    return _decode_pillow(data, path, format, max_pixels)
