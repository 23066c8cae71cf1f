"""A user's own COCO-format dataset of real JPEGs, from a folder outside the repository: the
README's walk-through (DCTTrainer, evaluation, DCTPredictor), tools/predict.py, and
tools/train_net.py --register-coco."""

import json
import math
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from freqdet.demo import packaged_photos

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Small images and a short schedule: seconds on a CPU, the scratch config otherwise as shipped.
# (The 4conv1fc box head costs most: few proposals keep it cheap.)
FAST = [
    "INPUT.MIN_SIZE_TRAIN",
    "(80,)",
    "INPUT.MAX_SIZE_TRAIN",
    "128",
    "INPUT.MIN_SIZE_TEST",
    "80",
    "INPUT.MAX_SIZE_TEST",
    "128",
    "SOLVER.IMS_PER_BATCH",
    "2",
    "SOLVER.MAX_ITER",
    "30",
    "SOLVER.STEPS",
    "(25,)",
    "SOLVER.WARMUP_ITERS",
    "5",
    "SOLVER.BASE_LR",
    "0.002",
    "DATALOADER.NUM_WORKERS",
    "0",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE",
    "16",
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN",
    "200",
    "MODEL.RPN.POST_NMS_TOPK_TRAIN",
    "50",
    "MODEL.RPN.PRE_NMS_TOPK_TEST",
    "100",
    "MODEL.RPN.POST_NMS_TOPK_TEST",
    "20",
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
    "0.0",
    "TEST.DETECTIONS_PER_IMAGE",
    "10",
]
# (JPEG options, EXIF orientation, greyscale) of the images; the annotations are in displayed pixels.
VARIANTS = [
    (dict(quality=90, subsampling=2), None, False),  # 4:2:0
    (dict(quality=92, subsampling=0), None, False),  # 4:4:4
    (dict(quality=85, progressive=True), None, False),
    (dict(quality=88), None, True),  # greyscale
    (dict(quality=90), 6, False),  # stored rotated, displayed upright
    (dict(quality=90, subsampling=0), 8, False),
]
CLASSES = ["bright", "dark"]


def write_dataset(root: pathlib.Path):
    """my_dataset/images/{0..5}.jpg and train.json / val.json: crops of packaged photos with
    two boxes each (a bright and a dark region), as a user's COCO-format export would be."""
    images_dir = root / "my_dataset" / "images"
    images_dir.mkdir(parents=True)
    photos = [np.asarray(Image.open(p).convert("RGB")) for p in packaged_photos()]
    images, annotations = [], []
    for i, (options, orientation, grey) in enumerate(VARIANTS):
        photo = photos[i % len(photos)]
        h, w = (150, 200) if i % 2 else (176, 136)
        top, left = 30 + 7 * i, 40 + 11 * i
        shown = photo[top : top + h, left : left + w]
        stored = Image.fromarray(shown).convert("L") if grey else Image.fromarray(shown)
        if orientation == 6:  # displayed = stored rotated 90 degrees clockwise
            stored = stored.transpose(Image.Transpose.ROTATE_90)
        elif orientation == 8:
            stored = stored.transpose(Image.Transpose.ROTATE_270)
        if orientation:
            exif = Image.Exif()
            exif[0x0112] = orientation
            options = dict(options, exif=exif.tobytes())
        stored.save(images_dir / f"{i}.jpg", **options)
        images.append({"id": i + 1, "file_name": f"{i}.jpg", "height": h, "width": w})
        luma = shown.mean(axis=2)
        for category, pick in ((1, np.argmax), (2, np.argmin)):
            y, x = np.unravel_index(pick(luma[20:-40, 20:-40]), (h - 60, w - 60))
            box = [float(x + 5), float(y + 5), 40.0, 36.0]
            x0, y0, bw, bh = box
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": category,
                    "bbox": box,
                    "area": bw * bh,
                    "iscrowd": 0,
                    "segmentation": [[x0, y0, x0 + bw, y0, x0 + bw, y0 + bh, x0, y0 + bh]],
                }
            )
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(CLASSES)]
    for split, ids in (("train", range(1, 7)), ("val", range(1, 4))):
        subset = {
            "images": [im for im in images if im["id"] in ids],
            "annotations": [a for a in annotations if a["image_id"] in ids],
            "categories": categories,
        }
        (root / "my_dataset" / f"{split}.json").write_text(json.dumps(subset))
    return {im["file_name"]: (im["height"], im["width"]) for im in images}


