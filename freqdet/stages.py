"""Where the data path's time goes: per-stage seconds, for ``tools/benchmark.py --stages``.

Code on the data path marks its stages with :class:`stage`, or adds seconds measured
elsewhere (the CPU kernel times its own passes) with :func:`add`. Nothing is measured unless
a :func:`recording` is open; otherwise a mark costs one global lookup.
"""

import time
from contextlib import contextmanager
from typing import Dict, Iterator, Optional

DECODE = "decode (libjpeg-turbo)"
JPEG_COEFFICIENTS = "read the JPEG's coefficients (libjpeg)"
AUGMENTATION = "augmentation (draw the transforms)"
COLOUR = "colour conversion"
PASS_COLUMNS = "transform pass 1 (columns)"
PASS_ROWS = "transform pass 2 (rows) and the wire dtype's stores"
ANNOTATIONS = "annotations"
KERNEL_STAGES = (COLOUR, PASS_COLUMNS, PASS_ROWS)  # the order banded_dct reports them in

_totals: Optional[Dict[str, float]] = None


def active() -> bool:
    """Whether a :func:`recording` is open."""
    return _totals is not None


def add(name: str, seconds: float) -> None:
    """Count ``seconds`` to stage ``name`` (nothing when no recording is open)."""
    if _totals is not None:
        _totals[name] = _totals.get(name, 0.0) + seconds


class stage:
    """``with stage(name):`` counts the block's wall time to ``name`` while a recording is open."""

    __slots__ = ("name", "start")

    def __init__(self, name: str):
        self.name = name
        self.start = None

    def __enter__(self):
        if _totals is not None:
            self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.start is not None:
            add(self.name, time.perf_counter() - self.start)


@contextmanager
def recording() -> Iterator[Dict[str, float]]:
    """Seconds per stage, summed over everything run inside the block (the dict fills as it runs)."""
    global _totals
    previous, _totals = _totals, {}
    try:
        yield _totals
    finally:
        _totals = previous
