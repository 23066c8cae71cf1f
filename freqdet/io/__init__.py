"""Reading image files (numpy, Pillow, libjpeg; no Detectron2).

- :func:`read_image`: pixels, JPEG through libjpeg-turbo and everything else through
  Pillow, EXIF orientation applied as Detectron2's ``read_image`` applies it.
- :func:`read_planes`: a JPEG's own Y, Cb and Cr planes, before upsampling and colour
  conversion (:mod:`.planes`), which the data loader transforms.
- :func:`read_jpeg_coefficients`: a JPEG's own quantized DCT coefficients, dequantized,
  without decoding pixels (the C reader ``freqdet.io._jpeg``); :func:`decode_jpeg_coefficients`
  the same for a JPEG in memory.
- :mod:`.exif`: the one EXIF orientation table, for pixels and coefficient grids.
- :mod:`.header`: the size limit checked from the header and :class:`ImageDecodeError`,
  which every failure to read or decode raises.
"""

from .coefficients import JpegCoefficients, decode_jpeg_coefficients, read_jpeg_coefficients
from .header import MAX_IMAGE_PIXELS, ImageDecodeError, InMemory
from .pixels import FORMATS, read_image
from .planes import YCbCrPlanes, read_planes

__all__ = [
    "FORMATS",
    "MAX_IMAGE_PIXELS",
    "ImageDecodeError",
    "InMemory",
    "JpegCoefficients",
    "decode_jpeg_coefficients",
    "read_image",
    "read_jpeg_coefficients",
    "read_planes",
    "YCbCrPlanes",
]
