"""The learned channel gate: straight-through gradients, lambda, determinism, DDP, analysis."""

import copy
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from helpers import small_cfg

import freqdet
from freqdet import DCTDatasetMapper
from freqdet.detection.channel_analysis import gate_statistics

ROOT = pathlib.Path(__file__).resolve().parents[1]
GATED = "configs/demo/mask_rcnn_dct_demo_gate.yaml"


def gated_cfg(*opts):
    return small_cfg(GATED, "MODEL.DCT.MEAN", [0.0] * 192, "MODEL.DCT.STD", [100.0] * 192, *opts)


def batch(cfg, dicts, train=True):
    mapper = DCTDatasetMapper(cfg, train)
    return [mapper(copy.deepcopy(d)) for d in dicts]


def test_gradients_reach_the_logits_through_hard_decisions(demo_dicts):
    torch.manual_seed(0)
    cfg = gated_cfg()
    model = build_model(cfg)
    with EventStorage(0) as storage:
        losses = model(batch(cfg, demo_dicts[:2]))
        sum(losses.values()).backward()
    decisions = model.gate.last_decisions
    assert set(decisions.unique().tolist()) <= {0.0, 1.0}
    assert "loss_gate" in losses
    assert losses["loss_gate"].item() == pytest.approx(cfg.MODEL.DCT.GATE.LAMBDA * decisions.sum(1).mean().item())
    assert model.gate.logits.weight.grad.abs().sum() > 0 and model.gate.mix.weight.grad.abs().sum() > 0
    latest = storage.latest()
    assert latest["gate/channels_on"][0] == pytest.approx(decisions.sum(1).mean().item())
    assert {"gate/rate_Y", "gate/rate_Cb", "gate/rate_Cr"} <= set(latest)


def test_inference_decisions_are_deterministic(demo_dicts):
    cfg = gated_cfg()
    model = build_model(cfg).eval()
    x = batch(cfg, demo_dicts[:1], train=False)
    decisions = []
    for _ in range(3):
        with torch.no_grad():
            model(x)
        decisions.append(model.gate.last_decisions.clone())
    assert all(torch.equal(decisions[0], d) for d in decisions)


def channels_on_after_training(demo_dicts, weight: float) -> float:
    torch.manual_seed(0)
    np.random.seed(0)
    # Start undecided (on and off logits close) so a short training can move the decisions.
    cfg = gated_cfg("MODEL.DCT.GATE.LAMBDA", weight, "MODEL.DCT.GATE.INIT_ON", 0.2)
    model = build_model(cfg)
    optimizer = torch.optim.SGD(model.gate.parameters(), lr=0.5)
    with EventStorage(0):
        for step in range(8):
            losses = model(batch(cfg, demo_dicts[2 * step : 2 * step + 2]))
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
    stats = gate_statistics(model, DCTDatasetMapper(cfg, False), demo_dicts[40:48])
    return stats["channels_on_per_image"]


@pytest.mark.slow
def test_a_larger_lambda_switches_more_channels_off(demo_dicts):
    few = channels_on_after_training(demo_dicts, 1.0)
    many = channels_on_after_training(demo_dicts, 0.0)
    assert few < many


def test_freeze_at_leaves_the_gate_trainable():
    model = build_model(gated_cfg("MODEL.BACKBONE.FREEZE_AT", 2))
    assert all(p.requires_grad for p in model.gate.parameters())
    assert not any(p.requires_grad for p in model.backbone.bottom_up.res2.parameters())


