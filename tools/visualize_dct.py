#!/usr/bin/env python
"""Write a picture of an image's frequency channels: the 192 channel maps (three 8x8 grids,
Y/Cb/Cr) with a selection outlined, and the image rebuilt from that selection.

    python tools/visualize_dct.py --input photo.jpg --channels 24 --output channels.png

Without --input it uses a real photo shipped with matplotlib (grace_hopper.jpg).
"""

import argparse
import os
import sys

import numpy as np

from freqdet import read_image
from freqdet.dct import PATTERNS, channel_indices, upscaled_dct, validate_channels
from freqdet.visualize import plot_channels


def default_photo() -> str:
    import matplotlib.cbook

    return str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", default=None, help="image file (default: matplotlib's grace_hopper.jpg)")
    parser.add_argument(
        "--channels", default="24", help="a channel count (24, 32, 48, 64, 192) or comma-separated indices"
    )
    parser.add_argument("--pattern", default="square", choices=PATTERNS)
    parser.add_argument(
        "--output", default="output/dct_channels.png", help="picture to write (.png, or .jpg for a smaller file)"
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    path = args.input or default_photo()
    if "," in args.channels:
        selection = validate_channels(int(i) for i in args.channels.split(","))
        label = f"{len(selection)} listed channels"
    else:
        selection = channel_indices(int(args.channels), args.pattern)
        label = f"{args.pattern}-{args.channels}"
    image = read_image(path, format="BGR")
    coeffs = upscaled_dct(image, selection)
    fig = plot_channels(image, selection, title=f"{os.path.basename(path)}: DCT channels, selection {label}")
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    fig.savefig(args.output, dpi=110)
    int16_bytes = coeffs.size * np.dtype(np.int16).itemsize
    print(f"image {path}: {image.shape[1]}x{image.shape[0]} pixels, {image.nbytes} bytes as uint8 BGR")
    print(
        f"selection {label}: {coeffs.shape[0]} channels of {coeffs.shape[1]}x{coeffs.shape[2]} cells, "
        f"{int16_bytes} bytes as int16 ({int16_bytes / image.nbytes:.2f}x the pixels)"
    )
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
