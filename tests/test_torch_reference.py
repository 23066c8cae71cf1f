"""Two independent writings of the paper's pipeline agree: the numpy reference (freqdet.dct)
and the torch oracle of tests/torch_reference.py (F.interpolate, avg_pool2d), on the CPU and
on CUDA when there is one."""

import numpy as np
import pytest
import torch
import torch_reference as batched

from freqdet import dct

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def to_nchw(images, device):
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).to(device)


@pytest.mark.parametrize("device", DEVICES)
def test_colour(photo_rgb, device):
    images = [photo_rgb[:96, :80], photo_rgb[200:296, 100:180]]
    for fmt in ("RGB", "BGR"):
        out = batched.rgb_to_ycbcr(to_nchw(images, device), fmt).cpu().numpy()
        for n, image in enumerate(images):
            np.testing.assert_allclose(out[n].transpose(1, 2, 0), dct.rgb_to_ycbcr(image, fmt), atol=1e-3)
        back = batched.ycbcr_to_rgb(torch.from_numpy(out).to(device), fmt).cpu().numpy()
        np.testing.assert_allclose(back, to_nchw(images, "cpu").numpy(), atol=1e-2)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(2, 3, 40, 56), (1, 1, 37, 45), (5, 16, 16)])
def test_block_dct_and_inverse(rng, device, shape):
    planes = rng.uniform(0, 255, shape).astype(np.float32)
    coeffs = batched.block_dct(torch.from_numpy(planes).to(device))
    h, w = shape[-2:]
    assert coeffs.shape == shape[:-2] + (64, -(-h // 8), -(-w // 8))
    flat_planes = planes.reshape(-1, h, w)
    flat_coeffs = coeffs.reshape(-1, 64, *coeffs.shape[-2:]).cpu().numpy()
    for plane, c in zip(flat_planes, flat_coeffs):
        np.testing.assert_allclose(c.transpose(1, 2, 0), dct.block_dct(plane), atol=2e-3, rtol=1e-5)
    back = batched.block_idct(coeffs).cpu().numpy()
    np.testing.assert_allclose(back[..., :h, :w], planes, atol=2e-3)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels", [24, [0, 70, 191], 192])
@pytest.mark.parametrize("luma_upscale", [2, 1])
def test_upscaled_dct(photo_rgb, device, channels, luma_upscale):
    images = [photo_rgb[:120, :88], photo_rgb[300:420, 200:288]]
    out = batched.upscaled_dct(to_nchw(images, device), channels, "RGB", luma_upscale=luma_upscale)
    for n, image in enumerate(images):
        expected = dct.upscaled_dct(image, channels, "RGB", luma_upscale=luma_upscale)
        assert out.shape[1:] == expected.shape
        np.testing.assert_allclose(out[n].cpu().numpy(), expected, atol=2e-2, rtol=1e-5)


def test_float64_stays_float64(rng):
    planes = torch.from_numpy(rng.uniform(0, 255, (16, 16)))
    assert batched.block_dct(planes).dtype == torch.float64


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        batched.rgb_to_ycbcr(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="64"):
        batched.block_idct(torch.zeros(1, 63, 2, 2))
