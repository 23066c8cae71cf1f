"""The benchmark command runs and counts bytes right (its timings are for people, not for tests)."""

import importlib.util
import json
import pathlib

import numpy as np
import pytest
from detectron2.data.transforms import ResizeShortestEdge
from PIL import Image

TOOL = pathlib.Path(__file__).resolve().parents[1] / "tools" / "benchmark.py"


@pytest.mark.slow
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


def test_summarize_prints_each_rows_median_and_range_over_runs(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("benchmark", TOOL)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    # Three runs; the DCT row's speeds 5.0, 3.0, 4.0 (median 4.0), its times 2, 4, 3 ms (median 3);
    # a row only one run has is left out.
    speeds, times = (5.0, 3.0, 4.0), (0.002, 0.004, 0.003)
    paths = []
    for k in range(3):
        row = {"seconds_per_image": times[k], "throughput_vs_stock": speeds[k], "time_vs_decode": 1.5 + k}
        mappers = {"DCT-24": dict(row, bytes_per_sample=2.0e6), "stock": dict(row, bytes_per_sample=1.0e6)}
        if k == 1:
            mappers["extra"] = dict(row, bytes_per_sample=1)
        path = tmp_path / f"run{k}" / "benchmark.json"
        path.parent.mkdir()
        path.write_text(json.dumps({"machine": "m", "mappers": mappers}))
        paths.append(str(path))
    assert benchmark.main(["--summarize", *paths]) == 0
    table = capsys.readouterr().out
    assert "Median of 3 runs" in table and "extra" not in table
    assert "| DCT-24 | 3.00 (2.00-4.00) | 4.00x (3.00-5.00) | 2.50x (1.50-3.50) | 2.00 MB |" in table
    assert benchmark.main(["--summarize", str(tmp_path / "missing.json")]) == 2
