"""The paper's upscaled DCT computed directly, as per-axis operators on the image.

Every step between the pixels and a kept coefficient is linear and separable: the
augmentation's resize (Pillow's bilinear filter, as Detectron2's ``ResizeTransform``
uses it), flips, the 2x (Y) or 4x-then-2x2-mean (Cb, Cr) upscaling with clamped edges, the
JPEG-style edge padding of blocks and the 8-point DCT. So along each axis the whole
chain is one small operator: cell i and frequency u take a weighted sum of a short
window of image rows (columns), and coefficient (u, v) of cell (i, j) is

    sum_{r, c} Wrow[u, i, r] * Wcol[v, j, c] * P[index_row[i, r], index_col[j, c]]

with P the level-shifted Y, Cb or Cr plane (cells of 4 pixels for detection, 8 for the
classification input, ``luma_upscale=1``). :func:`stencil_dct` applies it with a
column pass (every needed v at once) and a row pass (every needed u of those): only the
frequencies of kept channels are computed, no upscaled or resized image is ever built,
and a resize costs nothing more. On a CPU both passes run in a C kernel
(``freqdet._banded``, ``freqdet/csrc/banded_dct.c``) that writes the wire dtype
directly; elsewhere, and where the kernel was not built, each pass is one batched torch
product of small dense blocks (:class:`BandedOperator`: 8 cells and the contiguous input
rows they read). Neither uses sparse tensors, which fail in DataLoader workers forked
from a process using CUDA. Without a resize, the window is 6 pixels at a stride of 4 and
the weights are the same for every cell (:func:`stencil_kernels`).

The tests hold :func:`stencil_dct` equal to :func:`freqdet.dct.upscaled_dct` to float
tolerance, with and without a resize (against the image resized by the same filter in
float; Pillow rounds its resized pixels to uint8, which moves coefficients by about one
unit). It runs in torch, on a CPU in the data loader or on a GPU in the model.
"""
from contextlib import contextmanager
from functools import lru_cache
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch

from .channels import resolve_channels, split_by_component
from .color import RGB_TO_YCBCR, YCBCR_OFFSET, check_format
from .pipeline import LUMA_UPSCALE, cell_size
from .transform import DCT_MATRIX, LEVEL_SHIFT

try:  # the CPU kernel of the two passes (setup.py builds it where a C compiler is)
    from .. import _banded
except ImportError:
    _banded = None


def taps(luma_upscale: int = LUMA_UPSCALE) -> int:
    """Pixels along an axis that one cell's 8 upscaled samples depend on: the cell and one each side."""
    return cell_size(luma_upscale) + 2


