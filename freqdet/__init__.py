"""freqdet: Detectron2 models that learn in the frequency domain (Xu et al., CVPR 2020).

:mod:`freqdet.dct` holds the frequency math (numpy/torch only); :func:`read_image` decodes
JPEGs with libjpeg-turbo and raises :class:`ImageDecodeError` for files it cannot decode.
"""
from .image_io import ImageDecodeError, read_image

__version__ = "0.1.0"

__all__ = ["ImageDecodeError", "read_image", "__version__"]
