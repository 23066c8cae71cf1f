"""The per-axis operators of the paper's upscaled DCT: built once per size and geometry.

Every step between the pixels and a kept coefficient is linear and separable: the
augmentation's resize (Pillow's bilinear filter, as Detectron2's ``ResizeTransform``
uses it), flips, the 2x (Y) or 4x-then-2x2-mean (Cb, Cr) upscaling with clamped edges, the
JPEG-style edge padding of blocks and the 8-point DCT. So along each axis the whole
chain is one small operator (:func:`axis_operator`): cell i and frequency u take a
weighted sum of a short window of image rows (columns), and coefficient (u, v) of cell
(i, j) is

    sum_{r, c} Wrow[u, i, r] * Wcol[v, j, c] * P[index_row[i, r], index_col[j, c]]

with P the level-shifted Y, Cb or Cr plane (cells of 4 pixels for detection, 8 for the
classification input, ``luma_upscale=1``). :mod:`.separable` applies them. This module
also lays them out for its two engines: dense blocks of ``CHUNK`` cells for torch
(:func:`banded_operator`) and index/weight arrays for the C kernel (:func:`kernel_operator`),
and bounds them (:func:`axis_bounds`, which the int8 wire format's steps come from). The two
layouts are cached, each within ``OPERATOR_CACHE_BYTES`` (:mod:`.cache`): sizes that repeat
reuse their operators, and large-scale jitter's ever new scales cannot fill the memory.
Without a resize, the window is 6 pixels at a stride of 4 and the weights are the same
for every cell away from the borders.
"""

from functools import lru_cache
from typing import List, NamedTuple, Optional, Tuple

import numpy as np
import torch

from .block import DCT_MATRIX
from .cache import byte_bounded_cache
from .channels import LUMA_UPSCALE, cell_size

# Bytes each operator cache (the kernel's, the torch path's) keeps at most, per process: some
# hundreds of operators of COCO-sized images, a few hundred kB each at most.
OPERATOR_CACHE_BYTES = 24 << 20


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


