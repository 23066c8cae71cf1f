"""freqdet's LazyConfigs through the tools that train them: Detectron2's own lazyconfig_train_net.py and
freqdet's (a file of its own so that a test worker takes these long runs apart from test_lazy.py's)."""

import json
import pathlib

import numpy as np
import pytest
import torch
from detectron2.config import instantiate
from detectron2.data import MetadataCatalog
from helpers import ROOT, detectron2_lazy_tool, run_lazy_tool

import freqdet
from freqdet.dct import channel_indices
from freqdet.detection.lazy import channel_statistic
from freqdet.normalization import ChannelMismatchError


@pytest.mark.slow
def test_detectron2s_own_lazy_tool_trains_evaluates_and_reloads_the_demo(tmp_path):
    """Detectron2's tool builds and trains the model without measuring the training set (freqdet's tool
    does that, where training starts): the model keeps the shipped statistics, which its checkpoint carries."""
    tool = detectron2_lazy_tool(tmp_path)
    quick = [  # the evaluation of the 100 validation images, cheaper: smaller images, fewer proposals
        "model.roi_heads.box_predictor.test_score_thresh=0.0",
        "model.roi_heads.box_predictor.test_topk_per_image=3",
        "model.proposal_generator.post_nms_topk=[500,30]",
        "dataloader.test.mapper.augmentations.0.short_edge_length=128",
    ]
    train_dir, eval_dir = tmp_path / "train", tmp_path / "eval"
    trained = run_lazy_tool(
        tool,
        "train.max_iter=2",
        f"train.output_dir={train_dir}",
        f"dataloader.evaluator.output_dir={train_dir / 'inference'}",
        *quick,
        cwd=tmp_path,
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "copypaste: Task: segm" in trained.stdout + trained.stderr
    assert not (train_dir / "dct_stats.json").exists()
    state = torch.load(train_dir / "model_final.pth", weights_only=True)["model"]
    selection = list(channel_indices(24))
    assert state["normalization.selected"].nonzero().flatten().tolist() == selection
    assert np.allclose(state["normalization.mean"].flatten().numpy(), channel_statistic("mean", 24))

    checkpoint = f"train.init_checkpoint={train_dir / 'model_final.pth'}"
    evaluated = run_lazy_tool(
        tool,
        "--eval-only",
        checkpoint,
        f"train.output_dir={eval_dir}",
        f"dataloader.evaluator.output_dir={eval_dir / 'inference'}",
        *quick,
        cwd=tmp_path,
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert not (eval_dir / "dct_stats.json").exists()  # the checkpoint's statistics: nothing measured
    predictions = [
        json.loads((d / "inference" / "coco_instances_results.json").read_text()) for d in (train_dir, eval_dir)
    ]
    assert predictions[0] and predictions[0] == predictions[1]

    refused = run_lazy_tool(
        tool, "--eval-only", checkpoint, f"train.output_dir={tmp_path / 'other'}", "model.channels=64", cwd=tmp_path
    )
    assert refused.returncode != 0
    assert "ChannelMismatchError" in refused.stderr and "model_final.pth" in refused.stderr
    assert not (tmp_path / "other" / "dct_stats.json").exists()


def test_a_checkpoint_of_another_selection_is_refused_by_the_model_too(tmp_path):
    """Whatever loads the weights (here Detectron2's own checkpointer) meets the model's refusal."""
    from detectron2.checkpoint import DetectionCheckpointer

    cfg = freqdet.model_zoo.get_config("common/models/mask_rcnn_dct_fpn.py")
    model = instantiate(cfg.model)
    path = tmp_path / "weights.pth"
    torch.save({"model": model.state_dict()}, path)
    cfg.model.channels = 64
    other = instantiate(cfg.model)
    with pytest.raises(ChannelMismatchError):
        DetectionCheckpointer(other).load(str(path))


@pytest.mark.slow
def test_freqdets_lazy_tool_trains_resumes_and_says_what_to_fix(tmp_path):
    tool = ROOT / "tools" / "lazyconfig_train_net.py"
    run_dir = tmp_path / "run"
    val = MetadataCatalog.get("freqdet_demo_val")
    subset = json.loads(pathlib.Path(val.json_file).read_text())
    subset["images"] = subset["images"][:3]
    subset["annotations"] = [a for a in subset["annotations"] if a["image_id"] in {i["id"] for i in subset["images"]}]
    (tmp_path / "val3.json").write_text(json.dumps(subset))
    register = ["--register-coco", "val3", str(tmp_path / "val3.json"), val.image_root]
    quick = [
        f"train.output_dir={run_dir}",
        "dataloader.dct_stats.num_images=12",
        "dataloader.test.dataset.names=val3",
    ]
    trained = run_lazy_tool(tool, *register, "train.max_iter=2", *quick, cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    log = trained.stdout + trained.stderr
    assert "copypaste: Task: bbox" in log  # evaluated on val3
    assert (
        f"DCT normalization of the model: measured over 12 images of freqdet_demo_train into {run_dir}/dct_stats.json"
        in log
    )
    assert (run_dir / "model_final.pth").exists() and (run_dir / "predictions.png").exists()
    resumed = run_lazy_tool(tool, "--resume", *register, "train.max_iter=3", *quick, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = resumed.stdout + resumed.stderr
    assert "Starting training from iteration 2" in log and "iter: 0 " not in log
    assert f"DCT normalization of the model: the checkpoint's ({run_dir}/model_final.pth)" in log
    assert "Computing DCT channel statistics" not in log

    for override, message in (
        ("train.amp.enabled=True", "train.amp.enabled is True but the device is 'cpu'"),
        ("model.channels=64", "were trained on DCT channels"),
    ):
        checkpoint = f"train.init_checkpoint={run_dir / 'model_final.pth'}"
        refused = run_lazy_tool(tool, *register, *quick, checkpoint, override, cwd=tmp_path)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr
        assert refused.stderr.strip().splitlines()[-1].startswith("error: ") and message in refused.stderr
