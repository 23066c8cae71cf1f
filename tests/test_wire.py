"""Wire formats: int16 is the rounded reference, int8 stays within half a step and never clips."""

import numpy as np
import pytest
import torch

from freqdet.dct import CELL, channel_indices, upscaled_dct
from freqdet.dct.operators import axis_operator, taps
from freqdet.dct.wire import decode, encode, int8_steps


def interior_kernel(chroma: bool) -> np.ndarray:
    """(8, taps): the weights of an interior cell's operator along one axis, row u weighing the
    pixels 4i-1 .. 4i+4 into frequency u of cell i (cell 1 of a 3-cell axis touches no border)."""
    op = axis_operator(3 * CELL, chroma)
    kernel = np.zeros((8, taps()))
    kernel[:, op.index[1] - (CELL - 1)] = op.weights[:, 1]
    return kernel


@pytest.fixture
def coeffs(photo_rgb):
    image = photo_rgb[:200, :160]
    return image, upscaled_dct(image, 64, "RGB")


def wire_of(image: np.ndarray, selection, dtype: str) -> torch.Tensor:
    return encode(torch.from_numpy(image.copy()).permute(2, 0, 1)[None], selection, "RGB", dtype)[0]


def test_int16_is_the_rounded_reference(coeffs):
    image, reference = coeffs
    wire = wire_of(image, channel_indices(64), "int16")
    assert wire.dtype == torch.int16 and wire.element_size() == 2
    near_tie = np.abs(np.abs(reference - np.trunc(reference)) - 0.5) < 1e-2  # float-tolerance ties
    assert np.array_equal(wire.numpy()[~near_tie], np.rint(reference)[~near_tie])


def test_int8_error_is_at_most_half_a_step(coeffs):
    image, reference = coeffs
    selection = channel_indices(64)
    wire = wire_of(image, selection, "int8")
    assert wire.dtype == torch.int8 and wire.element_size() == 1
    back = decode(wire, selection).numpy()
    steps = int8_steps(selection).reshape(-1, 1, 1)
    assert np.all(np.abs(back - reference) <= steps / 2 + 2e-3)
    assert 7.9 < int8_steps([0])[0] < 8.2  # the DC step is about one grey level of a cell's mean


@pytest.mark.parametrize("index", [0, 9, 27, 63, 64, 73, 191])
def test_int8_never_clips_even_the_worst_interior_image(index):
    # The image that maximizes one coefficient of an interior cell: extreme pixels in the
    # sign pattern of its interior kernel.
    component, k = divmod(index, 64)
    kernel = interior_kernel(component > 0)
    sign = np.sign(np.outer(kernel[k // 8], kernel[k % 8]))
    plane = np.full((24, 24), 128.0)
    plane[7:13, 7:13] = np.where(sign > 0, 255.0, 0.0)  # the taps of cell (2, 2)
    image = np.zeros((24, 24, 3), np.uint8)
    if component == 0:
        image[:] = plane[..., None]
    else:
        image[..., 2 if component == 1 else 0] = plane  # blue drives Cb, red drives Cr
    reference = upscaled_dct(image, [index], "RGB")
    wire = wire_of(image, [index], "int8")
    assert np.abs(wire.numpy()).max() <= 127
    np.testing.assert_allclose(decode(wire, [index]).numpy(), reference, atol=int8_steps([index])[0] / 2 + 2e-3)


def test_float32_is_the_reference_and_unknown_dtypes_are_refused(coeffs):
    image, reference = coeffs
    wire = wire_of(image, channel_indices(64), "float32")
    assert wire.dtype == torch.float32
    np.testing.assert_allclose(wire.numpy(), reference, atol=2e-3, rtol=1e-5)
    with pytest.raises(ValueError, match="wire dtype"):
        wire_of(image, channel_indices(64), "int4")


def test_int8_never_clips_on_random_extreme_images(rng):
    selection = list(range(192))
    for shape in [(13, 21), (30, 42), (7, 9)]:
        image = rng.choice([0, 255], size=shape + (3,)).astype(np.uint8)
        reference = upscaled_dct(image, selection, "RGB")
        steps = int8_steps(selection).reshape(-1, 1, 1)
        assert np.abs(reference / steps).max() <= 127.0 + 1e-6
