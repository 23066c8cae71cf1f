"""A least-recently-used cache bounded by the bytes it holds rather than by its entry count.

The transform's operators depend on an image's size and geometry. Under ResizeShortestEdge a
few sizes repeat and the operators are reused; under large-scale jitter almost every sample
has a new scale, and a cache bounded by entries would fill with operators it never reads
again (thousands of them, megabytes each, in every DataLoader worker). Bounded by bytes, a
cache keeps what fits and drops the least recently used first.
"""

import functools
import threading
from collections import OrderedDict
from typing import Callable, NamedTuple


def held_bytes(value) -> int:
    """The bytes of the arrays and tensors in ``value`` (one, or tuples and lists of them)."""
    if isinstance(value, (tuple, list)):
        return sum(held_bytes(v) for v in value)
    size = getattr(value, "nbytes", 0)  # numpy arrays and torch tensors
    return size if isinstance(size, int) else 0


class CacheInfo(NamedTuple):
    hits: int
    misses: int
    entries: int
    bytes: int
    max_bytes: int


def byte_bounded_cache(max_bytes: int) -> Callable:
    """Decorator: cache a function's results by its arguments (hashable, as ``functools.lru_cache``
    takes them) while their :func:`held_bytes` add up to at most ``max_bytes``; a result larger
    than that is returned and not kept. Thread-safe; ``cache_info()`` and ``cache_clear()`` as
    ``lru_cache`` has them."""

    def decorate(function):
        entries: "OrderedDict[tuple, tuple]" = OrderedDict()
        lock = threading.Lock()
        counts = {"hits": 0, "misses": 0, "bytes": 0}

        @functools.wraps(function)
        def cached(*args, **kwargs):
            key = (args, tuple(sorted(kwargs.items())))
            with lock:
                if key in entries:
                    entries.move_to_end(key)
                    counts["hits"] += 1
                    return entries[key][0]
                counts["misses"] += 1
            value = function(*args, **kwargs)
            size = held_bytes(value)
            if size <= max_bytes:
                with lock:
                    if key not in entries:
                        entries[key] = (value, size)
                        counts["bytes"] += size
                        while counts["bytes"] > max_bytes:
                            _, (_, dropped) = entries.popitem(last=False)
                            counts["bytes"] -= dropped
            return value

        def cache_info() -> CacheInfo:
            with lock:
                return CacheInfo(counts["hits"], counts["misses"], len(entries), counts["bytes"], max_bytes)

        def cache_clear() -> None:
            with lock:
                entries.clear()
                counts.update(hits=0, misses=0, bytes=0)

        cached.cache_info, cached.cache_clear = cache_info, cache_clear
        return cached

    return decorate
