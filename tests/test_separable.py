"""The production transform (separable_dct) equals the numpy reference, only computing the kept channels."""

import importlib
import threading

import numpy as np
import pytest
import torch
from helpers import float_resize
from PIL import Image

from freqdet.dct import (
    Geometry,
    channel_indices,
    image_dct,
    kernel_routines,
    resolve_channels,
    separable,
    separable_dct,
    upscaled_dct,
)
from freqdet.dct.wire import encode_image

# "cpu": the C kernel where setup.py built it (the best routines the CPU has: AVX-512, else AVX2
# with FMA); "cpu-avx2": its AVX2 routines, listed where the CPU has AVX-512 too; "cpu-portable":
# its portable routines, what other CPUs run; "cpu-torch": the torch path, as on a GPU.
BEST = separable._banded.use_routines("avx512") if separable._banded is not None else None
KERNEL = ["cpu"] + (["cpu-avx2"] if BEST == "avx512" else []) + ["cpu-portable"]
DEVICES = KERNEL + ["cpu-torch"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture
def on(monkeypatch):
    """The torch device of a DEVICES entry, switching the CPU kernel off or to lesser routines."""
    switched = []

    def select(device: str) -> str:
        if device == "cpu-torch":
            monkeypatch.setattr(separable, "_banded", None)
        elif device in ("cpu-avx2", "cpu-portable") and separable._banded is not None:
            assert separable._banded.use_routines(device[4:]) == device[4:] or BEST == "portable"
            switched.append(device)
        return "cpu" if device.startswith("cpu") else device

    yield select
    if switched:  # the best routines back on, for the tests that follow
        separable._banded.use_routines("avx512")


def test_kernel_routines_names_what_runs(on):
    assert kernel_routines() == (BEST or "torch")
    on("cpu-portable")
    assert kernel_routines() == ("portable" if BEST else "torch")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(64, 96), (30, 42), (31, 45), (5, 3), (1, 1), (203, 317)])
@pytest.mark.parametrize("channels", [24, 64, 192, [3, 77, 130, 191], [64], [0]])
@pytest.mark.parametrize("luma_upscale", [2, 1])
def test_equals_the_reference(rng, on, device, shape, channels, luma_upscale):
    image = rng.integers(0, 256, shape + (3,)).astype(np.uint8)
    expected = upscaled_dct(image, channels, "BGR", luma_upscale=luma_upscale)
    pixels = torch.from_numpy(image).permute(2, 0, 1)[None].to(on(device))
    out = separable_dct(pixels, channels, "BGR", luma_upscale=luma_upscale)
    assert out.shape == (1,) + expected.shape and out.dtype == torch.float32
    np.testing.assert_allclose(out[0].cpu().numpy(), expected, atol=2e-3, rtol=1e-5)


def test_real_photo_batch_and_formats(photo_rgb):
    images = np.stack([photo_rgb[:300, :256], photo_rgb[300:, 256:]])
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2)
    for fmt, batch in (("RGB", pixels), ("BGR", pixels.flip(1))):
        out = separable_dct(batch, channel_indices(32, "triangle"), fmt)
        for n in range(2):
            expected = upscaled_dct(images[n], 32, "RGB", pattern="triangle")
            np.testing.assert_allclose(out[n].numpy(), expected, atol=2e-3, rtol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels", [24, [3, 77, 130, 191]])
@pytest.mark.parametrize("dtype", [torch.int16, torch.int8])
def test_steps_and_integer_output_divide_and_round_the_reference(rng, on, device, channels, dtype):
    image = rng.integers(0, 256, (37, 53, 3)).astype(np.uint8)
    selection = resolve_channels(channels)
    steps = rng.uniform(5.0, 12.0, len(selection))
    expected = upscaled_dct(image, selection, "BGR") / steps[:, None, None]
    pixels = torch.from_numpy(image).permute(2, 0, 1)[None].to(on(device))
    out = separable_dct(pixels, selection, "BGR", dtype=dtype, steps=steps)[0].cpu()
    assert out.dtype == dtype
    out = out.numpy()
    assert np.abs(out - expected).max() <= 0.5 + 1e-3
    clear = np.abs(np.abs(expected - np.floor(expected)) - 0.5) > 1e-2  # not a float-tolerance tie
    np.testing.assert_array_equal(out[clear], np.rint(expected[clear]))


def test_refuses_bad_shapes():
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        separable_dct(torch.zeros(3, 8, 8), 24)


@pytest.mark.parametrize("size", [(333, 283), (120, 101), (57, 400), (200, 170)])
def test_float_resize_is_pillows_up_to_its_rounding(photo_rgb, size):
    image = photo_rgb[:200, :170]
    pil = np.asarray(Image.fromarray(image).resize(size[::-1], Image.BILINEAR)).astype(np.float64)
    # Pillow rounds twice (after its horizontal and its vertical pass).
    assert np.abs(float_resize(image, *size) - pil).max() <= 1.0 + 1e-6


@pytest.mark.parametrize("device", KERNEL + ["cpu-torch"])
@pytest.mark.parametrize("size", [(333, 283), (120, 101), (57, 400), (150, 100), (90, 40)])
@pytest.mark.parametrize("hflip, vflip", [(False, False), (True, False), (False, True)])
def test_absorbed_resize_and_flips_equal_the_reference_on_the_resized_image(photo_rgb, on, device, size, hflip, vflip):
    image = photo_rgb[:200, :170]
    resized = float_resize(image, *size)
    resized = resized[::-1] if vflip else resized
    resized = resized[:, ::-1] if hflip else resized
    expected = upscaled_dct(resized, 24, "RGB")
    pixels = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].to(on(device))
    out = separable_dct(pixels, 24, "RGB", geometry=Geometry(size, hflip, vflip))[0].numpy()
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, atol=2e-3, rtol=1e-5)


