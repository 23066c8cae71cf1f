"""tools/train_net.py end to end: train, save, --resume, --eval-only with COCO AP, clear dataset errors."""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMALL = [
    "MODEL.RESNETS.DEPTH",
    "18",
    "MODEL.RESNETS.RES2_OUT_CHANNELS",
    "64",
    "INPUT.MIN_SIZE_TRAIN",
    "(128,)",
    "INPUT.MAX_SIZE_TRAIN",
    "200",
    "INPUT.MIN_SIZE_TEST",
    "128",
    "INPUT.MAX_SIZE_TEST",
    "200",
    "MODEL.DCT.STATS_NUM_IMAGES",
    "8",
    "DATALOADER.NUM_WORKERS",
    "0",
    "SOLVER.IMS_PER_BATCH",
    "2",
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
    "0.0",
    "TEST.DETECTIONS_PER_IMAGE",
    "10",
]


def train_net(*args, env=None):
    return subprocess.run(
        [sys.executable, "-W", "ignore", str(ROOT / "tools" / "train_net.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


@pytest.fixture(scope="module")
def run_dir(module_tmp):
    """A two-iteration training run of the demo Mask R-CNN, checkpointing every iteration."""
    out = module_tmp("train_net")
    result = train_net(
        "--config-file",
        "configs/demo/mask_rcnn_dct_demo.yaml",
        *SMALL,
        "SOLVER.MAX_ITER",
        "2",
        "SOLVER.CHECKPOINT_PERIOD",
        "1",
        "DATASETS.TEST",
        "()",
        "TEST.VIS_IMAGES",
        "0",
        "OUTPUT_DIR",
        str(out),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Starting training from iteration 0" in result.stdout + result.stderr
    return out


@pytest.mark.slow
def test_training_writes_checkpoints_and_statistics(run_dir):
    assert (run_dir / "model_final.pth").exists()
    assert (run_dir / "last_checkpoint").read_text().strip() == "model_final.pth"
    stats = json.loads((run_dir / "dct_stats.json").read_text())
    assert len(stats["mean"]) == len(stats["std"]) == 192 and stats["num_images"] == 8
    weights = torch.load(run_dir / "model_final.pth", map_location="cpu", weights_only=False)
    assert torch.allclose(
        weights["model"]["normalization.mean"].flatten()[:4], torch.tensor(stats["mean"])[[0, 1, 2, 3]].float()
    )


@pytest.mark.slow
def test_eval_only_prints_coco_ap_from_pycocotools(run_dir, tmp_path):
    result = train_net(
        "--config-file",
        "configs/demo/mask_rcnn_dct_demo.yaml",
        "--eval-only",
        *SMALL,
        "MODEL.WEIGHTS",
        str(run_dir / "model_final.pth"),
        "OUTPUT_DIR",
        str(tmp_path),
        "TEST.VIS_IMAGES",
        "2",
        "TEST.VIS_SCORE_THRESH",
        "0.7",
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    # pycocotools' own summary, then Detectron2's table, for boxes and masks.
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in log
    assert "Evaluation results for bbox" in log and "Evaluation results for segm" in log
    assert "No DCT statistics configured" not in log  # the checkpoint brings them
    assert len(re.findall(r"\|\s+AP\s+\|\s+AP50\s+\|\s+AP75\s+\|\s+APs\s+\|\s+APm\s+\|\s+APl\s+\|", log)) == 2
    assert (tmp_path / "predictions.png").exists()
    # The picture shows what scores TEST.VIS_SCORE_THRESH; the evaluation keeps its own threshold.
    assert f"(score >= 0.7) drawn to {tmp_path / 'predictions.png'}" in log


@pytest.mark.slow
def test_resume_continues_from_the_saved_iteration(run_dir):
    result = train_net(
        "--config-file",
        "configs/demo/mask_rcnn_dct_demo.yaml",
        "--resume",
        *SMALL,
        "SOLVER.MAX_ITER",
        "4",
        "SOLVER.CHECKPOINT_PERIOD",
        "1",
        "DATASETS.TEST",
        "()",
        "TEST.VIS_IMAGES",
        "0",
        "OUTPUT_DIR",
        str(run_dir),
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert "Starting training from iteration 2" in log
    final = torch.load(run_dir / "model_final.pth", map_location="cpu", weights_only=False)
    assert final["iteration"] == 3


@pytest.mark.slow
def test_missing_coco_gives_a_clear_error(tmp_path):
    env = dict(os.environ, DETECTRON2_DATASETS=str(tmp_path))
    result = train_net("--config-file", "configs/mask_rcnn_dct_R50_FPN_scratch.yaml", "MODEL.DEVICE", "cpu", env=env)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "error: dataset 'coco_2017_train' is not on this machine" in result.stderr
    assert "coco/annotations/instances_train2017.json" in result.stderr
    assert "configs/demo/mask_rcnn_dct_demo.yaml" in result.stderr


@pytest.mark.slow
def test_unregistered_dataset_gives_a_clear_error():
    result = train_net("--config-file", "configs/demo/mask_rcnn_dct_demo.yaml", "DATASETS.TRAIN", "('nope',)")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "dataset 'nope' is not registered" in result.stderr


@pytest.mark.slow
def test_bad_channel_selection_gives_a_clear_error():
    result = train_net("--config-file", "configs/demo/mask_rcnn_dct_demo.yaml", "MODEL.DCT.CHANNELS", "25")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "error: bad channel selection in cfg.MODEL.DCT" in result.stderr


def one_line_error(result) -> str:
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr[-2000:]
    return lines[0]


@pytest.mark.slow
def test_a_config_that_cannot_learn_is_refused_naming_both_fixes():
    message = one_line_error(train_net("--config-file", "configs/mask_rcnn_dct_R50_FPN.yaml", "MODEL.DEVICE", "cpu"))
    assert "MODEL.RESNETS.NORM is FrozenBN and MODEL.WEIGHTS is empty" in message
    assert "MODEL.WEIGHTS" in message and "mask_rcnn_dct_R50_FPN_scratch.yaml" in message


@pytest.mark.slow
def test_an_unknown_config_key_names_the_closest_ones():
    message = one_line_error(
        train_net("--config-file", "configs/demo/mask_rcnn_dct_demo.yaml", "MODEL.DCT.CHANELS", "24")
    )
    assert message.startswith(
        "error: unknown config key 'MODEL.DCT.CHANELS' in the overrides; did you mean MODEL.DCT.CHANNELS"
    )


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_stops_before_any_work(tmp_path):
    message = one_line_error(
        train_net(
            "--config-file", "configs/demo/mask_rcnn_dct_demo.yaml", "MODEL.DEVICE", "cuda", "OUTPUT_DIR", str(tmp_path)
        )
    )
    assert "cfg.MODEL.DEVICE is 'cuda' but torch sees no CUDA GPU" in message and "MODEL.DEVICE cpu" in message
    assert not (tmp_path / "dct_stats.json").exists()


@pytest.mark.slow
def test_configs_are_found_by_name_from_any_folder(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "train_net.py"),
            "--config-file",
            "configs/demo/mask_rcnn_dct_demo.yaml",
            "MODEL.DCT.CHANNELS",
            "25",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "bad channel selection" in one_line_error(result)  # the config was found; the override checked