@pytest.fixture(scope="module")
def user_folder(module_tmp):
    root = module_tmp("user")
    sizes = write_dataset(root)
    return root, sizes


def readme_walkthrough() -> str:
    text = (ROOT / "README.md").read_text()
    block = re.search(
        r"<!-- walkthrough: tests/test_own_data.py runs the next block -->\n```python\n(.*?)```", text, re.S
    )
    assert block, "README's walk-through block is missing"
    return block.group(1)


def run(args, cwd, timeout=900):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def walkthrough(user_folder):
    """The README's walk-through run as the user's own script, outside the repository."""
    root, _ = user_folder
    (root / "train_mine.py").write_text(readme_walkthrough())
    result = run(["train_mine.py", *FAST], root)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return root, result.stdout + result.stderr


@pytest.mark.slow
def test_readme_walkthrough_trains_the_scratch_config_with_finite_losses(walkthrough):
    root, log = walkthrough
    metrics = [json.loads(line) for line in (root / "output" / "mine" / "metrics.json").read_text().splitlines()]
    losses = [m["total_loss"] for m in metrics if "total_loss" in m]
    assert max(m["iteration"] for m in metrics) >= 29 and losses and all(math.isfinite(v) for v in losses)
    stats = json.loads((root / "output" / "mine" / "dct_stats.json").read_text())
    assert stats["channels"] == list(range(192)) and stats["num_images"] == 6
    # freqdet's own log lines reach the user's console; importing freqdet first keeps the
    # import-time deprecation notices of Detectron2's dependencies out.
    assert "[DCTDatasetMapper] 24 DCT channels shipped as int16" in log
    assert "torch.jit.script" not in log


@pytest.mark.slow
def test_readme_walkthrough_evaluates_and_predicts(walkthrough, user_folder):
    root, log = walkthrough
    _, sizes = user_folder
    assert "Evaluation results for bbox" in log and "Evaluation results for segm" in log
    predicted = re.findall(r"^(\d\.jpg) \[", log, re.M)
    assert predicted == ["0.jpg", "1.jpg"]


@pytest.mark.slow
def test_dct_predictor_boxes_lie_in_each_original_image(walkthrough, user_folder):
    root, _ = walkthrough
    _, sizes = user_folder
    code = (
        "import json, freqdet\n"
        "cfg = freqdet.model_zoo.get_config('mask_rcnn_dct_R50_FPN_scratch.yaml', "
        f"{FAST!r} + ['MODEL.ROI_HEADS.NUM_CLASSES', 2, 'MODEL.DEVICE', 'cpu', "
        "'MODEL.WEIGHTS', 'output/mine/model_final.pth'])\n"
        "predictor = freqdet.DCTPredictor(cfg)\n"
        f"names = {sorted(sizes)!r}\n"
        "outputs = predictor.predict_batch(['my_dataset/images/' + n for n in names])\n"
        "print(json.dumps({n: [list(o['instances'].image_size), o['instances'].pred_boxes.tensor.tolist()] "
        "for n, o in zip(names, outputs)}))\n"
    )
    result = run(["-c", code], root)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    for name, (size, boxes) in found.items():
        assert tuple(size) == sizes[name]  # displayed size: EXIF orientation applied
        assert boxes, f"no detections at score threshold 0 on {name}"
        boxes = np.array(boxes)
        h, w = sizes[name]
        assert (boxes[:, [0, 2]] >= 0).all() and (boxes[:, [0, 2]] <= w).all()
        assert (boxes[:, [1, 3]] >= 0).all() and (boxes[:, [1, 3]] <= h).all()


