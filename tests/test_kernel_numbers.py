"""The CPU kernel's numbers (freqdet.dct._banded) and the torch path's: one rounding for every routine,
numpy's (numpy.rint and a clip, the independent reference); non-finite pixels refused; the portable
routines the baseline; scratch memory freed with its thread."""

import threading
import time
from contextlib import contextmanager

import numpy as np
import pytest
import torch

from freqdet.dct import image_dct, separable, separable_dct

KERNEL = separable._banded
LACKS = {"avx512": "AVX-512 F, BW and VL", "avx2": "AVX2 and FMA"}
NUMPY = {torch.int16: np.int16, torch.int8: np.int8, torch.float32: np.float32}


@pytest.fixture
def kernel():
    assert KERNEL is not None, "freqdet.dct._banded was not built: run tools/setup.sh (needs gcc and Python's headers)"
    return KERNEL


@contextmanager
def using(kernel, routines: str):
    """The kernel's `routines` in use for a while, skipping where the CPU lacks them."""
    best = kernel.use_routines("avx512")
    if kernel.use_routines(routines) != routines:
        kernel.use_routines(best)
        pytest.skip(f"this CPU lacks {LACKS[routines]}, which the {routines} routines need")
    try:
        yield
    finally:
        kernel.use_routines(best)


def near_halves() -> np.ndarray:
    """float32 values at the rounding's edges: k + 0.5 and its neighbours either way (0.49999997, 0.5,
    0.50000006, ...), negatives too, values at and past the int8 and int16 limits, and random ones;
    a count that leaves a part-vector at the end of a row."""
    ks = np.array([0, 1, 2, 3, 4, 7, 100, 126, 127, 128, 254, 1000, 4095, 32765, 32766, 32767, 32768, 40000])
    halves = np.concatenate([ks + 0.5, -(ks + 0.5)]).astype(np.float32)
    edges = [halves, np.nextafter(halves, np.float32(np.inf)), np.nextafter(halves, np.float32(-np.inf))]
    whole = np.array([0, 1, -1, 127, -127, 128, -128, 32767, -32767, 32768, -32768, 1e6, -1e6, 3e38, -3e38])
    random = np.random.default_rng(7).uniform(-40000, 40000, 203)
    values = np.concatenate([*edges, whole.astype(np.float32), random.astype(np.float32)])
    assert values.dtype == np.float32 and len(values) % 16 not in (0, 8)
    return values


def wire(values: np.ndarray, dtype) -> np.ndarray:
    """numpy's answer: float32 as it is, an integer dtype numpy.rint'ed (halves to even) and clipped to +-its max."""
    if dtype == np.float32:
        return values
    limit = np.iinfo(dtype).max
    return np.clip(np.rint(values), -limit, limit).astype(dtype)


def identity_transform(kernel, values: np.ndarray, dtype) -> np.ndarray:
    """``values`` through the kernel's rounding step unchanged: a float image of one row whose channel 0
    holds them, colour row (1, 0, 0) without offset, cell j reading pixel j alone with weight 1, and
    three channels (u, v) = (0, 0), (1, 0), (2, 0) of row weights 1, -1 and 1 (values, -values, values:
    two channels the AVX2 stores pack together, one alone). Returns the (3, len(values)) output."""
    n = len(values)
    cells = -(-n // 16) * 16  # whole vectors of cells, those past n reading pixel 0 with weight 0
    image = np.zeros((1, n, 3), np.float32)
    image[0, :, 0] = values
    col_index = np.zeros((1, cells), np.int32)
    col_index[0, :n] = np.arange(n)
    col_weights = np.zeros((1, 1, cells), np.float32)
    col_weights[0, 0, :n] = 1.0
    row_index = np.zeros((1, 1), np.int64)
    row_weights = np.array([1.0, -1.0, 1.0], np.float32).reshape(3, 1, 1)
    pairs = np.array([[0, 0], [1, 0], [2, 0]], np.int32)
    colour, bias, scales = np.array([[1.0, 0.0, 0.0]], np.float32), np.zeros(1, np.float32), np.ones(3, np.float32)
    out = np.empty((1, 3, 1, n), dtype)
    group = (colour, bias, col_index, col_weights, row_index, row_weights, pairs, scales, out)
    assert kernel.banded_dct(image, [group]) is None
    return out[0, :, 0]


@pytest.mark.parametrize("routines", ["avx512", "avx2", "portable"])
@pytest.mark.parametrize("dtype", [np.int16, np.int8, np.float32])
def test_every_routine_rounds_halves_to_even_and_saturates_as_numpy(kernel, routines, dtype):
    values = near_halves()
    with using(kernel, routines):
        out = identity_transform(kernel, values, dtype)
    assert out.dtype == dtype
    for got, expected in zip(out, (values, -values, values)):
        np.testing.assert_array_equal(got, wire(expected, dtype))


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
@pytest.mark.parametrize("dtype", [torch.int16, torch.int8, torch.float32])
def test_the_torch_path_rounds_halves_to_even_and_saturates_as_numpy(device, dtype):
    """What _apply_torch does to its sums before copying them into the output, which converts them."""
    values = near_halves()
    sums = torch.from_numpy(values.copy()).to(device)
    out = separable._round_to_wire(sums, dtype).to(dtype).cpu().numpy()
    np.testing.assert_array_equal(out, wire(values, NUMPY[dtype]))


def test_the_portable_routines_are_the_baseline_a_cpu_without_avx2_runs(kernel):
    """use_routines("portable") runs the loops a CPU without AVX2 runs, on every CPU: they are compiled
    without target clones or attributes, for the build's baseline, which has no AVX2 (the tests above
    check their numbers)."""
    assert kernel.portable_isa() in ("sse2", "avx", "none"), (
        f"the portable routines are compiled for {kernel.portable_isa()} (CFLAGS with -march?), so the tests "
        "do not run what a CPU without AVX2 runs: build the kernel for the baseline"
    )
    with using(kernel, "portable"):
        assert kernel.routines() == "portable"


BAD = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf}


