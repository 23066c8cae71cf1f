"""Mixed precision: the DCT input stays in float32, the network runs in half precision.

On a CPU as far as Detectron2 0.6 allows (its AMPTrainer needs CUDA; torch's CPU autocast with
bfloat16 runs the same forward); on a GPU with Detectron2's AMPTrainer (skipped without CUDA).
"""

import copy
import json

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from helpers import detectron2_lazy_tool, run_lazy_tool, small_cfg

from freqdet import DCTDatasetMapper, DCTTrainer
from freqdet.detection.checks import check_config

CONFIG = "configs/demo/mask_rcnn_dct_demo.yaml"
STATS = ["MODEL.DCT.MEAN", [5.0] * 24, "MODEL.DCT.STD", [50.0] * 24]
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def batch(cfg, dicts, seed=0):
    np.random.seed(seed)
    mapper = DCTDatasetMapper(cfg, is_train=True)
    return [mapper(copy.deepcopy(d)) for d in dicts]


@pytest.mark.slow
@pytest.mark.parametrize("transform_on", ["cpu", "device"])
def test_under_autocast_the_input_is_float32_and_unchanged(demo_dicts, transform_on):
    """CPU autocast runs matrix products in bfloat16 (8 bits of mantissa, coefficients reach
    1000s); the wire's decoding, the transform on the device and the normalization stay out of it."""
    cfg = small_cfg(CONFIG, *STATS, "MODEL.DCT.TRANSFORM_ON", transform_on)
    model = build_model(cfg).eval()
    inputs = batch(cfg, demo_dicts[:2])
    exact = model.preprocess_image(inputs).tensor
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = model.preprocess_image(inputs).tensor
        features = model.backbone(mixed)
    assert mixed.dtype == torch.float32 and torch.equal(mixed, exact)
    assert features["p2"].dtype == torch.bfloat16  # the network itself in half precision


@pytest.mark.slow
def test_a_training_step_in_bfloat16_on_the_cpu(demo_dicts):
    torch.manual_seed(0)
    cfg = small_cfg(CONFIG, *STATS)
    model = build_model(cfg).train()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    inputs = batch(cfg, demo_dicts[:2])  # the data loader works outside autocast, as in AMPTrainer
    with EventStorage(0):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            losses = model(inputs)
        assert all(torch.isfinite(v) for v in losses.values())
        sum(losses.values()).backward()
    optimizer.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_amp_on_a_cpu_is_refused_before_training(tmp_path):
    cfg = small_cfg(CONFIG, "SOLVER.AMP.ENABLED", True, "OUTPUT_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="SOLVER.AMP.ENABLED.*CUDA"):
        check_config(cfg)


@cuda
@pytest.mark.parametrize("transform_on", ["cpu", "device"])
def test_detectron2s_amp_trainer_trains_a_dct_model(tmp_path, transform_on):
    cfg = small_cfg(
        CONFIG,
        *STATS,
        "MODEL.DEVICE",
        "cuda",
        "MODEL.DCT.TRANSFORM_ON",
        transform_on,
        "SOLVER.AMP.ENABLED",
        True,
        "SOLVER.MAX_ITER",
        3,
        "SOLVER.IMS_PER_BATCH",
        2,
        "OUTPUT_DIR",
        str(tmp_path),
        "TEST.EVAL_PERIOD",
        0,
        "DATASETS.TEST",
        (),
    )
    trainer = DCTTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    losses = trainer.storage.history("total_loss").values()
    assert len(losses) == 3 and all(np.isfinite(v) for v, _ in losses)


@cuda
def test_under_cuda_autocast_the_input_is_the_float32_one(demo_dicts):
    cfg = small_cfg(CONFIG, *STATS, "MODEL.DEVICE", "cuda", "MODEL.DCT.TRANSFORM_ON", "device")
    model = build_model(cfg).eval()
    inputs = batch(cfg, demo_dicts[:2])
    exact = model.preprocess_image(inputs).tensor
    with torch.autocast("cuda", dtype=torch.float16):
        mixed = model.preprocess_image(inputs).tensor
    assert mixed.dtype == torch.float32 and torch.equal(mixed, exact)


@cuda
def test_detectron2s_lazy_tool_trains_a_dct_model_with_amp(tmp_path):
    tool = detectron2_lazy_tool(tmp_path)
    result = run_lazy_tool(
        tool,
        "train.max_iter=3",
        "train.device=cuda",
        "train.amp.enabled=True",
        f"train.output_dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = (tmp_path / "run" / "metrics.json").read_text().splitlines()
    assert lines and all(np.isfinite(json.loads(line).get("total_loss", 0.0)) for line in lines)
