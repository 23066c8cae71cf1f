"""The production transform: the paper's upscaled DCT of only the kept channels, in two passes.

:func:`separable_dct` applies the per-axis operators of :mod:`.operators` to the image:
a column pass makes every needed horizontal frequency v, a row pass every needed
vertical frequency u of those, and only the (u, v) pairs of kept channels are written.
No upscaled or resized image is ever built, and a resize or flip the operators absorb
(a :class:`Geometry`) costs nothing more. :func:`planes_dct` computes the same from a JPEG's
own Y, Cb and Cr planes, one plane at a time, without colour conversion. Two engines run the passes:

- on a CPU, a C kernel (``freqdet.dct._banded``, built from ``banded_dct.c`` beside this
  file where a C compiler is) that reads the pixels as they are (uint8, any layout),
  converts their colours and runs both passes row by row in the cache, and writes the
  wire dtype directly;
- elsewhere (a GPU, or a CPU without the kernel), batched torch products of small dense
  blocks (:class:`freqdet.dct.operators.BandedOperator`).

Neither uses sparse tensors, which fail in DataLoader workers forked from a process using
CUDA. The tests hold both engines equal to the numpy reference
(:func:`freqdet.dct.upscaled_dct`) to float tolerance, with and without a geometry
(against the image resized by the same filter in float; Pillow rounds its resized pixels
to uint8, which moves coefficients by about one unit).
"""

from contextlib import contextmanager
from functools import lru_cache
from typing import NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch

from .. import stages
from .block import LEVEL_SHIFT
from .channels import LUMA_UPSCALE, cell_size, resolve_channels, split_by_component
from .color import RGB_TO_YCBCR, YCBCR_OFFSET, check_format
from .operators import CHUNK, BandedOperator, banded_operator, frequencies, kernel_operator

try:  # the CPU kernel of the two passes (setup.py builds it where a C compiler is)
    from . import _banded
except ImportError:
    _banded = None


class Geometry(NamedTuple):
    """What the transform applies to the image before the paper's pipeline, in this order: an
    optional resize to ``resize = (h, w)`` pixels (Pillow's bilinear filter); an optional
    ``crop = (y0, x0, h, w)`` of the resized image (what lies outside it is cut off) and ``pad =
    (h, w)``, the crop padded at the bottom and right to that size with grey (128, whose
    level-shifted Y, Cb and Cr are 0: every coefficient of a cell of padding alone is 0), as
    Detectron2's ``FixedSizeCrop`` does; then optional flips."""

    resize: Optional[Tuple[int, int]] = None
    hflip: bool = False
    vflip: bool = False
    crop: Optional[Tuple[int, int, int, int]] = None
    pad: Optional[Tuple[int, int]] = None

    def resized_size(self, height: int, width: int) -> Tuple[int, int]:
        """(h, w) in pixels after the resize."""
        return tuple(int(s) for s in self.resize) if self.resize is not None else (int(height), int(width))

    def windows(self, height: int, width: int) -> Tuple[Tuple[int, int, int], Tuple[int, int, int]]:
        """Per axis (rows, columns): None, or (first, length, total) of the crop and pad
        (:func:`freqdet.dct.operators.axis_operator`'s ``window``)."""
        if self.crop is None and self.pad is None:
            return None, None
        resized = self.resized_size(height, width)
        y0, x0, h, w = self.crop if self.crop is not None else (0, 0, *resized)
        lengths = (min(h, resized[0] - y0), min(w, resized[1] - x0))
        totals = tuple(int(p) for p in self.pad) if self.pad is not None else lengths
        return tuple(
            (int(first), int(length), int(max(total, length)))
            for first, length, total in zip((y0, x0), lengths, totals)
        )

    def output_size(self, height: int, width: int) -> Tuple[int, int]:
        """(h, w) in pixels of an image of ``height`` x ``width`` after this geometry."""
        windows = self.windows(height, width)
        if windows[0] is None:
            return self.resized_size(height, width)
        return windows[0][2], windows[1][2]


def kernel_routines() -> str:
    """What computes the transform of images on a CPU: the C kernel's routines in use
    (``"avx512"``, ``"avx2"`` or ``"portable"``: the best the CPU has), or ``"torch"`` where
    the kernel is not built; reports of speed name it, as the routines set much of it."""
    return _banded.routines() if _banded is not None else "torch"


