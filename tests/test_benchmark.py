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
        "--output",
        str(tmp_path),
    ]
    assert benchmark.main(args) == 0
    report = json.loads((tmp_path / "benchmark.json").read_text())
    assert (tmp_path / "benchmark.md").read_text().startswith("Machine:")

    sizes = []
    for name in report["images"]:
        w, h = Image.open(name).size
        sizes.append(ResizeShortestEdge.get_output_shape(h, w, 800, 1333))
    pixels = np.mean([3 * h * w for h, w in sizes])
    cells = np.mean([-(-h // 4) * -(-w // 4) for h, w in sizes])
    mappers = report["mappers"]
    assert mappers["stock DatasetMapper (uint8 pixels)"]["bytes_per_sample"] == pixels
    assert mappers["DCT-24 int16"]["bytes_per_sample"] == 24 * 2 * cells
    assert mappers["DCT-24 int8"]["bytes_per_sample"] == 24 * cells
    assert all(m["images_per_s"] > 0 for m in mappers.values())
    # Large-scale jitter: every sample is the crop, padded to 256 x 256, whatever the photo.
    assert mappers["stock DatasetMapper, LSJ 256"]["bytes_per_sample"] == 3 * 256 * 256
    for way in ("crop and pad absorbed", "pixels cropped and padded first"):
        assert mappers[f"DCT-24 int16, LSJ 256, {way}"]["bytes_per_sample"] == 24 * 2 * 64 * 64
