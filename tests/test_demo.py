"""The built-in demo dataset: deterministic, real JPEGs, valid COCO annotations."""

import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from turbojpeg import TurboJPEG

from freqdet.demo import coco_shapes as demo


@pytest.fixture(scope="module")
def small_demo(module_tmp):
    """Two generations of a 40-image split, in two folders."""
    roots = [module_tmp(f"demo{i}") for i in range(2)]
    original = demo.SPLITS
    demo.SPLITS = {"train": (40, 0)}
    try:
        for root in roots:
            demo.generate_split("train", str(root))
    finally:
        demo.SPLITS = original
    return roots


def test_generation_is_deterministic(small_demo):
    a, b = small_demo
    assert (a / "train.json").read_bytes() == (b / "train.json").read_bytes()
    for name in ("000001.jpg", "000040.jpg"):
        assert (a / "train" / name).read_bytes() == (b / "train" / name).read_bytes()


def test_real_jpegs_of_mixed_quality_and_subsampling(small_demo):
    root = small_demo[0]
    info = json.loads((root / "train.json").read_text())
    turbo = TurboJPEG()
    subsamplings = set()
    for image in info["images"]:
        width, height, subsampling, _ = turbo.decode_header((root / "train" / image["file_name"]).read_bytes())
        assert (width, height) == (image["width"], image["height"])
        subsamplings.add(subsampling)
    assert len(subsamplings) == 3
    assert len({image["jpeg_quality"] for image in info["images"]}) > 10


def test_annotations_are_valid_coco(small_demo):
    coco = COCO(str(small_demo[0] / "train.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(demo.CLASSES)
    anns = coco.loadAnns(coco.getAnnIds())
    assert len(anns) >= 40
    for ann in anns:
        image = coco.loadImgs(ann["image_id"])[0]
        mask = coco.annToMask(ann)
        assert mask.shape == (image["height"], image["width"]) and mask.sum() > 200
        x, y, w, h = ann["bbox"]
        assert 0 <= x and 0 <= y and x + w <= image["width"] and y + h <= image["height"]
        ys, xs = np.nonzero(mask)
        assert abs(xs.min() - x) <= 1.5 and abs(ys.min() - y) <= 1.5
        assert abs(mask.sum() - ann["area"]) / ann["area"] < 0.1


def test_classes_differ_in_frequency_as_well_as_shape(small_demo):
    """Fine gratings put more of their energy in high frequencies than coarse ones."""
    from freqdet import read_image
    from freqdet.dct import block_dct, rgb_to_ycbcr

    coco = COCO(str(small_demo[0] / "train.json"))
    share = {"fine": [], "coarse": []}
    for ann in coco.loadAnns(coco.getAnnIds()):
        image = coco.loadImgs(ann["image_id"])[0]
        x, y, w, h = (int(v) for v in ann["bbox"])
        pixels = read_image(small_demo[0] / "train" / image["file_name"], "RGB")
        cx, cy = x + w // 2, y + h // 2
        patch = rgb_to_ycbcr(pixels[cy - 8 : cy + 8, cx - 8 : cx + 8])[..., 0]
        energy = (block_dct(patch) ** 2).reshape(-1, 8, 8).sum(axis=0)
        u, v = np.mgrid[0:8, 0:8]
        high = energy[(u + v >= 3) & (u + v > 0)].sum() / energy[u + v > 0].sum()
        share[coco.loadCats(ann["category_id"])[0]["name"].split("_")[1]].append(high)
    assert np.median(share["fine"]) > 0.5 > np.median(share["coarse"])