@pytest.mark.parametrize("device", KERNEL)
@pytest.mark.parametrize("width", [80, 120, 160, 208, 320])
def test_shrinking_a_wide_image_equals_the_reference(rng, on, device, width):
    """Shrunk 1.6x to 6.4x along the columns, a block of 16 cells reads from 64 to over 256 pixels:
    the kernel's AVX-512 routine picks them from registers, from further loads or by a hardware
    gather, its AVX2 routine transposes 4 to 56 taps per cell; every way, and the portable routine,
    give the reference's numbers."""
    image = rng.integers(0, 256, (64, 512, 3)).astype(np.uint8)
    expected = upscaled_dct(float_resize(image, 40, width)[:, ::-1], 24, "RGB")
    pixels = torch.from_numpy(image).permute(2, 0, 1)[None].to(on(device))
    out = separable_dct(pixels, 24, "RGB", geometry=Geometry((40, width), hflip=True))[0].numpy()
    np.testing.assert_allclose(out, expected, atol=2e-3, rtol=1e-5)


@pytest.mark.parametrize("device", KERNEL)
def test_a_strong_shrink_runs_in_a_thread_with_a_small_stack(rng, on, device):
    """Shrunk 600x along the rows, each cell row reads 4200 image rows: what the kernel keeps per tap
    lies on the heap, not on the stack, and a thread with a stack of 128 KiB transforms the image too."""
    on(device)
    image = rng.integers(0, 256, (19200, 24, 3)).astype(np.uint8)
    expected = upscaled_dct(float_resize(image, 32, 24), 24, "RGB")
    out = []
    thread = threading.Thread(target=lambda: out.append(image_dct(image, 24, "RGB", Geometry((32, 24)))))
    previous = threading.stack_size(128 * 1024)
    try:
        thread.start()  # the stack size of the threads started from now on
    finally:
        threading.stack_size(previous)
    thread.join()
    assert out, "the transform raised in its thread (see the warning above)"
    np.testing.assert_allclose(out[0].numpy(), expected, atol=2e-3, rtol=1e-5)


@pytest.mark.skipif(separable._banded is None, reason="the C kernel is not built")
@pytest.mark.parametrize("device", KERNEL)
def test_column_taps_out_of_order_give_the_same_numbers(photo_rgb, on, device):
    """The AVX2 column pass loads each cell's taps from its first index on, as resizes lay them out;
    the kernel checks that, and for other operators (here the first two taps of every cell swapped,
    the same sum) runs the routine that follows the indices."""
    on(device)
    image = np.ascontiguousarray(photo_rgb[:120, :160])
    selection = resolve_channels(24)
    grid, plans = separable._plans(120, 160, selection, "RGB", Geometry((200, 270)), separable.LUMA_UPSCALE, None)

    def first_two_swapped(col):
        order = [1, 0] + list(range(2, col.index.shape[0]))
        index, weights = col.index[order], col.weights[:, order]
        return col._replace(index=np.ascontiguousarray(index), weights=np.ascontiguousarray(weights))

    swapped = [(colour, row, first_two_swapped(col), *rest) for colour, row, col, *rest in plans]
    expected, out = (np.empty((len(selection), *grid), np.float32) for _ in range(2))
    separable._run_kernel(image, plans, expected)
    separable._run_kernel(image, swapped, out)
    np.testing.assert_allclose(out, expected, atol=1e-3, rtol=1e-5)


@pytest.mark.parametrize("device", KERNEL + ["cpu-torch"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.int16])
def test_image_dct_of_a_decoded_image_equals_the_reference(photo_rgb, on, device, dtype):
    """image_dct, what the mapper runs per image: a decoded (H, W, 3) image (here a view of a larger
    one), its resize, crop, grey pad and flip absorbed, equals the reference on the image so transformed."""
    on(device)
    image = photo_rgb[:150, :170]
    geometry = Geometry((200, 230), hflip=True, crop=(30, 20, 150, 190), pad=(168, 200))
    padded = np.full((168, 200, 3), 128.0)
    padded[:150, :190] = float_resize(image, 200, 230)[30:180, 20:210]
    expected = upscaled_dct(padded[:, ::-1], 24, "RGB")
    out = image_dct(image, 24, "RGB", geometry, dtype=dtype)
    assert out.dtype == dtype and tuple(out.shape) == expected.shape
    np.testing.assert_allclose(out.numpy(), expected, atol=2e-3 if dtype == torch.float32 else 0.5 + 2e-3, rtol=1e-5)