DDP_WORKER = r"""
import copy, os, sys
import numpy as np, torch, torch.distributed as dist
sys.path.insert(0, sys.argv[3])
from helpers import small_cfg
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from torch.nn.parallel import DistributedDataParallel
import freqdet

rank = int(sys.argv[1])
dist.init_process_group("gloo", init_method=f"file://{sys.argv[2]}", rank=rank, world_size=2)
cfg = small_cfg(
    "configs/demo/mask_rcnn_dct_demo_gate.yaml", "MODEL.DCT.MEAN", [0.0] * 192, "MODEL.DCT.STD", [100.0] * 192
)
torch.manual_seed(0)
model = DistributedDataParallel(build_model(cfg))  # find_unused_parameters=False, as Detectron2's default
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
mapper = freqdet.DCTDatasetMapper(cfg, True)
dicts = DatasetCatalog.get("freqdet_demo_train")
with EventStorage(0):
    for step in range(2):
        np.random.seed(10 * rank + step)
        inputs = [mapper(copy.deepcopy(d)) for d in dicts[4 * step + 2 * rank : 4 * step + 2 * rank + 2]]
        losses = model(inputs)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
flat = torch.cat([p.detach().flatten() for p in model.module.parameters()])
gathered = [torch.zeros_like(flat) for _ in range(2)]
dist.all_gather(gathered, flat)
assert torch.equal(gathered[0], gathered[1]), "ranks disagree after DDP steps"
print(f"rank {rank} ok", flush=True)
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_trains_under_ddp_with_two_cpu_processes(demo_dicts, tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(DDP_WORKER)
    init = tmp_path / "init"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [
        subprocess.Popen(
            [sys.executable, "-W", "ignore", str(script), str(rank), str(init), str(ROOT / "tests")],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(2)
    ]
    results = [p.communicate(timeout=280) for p in procs]
    for rank, (p, (out, err)) in enumerate(zip(procs, results)):
        assert p.returncode == 0, err[-3000:]
        assert f"rank {rank} ok" in out


def test_analysis_tool_writes_rates_heatmap_and_a_config_that_trains(demo_dicts, tmp_path):
    import importlib.util

    torch.manual_seed(0)
    cfg = gated_cfg("MODEL.DCT.GATE.INIT_ON", 0.2)
    model = build_model(cfg)
    weights = tmp_path / "gated.pth"
    torch.save({"model": model.state_dict()}, weights)
    spec = importlib.util.spec_from_file_location("analyze", ROOT / "tools" / "analyze_channels.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    overrides = [
        "MODEL.RESNETS.DEPTH",
        "18",
        "MODEL.RESNETS.RES2_OUT_CHANNELS",
        "64",
        "MODEL.DEVICE",
        "cpu",
        "INPUT.MIN_SIZE_TEST",
        "144",
        "INPUT.MAX_SIZE_TEST",
        "240",
        "MODEL.DCT.MEAN",
        str([0.0] * 192),
        "MODEL.DCT.STD",
        str([100.0] * 192),
    ]
    out = tmp_path / "analysis"
    assert (
        tool.main(
            [
                "--config-file",
                str(ROOT / GATED),
                "--weights",
                str(weights),
                "--num-images",
                "6",
                "--top-k",
                "24",
                "--static-config",
                str(ROOT / "configs/demo/mask_rcnn_dct_demo.yaml"),
                "--output",
                str(out),
                *overrides,
            ]
        )
        == 0
    )
    report = json.loads((out / "channels.json").read_text())
    rates, probabilities = np.array(report["selection_rate"]), np.array(report["probability"])
    assert rates.shape == probabilities.shape == (192,) and report["num_images"] == 6
    assert np.all((rates >= 0) & (rates <= 1)) and np.all((probabilities > 0) & (probabilities < 1))
    # The rates sum to the channels on per image, counted here by running the gate directly.
    model.eval()
    mapper = DCTDatasetMapper(cfg, False)
    from detectron2.data import DatasetCatalog

    from freqdet.stats import evenly_spaced

    counted = []
    for d in evenly_spaced(DatasetCatalog.get("freqdet_demo_train"), 6):
        with torch.no_grad():
            model.gate(model.preprocess_image([mapper(d)]).tensor)
        counted.append(model.gate.last_decisions.sum().item())
    assert rates.sum() == pytest.approx(np.mean(counted)) == pytest.approx(report["channels_on_per_image"])
    assert len(report["top_k"]) == 24 and min(rates[report["top_k"]]) >= np.sort(rates)[-24] - 1e-9
    assert (out / "heatmap.png").stat().st_size > 10000

    static = get_cfg()
    freqdet.add_freqdet_config(static)
    static.merge_from_file(str(out / "top24.yaml"))
    assert list(static.MODEL.DCT.INDICES) == report["top_k"] and not static.MODEL.DCT.GATE.NAME
    static.merge_from_list(
        overrides[:8] + ["MODEL.DCT.MEAN", [0.0] * 24, "MODEL.DCT.STD", [100.0] * 24, "INPUT.MIN_SIZE_TRAIN", (128,)]
    )
    static_model = build_model(static)
    with EventStorage(0):
        losses = static_model(batch(static, demo_dicts[:2]))
    assert static_model.backbone.bottom_up.res2[0].conv1.weight.shape[1] == 24
    assert all(torch.isfinite(v) for v in losses.values())


def test_the_gate_can_learn_faster_than_the_rest():
    from freqdet.detection.trainer import DCTTrainer

    cfg = gated_cfg("MODEL.DCT.GATE.LR_FACTOR", 10.0, "SOLVER.BASE_LR", 0.02)
    model = build_model(cfg)
    optimizer = DCTTrainer.build_optimizer(cfg, model)
    gate = {id(p) for p in model.gate.parameters()}
    rates = {(id(p) in gate): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    assert rates == {True: pytest.approx(0.2), False: pytest.approx(0.02)}
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))


def test_the_gate_is_stored_once_in_checkpoints():
    state = build_model(gated_cfg()).state_dict()
    assert any(k.startswith("backbone.bottom_up.stem.gate.") for k in state)
    assert not any(k.startswith("gate.") for k in state)


def test_a_selection_config_from_the_gated_config_has_no_gate(tmp_path):
    from freqdet.detection.channel_analysis import write_selection_config

    path = write_selection_config([0, 1, 2, 64], str(ROOT / GATED), str(tmp_path / "top4.yaml"))
    cfg = get_cfg()
    freqdet.add_freqdet_config(cfg)
    cfg.merge_from_file(path)
    assert list(cfg.MODEL.DCT.INDICES) == [0, 1, 2, 64] and cfg.MODEL.DCT.GATE.NAME == ""
