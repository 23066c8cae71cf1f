"""freqdet: Detectron2 models that learn in the frequency domain (Xu et al., CVPR 2020).

:mod:`freqdet.dct` holds the frequency math (numpy/torch only); :func:`read_image` decodes
JPEGs with libjpeg-turbo and raises :class:`ImageDecodeError` for files it cannot decode.
Where Detectron2 is installed, ``import freqdet`` also registers the frequency-domain
backbone and meta-architecture and the demo datasets, and exports
:func:`add_freqdet_config` and :class:`DCTDatasetMapper`.
"""
import importlib.util

from .image_io import ImageDecodeError, read_image

__version__ = "0.1.0"

__all__ = ["ImageDecodeError", "read_image", "__version__"]

if importlib.util.find_spec("detectron2") is not None:
    from . import data, modeling  # noqa: F401  (registers into Detectron2's registries)
    from .config import add_freqdet_config
    from .data import DCTDatasetMapper

    __all__ += ["add_freqdet_config", "DCTDatasetMapper"]