def test_the_cpu_kernel_is_built_and_refuses_bad_arrays():
    """setup.py builds freqdet.dct._banded wherever it builds anything (the tests' set-up has a
    C compiler); it checks what it is given instead of reading out of bounds."""
    try:
        kernel = importlib.import_module("freqdet.dct._banded")
    except ImportError as error:
        pytest.fail(f"freqdet.dct._banded was not built ({error}): run tools/setup.sh (needs gcc, Python's headers)")
    image = np.zeros((8, 8, 3), np.uint8)
    colour, bias = np.ones((1, 3), np.float32), np.zeros(1, np.float32)
    row_index, row_weights = np.zeros((2, 6), np.int64), np.zeros((1, 2, 6), np.float32)
    col_index, col_weights = np.zeros((6, 2), np.int32), np.zeros((1, 6, 2), np.float32)
    pairs, scales = np.zeros((1, 2), np.int32), np.ones(1, np.float32)
    out = np.zeros((1, 1, 2, 2), np.int16)

    def call(image=image, col_index=col_index, out=out, colour=colour, **kwargs):
        group = (colour, bias, col_index, col_weights, row_index, row_weights, pairs, scales, out)
        return kernel.banded_dct(image, [group], **kwargs)

    assert call() is None
    assert len(call(timed=True)) == 3
    with pytest.raises(ValueError, match="column index is outside"):
        call(col_index=col_index + 8)
    with pytest.raises(ValueError, match="inconsistent shapes"):
        call(out=np.zeros((1, 1, 3, 2), np.int16))
    with pytest.raises(ValueError, match="inconsistent shapes"):
        call(colour=np.ones((1, 2), np.float32))
    with pytest.raises(ValueError, match="inconsistent shapes"):
        call(colour=np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="format"):
        call(image=image.astype(np.float64))
    with pytest.raises(ValueError, match="1 to 8 groups"):
        kernel.banded_dct(image, [])


@pytest.mark.parametrize("layout", ["uint8 HWC", "float32 NCHW", "float64 NCHW", "negative strides"])
def test_the_cpu_kernel_reads_pixels_in_any_layout(rng, monkeypatch, layout):
    """The kernel reads the pixels where they lie (the decoder's uint8 (H, W, 3), a float batch,
    a flipped view through encode_image) and gives the torch path's numbers for each."""
    images = rng.integers(0, 256, (2, 37, 53, 3)).astype(np.uint8)
    views = {
        "uint8 HWC": lambda: torch.from_numpy(images).permute(0, 3, 1, 2),
        "float32 NCHW": lambda: torch.from_numpy(images).permute(0, 3, 1, 2).float().contiguous(),
        "float64 NCHW": lambda: torch.from_numpy(images).permute(0, 3, 1, 2).double(),
    }
    geometry = Geometry((61, 70), hflip=True)

    def transform():
        if layout == "negative strides":
            return encode_image(images[0, ::-1, ::-1], 64, "BGR", "float32", geometry)[None]
        return separable_dct(views[layout](), 64, "BGR", geometry=geometry)

    assert separable._banded is not None
    kernel = transform()
    monkeypatch.setattr(separable, "_banded", None)
    torch.testing.assert_close(kernel, transform(), atol=2e-3, rtol=1e-5)


def test_cb_and_cr_with_different_steps_are_not_computed_as_one(rng, on):
    """The kernel transforms Cb and Cr together when they share channels and steps; with the
    same channels but different steps each keeps its own."""
    image = rng.integers(0, 256, (40, 56, 3)).astype(np.uint8)
    selection = [65, 129]  # the same frequency of Cb and of Cr
    expected = upscaled_dct(image, selection, "BGR") / np.array([2.0, 3.0])[:, None, None]
    pixels = torch.from_numpy(image).permute(2, 0, 1)[None]
    out = separable_dct(pixels, selection, "BGR", steps=[2.0, 3.0])[0].numpy()
    np.testing.assert_allclose(out, expected, atol=2e-3, rtol=1e-5)


def test_stage_seconds_are_recorded_only_while_asked(rng):
    """The kernel reports where its time goes inside a stages.recording(), and nothing outside."""
    from freqdet import stages

    pixels = torch.from_numpy(rng.integers(0, 256, (3, 64, 80)).astype(np.uint8))[None]
    assert separable._banded is not None
    separable_dct(pixels, 24)
    with stages.recording() as recorded:
        separable_dct(pixels, 24)
    assert set(stages.KERNEL_STAGES) <= set(recorded) and all(recorded[s] > 0 for s in stages.KERNEL_STAGES)
    assert not stages.active()
