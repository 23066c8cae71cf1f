"""EXIF orientation: one table, applied to pixel arrays and to DCT coefficient grids.

Each orientation (1..8) is a transpose, then a left-right mirror, then a top-bottom
mirror, of the stored picture; the result is what Pillow's ``ImageOps.exif_transpose``
and Detectron2's ``read_image`` give. On pixels that is an index permutation. On a grid of
8x8 block coefficients ``(rows, cols, 64)`` (k = 8u + v) a transpose also swaps u and v,
and a mirrored block negates its odd frequencies along that axis; both are exact when
the image size is a multiple of the block size.
"""

from typing import Optional, Tuple

import numpy as np
from PIL import Image

ORIENTATION_TAG = 0x0112
# orientation -> (transpose, mirror left-right, mirror top-bottom), applied in that order
ORIENTATION_FLIPS = {
    1: (False, False, False),
    2: (False, True, False),
    3: (False, True, True),
    4: (False, False, True),
    5: (True, False, False),
    6: (True, True, False),
    7: (True, True, True),
    8: (True, False, True),
}
_ODD = np.arange(8) % 2 == 1
_V_ODD = np.tile(_ODD, 8)  # k = 8u + v with v odd
_U_ODD = np.repeat(_ODD, 8)  # k = 8u + v with u odd
_TRANSPOSED = np.arange(64).reshape(8, 8).T.reshape(-1)  # k = 8u + v -> 8v + u


def read_orientation(image: Image.Image) -> Optional[int]:
    """The EXIF orientation tag of an opened image, read as Detectron2's ``_apply_exif_orientation`` reads it."""
    if not hasattr(image, "getexif"):
        return None
    try:
        exif = image.getexif()
    except Exception:  # Detectron2 ignores unreadable EXIF the same way (its issue #1885)
        return None
    return exif.get(ORIENTATION_TAG) if exif is not None else None


def orientation_flips(orientation: Optional[int]) -> Tuple[bool, bool, bool]:
    """(transpose, hflip, vflip) of an orientation; unknown or missing ones change nothing."""
    return ORIENTATION_FLIPS.get(orientation, ORIENTATION_FLIPS[1])


def orient_pixels(array: np.ndarray, orientation: Optional[int]) -> np.ndarray:
    """Apply an EXIF orientation to an (H, W, C) array; returns a contiguous array."""
    transpose, hflip, vflip = orientation_flips(orientation)
    if transpose:
        array = array.transpose(1, 0, 2)
    if hflip:
        array = array[:, ::-1]
    if vflip:
        array = array[::-1]
    return np.ascontiguousarray(array)


def flip_coefficients(grid: np.ndarray, hflip: bool, vflip: bool) -> np.ndarray:
    """Mirror a (rows, cols, 64) block grid; a mirrored block negates its odd frequencies along that axis."""
    if hflip:
        grid = np.where(_V_ODD, -grid, grid)[:, ::-1]
    if vflip:
        grid = np.where(_U_ODD, -grid, grid)[::-1]
    return np.ascontiguousarray(grid)


def orient_coefficients(grid: np.ndarray, orientation: Optional[int]) -> np.ndarray:
    """Apply an EXIF orientation to a (rows, cols, 64) block grid, as :func:`orient_pixels` to pixels."""
    transpose, hflip, vflip = orientation_flips(orientation)
    if transpose:
        grid = grid.transpose(1, 0, 2)[:, :, _TRANSPOSED]
    return flip_coefficients(grid, hflip, vflip)
