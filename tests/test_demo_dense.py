"""The demo's derived labels (semantic, separated panoptic, keypoints) against independent references.

They are checked in the real demo cache (``$FREQDET_CACHE``), through Detectron2's catalog:
the semantic labels against pycocotools' own rasterization of the instance polygons, the
panoptic PNGs against their JSON and the instance annotations, the keypoints against the
polygons, the flip map through Detectron2's keypoint transform.
"""

import json
import os
import time

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from PIL import Image
from pycocotools.coco import COCO

import freqdet  # noqa: F401  (registers the demo datasets)
from freqdet.demo import coco_shapes, dense_labels
from freqdet.demo.drawing import paint_shape
from freqdet.detection.datasets import (
    DEMO_DATASETS,
    DEMO_KEYPOINT_DATASETS,
    DEMO_KEYPOINT_OKS_SIGMAS,
    DEMO_PANOPTIC_DATASETS,
    DEMO_SEM_SEG_DATASETS,
)

SPLITS = tuple(coco_shapes.SPLITS)


@pytest.fixture(scope="module")
def instances():
    """Per split: the instance JSON (pycocotools' COCO) after the derived labels exist."""
    dense_labels.prepare_dense_labels()
    out = {}
    for split in SPLITS:
        coco = COCO(coco_shapes.split_paths(split)[0])
        out[split] = coco
    return out


