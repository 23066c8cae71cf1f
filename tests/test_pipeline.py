"""upscaled_dct: the paper's detection pipeline, checked against first principles and torch."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from freqdet.dct import (
    block_dct,
    channel_indices,
    rgb_to_ycbcr,
    upsample_bilinear,
    upscaled_dct,
    upscaled_idct,
)


@pytest.mark.parametrize("factor", [2, 4])
def test_upsampling_is_torchs_bilinear(rng, factor):
    plane = rng.uniform(0, 255, (13, 22))
    expected = F.interpolate(
        torch.from_numpy(plane)[None, None], scale_factor=factor, mode="bilinear", align_corners=False
    )
    np.testing.assert_allclose(upsample_bilinear(plane, factor), expected[0, 0].numpy(), atol=1e-9)


@pytest.mark.parametrize("shape", [(32, 48), (30, 42), (31, 45), (5, 3)])
def test_output_grid(rng, shape):
    image = rng.integers(0, 256, shape + (3,)).astype(np.uint8)
    out = upscaled_dct(image, 24)
    assert out.dtype == np.float32
    assert out.shape == (24, -(-shape[0] // 4), -(-shape[1] // 4))


def test_flat_colour_has_only_dc_and_the_jfif_values():
    # JFIF values of pure red: Y = 76.245, Cb = 84.97, Cr = 255.5. A flat 8x8 block of
    # value s has DC = 8 * (s - 128) and no AC.
    image = np.zeros((16, 24, 3), np.uint8)
    image[..., 2] = 255  # BGR red
    out = upscaled_dct(image, 192, "BGR")
    dc = out[[0, 64, 128]].reshape(3, -1)
    for component, value in enumerate((76.245, 84.97, 255.5)):
        np.testing.assert_allclose(dc[component], 8 * (value - 128), atol=0.02)
    ac = np.delete(out, [0, 64, 128], axis=0)
    assert np.abs(ac).max() < 1e-3


def test_cell_ij_covers_pixels_4i_to_4i_plus_4():
    image = np.zeros((64, 64, 3), np.uint8)
    image[20:24, 36:40] = (0, 0, 255)  # red (BGR) on the 4x4 pixels of cell (5, 9)
    dc_y = upscaled_dct(image, [0])[0]
    assert np.unravel_index(np.argmax(dc_y), dc_y.shape) == (5, 9)
    dc_cr = upscaled_dct(image, [128])[0]
    assert np.unravel_index(np.argmax(np.abs(dc_cr - dc_cr[0, 0])), dc_cr.shape) == (5, 9)


def test_horizontal_stripes_are_vertical_frequency():
    rows = np.arange(64)[:, None, None] * np.ones((1, 64, 3))
    stripes = (128 + 100 * np.cos(np.pi * rows / 4)).astype(np.uint8)  # period 8 pixels down
    out = upscaled_dct(stripes, range(64))
    energy = (out**2).mean(axis=(1, 2))
    energy[0] = 0
    u, v = divmod(int(np.argmax(energy)), 8)
    assert v == 0 and u > 0
    transposed = upscaled_dct(stripes.transpose(1, 0, 2).copy(), range(64))
    energy_t = (transposed**2).mean(axis=(1, 2))
    energy_t[0] = 0
    assert divmod(int(np.argmax(energy_t)), 8) == (v, u)


def test_luma_is_the_dct_of_the_2x_upscaled_y_plane(photo_rgb):
    image = photo_rgb[:100, :120]
    y2 = F.interpolate(
        torch.from_numpy(rgb_to_ycbcr(image)[..., 0]).double()[None, None],
        scale_factor=2,
        mode="bilinear",
        align_corners=False,
    )
    expected = block_dct(y2[0, 0].numpy()).transpose(2, 0, 1)
    np.testing.assert_allclose(upscaled_dct(image, range(64), "RGB"), expected, atol=1e-2)


def test_chroma_is_the_dct_of_the_4x_upscaled_then_420_plane(photo_rgb):
    image = photo_rgb[:100, :120]
    cb = torch.from_numpy(rgb_to_ycbcr(image)[..., 1]).double()[None, None]
    cb4 = F.interpolate(cb, scale_factor=4, mode="bilinear", align_corners=False)
    expected = block_dct(F.avg_pool2d(cb4, 2)[0, 0].numpy()).transpose(2, 0, 1)
    np.testing.assert_allclose(upscaled_dct(image, range(64, 128), "RGB"), expected, atol=1e-2)


def test_selection_picks_rows_of_the_full_transform(photo_rgb):
    image = photo_rgb[::3, ::3]
    full = upscaled_dct(image, 192, "RGB")
    for n, pattern in ((24, "square"), (32, "triangle")):
        selection = channel_indices(n, pattern)
        np.testing.assert_array_equal(upscaled_dct(image, n, "RGB", pattern=pattern), full[list(selection)])
    np.testing.assert_array_equal(upscaled_dct(image, [130, 3], "RGB"), full[[3, 130]])


def test_bgr_and_rgb_agree(photo_rgb):
    image = photo_rgb[:64, :64]
    np.testing.assert_array_equal(upscaled_dct(image, 24, "RGB"), upscaled_dct(image[..., ::-1], 24, "BGR"))


def test_inverse_from_all_channels_is_close_to_the_image(photo_rgb):
    image = photo_rgb[::2, ::2]
    back = upscaled_idct(upscaled_dct(image, 192, "RGB"), 192, image.shape[:2], "RGB")
    assert back.shape == image.shape
    # Only the 2x2-mean resampling blurs it: a small mean error, exact on smooth images.
    assert np.abs(back - image).mean() < 4.0
    ramp = np.broadcast_to(np.linspace(20, 220, 48)[None, :, None], (40, 48, 3)).astype(np.float64)
    ramp_back = upscaled_idct(upscaled_dct(ramp, 192, "RGB"), 192, ramp.shape[:2], "RGB")
    np.testing.assert_allclose(ramp_back[:, 2:-2], ramp[:, 2:-2], atol=1e-3)


def test_fewer_channels_lose_detail_monotonically(photo_rgb):
    image = photo_rgb[::2, ::2]
    errors = []
    for n in (24, 64, 192):
        back = upscaled_idct(upscaled_dct(image, n, "RGB"), n, image.shape[:2], "RGB")
        errors.append(np.abs(back - image).mean())
    assert errors[0] > errors[1] > errors[2]


def test_classification_input_is_y_as_it_is_and_chroma_at_2x(photo_rgb):
    """luma_upscale=1: Y at the image's size, Cb/Cr upscaled 2x then 4:2:0, on 8-pixel cells."""
    image = photo_rgb[:100, :120]
    out = upscaled_dct(image, 192, "RGB", luma_upscale=1)
    assert out.shape == (192, 13, 15)
    ycbcr = rgb_to_ycbcr(image)
    np.testing.assert_allclose(out[:64], block_dct(ycbcr[..., 0]).transpose(2, 0, 1), atol=1e-2)
    cr = torch.from_numpy(ycbcr[..., 2]).double()[None, None]
    cr2 = F.avg_pool2d(F.interpolate(cr, scale_factor=2, mode="bilinear", align_corners=False), 2)
    np.testing.assert_allclose(out[128:], block_dct(cr2[0, 0].numpy()).transpose(2, 0, 1), atol=1e-2)