def plane_size(n: int, subsampled: bool) -> int:
    """Samples along an axis of ``n`` pixels of a plane that is, or is not, subsampled 2:1."""
    return -(-n // 2) if subsampled else n


def _upsampled(start: np.ndarray, weights: np.ndarray, n_in: int) -> Tuple[np.ndarray, np.ndarray]:
    """Taps (``start``, ``weights``) over ``n_in`` pixels as taps over a plane subsampled 2:1 along the
    axis, through libjpeg's "fancy" upsampling of it: pixel p is 3/4 of sample p // 2 and 1/4 of its
    neighbour on p's side (the edge samples repeat), the triangle filter of chroma samples centred
    between two pixels; libjpeg rounds its result to an integer, this does not."""
    n_plane = plane_size(n_in, True)
    pixels = np.minimum(start[:, None] + np.arange(weights.shape[1]), n_in - 1)  # taps past the edge weigh 0
    near = pixels // 2
    far = np.clip(near + np.where(pixels % 2 == 0, -1, 1), 0, n_plane - 1)
    samples = np.concatenate([near, far], axis=1)
    sample_weights = np.concatenate([0.75 * weights, 0.25 * weights], axis=1)
    first = samples.min(axis=1)
    width = int((samples - first[:, None]).max()) + 1
    slot = (np.arange(len(first))[:, None] * width + samples - first[:, None]).ravel()
    composed = np.bincount(slot, weights=sample_weights.ravel(), minlength=len(first) * width)
    return first, composed.reshape(len(first), width)


class AxisOperator(NamedTuple):
    """One axis of the transform: cell i, frequency u -> sum_t weights[u, i, t] * x[index[i, t]]."""

    index: np.ndarray  # (cells, window) int64, clamped into the input
    weights: np.ndarray  # (8, cells, window) float64


Window = Optional[Tuple[int, int, int]]  # (first, length, total): a crop of the resized axis, padded


def axis_operator(
    n_in: int,
    chroma: bool,
    n_out: Optional[int] = None,
    flip: bool = False,
    luma_upscale: int = LUMA_UPSCALE,
    window: Window = None,
    subsampled: bool = False,
) -> AxisOperator:
    """The operator of one axis: with ``subsampled``, libjpeg's upsampling of a plane of
    ``ceil(n_in / 2)`` samples to ``n_in`` pixels (a JPEG's own chroma plane), which the operator
    then reads (:func:`_upsampled`); an optional resize ``n_in -> n_out`` (Pillow bilinear), an optional
    ``window`` (``first, length, total``: pixels first .. first + length - 1 of the resized axis,
    followed by ``total - length`` pixels of the level-shifted value 0, i.e. grey 128: Detectron2's
    ``FixedSizeCrop``), an optional flip of that axis, then the upscaling, padding and DCT of the
    paper's pipeline. Not cached: :func:`banded_operator` and :func:`kernel_operator` keep the
    layouts the engines read."""
    n_out = n_in if n_out is None else n_out
    if n_out == n_in:
        start, resize = np.arange(n_in), np.ones((n_in, 1))
    else:
        start, resize = pil_bilinear_weights(n_in, n_out)
    if subsampled:
        start, resize = _upsampled(start, resize, n_in)
    n_plane = plane_size(n_in, subsampled)
    if window is not None:
        first, length, total = window
        if not (0 <= first and 0 < length and first + length <= n_out and length <= total):
            raise ValueError(f"window {window} does not fit an axis of {n_out} pixels")
        padding = total - length  # grey pixels: 0 once level-shifted, so they carry no weight
        # Padding reads the crop's last input pixels, with no weight: windows stay narrow.
        start = np.concatenate([start[first : first + length], np.repeat(start[first + length - 1], padding)])
        resize = np.concatenate([resize[first : first + length], np.zeros((padding, resize.shape[1]))])
        n_out = total
    if flip:
        start, resize = start[::-1], resize[::-1]
    # Resized pixels each block row reads, then the input pixels each of those reads.
    pixels, pixel_weights = _plane_rows(n_out, chroma, luma_upscale)  # (cells, 8, m)
    src = start[pixels][..., None] + np.arange(resize.shape[1])  # (cells, 8, m, k)
    weight = pixel_weights[..., None] * resize[pixels]
    base = src.min(axis=(1, 2, 3))
    offset = src - base[:, None, None, None]
    window = int(offset.max()) + 1
    cells = src.shape[0]
    # per_row[i, y, w]: the weight of input pixel base[i] + w in block row y of cell i (taps that
    # read the same pixel add up).
    slot = (np.arange(cells * 8).reshape(cells, 8, 1, 1) * window + offset).ravel()
    per_row = np.bincount(slot, weights=weight.ravel(), minlength=cells * 8 * window).reshape(cells, 8, window)
    weights = np.matmul(DCT_MATRIX, per_row).transpose(1, 0, 2)  # (8, cells, window)
    index = base[:, None] + np.arange(window)[None, :]
    weights[:, index >= n_plane] = 0.0  # window positions past the edge carry no weight
    return AxisOperator(np.minimum(index, n_plane - 1), weights)


@lru_cache(maxsize=None)
def axis_bounds(chroma: bool, luma_upscale: int = LUMA_UPSCALE) -> np.ndarray:
    """For each frequency u, the largest sum of |weights| of any cell of any axis (8 values).

    128 * bound[u] * bound[v] bounds |coefficient (u, v)| for 8-bit images, edge cells,
    block padding and resizes included (Pillow's bilinear weights are positive and sum to one).
    """
    return np.max(
        [
            np.abs(axis_operator(n, chroma, luma_upscale=luma_upscale).weights).sum(axis=2).max(axis=1)
            for n in range(1, 8 * cell_size(luma_upscale) + 1)
        ],
        axis=0,
    )


CHUNK = 8  # cells per block of the banded products: wide enough for fast products, narrow enough to waste little


class BandedOperator(NamedTuple):
    """:func:`axis_operator` for some frequencies as dense blocks of ``CHUNK`` cells.

    Cells c*CHUNK .. c*CHUNK + CHUNK - 1 read input rows ``gather[c]`` (a contiguous,
    clamped range); ``blocks[c]`` ((cell, frequency) rows, width) holds their weights, so
    one batched product applies the whole axis. Cells past the last are zero."""

    gather: torch.Tensor  # (chunks * width,) int64 input rows
    blocks: torch.Tensor  # (chunks, CHUNK * len(freqs), width) float32


@byte_bounded_cache(OPERATOR_CACHE_BYTES)
def banded_operator(
    n_in: int,
    chroma: bool,
    n_out: int,
    flip: bool,
    luma_upscale: int,
    window: Window,
    freqs: Tuple[int, ...],
    device: str = "cpu",
    subsampled: bool = False,
) -> BandedOperator:
    """The operator of one axis as :class:`BandedOperator`, on ``device`` (cached per device,
    so the GPU path copies each operator once). Plain dense tensors: no sparse tensor is made,
    which in a DataLoader worker forked from a process using CUDA would fail."""
    op = axis_operator(n_in, chroma, n_out, flip, luma_upscale, window, subsampled)
    n_in = plane_size(n_in, subsampled)
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
    return BandedOperator(
        torch.from_numpy(gather).to(device),
        torch.from_numpy(blocks.reshape(chunks, CHUNK * len(freqs), width)).float().to(device),
    )


class Frequencies(NamedTuple):
    """What the passes need to know of a component's channels ``ks`` (k = 8u + v, ascending)."""

    us: Tuple[int, ...]  # the vertical frequencies needed, ascending
    vs: Tuple[int, ...]  # the horizontal ones
    pairs: np.ndarray  # (len(ks), 2) int32: each channel's positions in us and vs
    runs: Tuple[Tuple[int, int, int, int], ...]  # (first channel, u position, first v position, count)


@lru_cache(maxsize=None)
def frequencies(ks: Tuple[int, ...]) -> Frequencies:
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
    return Frequencies(us, vs, pairs, tuple(tuple(run) for run in runs))


KERNEL_BLOCK = 16  # cells the CPU kernel's column pass sums at once (one AVX-512 vector)


class KernelOperator(NamedTuple):
    """:func:`axis_operator` as the CPU kernel takes it, for the cells that read any pixel: cells
    ``first .. first + active - 1`` of ``cells``; the others are padding alone, whose
    coefficients are 0 (a window's grey padding). The row axis is laid out cell by cell, the
    column axis tap by tap (its pass sums along cells: see ``banded_dct.c``), its cells padded
    to a multiple of ``KERNEL_BLOCK`` (``padded``) with cells of weight 0."""

    index: np.ndarray  # rows: (active, window) int64; columns: (window, padded) int32
    weights: np.ndarray  # rows: (len(freqs), active, window); columns: (len(freqs), window, padded); float32
    first: int
    active: int
    cells: int


@byte_bounded_cache(OPERATOR_CACHE_BYTES)
def kernel_operator(
    n_in: int,
    chroma: bool,
    n_out: int,
    flip: bool,
    luma_upscale: int,
    window: Window,
    freqs: Tuple[int, ...],
    columns: bool = False,
    subsampled: bool = False,
) -> KernelOperator:
    """:func:`axis_operator` for some frequencies as the CPU kernel takes it (:class:`KernelOperator`)
    for the row axis, or with ``columns`` the column axis."""
    op = axis_operator(n_in, chroma, n_out, flip, luma_upscale, window, subsampled)
    active = np.flatnonzero(np.abs(op.weights).sum(axis=(0, 2)) > 0)
    first, last = (int(active[0]), int(active[-1]) + 1) if len(active) else (0, 0)
    index, weights = op.index[first:last], op.weights[list(freqs), first:last]
    if columns:  # padded to whole blocks of the kernel's vectors with cells of weight 0
        padding = -(last - first) % KERNEL_BLOCK
        index = np.concatenate([index, np.repeat(index[-1:], padding, axis=0)]) if len(index) else index
        weights = np.concatenate([weights, np.zeros((len(freqs), padding, weights.shape[2]))], axis=1)
        index, weights = index.T.astype(np.int32), weights.transpose(0, 2, 1)
    return KernelOperator(
        np.ascontiguousarray(index),
        np.ascontiguousarray(weights, dtype=np.float32),
        first,
        last - first,
        op.index.shape[0],
    )
