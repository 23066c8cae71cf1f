"""The channel layout: naming, selection patterns, validation, and the grid channels live on.

Within a colour component, channel ``k = 8 * u + v`` holds coefficient (u, v) of every
block (u vertical, v horizontal frequency; row-major, not zigzag). Across components the
global index is ``64 * component + k`` with Y = 0, Cb = 1, Cr = 2, so 0..191. A selection
is a sorted tuple of global indices.

Grid: the detection input takes Y upscaled 2x (``LUMA_UPSCALE``), so one 8x8 block covers
``CELL`` = 4 pixels of the image along each axis, res2's stride; the classification input
takes Y as it is (``luma_upscale=1``), 8 pixels a cell.
"""

import numbers
from collections import Counter
from functools import lru_cache
from typing import Dict, Iterable, List, Sequence, Tuple, Union

COMPONENTS = ("Y", "Cb", "Cr")
PER_COMPONENT = 64
NUM_CHANNELS = len(COMPONENTS) * PER_COMPONENT
PATTERNS = ("square", "triangle")

LUMA_UPSCALE = 2  # the detection pipeline; the classification pipeline takes Y as it is (1)
CELL = 8 // LUMA_UPSCALE  # pixels of the input image per DCT cell, i.e. the stride of res2


def cell_size(luma_upscale: int = LUMA_UPSCALE) -> int:
    """Pixels per DCT cell: 4 for the detection pipeline (Y at 2x), 8 for classification (Y at 1x)."""
    if luma_upscale not in (1, 2):
        raise ValueError(f"luma_upscale must be 1 (classification) or 2 (detection), got {luma_upscale}")
    return 8 // luma_upscale


def grid_size(height: int, width: int, luma_upscale: int = LUMA_UPSCALE) -> Tuple[int, int]:
    """(rows, cols) of DCT cells of an image of ``height`` x ``width`` pixels (partial cells count)."""
    cell = cell_size(luma_upscale)
    return -(-int(height) // cell), -(-int(width) // cell)


def _spans(*spans: Tuple[int, int]) -> List[int]:
    return [k for lo, hi in spans for k in range(lo, hi + 1)]


# The "square" selections of the official DCTNet release, per component (Y, Cb, Cr share
# the same chroma list). Each is a low-frequency corner of the 8x8 grid.
_SQUARE: Dict[int, Tuple[List[int], List[int]]] = {
    24: (_spans((0, 3), (8, 11), (16, 19), (24, 27)), [0, 1, 8, 9]),
    32: (_spans((0, 4), (8, 12), (16, 20), (24, 27), (32, 34)), [0, 1, 2, 8, 9]),
    48: (
        _spans((0, 5), (8, 13), (16, 21), (24, 29), (32, 35), (40, 43)),
        [0, 1, 2, 8, 9, 10, 16, 17],
    ),
    64: (
        _spans((0, 6), (8, 14), (16, 21), (24, 29), (32, 37), (40, 45), (48, 53)),
        [0, 1, 2, 8, 9, 10, 16, 17, 24, 25],
    ),
}
SUPPORTED_COUNTS = tuple(sorted(_SQUARE)) + (NUM_CHANNELS,)


def zigzag_order() -> List[int]:
    """JPEG's zigzag scan as row-major indices k = 8u + v (0, 1, 8, 16, 9, 2, ...).

    Anti-diagonal s = u + v is walked with u rising when s is odd and falling when s is even.
    """
    cells = [(u, v) for u in range(8) for v in range(8)]
    cells.sort(key=lambda c: (c[0] + c[1], c[0] if (c[0] + c[1]) % 2 else -c[0]))
    return [8 * u + v for u, v in cells]


def channel_indices(n: int, pattern: str = "square") -> Tuple[int, ...]:
    """The sorted global indices of the ``n``-channel selection of a pattern.

    ``"square"`` is the official release's table (n in 24, 32, 48, 64); ``"triangle"``
    keeps the same number of channels per component but takes the lowest ones in zigzag
    order; n = 192 is every channel whatever the pattern.
    """
    if pattern not in PATTERNS:
        raise ValueError(f"unknown channel pattern {pattern!r}; use one of {PATTERNS}")
    if n == NUM_CHANNELS:
        return tuple(range(NUM_CHANNELS))
    if n not in _SQUARE:
        raise ValueError(
            f"no {pattern!r} selection of {n} channels; supported counts are "
            f"{SUPPORTED_COUNTS}, or give an explicit list of indices in 0..{NUM_CHANNELS - 1}"
        )
    luma, chroma = _SQUARE[n]
    if pattern == "triangle":
        zigzag = zigzag_order()
        luma, chroma = zigzag[: len(luma)], zigzag[: len(chroma)]
    per_component = (luma, chroma, chroma)
    return tuple(sorted(PER_COMPONENT * c + k for c, ks in enumerate(per_component) for k in ks))


def validate_channels(indices: Iterable[int]) -> Tuple[int, ...]:
    """Check an explicit selection (integers in 0..191, no repeats, at least one); returns it sorted."""
    values = list(indices)
    if not values:
        raise ValueError("a channel selection needs at least one channel index")
    bad = [i for i in values if not _is_index(i) or not 0 <= int(i) < NUM_CHANNELS]
    if bad:
        raise ValueError(f"channel indices must be integers in 0..{NUM_CHANNELS - 1}; got {bad}")
    values = [int(i) for i in values]
    repeated = sorted(i for i, count in Counter(values).items() if count > 1)
    if repeated:
        raise ValueError(f"channel indices are repeated: {repeated}")
    return tuple(sorted(values))


def _is_index(value) -> bool:
    """True for Python and numpy integers; False for bools, floats and strings."""
    return type(value) is int or (isinstance(value, numbers.Integral) and not isinstance(value, bool))


def resolve_channels(channels: Union[int, Sequence[int]], pattern: str = "square") -> Tuple[int, ...]:
    """A selection from either a channel count (with ``pattern``) or an explicit index list."""
    if _is_index(channels):
        return channel_indices(int(channels), pattern)
    if type(channels) is tuple and all(type(i) is int for i in channels):  # what data loaders pass per image
        return _validated(channels)
    return validate_channels(channels)


@lru_cache(maxsize=64)
def _validated(channels: Tuple) -> Tuple[int, ...]:
    return validate_channels(channels)


def split_by_component(selection: Sequence[int]) -> List[List[int]]:
    """Per component (Y, Cb, Cr), the within-component indices k of a global selection."""
    out: List[List[int]] = [[] for _ in COMPONENTS]
    for i in selection:
        out[i // PER_COMPONENT].append(i % PER_COMPONENT)
    return out
