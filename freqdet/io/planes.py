"""A JPEG's own Y, Cb and Cr planes: libjpeg-turbo's decode without upsampling or colour conversion.

A JPEG stores full-range YCbCr (the colour transform of :mod:`freqdet.dct.color`), its
chroma usually subsampled 2:1 along one or both axes. Decoding it to BGR upsamples the
chroma, converts every pixel to BGR and rounds and clamps to uint8; the DCT transform then
converts back to YCbCr. :func:`read_planes` skips both conversions: it hands out the planes
as the file holds them (PyTurboJPEG's ``decode_to_yuv_planes``), and the transform reads the
chroma planes through libjpeg's upsampling filter folded into its operators
(:func:`freqdet.dct.operators.axis_operator`'s ``subsampled``). The coefficients are those of
the file's own YCbCr, before the rounding and clamping of the BGR pixels (which moves luma
coefficients by a fraction of a unit on average and by up to about 30 where colours clip).
"""

import warnings
from typing import NamedTuple, Optional, Tuple

import numpy as np

from .exif import orientation_flips, read_orientation
from .header import MAX_IMAGE_PIXELS, ImageDecodeError, check_size, is_jpeg, open_header, read_bytes
from .pixels import turbojpeg_decoder


class YCbCrPlanes(NamedTuple):
    """A picture's Y plane, (H, W) uint8, and its Cb and Cr planes, each (ceil(H / sub[0]),
    ceil(W / sub[1])) uint8 for chroma ``subsampling`` = sub of 1 or 2 per axis (rows, columns),
    or None for a greyscale picture (whose Cb and Cr are 128 everywhere)."""

    y: np.ndarray
    cb: Optional[np.ndarray]
    cr: Optional[np.ndarray]
    subsampling: Tuple[int, int]

    @property
    def shape(self) -> Tuple[int, int]:
        """(H, W) in pixels."""
        return tuple(self.y.shape)

    def oriented(self, orientation: Optional[int]) -> Optional["YCbCrPlanes"]:
        """The planes of the picture shown in EXIF ``orientation`` (:mod:`.exif`), each contiguous;
        None where a mirror would move chroma samples off their pixels (a mirrored axis of an odd
        number of pixels whose chroma is subsampled: its last sample covers one pixel, not two)."""
        transpose, hflip, vflip = orientation_flips(orientation)
        if not (transpose or hflip or vflip):
            return self
        planes, (sub_h, sub_w), (height, width) = [self.y, self.cb, self.cr], self.subsampling, self.shape
        if transpose:
            planes = [p.T if p is not None else None for p in planes]
            sub_h, sub_w, height, width = sub_w, sub_h, width, height
        if (hflip and sub_w == 2 and width % 2) or (vflip and sub_h == 2 and height % 2):
            return None
        if hflip:
            planes = [p[:, ::-1] if p is not None else None for p in planes]
        if vflip:
            planes = [p[::-1] if p is not None else None for p in planes]
        y, cb, cr = (np.ascontiguousarray(p) if p is not None else None for p in planes)
        return YCbCrPlanes(y, cb, cr, (sub_h, sub_w))


# libjpeg-turbo's chroma subsampling codes (turbojpeg.TJSAMP_*) -> factors (rows, columns);
# 4:1:1 and 4:4:1 (factors of 4) are read as BGR instead.
_SUBSAMPLING = {0: (1, 1), 1: (1, 2), 2: (2, 2), 4: (2, 1)}
_GREY = 3


def read_planes(path, max_pixels: Optional[int] = MAX_IMAGE_PIXELS) -> Optional[YCbCrPlanes]:
    """A JPEG file's Y, Cb and Cr planes as stored, EXIF orientation applied (:class:`YCbCrPlanes`).

    None where the file is not a JPEG, libjpeg-turbo's TurboJPEG library is unavailable, or the
    JPEG is not YCbCr or greyscale with chroma subsampled by 1 or 2 per axis, or its EXIF
    orientation mirrors an odd-sized subsampled axis: :func:`freqdet.io.read_image` reads those.
    Raises :class:`ImageDecodeError` as ``read_image`` does (missing, corrupt or truncated
    files, more than ``max_pixels`` pixels).
    """
    data = read_bytes(path)
    turbo = turbojpeg_decoder() if is_jpeg(data) else None
    if turbo is None:
        return None
    import turbojpeg as tj

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            width, height, subsampling, colorspace = turbo.decode_header(data)
            check_size(path, width, height, max_pixels)
            if colorspace not in (tj.TJCS_YCbCr, tj.TJCS_GRAY) or (
                subsampling != _GREY and subsampling not in _SUBSAMPLING
            ):
                return None
            if subsampling == _GREY:  # the Y plane is the greyscale picture
                planes = [turbo.decode(data, pixel_format=tj.TJPF_GRAY, flags=tj.TJFLAG_STOPONWARNING)[:, :, 0]]
            else:
                planes = turbo.decode_to_yuv_planes(data, flags=tj.TJFLAG_STOPONWARNING)
        except OSError as e:
            raise ImageDecodeError(path, f"corrupt or unsupported JPEG ({e})") from e
    if caught:  # libjpeg fills the rest of a truncated or corrupt file with grey: never used
        raise ImageDecodeError(path, f"corrupt JPEG data ({caught[0].message})")
    factors = _SUBSAMPLING.get(subsampling, (1, 1))
    # Planes come padded to whole MCUs (the luma of a 4:2:0 picture of odd width has one more column).
    y = planes[0][:height, :width]
    if len(planes) == 1:
        cb = cr = None
    else:
        size = (-(-height // factors[0]), -(-width // factors[1]))
        cb, cr = (p[: size[0], : size[1]] for p in planes[1:])
    try:
        orientation = read_orientation(open_header(data, path))
    except ImageDecodeError:
        orientation = None
    return YCbCrPlanes(y, cb, cr, factors).oriented(orientation)
