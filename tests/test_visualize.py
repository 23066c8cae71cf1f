"""The channel-picture tool writes a readable PNG of the channel grids."""

import numpy as np
from PIL import Image

from freqdet.visualize import channel_mosaic


def test_tool_writes_a_picture(photo_rgb, tmp_path, capsys):
    import importlib.util
    import pathlib

    tool = pathlib.Path(__file__).parents[1] / "tools" / "visualize_dct.py"
    spec = importlib.util.spec_from_file_location("visualize_dct", tool)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    source = tmp_path / "small.jpg"
    Image.fromarray(photo_rgb[::4, ::4]).save(source, quality=90)
    out = tmp_path / "channels.png"
    assert module.main(["--input", str(source), "--channels", "0,1,64,128", "--output", str(out)]) == 0
    picture = Image.open(out)
    assert picture.format == "PNG" and min(picture.size) > 500
    printed = capsys.readouterr().out
    assert "4 channels of 38x32 cells" in printed and str(out) in printed


def test_mosaic_puts_channel_k_at_row_u_column_v(rng):
    coeffs = np.zeros((192, 6, 5))
    coeffs[64 + 8 * 2 + 5] = 100.0  # Cb channel (u=2, v=5) only
    mosaic = channel_mosaic(coeffs, 1)
    tile_h, tile_w = (mosaic.shape[0] - 14) // 8, (mosaic.shape[1] - 14) // 8
    lit = np.argwhere(np.nan_to_num(mosaic) > 0)
    rows, cols = set(lit[:, 0] // (tile_h + 2)), set(lit[:, 1] // (tile_w + 2))
    assert rows == {2} and cols == {5}
