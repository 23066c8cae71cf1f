"""Training survives bad data under "skip", stops naming it under "raise", and survives a kill."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model
from helpers import small_cfg
from PIL import Image

from freqdet import ImageDecodeError
from freqdet.detection.bad_images import skipped_images
from freqdet.detection.checkpoint import FreqdetCheckpointer
from freqdet.detection.dataset_stats import compute_config_stats
from freqdet.detection.trainer import DCTTrainer

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mixed_dataset(module_tmp, demo_dicts):
    """Six good demo images and three bad files, registered as a Detectron2 dataset."""
    folder = module_tmp("mixed")
    good = [dict(d) for d in demo_dicts[:6]]
    photo = Image.open(good[0]["file_name"])
    (folder / "truncated.jpg").write_bytes(pathlib.Path(good[1]["file_name"]).read_bytes()[:1500])
    (folder / "notes.jpg").write_bytes(b"these are notes, not an image\n" * 30)
    photo.save(folder / "wrong_size.jpg", quality=90)
    bad = [
        dict(good[1], file_name=str(folder / "truncated.jpg"), image_id=101),
        dict(good[2], file_name=str(folder / "notes.jpg"), image_id=102),
        dict(good[0], file_name=str(folder / "wrong_size.jpg"), image_id=103, height=good[0]["height"] + 10),
    ]
    dicts = good[:3] + bad[:1] + good[3:5] + bad[1:] + good[5:]
    name = "freqdet_test_mixed"
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: dicts)
        MetadataCatalog.get(name).set(thing_classes=MetadataCatalog.get("freqdet_demo_train").thing_classes)
    return name, sorted(d["file_name"] for d in bad)


def mixed_cfg(name, policy, out, workers=0):
    return small_cfg(
        "configs/demo/mask_rcnn_dct_demo.yaml",
        "DATASETS.TRAIN",
        (name,),
        "DATASETS.TEST",
        (),
        "INPUT.DCT.ON_BAD_IMAGE",
        policy,
        "SOLVER.MAX_ITER",
        8,
        "SOLVER.IMS_PER_BATCH",
        2,
        "DATALOADER.NUM_WORKERS",
        workers,
        "DATALOADER.ASPECT_RATIO_GROUPING",
        False,
        "MODEL.DCT.MEAN",
        [0.0] * 24,
        "MODEL.DCT.STD",
        [100.0] * 24,
        "OUTPUT_DIR",
        str(out),
        "SOLVER.CHECKPOINT_PERIOD",
        1000,
    )


@pytest.mark.slow
def test_skip_completes_and_reports_exactly_the_bad_files(mixed_dataset, tmp_path):
    name, bad = mixed_dataset
    trainer = DCTTrainer(mixed_cfg(name, "skip", tmp_path))
    trainer.train()
    assert trainer.iter == trainer.max_iter == 8
    skipped = skipped_images(str(tmp_path / "skipped_images.tsv"))
    assert sorted(skipped) == bad
    reasons = {os.path.basename(k): v for k, v in skipped.items()}
    assert "corrupt JPEG data" in reasons["truncated.jpg"] and "not a readable image" in reasons["notes.jpg"]
    assert "Mismatched image shape" in reasons["wrong_size.jpg"]
    assert trainer.storage.history("data/skipped_images").latest() == 3


def test_the_statistics_pass_follows_the_bad_image_policy(mixed_dataset, tmp_path):
    name, bad = mixed_dataset
    cfg = mixed_cfg(name, "skip", tmp_path)
    cfg.MODEL.DCT.MEAN, cfg.MODEL.DCT.STD = [], []
    stats = compute_config_stats(cfg, 0)
    assert stats.info["num_skipped"] == 3 and stats.info["num_images"] == 6
    assert sorted(skipped_images(str(tmp_path / "skipped_images.tsv"))) == bad
    cfg.INPUT.DCT.ON_BAD_IMAGE = "raise"
    with pytest.raises((ImageDecodeError, ValueError)) as info:
        compute_config_stats(cfg, 0)
    assert any(os.path.basename(b) in str(info.value) for b in bad)


@pytest.mark.parametrize("workers", [0, 1])
def test_raise_stops_at_the_first_bad_file_naming_it(mixed_dataset, tmp_path, workers):
    name, bad = mixed_dataset
    trainer = DCTTrainer(mixed_cfg(name, "raise", tmp_path, workers))
    # With workers the DataLoader re-raises the worker's error, message included.
    with pytest.raises((ImageDecodeError, ValueError, RuntimeError)) as info:
        trainer.train()
    assert any(os.path.basename(b) in str(info.value) for b in bad)
    assert not (tmp_path / "skipped_images.tsv").exists()


def test_checkpoints_record_and_check_the_channel_selection(tmp_path):
    cfg = small_cfg("configs/demo/mask_rcnn_dct_demo.yaml", "OUTPUT_DIR", str(tmp_path))
    FreqdetCheckpointer(build_model(cfg), str(tmp_path)).save("model_24")
    saved = torch.load(tmp_path / "model_24.pth", weights_only=False)["model"]["normalization.selected"]
    assert saved.nonzero().flatten().tolist()[:3] == [0, 1, 2]
    other = small_cfg("configs/demo/mask_rcnn_dct_demo.yaml", "MODEL.DCT.CHANNELS", 64)
    with pytest.raises(
        ValueError, match=r"model_24.pth' were trained on DCT channels .* \(24\), but the model takes .* \(64\)"
    ):
        FreqdetCheckpointer(build_model(other)).load(str(tmp_path / "model_24.pth"))
    triangle = small_cfg("configs/demo/mask_rcnn_dct_demo.yaml", "MODEL.DCT.PATTERN", "triangle")
    with pytest.raises(ValueError, match="trained on DCT channels"):
        FreqdetCheckpointer(build_model(triangle)).load(str(tmp_path / "model_24.pth"))
    FreqdetCheckpointer(build_model(cfg)).load(str(tmp_path / "model_24.pth"))  # the same selection loads


# A run whose third checkpoint hangs while its file is written, before it is renamed into place,
# so that the test can kill it there.
SLOW_SAVE = r"""
import os, runpy, sys, time
real_replace, calls = os.replace, [0]
def replace(src, dst, *args, **kwargs):
    if dst.endswith(".pth"):
        calls[0] += 1
        if calls[0] == 3:
            print("SAVING", flush=True)
            time.sleep(600)
    return real_replace(src, dst, *args, **kwargs)
