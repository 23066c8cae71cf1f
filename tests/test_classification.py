"""The classification trainer: models, demo training, torchrun, and weight conversions."""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest
import torch
import torchvision
from detectron2.config import get_cfg
from detectron2.modeling import build_model

import freqdet
from freqdet.classification import build_classifier
from freqdet.classification.convert import official_to_classifier, torchvision_to_classifier
from freqdet.dct import channel_indices
from freqdet.detection.convert import classifier_to_detectron2, detectron2_backbone_report
from freqdet.gate import ChannelGate

ROOT = pathlib.Path(__file__).resolve().parents[1]


def detector(channels: int, gate: bool = False):
    cfg = get_cfg()
    freqdet.add_freqdet_config(cfg)
    cfg.merge_from_file(
        str(ROOT / "configs" / ("mask_rcnn_dct_R50_FPN_gate.yaml" if gate else "mask_rcnn_dct_R50_FPN.yaml"))
    )
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.DCT.CHANNELS", channels])
    return build_model(cfg)


@pytest.mark.parametrize("arch, cells", [("resnet50", 56), ("mobilenet_v2", 112)])
def test_dct_models_take_the_papers_inputs(arch, cells):
    dct = build_classifier(arch, 10, channels=24).eval()
    rgb = build_classifier(arch, 10).eval()
    with torch.no_grad():
        assert dct(torch.randn(2, 24, cells, cells)).shape == (2, 10)
        assert rgb(torch.randn(2, 3, 224, 224)).shape == (2, 10)
    # After the DCT model's first stage, features have the RGB model's resolution at 224.
    if arch == "resnet50":
        assert (
            dct.layer1(torch.randn(1, 24, 56, 56)).shape
            == rgb.layer1(rgb.maxpool(rgb.relu(rgb.bn1(rgb.conv1(torch.randn(1, 3, 224, 224)))))).shape
        )
    else:
        assert (
            dct.features[:2](torch.randn(1, 24, 112, 112)).shape == rgb.features[:2](torch.randn(1, 3, 224, 224)).shape
        )


@pytest.mark.parametrize("channels, gate", [(24, False), (192, True)])
def test_classifier_to_detectron2_fills_the_backbone(channels, gate):
    classifier = build_classifier("resnet50", 1000, channels, ChannelGate(channels) if gate else None)
    classifier.input.set_stats(torch.arange(channels, dtype=torch.float32), torch.full((channels,), 3.0))
    converted, report = classifier_to_detectron2(classifier.state_dict())
    model = detector(channels, gate)
    assert detectron2_backbone_report(model, converted) == ([], [], [])
    assert {"fc.weight", "fc.bias"} <= set(report.dropped)
    assert not report.unmapped
    incompatible = model.load_state_dict(converted, strict=False)
    assert not incompatible.unexpected_keys
    state = model.state_dict()
    assert torch.equal(state["backbone.bottom_up.res2.0.conv1.weight"], classifier.layer1[0].conv1.weight)
    assert torch.equal(state["backbone.bottom_up.res5.2.conv3.norm.running_var"], classifier.layer4[2].bn3.running_var)
    assert torch.equal(state["backbone.bottom_up.res3.0.shortcut.weight"], classifier.layer2[0].downsample[0].weight)
    assert torch.equal(state["normalization.mean"].flatten(), torch.arange(channels, dtype=torch.float32))
    if gate:
        assert torch.equal(state["backbone.bottom_up.stem.gate.logits.bias"], classifier.input.gate.logits.bias)


def test_torchvision_rgb_resnet50_becomes_a_dct_backbone():
    rgb = torchvision.models.resnet50(weights=None).state_dict()
    classifier_state, report = torchvision_to_classifier(rgb, 24)
    assert len(report.reinitialized) == 2 and all("-> 24 input channels" in r for r in report.reinitialized)
    assert {"conv1.weight", "bn1.weight"} <= set(report.dropped)
    model = build_classifier("resnet50", 1000, 24)
    incompatible = model.load_state_dict(classifier_state, strict=False)
    # RGB weights bring no normalization: it is computed when training starts.
    assert set(incompatible.missing_keys) == {f"input.normalization.{k}" for k in ("mean", "std", "selected")}
    assert not incompatible.unexpected_keys
    assert torch.equal(model.layer3[1].conv2.weight, rgb["layer3.1.conv2.weight"])
    converted, _ = classifier_to_detectron2(classifier_state)
    assert detectron2_backbone_report(detector(24), converted)[::2] == ([], [])


def test_a_converted_checkpoint_records_its_channels_and_is_checked_against_the_config():
    classifier = build_classifier("resnet50", 10, 24)
    checkpoint = {"model": classifier.state_dict(), "channels": list(channel_indices(24))}
    converted, report = classifier_to_detectron2(checkpoint)
    assert converted["normalization.selected"].nonzero().flatten().tolist() == list(channel_indices(24))
    assert detectron2_backbone_report(detector(24), converted) == ([], [], [])
    _, _, mismatched = detectron2_backbone_report(detector(64), converted)
    assert {"normalization.selected", "backbone.bottom_up.res2.0.conv1.weight"} <= set(mismatched)