@pytest.mark.slow
def test_predict_tool_writes_pictures_and_coco_results_and_skips_bad_files(walkthrough, user_folder):
    root, _ = walkthrough
    _, sizes = user_folder
    (root / "my_dataset" / "images" / "broken.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    try:
        result = run(
            [
                str(ROOT / "tools" / "predict.py"),
                "--config-file",
                "mask_rcnn_dct_R50_FPN_scratch.yaml",
                "--input",
                "my_dataset/images",
                "--output",
                "predictions",
                "--confidence",
                "0.0",
                "--json",
                "--batch-size",
                "2",
                "--register-coco",
                "mine_val",
                "my_dataset/val.json",
                "my_dataset/images",
                "DATASETS.TEST",
                "('mine_val',)",
                *FAST,
                "MODEL.ROI_HEADS.NUM_CLASSES",
                "2",
                "MODEL.DEVICE",
                "cpu",
                "MODEL.WEIGHTS",
                "output/mine/model_final.pth",
            ],
            root,
        )
    finally:
        (root / "my_dataset" / "images" / "broken.jpg").unlink()
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"skipped my_dataset/images/broken\.jpg: ", result.stderr)
    assert re.search(r"6 images in [\d.]+ s \([\d.]+ images/s\), \d+ detections, 1 skipped", result.stdout)
    pictures = sorted(p.name for p in (root / "predictions").glob("*.png"))
    assert pictures == [f"{i}.png" for i in range(6)]
    for i in range(6):  # each picture is its image as displayed
        h, w = sizes[f"{i}.jpg"]
        assert Image.open(root / "predictions" / f"{i}.png").size == (w, h)
    results = json.loads((root / "predictions" / "predictions.json").read_text())
    assert results and {r["category_id"] for r in results} <= {1, 2}
    assert {r["category_name"] for r in results} <= set(CLASSES)
    for r in results:
        h, w = sizes[os.path.basename(r["file_name"])]
        x, y, bw, bh = r["bbox"]
        assert 0 <= x <= x + bw <= w + 1e-3 and 0 <= y <= y + bh <= h + 1e-3
        assert r["segmentation"]["size"] == [h, w] and isinstance(r["segmentation"]["counts"], str)


@pytest.mark.slow
def test_train_net_registers_coco_data_from_the_command_line(user_folder, tmp_path):
    root, _ = user_folder
    result = run(
        [
            str(ROOT / "tools" / "train_net.py"),
            "--config-file",
            "mask_rcnn_dct_R50_FPN_scratch.yaml",
            "--register-coco",
            "cli_train",
            "my_dataset/train.json",
            "my_dataset/images",
            "--register-coco",
            "cli_val",
            "my_dataset/val.json",
            "my_dataset/images",
            "DATASETS.TRAIN",
            "('cli_train',)",
            "DATASETS.TEST",
            "('cli_val',)",
            "MODEL.DEVICE",
            "cpu",
            *FAST,
            "SOLVER.MAX_ITER",
            "4",
            "SOLVER.STEPS",
            "(3,)",
            "MODEL.DCT.STATS_NUM_IMAGES",
            "3",
            "TEST.VIS_IMAGES",
            "2",
            "OUTPUT_DIR",
            str(tmp_path),
        ],
        root,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert "MODEL.ROI_HEADS.NUM_CLASSES 2: the classes of cli_train" in log
    assert "Evaluation results for bbox" in log
    assert (tmp_path / "model_final.pth").exists() and (tmp_path / "predictions.png").exists()
    assert "torch.jit.script" not in log and "torch.meshgrid" not in log