def _plane_rows(n_out: int, chroma: bool, luma_upscale: int) -> Tuple[np.ndarray, np.ndarray]:
    """Pixel taps of the rows the block DCT reads, per cell: indices and weights (cells, 8, taps).

    Row r of the plane is the reference's resampling (bilinear, half-pixel centres,
    clamped: :func:`freqdet.dct.upsample_bilinear`) by ``luma_upscale`` for Y, by twice
    that then the mean of row pairs for Cb/Cr; rows past the plane repeat its last row,
    as JPEG pads a partial block.
    """
    cells = -(-n_out // cell_size(luma_upscale))
    rows = np.minimum(np.arange(8 * cells), n_out * luma_upscale - 1)
    if chroma:
        upsampled, factor, share = np.stack([2 * rows, 2 * rows + 1], axis=1), 2 * luma_upscale, 0.5
    else:
        upsampled, factor, share = rows[:, None], luma_upscale, 1.0
    src = np.clip((upsampled + 0.5) / factor - 0.5, 0, n_out - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_out - 1)
    frac = src - lo
    index = np.concatenate([lo, hi], axis=1)
    weights = np.concatenate([(1 - frac) * share, frac * share], axis=1)
    return index.reshape(cells, 8, -1), weights.reshape(cells, 8, -1)


def pil_bilinear_weights(n_in: int, n_out: int) -> Tuple[np.ndarray, np.ndarray]:
    """Pillow's bilinear resampling of one axis (``Image.resize``), in float64.

    Output pixel o is ``sum_t weights[o, t] * input[start[o] + t]`` (window clipped to the
    image, weights normalized), which is Pillow's ``precompute_coeffs`` for the bilinear
    filter: support 1 widened by the scale when shrinking.
    """
    scale = n_in / n_out
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale
    center = (np.arange(n_out) + 0.5) * scale
    xmin = np.maximum(np.trunc(center - support + 0.5), 0).astype(np.int64)
    xmax = np.minimum(np.trunc(center + support + 0.5), n_in).astype(np.int64)
    width = int((xmax - xmin).max())
    taps = xmin[:, None] + np.arange(width)[None, :]
    weights = np.clip(1.0 - np.abs((taps - center[:, None] + 0.5) / filterscale), 0.0, None)
    weights[taps >= xmax[:, None]] = 0.0
    weights /= weights.sum(axis=1, keepdims=True)
    return xmin, weights


class AxisOperator(NamedTuple):
    """One axis of the transform: cell i, frequency u -> sum_t weights[u, i, t] * x[index[i, t]]."""

    index: np.ndarray  # (cells, window) int64, clamped into the input
    weights: np.ndarray  # (8, cells, window) float64


@lru_cache(maxsize=4096)
def axis_operator(
    n_in: int, chroma: bool, n_out: Optional[int] = None, flip: bool = False, luma_upscale: int = LUMA_UPSCALE
) -> AxisOperator:
    """The operator of one axis: optional resize ``n_in -> n_out`` (Pillow bilinear), optional
    flip of the resized axis, then the upscaling, padding and DCT of the paper's pipeline."""
    n_out = n_in if n_out is None else n_out
    if n_out == n_in:
        start, resize = np.arange(n_in), np.ones((n_in, 1))
    else:
        start, resize = pil_bilinear_weights(n_in, n_out)
    if flip:
        start, resize = start[::-1], resize[::-1]
    # Resized pixels each block row reads, then the input pixels each of those reads.
    pixels, pixel_weights = _plane_rows(n_out, chroma, luma_upscale)  # (cells, 8, m)
    src = start[pixels][..., None] + np.arange(resize.shape[1])  # (cells, 8, m, k)
    weight = pixel_weights[..., None] * resize[pixels]
    base = src.min(axis=(1, 2, 3))
    offset = src - base[:, None, None, None]
    window = int(offset.max()) + 1
    onehot = np.arange(window) == offset[..., None]  # (cells, 8, m, k, window)
    per_row = np.einsum("iymk,iymkw->iyw", weight, onehot)  # (cells, 8, window)
    weights = np.einsum("uy,iyw->uiw", DCT_MATRIX, per_row)
    index = base[:, None] + np.arange(window)[None, :]
    weights[:, index >= n_in] = 0.0  # window positions past the edge carry no weight
    return AxisOperator(np.minimum(index, n_in - 1), weights)


@lru_cache(maxsize=None)
def stencil_kernels(chroma: bool, luma_upscale: int = LUMA_UPSCALE) -> np.ndarray:
    """K (8 x taps, float64): an interior cell's operator. Row u weighs pixels c*i-1 .. c*i+c
    (c pixels a cell: 4 for detection, 8 for classification) into frequency u of cell i."""
    cell = cell_size(luma_upscale)
    op = axis_operator(3 * cell, chroma, luma_upscale=luma_upscale)  # cell 1 touches no border
    kernel = np.zeros((8, taps(luma_upscale)))
    kernel[:, op.index[1] - (cell - 1)] = op.weights[:, 1]
    return kernel


@lru_cache(maxsize=None)
def axis_bounds(chroma: bool, luma_upscale: int = LUMA_UPSCALE) -> np.ndarray:
    """For each frequency u, the largest sum of |weights| of any cell of any axis (8 values).

    128 * bound[u] * bound[v] bounds |coefficient (u, v)| for 8-bit images, edge cells,
    block padding and resizes included (Pillow's bilinear weights are positive and sum to one).
    """
    return np.max([np.abs(axis_operator(n, chroma, luma_upscale=luma_upscale).weights).sum(axis=2).max(axis=1)
                   for n in range(1, 8 * cell_size(luma_upscale) + 1)], axis=0)


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


CHUNK = 8  # cells per block of the banded products: wide enough for fast products, narrow enough to waste little


class BandedOperator(NamedTuple):
    """:func:`axis_operator` for some frequencies as dense blocks of ``CHUNK`` cells.

    Cells c*CHUNK .. c*CHUNK + CHUNK - 1 read input rows ``gather[c]`` (a contiguous,
    clamped range); ``blocks[c]`` ((cell, frequency) rows, width) holds their weights, so
    one batched product applies the whole axis. Cells past the last are zero."""

    gather: torch.Tensor  # (chunks * width,) int64 input rows
    blocks: torch.Tensor  # (chunks, CHUNK * len(freqs), width) float32


@lru_cache(maxsize=2048)
def banded_operator(
    n_in: int, chroma: bool, n_out: int, flip: bool, luma_upscale: int, freqs: Tuple[int, ...], device: str = "cpu"
) -> BandedOperator:
    """The operator of one axis as :class:`BandedOperator`, on ``device`` (cached per device,
    so the GPU path copies each operator once). Plain dense tensors: no sparse tensor is made,
    which in a DataLoader worker forked from a process using CUDA would fail."""
    op = axis_operator(n_in, chroma, n_out, flip, luma_upscale)
    cells, window = op.index.shape
    chunks = -(-cells // CHUNK)
    pad = chunks * CHUNK - cells
    index = np.concatenate([op.index, np.repeat(op.index[-1:], pad, axis=0)])  # (chunks * CHUNK, window)
    weights = np.concatenate([op.weights[list(freqs)], np.zeros((len(freqs), pad, window))], axis=1)
    index, weights = index.reshape(chunks, CHUNK, window), weights.reshape(len(freqs), chunks, CHUNK, window)
    start = index.min(axis=(1, 2))
    width = int((index.max(axis=(1, 2)) - start).max()) + 1
    blocks = np.zeros((chunks, CHUNK, len(freqs), width))
    position = index - start[:, None, None]  # (chunks, CHUNK, window), clamped duplicates add up
    c, g, _ = np.indices(position.shape)
    for f in range(len(freqs)):
        np.add.at(blocks[:, :, f], (c, g, position), weights[f])
    gather = np.minimum(start[:, None] + np.arange(width), n_in - 1).reshape(-1)
    return BandedOperator(torch.from_numpy(gather).to(device),
                          torch.from_numpy(blocks.reshape(chunks, CHUNK * len(freqs), width)).float().to(device))


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


class _Frequencies(NamedTuple):
    """What the passes need to know of a component's channels ``ks`` (k = 8u + v, ascending)."""

    us: Tuple[int, ...]  # the vertical frequencies needed, ascending
    vs: Tuple[int, ...]  # the horizontal ones
    pairs: np.ndarray  # (len(ks), 2) int32: each channel's positions in us and vs
    runs: Tuple[Tuple[int, int, int, int], ...]  # (first channel, u position, first v position, count)


@lru_cache(maxsize=None)
def _frequencies(ks: Tuple[int, ...]) -> _Frequencies:
    """Computed once per channel set: the passes run per image. ``runs`` groups channels
    with consecutive (u, v) positions, so that each run is one copy."""
    us, vs = tuple(sorted({k // 8 for k in ks})), tuple(sorted({k % 8 for k in ks}))
    pairs = np.array([[us.index(k // 8), vs.index(k % 8)] for k in ks], dtype=np.int32).reshape(-1, 2)
    runs: List[List[int]] = []
    for c, (u, v) in enumerate(pairs.tolist()):
        if runs and runs[-1][1] == u and runs[-1][2] + runs[-1][3] == v:
            runs[-1][3] += 1
        else:
            runs.append([c, u, v, 1])
    return _Frequencies(us, vs, pairs, tuple(tuple(run) for run in runs))


@lru_cache(maxsize=2048)
def _kernel_operator(n_in: int, chroma: bool, n_out: int, flip: bool, luma_upscale: int,
                     freqs: Tuple[int, ...]) -> Tuple[np.ndarray, np.ndarray]:
    """:func:`axis_operator` for some frequencies as the CPU kernel takes it: (cells, window)
    int64 input indices and (len(freqs), cells, window) float32 weights."""
    op = axis_operator(n_in, chroma, n_out, flip, luma_upscale)
    return np.ascontiguousarray(op.index), np.ascontiguousarray(op.weights[list(freqs)], dtype=np.float32)


def _apply_kernel(plane: torch.Tensor, rows: tuple, cols: tuple, ks: Sequence[int], out: torch.Tensor,
                  steps: Optional[Sequence[float]]) -> None:
    """:func:`_apply` by the C kernel (``freqdet._banded``), image by image, straight into ``out``."""
    freqs = _frequencies(tuple(ks))
    row_index, row_weights = _kernel_operator(*rows, freqs.us)
    col_index, col_weights = _kernel_operator(*cols, freqs.vs)
    scales = np.ones(len(ks), dtype=np.float32) if steps is None else (1.0 / np.asarray(steps)).astype(np.float32)
    for n in range(plane.shape[0]):
        _banded.banded_dct(plane[n].contiguous().numpy(), col_index, col_weights, row_index, row_weights,
                           freqs.pairs, scales, out[n].numpy())


def _apply(plane: torch.Tensor, rows: tuple, cols: tuple, ks: Sequence[int], out: torch.Tensor,
           steps: Optional[Sequence[float]] = None) -> None:
    """Channels ``ks`` (k = 8u + v, ascending) of planes (N, H, W) into ``out`` (N, len(ks), cells_h, cells_w).

    ``rows`` and ``cols`` are the :func:`axis_operator` arguments of each axis. A column
    pass makes every needed v, a row pass every needed u of those, each one batched
    product of dense blocks (:class:`BandedOperator`); the (u, v) pairs asked for are
    then copied out in one pass. ``steps`` (one per k) divide the values first; an
    integer ``out`` gets them rounded to nearest and clamped to +-its dtype's max before
    that copy, which converts them. On a CPU the C kernel does all of it
    (:func:`_apply_kernel`; it rounds exact halves away from zero where torch rounds them
    to even: the only difference, and a measure-zero one).
    """
    if _banded is not None and plane.device.type == "cpu":
        return _apply_kernel(plane, rows, cols, ks, out, steps)
    freqs = _frequencies(tuple(ks))
    us, vs = freqs.us, freqs.vs
    device = str(plane.device)
    row_op, col_op = banded_operator(*rows, us, device), banded_operator(*cols, vs, device)
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
    if not out.dtype.is_floating_point:
        limit = torch.iinfo(out.dtype).max
        both.round_().clamp_(-limit, limit)
    grid = both.permute(0, 2, 3, 1, 4)[..., :cells_h, :cells_w]  # (N, u, v, h, w)
    for first, u, v, count in freqs.runs:
        out[:, first : first + count].copy_(grid[:, u, v : v + count])


def stencil_dct(
    images: torch.Tensor,
    channels,
    input_format: str = "BGR",
    pattern: str = "square",
    resize: Optional[Tuple[int, int]] = None,
    hflip: bool = False,
    vflip: bool = False,
    luma_upscale: int = LUMA_UPSCALE,
    dtype: torch.dtype = torch.float32,
    steps: Optional[Sequence[float]] = None,
) -> torch.Tensor:
    """(N, 3, H, W) images (uint8 or float, 0..255) -> (N, C, ceil(h/4), ceil(w/4)) in ``dtype``.

    The paper's upscaled DCT (same definition and channel order as
    :func:`freqdet.dct.upscaled_dct`, ``luma_upscale`` included: 1 gives the
    classification input on ceil(h/8) x ceil(w/8) cells) of the images after an optional
    resize to ``resize = (h, w)`` with Pillow's bilinear filter and optional flips of the
    result, computing only the selected channels. ``steps`` (one per selected channel)
    divide the coefficients, and an integer ``dtype`` rounds them to nearest and clamps
    them: the wire formats (:func:`freqdet.dct.wire.encode`).
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (N, 3, H, W), got {tuple(images.shape)}")
    selection = resolve_channels(channels, pattern)
    wanted: List[Tuple[int, List[int]]] = [(c, ks) for c, ks in enumerate(split_by_component(selection)) if ks]
    height, width = images.shape[-2:]
    out_h, out_w = resize if resize is not None else (height, width)
    planes = _color_planes(images, [c for c, _ in wanted], input_format)
    cell = cell_size(luma_upscale)
    out_shape = (images.shape[0], len(selection), -(-int(out_h) // cell), -(-int(out_w) // cell))
    out = torch.empty(out_shape, dtype=dtype, device=planes.device)
    first = 0
    for index, (component, ks) in enumerate(wanted):
        chroma = component > 0
        rows = (int(height), chroma, int(out_h), bool(vflip), luma_upscale)
        cols = (int(width), chroma, int(out_w), bool(hflip), luma_upscale)
        part = None if steps is None else steps[first : first + len(ks)]
        _apply(planes[:, index], rows, cols, ks, out[:, first : first + len(ks)], part)
        first += len(ks)
    return out