def official_layout(state):
    """Our classifier's keys written the way the official release stores them."""
    gate = {"mix.": "inp_gate.0.", "norm.": "inp_gate.1.", "logits.": "inp_gate_l."}
    out = {}
    for key, value in state.items():
        layer = re.match(r"layer([1-4])\.(.*)", key)
        if layer:
            key = f"model.{int(layer.group(1)) - 1}.{layer.group(2)}"
        elif key.startswith("input.gate."):
            rest = key[len("input.gate.") :]
            prefix = next(p for p in gate if rest.startswith(p))
            key = "inp_GM." + gate[prefix] + rest[len(prefix) :]
        elif key.startswith("input."):
            continue  # the official release keeps its statistics outside the checkpoint
        out["module." + key] = value
    return {"epoch": 100, "arch": "ResNet50DCT", "state_dict": out, "best_prec1": 77.0}


@pytest.mark.slow
def test_official_checkpoint_round_trips(tmp_path):
    ours = build_classifier("resnet50", 1000, 192, ChannelGate(192)).state_dict()
    checkpoint = official_layout(ours)
    converted, report = official_to_classifier(checkpoint)
    assert not report.unmapped
    # Every tensor comes back, and the release's table (tests/test_official.py) is the normalization.
    assert ours.keys() == converted.keys()
    assert all(torch.equal(converted[k], ours[k]) for k in converted if not k.startswith("input.normalization."))
    assert converted["input.normalization.selected"].all()
    # And through the tool, into a gated detector's backbone.
    path = tmp_path / "model_best.pth.tar"
    torch.save(checkpoint, path)
    result = subprocess.run(
        [
            sys.executable,
            "-W",
            "ignore",
            str(ROOT / "tools" / "convert_weights.py"),
            "--source",
            "official",
            "--target",
            "detectron2",
            "--config-file",
            str(ROOT / "configs" / "mask_rcnn_dct_R50_FPN_gate.yaml"),
            str(path),
            str(tmp_path / "d2.pth"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 missing, 0 unexpected backbone keys" in result.stdout
    assert "dropped (2): fc.weight, fc.bias" in result.stdout


def train_cls(*args, nproc=1, timeout=900):
    script = str(ROOT / "tools" / "train_cls.py")
    command = (
        [sys.executable, "-W", "ignore", script]
        if nproc == 1
        else [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", script]
    )
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    return subprocess.run([*command, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


def summary(result):
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


QUICK = [
    "--demo",
    "--arch",
    "mobilenet_v2",
    "--crop",
    "128",
    "--batch-size",
    "8",
    "--lr",
    "0.01",
    "--clip-grad",
    "5",
    "--workers",
    "0",
    "--stats-images",
    "8",
]


@pytest.mark.slow
def test_torchrun_with_two_processes_keeps_ranks_in_sync(tmp_path):
    result = train_cls(*QUICK, "--epochs", "1", "--max-steps", "2", "--output", str(tmp_path), nproc=2)
    assert summary(result)["ranks_agree"] is True
    for rank in (0, 1):
        assert f"rank {rank}: weights agree across 2 ranks" in result.stderr


@pytest.mark.slow
def test_resume_continues_from_the_last_epoch(tmp_path):
    summary(train_cls(*QUICK, "--epochs", "1", "--max-steps", "2", "--output", str(tmp_path)))
    state = torch.load(tmp_path / "checkpoint.pth", map_location="cpu", weights_only=False)
    assert state["epoch"] == 0 and (tmp_path / "model_best.pth").exists()
    result = train_cls(*QUICK, "--epochs", "2", "--max-steps", "2", "--resume", "--output", str(tmp_path))
    summary(result)
    assert "resumed from" in result.stderr and "(epoch 0 done)" in result.stderr
    assert torch.load(tmp_path / "checkpoint.pth", map_location="cpu", weights_only=False)["epoch"] == 1


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    "arch, extra",
    [
        # Two of four cosine epochs (40 steps) of ResNet-50-DCT on 16 x 16 cells.
        ("resnet50", ["--crop", "128", "--max-steps", "40"]),
        # Six epochs of MobileNetV2-DCT on 32 x 32 cells (after four it sits near the bar:
        # 33-41% as float-level changes to its inputs reshuffle a run this short).
        ("mobilenet_v2", ["--crop", "256", "--epochs", "6"]),
    ],
)
def test_a_short_cpu_run_beats_chance_on_the_demo(tmp_path, arch, extra):
    result = train_cls(
        "--demo",
        "--arch",
        arch,
        "--channels",
        "24",
        "--epochs",
        "4",
        "--batch-size",
        "16",
        "--lr",
        "0.02",
        "--warmup-epochs",
        "1",
        "--min-scale",
        "0.35",
        "--workers",
        "1",
        "--stats-images",
        "100",
        "--output",
        str(tmp_path),
        *extra,
    )
    # Four balanced classes, 100 validation images: chance is 25%.
    assert summary(result)["best_top1"] >= 35


@pytest.mark.slow
def test_the_classification_package_imports_without_detectron2():
    code = (
        "import sys, importlib.abc, importlib.util\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] == 'detectron2':\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "find = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda n, *a: None if n == 'detectron2' else find(n, *a)\n"
        "import freqdet.classification.engine, freqdet.classification.convert\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