def _png(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def _label_file(split, folder, image) -> str:
    return os.path.join(getattr(dense_labels.dense_paths(split), folder), image["file_name"][:-4] + ".png")


def _near_a_change(labels: np.ndarray, radius: int) -> np.ndarray:
    """Pixels whose (2 radius + 1)^2 neighbourhood holds more than one label."""
    padded = np.pad(labels, radius, mode="edge")
    h, w = labels.shape
    near = np.zeros(labels.shape, bool)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            near |= padded[dy : dy + h, dx : dx + w] != labels
    return near


def test_every_demo_dataset_loads_through_the_catalog(instances):
    assert len(DEMO_DATASETS) == len(set(DEMO_DATASETS)) == 10
    assert {"freqdet_demo_train", "freqdet_demo_val"} <= set(DEMO_DATASETS) <= set(DatasetCatalog.list())
    expected_type = {
        "": "coco",
        "_sem_seg": "sem_seg",
        "_panoptic_separated": "coco_panoptic_seg",
        "_panoptic_stuffonly": "sem_seg",
        "_keypoints": "coco",
    }
    for name in DEMO_DATASETS:
        split = name.split("_")[2]
        dicts = DatasetCatalog.get(name)
        assert len(dicts) == coco_shapes.SPLITS[split][0], name
        for d in (dicts[0], dicts[-1]):
            assert os.path.isfile(d["file_name"])
            assert os.path.isfile(d.get("sem_seg_file_name", d["file_name"]))
        kind = name[len(f"freqdet_demo_{split}") :]
        assert MetadataCatalog.get(name).evaluator_type == expected_type[kind], name
    assert MetadataCatalog.get("freqdet_demo_val_sem_seg").stuff_classes == ["background"] + list(coco_shapes.CLASSES)
    assert MetadataCatalog.get("freqdet_demo_val_sem_seg").ignore_label == 255
    # the derived labels live beside the demo, which keeps only its own files
    assert sorted(os.listdir(coco_shapes.demo_root())) == ["train", "train.json", "val", "val.json"]


def test_semantic_labels_match_an_independent_rasterization(instances):
    """pycocotools' rasterization of the instance polygons, later annotations on top.

    The labels are Pillow's fill, the rasterizer that painted the shapes (next test);
    pycocotools puts pixel centres half a pixel further and leaves out edge pixels Pillow
    fills, so the two differ on a rim: about 2.4% of the object pixels, all of them within
    2 pixels of an edge (the 2 at the tips of acute triangles).
    """
    for name in DEMO_SEM_SEG_DATASETS:
        split = name.split("_")[2]
        coco = instances[split]
        by_file = {image["file_name"]: image for image in coco.loadImgs(coco.getImgIds())}
        wrong, total = 0, 0
        for d in DatasetCatalog.get(name):
            image = by_file[os.path.basename(d["file_name"])]
            with Image.open(d["sem_seg_file_name"]) as png:
                assert png.mode == "L" and png.size == (image["width"], image["height"])
                labels = np.asarray(png)
            reference = np.zeros_like(labels)
            for ann in coco.loadAnns(coco.getAnnIds(imgIds=image["id"])):  # in annotation order: later on top
                reference[coco.annToMask(ann).astype(bool)] = ann["category_id"]
            differs = labels != reference
            assert not (differs & ~_near_a_change(reference, 2)).any(), d["sem_seg_file_name"]
            assert differs.sum() < 0.1 * (reference > 0).sum(), d["sem_seg_file_name"]
            wrong, total = wrong + differs.sum(), total + (reference > 0).sum()
        assert wrong < 0.03 * total, name


def test_semantic_labels_are_the_pixels_the_demo_painted():
    """The first val images drawn again: each object's painted area is its label (up to the
    polygons' rounding to 0.01 pixel in the JSON)."""
    rng = np.random.default_rng(coco_shapes.SPLITS["val"][1])  # the val split's draws, in order
    for image_id in range(1, 6):
        pixels, objects = coco_shapes.draw_image(rng)
        rng.integers(65, 96), rng.integers(0, 3)  # its JPEG quality and subsampling
        painted = np.zeros(pixels.shape[:2], np.uint8)
        for obj in objects:
            area = paint_shape(np.zeros(pixels.shape), obj["polygon"], np.ones(pixels.shape))[..., 0] > 0.5
            painted[area] = obj["category"] + 1
        labels = _png(_label_file("val", "sem_seg_root", {"file_name": f"{image_id:06d}.jpg"}))
        assert labels.shape == painted.shape and (labels != painted).sum() <= 0.005 * (painted > 0).sum(), image_id


@pytest.mark.slow
def test_panoptic_png_matches_its_json_and_the_instances(instances):
    for split in SPLITS:
        coco = instances[split]
        paths = dense_labels.dense_paths(split)
        with open(paths.panoptic_json) as f:
            panoptic = json.load(f)
        categories = {c["id"]: c for c in panoptic["categories"]}
        assert [categories[i]["isthing"] for i in range(1, 8)] == [1] * 6 + [0]
        assert categories[7]["name"] == "background"
        assert [categories[i]["name"] for i in range(1, 7)] == list(coco_shapes.CLASSES)
        assert panoptic["images"] == coco.dataset["images"]
        assert len(panoptic["annotations"]) == len(coco.dataset["images"])
        for entry in panoptic["annotations"]:
            image = coco.loadImgs(entry["image_id"])[0]
            rgb = _png(os.path.join(paths.panoptic_root, entry["file_name"])).astype(np.int64)
            assert rgb.shape == (image["height"], image["width"], 3)
            ids = rgb[..., 0] + 256 * rgb[..., 1] + 256**2 * rgb[..., 2]
            found, counts = np.unique(ids, return_counts=True)
            segments = {s["id"]: s for s in entry["segments_info"]}
            assert dict(zip(found.tolist(), counts.tolist())) == {i: s["area"] for i, s in segments.items()}
            anns = {a["id"]: a for a in coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))}
            semantic = _png(_label_file(split, "sem_seg_root", image))
            for segment_id, segment in segments.items():
                mask = ids == segment_id
                ys, xs = np.nonzero(mask)
                assert segment["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
                assert segment["iscrowd"] == 0
                if categories[segment["category_id"]]["isthing"]:
                    assert segment["category_id"] == anns[segment_id]["category_id"]
                    assert (semantic[mask] == segment["category_id"]).all()
                else:
                    assert segment["category_id"] == 7 and (semantic[mask] == 0).all()
            assert set(anns) <= set(segments)  # the demo's objects never hide one another


def test_stuff_labels_are_things_exactly_where_objects_are(instances):
    for split in SPLITS:
        for image in instances[split].dataset["images"]:
            stuff = _png(_label_file(split, "panoptic_stuff_root", image))
            semantic = _png(_label_file(split, "sem_seg_root", image))
            np.testing.assert_array_equal(stuff, (semantic == 0).astype(np.uint8))


def test_separated_panoptic_dicts_merge_instances_and_stuff_labels():
    for split in SPLITS:
        separated = DatasetCatalog.get(f"freqdet_demo_{split}_panoptic_separated")
        plain = DatasetCatalog.get(f"freqdet_demo_{split}")
        stuff_root = dense_labels.dense_paths(split).panoptic_stuff_root
        assert [d["file_name"] for d in separated] == [d["file_name"] for d in plain]
        for a, b in zip(separated, plain):
            assert a["annotations"] == b["annotations"]
            assert a["sem_seg_file_name"] == os.path.join(stuff_root, os.path.basename(b["file_name"])[:-4] + ".png")
        meta = MetadataCatalog.get(f"freqdet_demo_{split}_panoptic_separated")
        assert meta.stuff_classes == ["things", "background"]
        assert meta.stuff_dataset_id_to_contiguous_id == {0: 0, 7: 1}
        assert meta.thing_dataset_id_to_contiguous_id == {i + 1: i for i in range(6)}
        assert os.path.isfile(meta.panoptic_json) and os.path.isdir(meta.panoptic_root)
    assert set(DEMO_PANOPTIC_DATASETS) == {
        f"freqdet_demo_{s}_panoptic_{f}" for s in SPLITS for f in ("separated", "stuffonly")
    }


def _ends(segmentation):
    """(first vertex of least x, first vertex of greatest x) of a flat polygon list."""
    vertices = [(x, y) for polygon in segmentation for x, y in zip(polygon[::2], polygon[1::2])]
    left = min(range(len(vertices)), key=lambda i: vertices[i][0])
    right = max(range(len(vertices)), key=lambda i: vertices[i][0])
    return vertices[left], vertices[right]


def test_keypoints_are_the_polygon_extremes(instances):
    for name in DEMO_KEYPOINT_DATASETS:
        split = name.split("_")[2]
        coco = instances[split]
        with open(dense_labels.dense_paths(split).keypoints_json) as f:
            raw = json.load(f)
        assert raw["images"] == coco.dataset["images"]
        for category in raw["categories"]:
            assert category["keypoints"] == ["left_end", "right_end"] and category["skeleton"] == [[1, 2]]
        for with_keypoints, plain in zip(raw["annotations"], coco.dataset["annotations"]):
            assert {k: v for k, v in with_keypoints.items() if k not in ("keypoints", "num_keypoints")} == plain
            assert with_keypoints["num_keypoints"] == 2
        loaded = DatasetCatalog.get(name)
        annotations = [a for d in loaded for a in d["annotations"]]
        assert len(annotations) == len(coco.dataset["annotations"])
        for ann, plain in zip(annotations, coco.dataset["annotations"]):
            (lx, ly), (rx, ry) = _ends(plain["segmentation"])
            # Detectron2 adds 0.5 to COCO keypoints (pixel indices): it loads the vertices themselves
            np.testing.assert_allclose(ann["keypoints"], [lx, ly, 2, rx, ry, 2], atol=1e-6)
            x, _, w, _ = plain["bbox"]
            assert abs(lx - x) < 0.006 and abs(rx - (x + w)) < 0.006
    meta = MetadataCatalog.get("freqdet_demo_train_keypoints")
    assert list(meta.keypoint_names) == ["left_end", "right_end"]
    assert [tuple(p) for p in meta.keypoint_flip_map] == [("left_end", "right_end")]
    assert meta.keypoint_connection_rules == [("left_end", "right_end", (255, 0, 0))]
    assert len(DEMO_KEYPOINT_OKS_SIGMAS) == len(meta.keypoint_names)


def test_horizontal_flip_keeps_left_end_left():
    name = "freqdet_demo_val_keypoints"
    indices = utils.create_keypoint_hflip_indices([name])
    assert list(indices) == [1, 0]
    for d in DatasetCatalog.get(name)[:20]:
        h, w = d["height"], d["width"]
        flip = T.TransformList([T.HFlipTransform(w)])
        for ann in d["annotations"]:
            flipped = utils.transform_keypoint_annotations(ann["keypoints"], flip, (h, w), indices)
            polygon = flip.apply_coords(np.asarray(ann["segmentation"][0], dtype=np.float64).reshape(-1, 2))
            assert (flipped[:, 2] == 2).all()
            assert flipped[0, 0] == pytest.approx(polygon[:, 0].min()) and flipped[0, 0] < flipped[1, 0]
            assert flipped[1, 0] == pytest.approx(polygon[:, 0].max())
            for point in flipped[:, :2]:  # each is still a vertex
                assert np.abs(polygon - point).max(axis=1).min() < 1e-6


@pytest.mark.filterwarnings("ignore:Creating a tensor from a list of numpy.ndarrays:UserWarning")
def test_stock_mapper_reads_the_labels():
    """Detectron2's own DatasetMapper, flipping, on a semantic and a keypoint dict."""
    from detectron2.data import DatasetMapper

    flip = [T.RandomFlip(prob=1.0)]
    semantic = DatasetCatalog.get("freqdet_demo_val_sem_seg")[0]
    out = DatasetMapper(is_train=True, augmentations=flip, image_format="RGB")(dict(semantic))
    labels = _png(semantic["sem_seg_file_name"])
    np.testing.assert_array_equal(out["sem_seg"].numpy(), labels[:, ::-1])

    keypoints = DatasetCatalog.get("freqdet_demo_val_keypoints")[0]
    mapper = DatasetMapper(
        is_train=True,
        augmentations=flip,
        image_format="RGB",
        use_keypoint=True,
        keypoint_hflip_indices=utils.create_keypoint_hflip_indices(["freqdet_demo_val_keypoints"]),
    )
    instances = mapper(dict(keypoints))["instances"]
    points = instances.gt_keypoints.tensor.numpy()
    assert len(points) == len(keypoints["annotations"])
    assert (points[:, 0, 0] < points[:, 1, 0]).all()  # left_end stays the left one


def test_regeneration_is_deterministic_and_quick(tmp_path):
    start = time.perf_counter()
    dense_labels.generate_dense_split("val", coco_shapes.demo_root(), str(tmp_path / "demo_dense"))
    seconds = time.perf_counter() - start
    cached = dense_labels.dense_paths("val")
    fresh = dense_labels.dense_paths("val", str(tmp_path / "demo"))
    for a, b in zip(cached, fresh):
        if os.path.isdir(a):
            names = sorted(os.listdir(a))
            assert names == sorted(os.listdir(b)) and len(names) == 100
            pairs = [(os.path.join(a, n), os.path.join(b, n)) for n in names[:: len(names) // 10]]
        else:
            pairs = [(a, b)]
        for x, y in pairs:
            with open(x, "rb") as f, open(y, "rb") as g:
                assert f.read() == g.read(), x
    assert seconds < 10  # about 0.6 s for these 100 images on a 2-core machine


def test_first_use_makes_the_demo_then_its_labels_once(tmp_path, monkeypatch):
    monkeypatch.setattr(coco_shapes, "SPLITS", {"train": (6, 0), "val": (3, 1)})
    root = str(tmp_path / "demo_v1")
    folder = dense_labels.prepare_dense_labels(root)
    assert folder == str(tmp_path / "demo_v1_dense") and os.path.isfile(os.path.join(root, "val.json"))
    paths = dense_labels.dense_paths("val", root)
    assert sorted(os.listdir(paths.sem_seg_root)) == ["000001.png", "000002.png", "000003.png"]
    stamp = os.stat(paths.keypoints_json).st_mtime_ns
    assert dense_labels.prepare_dense_labels(root) == folder
    assert os.stat(paths.keypoints_json).st_mtime_ns == stamp  # not made again
    assert sorted(os.listdir(tmp_path)) == ["demo_v1", "demo_v1_dense"]  # no staging folder left


def test_stock_evaluators_score_the_ground_truth_as_perfect():
    """Detectron2's COCOEvaluator (keypoints, with :data:`DEMO_KEYPOINT_OKS_SIGMAS`) and
    SemSegEvaluator read the labels and the metadata: the ground truth as predictions scores 100."""
    import torch
    from detectron2.evaluation import COCOEvaluator, SemSegEvaluator
    from detectron2.structures import Boxes, BoxMode, Instances

    name = "freqdet_demo_val_keypoints"
    evaluator = COCOEvaluator(
        name, tasks=("keypoints",), distributed=False, use_fast_impl=False, kpt_oks_sigmas=DEMO_KEYPOINT_OKS_SIGMAS
    )
    evaluator.reset()
    for d in DatasetCatalog.get(name):
        predicted = Instances((d["height"], d["width"]))
        boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in d["annotations"]]
        predicted.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
        predicted.scores = torch.ones(len(boxes))
        predicted.pred_classes = torch.tensor([a["category_id"] for a in d["annotations"]])
        keypoints = np.array([a["keypoints"] for a in d["annotations"]], dtype=np.float32)
        predicted.pred_keypoints = torch.from_numpy(keypoints.reshape(-1, 2, 3))
        evaluator.process([{"image_id": d["image_id"]}], [{"instances": predicted}])
    assert evaluator.evaluate()["keypoints"]["AP"] == pytest.approx(100)

    name = "freqdet_demo_val_sem_seg"
    evaluator = SemSegEvaluator(name, distributed=False)
    evaluator.reset()
    for d in DatasetCatalog.get(name):
        labels = torch.from_numpy(_png(d["sem_seg_file_name"]).astype(np.int64))
        scores = torch.nn.functional.one_hot(labels, len(dense_labels.SEM_SEG_CLASSES)).permute(2, 0, 1).float()
        evaluator.process([{"file_name": d["file_name"]}], [{"sem_seg": scores}])
    assert evaluator.evaluate()["sem_seg"]["mIoU"] == pytest.approx(100)
