"""The 8x8 block DCT that JPEG uses, in numpy (float64 inside, float32 out).

Convention (shared with libjpeg): a block's samples are level-shifted by -128, then the
orthonormal 2-D DCT-II is taken. Coefficient (u, v), with u the vertical and v the
horizontal frequency, is stored at index ``k = 8 * u + v`` (row-major, not zigzag). A
JPEG written at quality 100 stores exactly these values, rounded.
"""

import numpy as np

BLOCK = 8
LEVEL_SHIFT = 128.0


def dct_matrix(n: int = BLOCK) -> np.ndarray:
    """Orthonormal DCT-II matrix ``M`` (n x n, float64): ``M @ x`` is the 1-D DCT of ``x``.

    ``M[u, x] = a(u) * cos((2x + 1) * u * pi / (2n))`` with ``a(0) = sqrt(1/n)`` and
    ``a(u) = sqrt(2/n)`` otherwise, so ``M @ M.T`` is the identity.
    """
    u = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    m = np.cos((2 * x + 1) * u * np.pi / (2 * n)) * np.sqrt(2.0 / n)
    m[0] = np.sqrt(1.0 / n)
    return m


DCT_MATRIX = dct_matrix()


def pad_to_blocks(plane: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """Edge-pad a 2-D plane at the bottom and right to a multiple of ``block``.

    This is what a JPEG encoder does with a partial block (libjpeg replicates the last
    column and row), so coefficients of a partial block match a real JPEG's.
    """
    h, w = plane.shape
    pad_h, pad_w = -h % block, -w % block
    if pad_h or pad_w:
        plane = np.pad(plane, ((0, pad_h), (0, pad_w)), mode="edge")
    return plane


def _check_plane(plane) -> np.ndarray:
    plane = np.asarray(plane)
    if plane.ndim != 2 or plane.size == 0:
        raise ValueError(
            f"block_dct expects one non-empty 2-D plane (H, W), got shape {plane.shape}; "
            "pass one colour component at a time, e.g. rgb_to_ycbcr(image)[..., 0]"
        )
    return plane


def block_dct(plane) -> np.ndarray:
    """8x8 block DCT of a plane of samples in 0..255 (uint8 or float).

    Returns float32 of shape ``(ceil(H/8), ceil(W/8), 64)``: entry ``[i, j, 8u+v]`` is
    coefficient (u, v) of the block covering rows ``8i..8i+7`` and columns ``8j..8j+7``.
    Sizes not divisible by 8 are edge-padded first, as a JPEG encoder does.
    """
    x = pad_to_blocks(_check_plane(plane).astype(np.float64) - LEVEL_SHIFT)
    h, w = x.shape[0] // BLOCK, x.shape[1] // BLOCK
    blocks = x.reshape(h, BLOCK, w, BLOCK).transpose(0, 2, 1, 3)  # (h, w, y, x)
    coeffs = DCT_MATRIX @ blocks @ DCT_MATRIX.T  # (h, w, u, v)
    return coeffs.reshape(h, w, BLOCK * BLOCK).astype(np.float32)


def block_idct(coeffs) -> np.ndarray:
    """Inverse of :func:`block_dct`: ``(h, w, 64)`` coefficients -> float32 ``(8h, 8w)`` samples.

    The level shift is added back, nothing is clipped or rounded, so
    ``block_idct(block_dct(x)) == x`` up to float error for sizes divisible by 8.
    """
    c = np.asarray(coeffs, dtype=np.float64)
    if c.ndim != 3 or c.shape[2] != BLOCK * BLOCK:
        raise ValueError(f"block_idct expects coefficients of shape (h, w, 64), got {c.shape}")
    h, w = c.shape[:2]
    blocks = DCT_MATRIX.T @ c.reshape(h, w, BLOCK, BLOCK) @ DCT_MATRIX  # (h, w, y, x)
    plane = blocks.transpose(0, 2, 1, 3).reshape(h * BLOCK, w * BLOCK) + LEVEL_SHIFT
    return plane.astype(np.float32)