def _color_planes(images: torch.Tensor, components: Sequence[int], input_format: str) -> torch.Tensor:
    """The requested Y/Cb/Cr planes minus 128, float32 (N, len(components), H, W), from
    pixels in any memory layout (decoded images are channels-last)."""
    pixels = images.float()
    n, _, height, width = pixels.shape
    matrix = RGB_TO_YCBCR[list(components)]
    if check_format(input_format) == "BGR":
        matrix = matrix[:, ::-1]
    weight = torch.as_tensor(matrix.copy(), dtype=pixels.dtype, device=pixels.device)
    bias = torch.as_tensor(YCBCR_OFFSET[list(components)] - LEVEL_SHIFT, dtype=pixels.dtype, device=pixels.device)
    with _exact_float32(pixels.device):
        planes = torch.matmul(weight, pixels.reshape(n, 3, height * width))
    return planes.add_(bias[:, None]).view(n, len(components), height, width)


_NUMPY_DTYPES = {torch.float32: np.float32, torch.int16: np.int16, torch.int8: np.int8}


def _empty(shape: Tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialized output. On a CPU from numpy's allocator, which asks for huge pages for
    large arrays: a DCT-192 sample is 21 MB, and its first touch through 4 KB pages (what
    ``torch.empty`` gets) can cost more than computing it."""
    if device.type == "cpu" and dtype in _NUMPY_DTYPES:
        return torch.from_numpy(np.empty(shape, dtype=_NUMPY_DTYPES[dtype]))
    return torch.empty(shape, dtype=dtype, device=device)


def _banded_product(operator: BandedOperator, x: torch.Tensor) -> torch.Tensor:
    """operator @ x for x (N, n_in, M): (N, cells rounded up to CHUNK, len(freqs), M)."""
    chunks, rows, width = operator.blocks.shape
    n, _, m = x.shape
    gathered = x.index_select(1, operator.gather).view(n, chunks, width, m)
    with _exact_float32(x.device):
        return torch.matmul(operator.blocks, gathered).view(n, chunks * CHUNK, rows // CHUNK, m)


@contextmanager
def _exact_float32(device: torch.device):
    """Products in full float32 on a GPU: TF32's 10-bit mantissa would move int16
    coefficients (up to 1024) by several units."""
    switch = device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32
    if switch:
        torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        if switch:
            torch.backends.cuda.matmul.allow_tf32 = True


@lru_cache(maxsize=None)
def _colour_rows(components: Tuple[int, ...], input_format: str) -> Tuple[np.ndarray, np.ndarray]:
    """The components' rows of the colour matrix in the pixels' channel order and their offsets
    minus the level shift (float32): a plane is ``row @ pixel + offset``."""
    rows = RGB_TO_YCBCR[list(components)]
    if check_format(input_format) == "BGR":
        rows = rows[:, ::-1]
    offsets = YCBCR_OFFSET[list(components)] - LEVEL_SHIFT
    return np.ascontiguousarray(rows, dtype=np.float32), offsets.astype(np.float32)


def _kernel_groups(wanted: Sequence[Tuple[int, Sequence[int]]], steps: Optional[Sequence[float]]):
    """(components, ks, first channel, steps) of each group the kernel runs at once: Cb and Cr
    together when they keep the same channels with the same steps (their operators are the same)."""
    groups, first = [], 0
    for component, ks in wanted:
        part = None if steps is None else tuple(float(x) for x in steps[first : first + len(ks)])
        previous = groups[-1] if groups else None
        if previous and component > 0 and previous[0][-1] > 0 and previous[1] == tuple(ks) and previous[3] == part:
            groups[-1] = (previous[0] + (component,), *previous[1:])
        else:
            groups.append(((component,), tuple(ks), first, part))
        first += len(ks)
    return groups


def _kernel_plans(rows: tuple, cols: tuple, wanted: tuple, input_format: str, steps: Optional[tuple]) -> list:
    """Per group of :func:`_kernel_groups`: its colour rows, operators, pairs, scales and channels
    (first, count) in the output. Not cached: the operators are (:func:`~.operators.kernel_operator`,
    within its bytes), and a plan of cached parts costs microseconds."""
    plans = []
    for components, ks, first, part in _kernel_groups(wanted, steps):
        freqs = frequencies(ks)
        row, col = _kernel_operators(rows, cols, components[0] > 0, freqs)
        count = len(components) * len(ks)
        plans.append((_colour_rows(components, input_format), row, col, freqs.pairs, _scales(ks, part), first, count))
    return plans


def _kernel_operators(rows: tuple, cols: tuple, chroma: bool, freqs, subsampling: Tuple[int, int] = (1, 1)):
    """The row and column :func:`~.operators.kernel_operator` of a component's frequencies, its
    plane read through libjpeg's upsampling along the axes ``subsampling`` (rows, columns) says
    are subsampled 2:1 (a JPEG's own chroma plane)."""
    row = kernel_operator(rows[0], chroma, *rows[1:], freqs.us, subsampled=subsampling[0] == 2)
    col = kernel_operator(cols[0], chroma, *cols[1:], freqs.vs, True, subsampled=subsampling[1] == 2)
    return row, col


def _scales(ks: tuple, steps: Optional[tuple]) -> np.ndarray:
    """What the kernel multiplies channels ``ks`` by: 1 / their steps (float32)."""
    return np.ones(len(ks), np.float32) if steps is None else (1.0 / np.asarray(steps)).astype(np.float32)


# A stored plane as the kernel reads it: one channel (a view of it three times over, see
# _as_pixels), level-shifted; Cb and Cr are stored with JPEG's offset of 128, the level shift.
_PLANE_COLOUR = (np.array([[1.0, 0.0, 0.0]], np.float32), np.array([-LEVEL_SHIFT], np.float32))


def _plane_plan(rows: tuple, cols: tuple, chroma: bool, ks: tuple, subsampling: Tuple[int, int], steps):
    """:func:`_kernel_plans` of one stored plane (:func:`_kernel_operators`)."""
    freqs = frequencies(ks)
    return (
        _PLANE_COLOUR,
        *_kernel_operators(rows, cols, chroma, freqs, subsampling),
        freqs.pairs,
        _scales(ks, steps),
        0,
        len(ks),
    )


def _as_pixels(plane: np.ndarray) -> np.ndarray:
    """An (h, w) plane as the (h, w, 3) pixels the kernel reads, each channel the plane itself (no copy)."""
    return np.lib.stride_tricks.as_strided(plane, (*plane.shape, 3), (*plane.strides, 0), writeable=False)


def _axes(height: int, width: int, geometry: "Geometry", luma_upscale: int):
    """The :func:`~.operators.axis_operator` arguments but the chroma flag of each axis (rows,
    columns) for an image of ``height`` x ``width``, and the output grid (cells_h, cells_w)."""
    resized_h, resized_w = geometry.resized_size(height, width)
    row_window, col_window = geometry.windows(height, width)
    out_h, out_w = geometry.output_size(height, width)
    cell = cell_size(luma_upscale)
    rows = (int(height), resized_h, bool(geometry.vflip), luma_upscale, row_window)
    cols = (int(width), resized_w, bool(geometry.hflip), luma_upscale, col_window)
    return rows, cols, (-(-out_h // cell), -(-out_w // cell))


@lru_cache(maxsize=64)
def _wanted(selection: Tuple[int, ...]) -> Tuple[Tuple[int, Tuple[int, ...]], ...]:
    """(component, its ks) of each component with selected channels."""
    return tuple((c, tuple(ks)) for c, ks in enumerate(split_by_component(selection)) if ks)


def _plans(height: int, width: int, selection: tuple, input_format: str, geometry, luma_upscale: int, steps):
    """The output grid and the cached :func:`_kernel_plans` of one image size, selection, geometry and steps."""
    rows, cols, grid = _axes(height, width, geometry, luma_upscale)
    key = steps if steps is None or type(steps) is tuple else tuple(float(x) for x in steps)
    return grid, _kernel_plans(rows, cols, _wanted(selection), input_format, key)


def _run_kernel(pixels: np.ndarray, plans: list, out: np.ndarray) -> None:
    """The whole transform of one (H, W, 3) uint8 or float32 image (any strides) by the C kernel
    (``freqdet.dct._banded``), colour conversion included, into ``out`` (C, cells_h, cells_w):
    straight, or, when a window's padding leaves whole cells of grey, for the cells that read
    pixels, the others set to 0."""
    groups, padded = [], []
    for (colour, bias), row, col, pairs, scales, first, count in plans:
        channels = out[first : first + count].reshape(len(colour), len(scales), *out.shape[-2:])
        if row.active == row.cells and col.active == col.cells:
            target = channels
        else:
            channels[...] = 0
            target = np.empty((*channels.shape[:2], row.active, col.active), channels.dtype)
            padded.append((channels, row, col, target))
        if target.size:
            groups.append((colour, bias, col.index, col.weights, row.index, row.weights, pairs, scales, target))
    if groups:
        seconds = _banded.banded_dct(pixels, groups, timed=stages.active())
        for name, spent in zip(stages.KERNEL_STAGES, seconds or ()):
            stages.add(name, spent)
    for channels, row, col, target in padded:
        channels[..., row.first : row.first + row.active, col.first : col.first + col.active] = target


def _round_to_wire(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Float ``values``, in place, as an integer wire ``dtype`` takes them: rounded to nearest with
    halves to even (torch.round, as numpy.rint and every routine of the C kernel) and saturated to
    +-its max; as they are for a float ``dtype``."""
    if not dtype.is_floating_point:
        limit = torch.iinfo(dtype).max
        values.round_().clamp_(-limit, limit)
    return values


def _refuse_non_finite(images: torch.Tensor) -> None:
    """A ValueError naming the first NaN or infinity of float ``images`` (N, 3, H, W), which no
    engine can transform (the C kernel refuses them too)."""
    if not images.is_floating_point():
        return
    bad = ~torch.isfinite(images)
    if bool(bad.any()):
        where = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"the images hold {float(images[where])} at (n, channel, h, w) = {where}: the transform needs finite "
            "values; replace them (torch.nan_to_num, say) or leave the image out"
        )


def _apply_torch(
    plane: torch.Tensor,
    rows: tuple,
    cols: tuple,
    ks: Sequence[int],
    out: torch.Tensor,
    steps: Optional[Sequence[float]] = None,
    subsampled: Tuple[bool, bool] = (False, False),
) -> None:
    """Channels ``ks`` (k = 8u + v, ascending) of planes (N, H, W) into ``out`` (N, len(ks), cells_h, cells_w).

    ``rows`` and ``cols`` are the :func:`~.operators.axis_operator` arguments of each axis
    (``subsampled`` its last, per axis: a JPEG's chroma plane as stored). A column
    pass makes every needed v, a row pass every needed u of those, each one batched
    product of dense blocks (:class:`BandedOperator`); the (u, v) pairs asked for are
    then copied out in one pass. ``steps`` (one per k) divide the values first; an
    integer ``out`` gets them rounded and saturated before that copy, which converts them
    (:func:`_round_to_wire`, as the C kernel rounds them: :func:`_run_kernel`).
    """
    freqs = frequencies(tuple(ks))
    us, vs = freqs.us, freqs.vs
    device = str(plane.device)
    row_op = banded_operator(*rows, us, device, subsampled[0])
    col_op = banded_operator(*cols, vs, device, subsampled[1])
    n, cells_h, cells_w = plane.shape[0], out.shape[-2], out.shape[-1]
    across = _banded_product(col_op, plane.transpose(1, 2).contiguous())  # (N, padded cells_w, v, H)
    across = across.permute(0, 3, 2, 1).reshape(n, plane.shape[1], -1)  # (N, H, v * padded cells_w)
    divisors = None
    if steps is not None:
        divisors = torch.ones(len(us), len(vs), dtype=plane.dtype)
        for (u, v), step in zip(freqs.pairs.tolist(), steps):
            divisors[u, v] = step
        divisors = divisors.to(plane.device).view(1, 1, len(us), len(vs), 1)
    both = _banded_product(row_op, across)  # (N, padded cells_h, u, v * padded cells_w)
    both = both.view(n, both.shape[1], len(us), len(vs), -1)
    if divisors is not None:
        both.div_(divisors)
    _round_to_wire(both, out.dtype)
    grid = both.permute(0, 2, 3, 1, 4)[..., :cells_h, :cells_w]  # (N, u, v, h, w)
    for first, u, v, count in freqs.runs:
        out[:, first : first + count].copy_(grid[:, u, v : v + count])


def separable_dct(
    images: torch.Tensor,
    channels,
    input_format: str = "BGR",
    pattern: str = "square",
    geometry: Geometry = Geometry(),
    luma_upscale: int = LUMA_UPSCALE,
    dtype: torch.dtype = torch.float32,
    steps: Optional[Sequence[float]] = None,
) -> torch.Tensor:
    """(N, 3, H, W) images (uint8 or float, 0..255) -> (N, C, ceil(h/4), ceil(w/4)) in ``dtype``.

    The paper's upscaled DCT (same definition and channel order as
    :func:`freqdet.dct.upscaled_dct`, ``luma_upscale`` included: 1 gives the
    classification input on ceil(h/8) x ceil(w/8) cells) of the images after ``geometry``
    (an optional resize to (h, w) with Pillow's bilinear filter, an optional crop and grey pad,
    then optional flips: :class:`Geometry`),
    computing only the selected channels, on the images' device. ``steps`` (one per
    selected channel) divide the coefficients, and an integer ``dtype`` rounds them to
    nearest (halves to even) and saturates them: the wire formats (:func:`freqdet.dct.wire.encode`).
    Float images holding a NaN or an infinity raise a ValueError, on every engine.
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (N, 3, H, W), got {tuple(images.shape)}")
    selection = resolve_channels(channels, pattern)
    if _banded is not None and images.device.type == "cpu":  # the kernel refuses non-finite pixels itself
        pixels = images if images.dtype in (torch.uint8, torch.float32) else images.float()
        pixels = pixels.permute(0, 2, 3, 1)  # (N, H, W, 3) views; a decoded image's own layout
        grid, plans = _plans(*images.shape[-2:], selection, input_format, geometry, luma_upscale, steps)
        out = _empty((images.shape[0], len(selection), *grid), dtype, images.device)
        for n in range(images.shape[0]):
            _run_kernel(pixels[n].numpy(), plans, out[n].numpy())
        return out
    _refuse_non_finite(images)
    wanted = _wanted(selection)
    rows, cols, grid = _axes(*images.shape[-2:], geometry, luma_upscale)
    out = _empty((images.shape[0], len(selection), *grid), dtype, images.device)
    planes = _color_planes(images, [c for c, _ in wanted], input_format)
    first = 0
    for index, (component, ks) in enumerate(wanted):
        chroma = component > 0
        part = None if steps is None else steps[first : first + len(ks)]
        component_rows, component_cols = (rows[0], chroma, *rows[1:]), (cols[0], chroma, *cols[1:])
        _apply_torch(planes[:, index], component_rows, component_cols, ks, out[:, first : first + len(ks)], part)
        first += len(ks)
    return out


def image_dct(
    image: np.ndarray,
    channels,
    input_format: str = "BGR",
    geometry: Geometry = Geometry(),
    dtype: torch.dtype = torch.float32,
    steps: Optional[Sequence[float]] = None,
) -> torch.Tensor:
    """One (H, W, 3) image as decoded (uint8 or float, any strides: flips, crops) -> (C, ceil(h/4),
    ceil(w/4)): :func:`separable_dct` of it, on the CPU. With the C kernel this is a single call
    into it, on operators cached per image size and geometry: what a data loader runs per image."""
    selection = resolve_channels(channels)
    if _banded is None:
        if not image.flags.writeable or min(image.strides) < 0:  # torch takes neither
            image = np.array(image)
        pixels = torch.from_numpy(image).permute(2, 0, 1)[None]
        return separable_dct(pixels, selection, input_format, geometry=geometry, dtype=dtype, steps=steps)[0]
    if image.dtype not in (np.uint8, np.float32):
        image = image.astype(np.float32)
    grid, plans = _plans(*image.shape[:2], selection, input_format, geometry, LUMA_UPSCALE, steps)
    out = _empty((len(selection), *grid), dtype, torch.device("cpu"))
    _run_kernel(image, plans, out.numpy())
    return out


def planes_dct(
    planes,
    channels,
    geometry: Geometry = Geometry(),
    dtype: torch.dtype = torch.float32,
    steps: Optional[Sequence[float]] = None,
) -> torch.Tensor:
    """A JPEG's own Y, Cb and Cr planes (:class:`freqdet.io.planes.YCbCrPlanes`) -> (C, ceil(h/4),
    ceil(w/4)): :func:`image_dct` of the picture, on the CPU, computed from the YCbCr the file
    stores instead of from its decoded pixels: each chroma plane is read through libjpeg's
    upsampling filter, unrounded (:func:`freqdet.dct.operators.axis_operator`), and no pixel is
    converted to or from BGR. A greyscale picture's Cb and Cr channels are 0."""
    selection = resolve_channels(channels)
    rows, cols, grid = _axes(*planes.shape, geometry, LUMA_UPSCALE)
    out = _empty((len(selection), *grid), dtype, torch.device("cpu"))
    key = steps if steps is None or type(steps) is tuple else tuple(float(x) for x in steps)
    first = 0
    for component, ks in _wanted(selection):
        plane, target = (planes.y, planes.cb, planes.cr)[component], out[first : first + len(ks)]
        part = None if key is None else key[first : first + len(ks)]
        subsampling = planes.subsampling if component > 0 else (1, 1)
        if plane is None:
            target.zero_()
        elif _banded is not None:
            plan = _plane_plan(rows, cols, component > 0, ks, tuple(subsampling), part)
            _run_kernel(_as_pixels(plane), [plan], target.numpy())
        else:
            pixels = torch.from_numpy(np.array(plane, np.float32) - LEVEL_SHIFT)[None]
            chroma = component > 0
            _apply_torch(
                pixels,
                (rows[0], chroma, *rows[1:]),
                (cols[0], chroma, *cols[1:]),
                ks,
                target[None],
                part,
                (subsampling[0] == 2, subsampling[1] == 2),
            )
        first += len(ks)
    return out
