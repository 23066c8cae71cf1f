"""A JPEG's own Y, Cb and Cr planes: libjpeg-turbo's decode without upsampling or colour conversion.

A JPEG stores full-range YCbCr (the colour transform of :mod:`freqdet.dct.color`), its
chroma usually subsampled 2:1 along one or both axes. Decoding it to BGR upsamples the
chroma, converts every pixel to BGR and rounds and clamps to uint8; the DCT transform then
converts back to YCbCr. :func:`read_planes` skips both conversions: it hands out the planes
as the file holds them (PyTurboJPEG's ``decode_to_yuv_planes``), and the transform reads the
chroma planes through libjpeg's upsampling filter folded into its operators
(:func:`freqdet.dct.operators.axis_operator`'s ``subsampled``). The coefficients are those of
the file's own YCbCr, before the rounding and clamping of the BGR pixels (which moves luma
coefficients by a fraction of a unit on average and by tens of units where colours clip).
"""

from typing import NamedTuple, Optional, Tuple

import numpy as np

from .exif import orientation_flips
from .header import MAX_IMAGE_PIXELS, is_jpeg, read_bytes
from .pixels import decode_strictly, jpeg_orientation, turbojpeg_decoder


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

    def decode(width, height, subsampling, colorspace):
        if colorspace not in (tj.TJCS_YCbCr, tj.TJCS_GRAY) or (
            subsampling != _GREY and subsampling not in _SUBSAMPLING
        ):
            return None
        if subsampling == _GREY:  # the Y plane is the greyscale picture
            y = turbo.decode(data, pixel_format=tj.TJPF_GRAY, flags=tj.TJFLAG_STOPONWARNING)[:, :, 0]
            return YCbCrPlanes(y, None, None, (1, 1))
        planes = turbo.decode_to_yuv_planes(data, flags=tj.TJFLAG_STOPONWARNING)
        # Planes come padded to whole MCUs (the luma of a 4:2:0 picture of odd width has one more column).
        rows, cols = _SUBSAMPLING[subsampling]
        cb, cr = (p[: -(-height // rows), : -(-width // cols)] for p in planes[1:])
        return YCbCrPlanes(planes[0][:height, :width], cb, cr, (rows, cols))

    planes = decode_strictly(turbo, data, path, max_pixels, decode)
    return planes.oriented(jpeg_orientation(data, path)) if planes is not None else None