def with_one(value: float, rng) -> np.ndarray:
    """A float32 (21, 30, 3) image of pixels 0..255 but for ``value`` at row 7, column 11, channel 2."""
    image = rng.uniform(0, 255, (21, 30, 3)).astype(np.float32)
    image[7, 11, 2] = value
    return image


@pytest.mark.parametrize("name", list(BAD))
def test_the_kernel_refuses_non_finite_pixels_before_it_runs(kernel, rng, name):
    image = with_one(BAD[name], rng)
    grid, plans = separable._plans(21, 30, (0, 1, 64), "BGR", separable.Geometry(), separable.LUMA_UPSCALE, None)
    out = np.full((3, *grid), 77, np.int16)
    with pytest.raises(ValueError, match=rf"holds {name} at pixel \(7, 11\), channel 2: .*finite.*nan_to_num"):
        separable._run_kernel(image, plans, out)
    assert (out == 77).all()  # nothing written
    with pytest.raises(ValueError, match=rf"holds {name} at pixel \(7, 18\), channel 2"):
        separable._run_kernel(image[:, ::-1], plans, out)  # any strides


@pytest.mark.parametrize("engine", ["kernel", "torch"])
@pytest.mark.parametrize("name", list(BAD))
def test_separable_and_image_dct_refuse_non_finite_pixels_on_every_engine(request, rng, monkeypatch, engine, name):
    image = with_one(BAD[name], rng)
    if engine == "kernel":
        request.getfixturevalue("kernel")
    else:
        monkeypatch.setattr(separable, "_banded", None)
    pixels = torch.from_numpy(image).permute(2, 0, 1)[None]
    # the kernel checks what it reads itself (no second pass over the image); the torch path before it runs
    where = r"pixel \(7, 11\), channel 2" if engine == "kernel" else r"\(n, channel, h, w\) = \(0, 2, 7, 11\)"
    for batch in (pixels, pixels.double()):
        with pytest.raises(ValueError, match=rf"{name} at {where}: .*finite"):
            separable_dct(batch, 24, dtype=torch.int16)
    for one in (image, image.astype(np.float64)):
        with pytest.raises(ValueError, match=rf"{name} at {where}: .*finite"):
            image_dct(one, 24, dtype=torch.int16)


def test_scratch_memory_is_freed_when_its_thread_ends(kernel):
    """Each thread that runs the kernel keeps its scratch memory between calls, until it ends."""
    before, held = kernel.scratch_threads(), []

    def transform():
        identity_transform(kernel, near_halves(), np.int16)
        held.append(kernel.scratch_threads())

    threads = [threading.Thread(target=transform) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(held) == 4 and min(held) >= before + 1
    deadline = time.monotonic() + 10  # a thread frees it as it ends, after join() returns
    while kernel.scratch_threads() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert kernel.scratch_threads() == before
