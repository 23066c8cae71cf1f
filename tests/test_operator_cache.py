"""The operator caches hold at most their bytes, least recently used out first."""

import numpy as np
import pytest
import torch

from freqdet.dct import operators
from freqdet.dct.cache import byte_bounded_cache, held_bytes


def test_a_byte_bounded_cache_keeps_what_fits_and_drops_the_least_recently_used():
    built = []

    @byte_bounded_cache(1000)
    def block(n: int, fill: float = 0.0):
        built.append((n, fill))
        return (np.full(n, fill, dtype=np.uint8), torch.zeros(n // 2, dtype=torch.uint8), n)

    assert held_bytes(block(400)) == 600 and block.cache_info().bytes == 600
    assert block(400) is block(400) and built == [(400, 0.0)]
    block(200, fill=1.0)  # 900 bytes held
    block(400)  # used again: the 200 one is now the least recent
    block(100)  # 1050 > 1000: the 200 one goes
    info = block.cache_info()
    assert (info.entries, info.bytes, info.max_bytes) == (2, 750, 1000)
    block(200, fill=1.0)
    assert built[-1] == (200, 1.0)  # built again
    big = block(800)  # 1200 bytes: returned, never kept
    assert len(big[0]) == 800 and block.cache_info().bytes <= 1000
    block(800)
    assert built.count((800, 0.0)) == 2
    assert block.cache_info().hits == 3 and block.cache_info().misses == len(built)
    block.cache_clear()
    assert block.cache_info() == (0, 0, 0, 0, 1000)
    with pytest.raises(TypeError, match="unhashable"):
        block([3])  # arguments must be hashable, as functools.lru_cache takes them


def test_large_scale_jitter_cannot_fill_the_operator_caches(monkeypatch):
    """Operators of ever new scales (as ResizeScale 0.1-2.0 draws them) stay within the budget,
    while an operator that repeats is read back rather than rebuilt."""
    budget = 2 << 20
    for name in ("kernel_operator", "banded_operator"):
        function = getattr(operators, name).__wrapped__
        monkeypatch.setattr(operators, name, byte_bounded_cache(budget)(function))
    rng = np.random.default_rng(0)
    sizes = rng.choice(np.arange(100, 2048), 150, replace=False)  # each scale once
    freqs = (0, 1, 2, 3)
    for n_out in sizes:
        window = (0, min(int(n_out), 1024), 1024)
        kernel = operators.kernel_operator(640, False, int(n_out), False, 2, window, freqs, True)
        banded = operators.banded_operator(640, True, int(n_out), True, 2, window, freqs)
        assert kernel.cells == 256 and banded.blocks.shape[1] == operators.CHUNK * len(freqs)
    for name in ("kernel_operator", "banded_operator"):
        info = getattr(operators, name).cache_info()
        assert 0 < info.bytes <= budget and info.misses == len(sizes) and info.entries < len(sizes), (name, info)
    last = (640, False, int(sizes[-1]), False, 2, (0, min(int(sizes[-1]), 1024), 1024), freqs, True)
    assert operators.kernel_operator(*last) is operators.kernel_operator(*last)
    assert operators.kernel_operator.cache_info().hits == 2
