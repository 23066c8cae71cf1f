"""rgb_to_ycbcr / ycbcr_to_rgb against Pillow's JFIF conversion."""

import numpy as np
import pytest
from PIL import Image

from freqdet.dct import rgb_to_ycbcr, ycbcr_to_rgb


def test_matches_pillow_on_a_real_photo(photo_rgb):
    ours = rgb_to_ycbcr(photo_rgb)
    pillow = np.asarray(Image.fromarray(photo_rgb).convert("YCbCr")).astype(np.float32)
    # Pillow truncates a fixed-point result to an integer; ours is the exact value.
    assert np.abs(ours - pillow).max() < 1.01
    assert np.abs(ours - pillow).mean() < 0.6


def test_matches_pillow_on_every_extreme_colour(rng):
    corners = np.array([[r, g, b] for r in (0, 255) for g in (0, 255) for b in (0, 255)], np.uint8)
    image = np.concatenate([corners, rng.integers(0, 256, (1000, 3)).astype(np.uint8)])[None]
    pillow = np.asarray(Image.fromarray(image).convert("YCbCr")).astype(np.float32)
    assert np.abs(rgb_to_ycbcr(image) - pillow).max() < 1.01


def test_bgr_input_is_reversed_rgb(photo_rgb):
    np.testing.assert_array_equal(rgb_to_ycbcr(photo_rgb[..., ::-1], "BGR"), rgb_to_ycbcr(photo_rgb, "RGB"))


def test_round_trip(photo_rgb):
    for fmt, image in (("RGB", photo_rgb), ("BGR", photo_rgb[..., ::-1])):
        back = ycbcr_to_rgb(rgb_to_ycbcr(image, fmt), fmt)
        np.testing.assert_allclose(back, image, atol=1e-3)


def test_refuses_bad_input():
    with pytest.raises(ValueError, match="colour format"):
        rgb_to_ycbcr(np.zeros((2, 2, 3)), "YUV")
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        rgb_to_ycbcr(np.zeros((2, 2)))
