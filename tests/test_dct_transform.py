"""block_dct / block_idct against scipy's DCT and against the coefficients libjpeg stores."""

import jpeglib
import numpy as np
import pytest
import scipy.fft
from PIL import Image

from freqdet.dct import block_dct, block_idct, dct_matrix, rgb_to_ycbcr


def scipy_block(plane: np.ndarray, i: int, j: int) -> np.ndarray:
    """Coefficient (u, v) at [u, v] of block (i, j), by scipy, after JPEG-style edge padding."""
    h, w = plane.shape
    padded = np.pad(plane.astype(np.float64) - 128, ((0, -h % 8), (0, -w % 8)), mode="edge")
    return scipy.fft.dctn(padded[8 * i : 8 * i + 8, 8 * j : 8 * j + 8], norm="ortho")


def test_dct_matrix_is_scipys_orthonormal_dct():
    m = dct_matrix()
    np.testing.assert_allclose(m, scipy.fft.dct(np.eye(8), norm="ortho", axis=0), atol=1e-12)
    np.testing.assert_allclose(m @ m.T, np.eye(8), atol=1e-12)


@pytest.mark.parametrize("shape", [(8, 8), (16, 24), (37, 45), (1, 1), (7, 9)])
def test_block_dct_matches_scipy_per_block(rng, shape):
    plane = rng.integers(0, 256, shape).astype(np.uint8)
    coeffs = block_dct(plane)
    assert coeffs.shape == (-(-shape[0] // 8), -(-shape[1] // 8), 64)
    assert coeffs.dtype == np.float32
    for i in range(coeffs.shape[0]):
        for j in range(coeffs.shape[1]):
            np.testing.assert_allclose(coeffs[i, j].reshape(8, 8), scipy_block(plane, i, j), atol=2e-3)


def test_block_dct_on_real_photo_matches_scipy(photo_rgb):
    y = rgb_to_ycbcr(photo_rgb)[..., 0]
    coeffs = block_dct(y)
    for i, j in [(0, 0), (10, 20), (74, 63), (40, 5)]:
        np.testing.assert_allclose(coeffs[i, j].reshape(8, 8), scipy_block(y, i, j), atol=2e-3)


def test_level_shift_and_known_dc_values():
    assert np.abs(block_dct(np.full((8, 8), 128, np.uint8))).max() == 0
    flat = block_dct(np.full((8, 8), 255, np.uint8))[0, 0]
    assert flat[0] == pytest.approx(1016.0)
    assert np.abs(flat[1:]).max() < 1e-4


def test_u_is_vertical_and_v_horizontal():
    rows = np.arange(8)[:, None] * np.ones((1, 8))
    # Brightness changing down the rows is vertical frequency: u = 1, v = 0 -> k = 8.
    vertical = block_dct(128 + 10 * np.cos((2 * rows + 1) * np.pi / 16))[0, 0]
    horizontal = block_dct(128 + 10 * np.cos((2 * rows.T + 1) * np.pi / 16))[0, 0]
    assert np.argmax(np.abs(vertical)) == 8
    assert np.argmax(np.abs(horizontal)) == 1


@pytest.mark.parametrize("shape", [(8, 8), (64, 40), (200, 136)])
def test_idct_inverts_dct(rng, shape):
    plane = rng.uniform(0, 255, shape)
    np.testing.assert_allclose(block_idct(block_dct(plane)), plane, atol=1e-3)


def test_idct_of_padded_plane_restores_the_original_and_the_edge_padding(rng):
    plane = rng.integers(0, 256, (13, 21)).astype(np.float64)
    back = block_idct(block_dct(plane))
    assert back.shape == (16, 24)
    np.testing.assert_allclose(back[:13, :21], plane, atol=1e-3)
    np.testing.assert_allclose(back[13:, :21], np.repeat(plane[-1:], 3, axis=0), atol=1e-3)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="2-D plane"):
        block_dct(np.zeros((8, 8, 3)))
    with pytest.raises(ValueError, match="2-D plane"):
        block_dct(np.zeros((0, 8)))
    with pytest.raises(ValueError, match=r"\(h, w, 64\)"):
        block_idct(np.zeros((2, 2, 63)))


def stored_coefficients(path):
    """Quantized coefficients libjpeg stored, as (h, w, 64) per component, and the tables."""
    jpeg = jpeglib.read_dct(str(path))
    planes = [jpeg.Y] + ([jpeg.Cb, jpeg.Cr] if jpeg.has_chrominance else [])
    return [p.reshape(p.shape[0], p.shape[1], 64).astype(np.float32) for p in planes], jpeg.qt


def test_matches_libjpeg_on_grayscale_quality_100(photo_rgb, tmp_path):
    # A crop that is not a multiple of 8 also checks the encoder-style edge padding.
    gray = Image.fromarray(photo_rgb[:203, :317]).convert("L")
    path = tmp_path / "gray_q100.jpg"
    gray.save(path, quality=100)
    (stored,), tables = stored_coefficients(path)
    assert np.all(tables == 1), "quality 100 must store unquantized coefficients"
    ours = block_dct(np.asarray(gray))
    assert ours.shape == stored.shape
    # libjpeg's integer DCT is accurate to within one step of the rounding.
    assert np.abs(np.round(ours) - stored).max() <= 1
    assert np.mean(np.round(ours) == stored) > 0.9


def test_matches_libjpeg_on_colour_444_quality_100(photo_rgb, tmp_path):
    rgb = photo_rgb[:203, :317]
    path = tmp_path / "colour_q100_444.jpg"
    Image.fromarray(rgb).save(path, quality=100, subsampling=0)
    stored, tables = stored_coefficients(path)
    assert np.all(tables == 1)
    # The encoder rounds its YCbCr samples to integers before the DCT; so do we here.
    ycbcr = np.round(rgb_to_ycbcr(rgb))
    for component, theirs in enumerate(stored):
        ours = block_dct(ycbcr[..., component])
        assert ours.shape == theirs.shape
        assert np.abs(np.round(ours) - theirs).max() <= 2, f"component {component}"
        assert np.mean(np.round(ours) == theirs) > 0.9, f"component {component}"
