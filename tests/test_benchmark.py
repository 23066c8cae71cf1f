"""The benchmark command runs and counts bytes right (its timings are for people, not for tests)."""

import importlib.util
import json
import pathlib

import numpy as np
from detectron2.data.transforms import ResizeShortestEdge
from PIL import Image

TOOL = pathlib.Path(__file__).resolve().parents[1] / "tools" / "benchmark.py"


def test_benchmark_reports_bytes_that_match_the_image_sizes(tmp_path):
    spec = importlib.util.spec_from_file_location("benchmark", TOOL)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    args = [
        "--rounds",
        "1",
        "--demo-images",
        "0",
        "--channels",
        "24",
        "--wires",
        "int16",
        "int8",
        "--train-steps",
        "0",
        "--predict-rounds",
        "1",
        "--predict-size",
        "256",
        "400",
        "--lsj-size",
        "256",
        "--stages",
        "--output",
        str(tmp_path),
    ]
    assert benchmark.main(args) == 0
    report = json.loads((tmp_path / "benchmark.json").read_text())
    assert (tmp_path / "benchmark.md").read_text().startswith("Machine:")

    sizes, photo_sizes = [], []
    for name in report["images"]:
        w, h = Image.open(name).size
        photo_sizes.append((h, w))
        sizes.append(ResizeShortestEdge.get_output_shape(h, w, 800, 1333))
    pixels = np.mean([3 * h * w for h, w in sizes])
    cells = np.mean([-(-h // 4) * -(-w // 4) for h, w in sizes])
    mappers = report["mappers"]
    assert mappers["stock DatasetMapper (uint8 pixels)"]["bytes_per_sample"] == pixels
    assert mappers["DCT-24 int16"]["bytes_per_sample"] == 24 * 2 * cells
    assert mappers["DCT-24 int8"]["bytes_per_sample"] == 24 * cells
    assert all(m["images_per_s"] > 0 for m in mappers.values())
    # The decode alone is the yardstick of every row; the stages add up to the rows' time.
    decode = mappers["libjpeg-turbo decode to BGR only (freqdet.io.read_image)"]
    assert decode["time_vs_decode"] == 1.0 and decode["bytes_per_sample"] == np.mean(
        [h * w * 3 for h, w in photo_sizes]
    )
    assert mappers["DCT-24 int16"]["time_vs_decode"] > 0
    staged = report["stages_ms_per_image"]["DCT-24 int16"]
    kernel = ["colour conversion", "transform pass 1 (columns)", "transform pass 2 (rows) and the wire dtype's stores"]
    assert all(staged[s] > 0 for s in ["decode (libjpeg-turbo)", "augmentation (draw the transforms)", *kernel])
    # Large-scale jitter: every sample is the crop, padded to 256 x 256, whatever the photo.
    assert mappers["stock DatasetMapper, LSJ 256"]["bytes_per_sample"] == 3 * 256 * 256
    for way in ("crop and pad absorbed", "pixels cropped and padded first"):
        assert mappers[f"DCT-24 int16, LSJ 256, {way}"]["bytes_per_sample"] == 24 * 2 * 64 * 64
