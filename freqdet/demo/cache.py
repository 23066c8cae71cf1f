"""Where generated data lives, and how a folder of it appears: complete, or not at all."""

import os
import shutil
import tempfile
from typing import Callable


def cache_root() -> str:
    """``$FREQDET_CACHE``, default ``~/.cache/freqdet``."""
    return os.path.expanduser(os.environ.get("FREQDET_CACHE", os.path.join("~", ".cache", "freqdet")))


def stage(root: str, build: Callable[[str], None], ready: Callable[[str], bool]) -> str:
    """Make ``root`` with ``build(folder)`` unless ``ready(root)`` already; returns ``root``.

    ``build`` writes into a temporary folder beside ``root`` that is renamed into place, so
    a killed run leaves no half-made folder and concurrent first uses are safe (the loser
    of the rename accepts the winner's folder).
    """
    if ready(root):
        return root
    parent = os.path.dirname(os.path.abspath(root))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(root)}-", dir=parent)
    try:
        build(staging)
        try:
            os.rename(staging, root)
        except OSError:
            if not ready(root):
                raise
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging)
    return root