os.replace = replace
sys.argv = ["train_net.py"] + sys.argv[1:]
runpy.run_path("tools/train_net.py", run_name="__main__")
"""

RUN = [
    "--config-file",
    "configs/demo/mask_rcnn_dct_demo.yaml",
    "MODEL.RESNETS.DEPTH",
    "18",
    "MODEL.RESNETS.RES2_OUT_CHANNELS",
    "64",
    "INPUT.MIN_SIZE_TRAIN",
    "(128,)",
    "INPUT.MAX_SIZE_TRAIN",
    "200",
    "MODEL.DCT.STATS_NUM_IMAGES",
    "8",
    "DATALOADER.NUM_WORKERS",
    "0",
    "SOLVER.IMS_PER_BATCH",
    "2",
    "SOLVER.MAX_ITER",
    "5",
    "SOLVER.CHECKPOINT_PERIOD",
    "1",
    "DATASETS.TEST",
    "()",
    "TEST.VIS_IMAGES",
    "0",
]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_run_killed_during_a_checkpoint_save_resumes(tmp_path):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    run = subprocess.Popen(
        [sys.executable, "-c", SLOW_SAVE, *RUN, "OUTPUT_DIR", str(tmp_path)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    for line in run.stdout:
        if line.startswith("SAVING"):
            break
    time.sleep(0.5)
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=60)
    # Two complete checkpoints; the third was being written when the run died.
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    assert list(tmp_path.glob("model_0000002.pth")) == [] and list(tmp_path.glob("*.tmp-*"))
    torch.load(tmp_path / "model_0000001.pth", weights_only=False)  # complete and readable

    resumed = subprocess.run(
        [sys.executable, "tools/train_net.py", "--resume", *RUN, "OUTPUT_DIR", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=500,
    )
    log = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, log[-3000:]
    assert "Starting training from iteration 2" in log
    final = torch.load(tmp_path / "model_final.pth", weights_only=False)
    assert final["iteration"] == 4
    metrics = [json.loads(line) for line in (tmp_path / "metrics.json").read_text().splitlines() if line.strip()]
    assert max(m["iteration"] for m in metrics) == 4
