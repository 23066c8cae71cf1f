"""JPEG's colour transform: full-range BT.601 YCbCr, the JFIF equations (ITU-T T.871) libjpeg uses.

Y  =  0.299    R + 0.587    G + 0.114    B
Cb = -0.168736 R - 0.331264 G + 0.5      B + 128
Cr =  0.5      R - 0.418688 G - 0.081312 B + 128
"""

import numpy as np

RGB_TO_YCBCR = np.array(
    [
        [0.299, 0.587, 0.114],
        [-0.168736, -0.331264, 0.5],
        [0.5, -0.418688, -0.081312],
    ]
)
YCBCR_OFFSET = np.array([0.0, 128.0, 128.0])
YCBCR_TO_RGB = np.linalg.inv(RGB_TO_YCBCR)

COLOR_FORMATS = ("RGB", "BGR")


def check_format(fmt: str) -> str:
    """Validate a 3-channel colour order name; returns it."""
    if fmt not in COLOR_FORMATS:
        raise ValueError(f"colour format must be one of {COLOR_FORMATS}, got {fmt!r}")
    return fmt


def _check_image(image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {image.shape}")
    return image


def rgb_to_ycbcr(image, input_format: str = "RGB") -> np.ndarray:
    """(H, W, 3) RGB or BGR image (uint8 or float, 0..255) -> float32 (H, W, 3) Y, Cb, Cr.

    Values are not rounded, so they are the exact JFIF transform; a JPEG encoder rounds
    them to uint8 before its DCT.
    """
    rgb = _check_image(image).astype(np.float64)
    if check_format(input_format) == "BGR":
        rgb = rgb[..., ::-1]
    return (rgb @ RGB_TO_YCBCR.T + YCBCR_OFFSET).astype(np.float32)


def ycbcr_to_rgb(ycbcr, output_format: str = "RGB") -> np.ndarray:
    """Inverse of :func:`rgb_to_ycbcr`: float32 (H, W, 3) in RGB or BGR, neither clipped nor rounded."""
    rgb = (_check_image(ycbcr).astype(np.float64) - YCBCR_OFFSET) @ YCBCR_TO_RGB.T
    if check_format(output_format) == "BGR":
        rgb = rgb[..., ::-1]
    return rgb.astype(np.float32)
