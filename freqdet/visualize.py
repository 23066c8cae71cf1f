"""Pictures of frequency channels, so a person can see what the network sees."""

from typing import Sequence, Tuple

import numpy as np

from .dct import COMPONENTS, NUM_CHANNELS, upscaled_dct, upscaled_idct

_GAP = 2
_MAX_TILE = 96


def _tile(channel_map: np.ndarray, size: Tuple[int, int], top: float) -> np.ndarray:
    """Log-magnitude of one channel divided by ``top``, resized by nearest sampling."""
    mag = np.log1p(np.abs(channel_map)) / max(top, 1e-6)
    rows = np.linspace(0, mag.shape[0] - 1, size[0]).round().astype(int)
    cols = np.linspace(0, mag.shape[1] - 1, size[1]).round().astype(int)
    return mag[np.ix_(rows, cols)]


def channel_mosaic(coeffs: np.ndarray, component: int) -> np.ndarray:
    """One component's 64 channel maps as an 8x8 mosaic (u down, v across), NaN in the gaps.

    The 63 AC channels share one colour scale, so the fall of energy with frequency shows;
    the DC channel (mean brightness of each block) is scaled on its own.
    """
    planes = np.log1p(np.abs(coeffs[64 * component : 64 * (component + 1)]))
    ac_top = float(np.percentile(planes[1:], 99.9))
    h, w = coeffs.shape[1:]
    scale = min(1.0, _MAX_TILE / max(h, w))
    th, tw = max(1, int(h * scale)), max(1, int(w * scale))
    mosaic = np.full((8 * th + 7 * _GAP, 8 * tw + 7 * _GAP), np.nan)
    for k in range(64):
        u, v = divmod(k, 8)
        r, c = u * (th + _GAP), v * (tw + _GAP)
        top = float(planes[0].max()) if k == 0 else ac_top
        mosaic[r : r + th, c : c + tw] = _tile(coeffs[64 * component + k], (th, tw), top)
    return mosaic


def plot_channels(image_bgr: np.ndarray, selection: Sequence[int], title: str = ""):
    """A matplotlib figure: the image, its reconstruction from ``selection``, and the 192 channel maps.

    The three 8x8 grids show log |coefficient| of each channel for Y, Cb and Cr (channel
    ``k = 8u + v`` at row u, column v; tiles are labelled with global indices); channels
    in ``selection`` are outlined.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    selection = sorted(selection)
    coeffs = upscaled_dct(image_bgr, NUM_CHANNELS)
    size = image_bgr.shape[:2]
    recon = upscaled_idct(coeffs[selection], selection, size, "RGB")
    original = image_bgr[..., ::-1].astype(np.float32)
    mse = float(np.mean((recon - original) ** 2))
    psnr = 10 * np.log10(255.0**2 / mse) if mse > 0 else float("inf")

    fig = plt.figure(figsize=(18, 11))
    grid = fig.add_gridspec(2, 3, height_ratios=[1, 1.1])
    panels = [
        (original, "original"),
        (recon, f"inverse DCT of the {len(selection)} selected channels (PSNR {psnr:.1f} dB)"),
        (np.abs(recon - original).mean(axis=2), "|difference| (mean over RGB)"),
    ]
    for col, (picture, label) in enumerate(panels):
        ax = fig.add_subplot(grid[0, col])
        if picture.ndim == 3:
            ax.imshow(np.clip(picture, 0, 255).astype(np.uint8))
        else:
            ax.imshow(picture, cmap="magma", vmin=0, vmax=max(1.0, float(np.percentile(picture, 99.5))))
        ax.set_title(label, fontsize=10)
        ax.axis("off")

    h, w = coeffs.shape[1:]
    chosen = set(selection)
    for component, name in enumerate(COMPONENTS):
        ax = fig.add_subplot(grid[1, component])
        mosaic = channel_mosaic(coeffs, component)
        ax.imshow(np.ma.masked_invalid(mosaic), cmap="viridis", vmin=0, vmax=1)
        th = (mosaic.shape[0] - 7 * _GAP) // 8
        tw = (mosaic.shape[1] - 7 * _GAP) // 8
        for k in range(64):
            u, v = divmod(k, 8)
            index = 64 * component + k
            x0, y0 = v * (tw + _GAP) - 0.5, u * (th + _GAP) - 0.5
            ax.text(x0 + 2, y0 + 2, str(index), color="white", fontsize=6, va="top", ha="left")
            if index in chosen:
                ax.add_patch(Rectangle((x0, y0), tw, th, fill=False, edgecolor="red", linewidth=1.5))
        n_kept = sum(1 for i in selection if i // 64 == component)
        ax.set_title(
            f"{name}: {n_kept} of 64 selected (red); u down, v across; log|coef|, AC on one scale", fontsize=10
        )
        ax.axis("off")
    fig.suptitle(title or f"DCT channels ({h}x{w} cells of 4x4 pixels each)", fontsize=12)
    fig.tight_layout()
    return fig


def plot_selection_heatmap(rates: np.ndarray, title: str = ""):
    """The paper's Fig. 5: three 8x8 grids (Y, Cb, Cr) of how often each channel is selected.

    ``rates`` has 192 values in 0..1 (NaN for channels the model does not take); cell
    (u, v) of a grid is channel k = 8u + v, labelled with its global index and its rate.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = np.asarray(rates, dtype=np.float64).reshape(len(COMPONENTS), 8, 8)
    fig, axes = plt.subplots(1, len(COMPONENTS), figsize=(15, 5.2))
    for component, (ax, name) in enumerate(zip(axes, COMPONENTS)):
        grid = rates[component]
        image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", vmin=0, vmax=1)
        for u in range(8):
            for v in range(8):
                index = 64 * component + 8 * u + v
                value = grid[u, v]
                text = f"{index}\n{value:.2f}" if np.isfinite(value) else f"{index}\n-"
                color = "black" if np.isfinite(value) and value > 0.6 else "white"
                ax.text(v, u, text, ha="center", va="center", fontsize=7, color=color)
        ax.set_title(f"{name}: mean rate {np.nanmean(grid):.2f}", fontsize=10)
        ax.set_xticks(range(8))
        ax.set_yticks(range(8))
        ax.set_xlabel("v (horizontal frequency)")
        ax.set_ylabel("u (vertical frequency)")
    fig.colorbar(image, ax=list(axes), fraction=0.02, label="selection rate")
    fig.suptitle(title or "How often the gate selects each DCT channel", fontsize=12)
    return fig
