"""Third-party deprecation notices that every run of freqdet would print, and a switch for them.

fvcore (Detectron2's dependency) decorates functions with ``torch.jit.script`` at import,
which torch 2.x deprecates, Detectron2's anchor generator calls ``torch.meshgrid`` without
``indexing``, and Detectron2's LazyConfig loader imports ``pkg_resources``, which setuptools
deprecates. None is about the user's code nor about freqdet's.
"""

import warnings

KNOWN_NOISE = (
    (FutureWarning, r"`torch\.jit\.script` is deprecated"),
    (UserWarning, r"torch\.meshgrid: in an upcoming release"),
    (UserWarning, r"pkg_resources is deprecated as an API"),
)


def quiet_known_warnings() -> None:
    """Ignore :data:`KNOWN_NOISE` from now on (inside a ``warnings.catch_warnings()`` block:
    until it ends). freqdet's tools call it; ``import freqdet`` applies it only while it
    imports Detectron2's modules."""
    for category, message in KNOWN_NOISE:
        warnings.filterwarnings("ignore", message=message, category=category)
