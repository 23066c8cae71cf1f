"""The official DCTNet release's checkpoints give the release's outputs, through the public tools.

The release's models and validation pipeline are written again, independently, in
``tests/dctnet_release.py`` (plain torch modules with its parameter names; OpenCV,
libjpeg-turbo and jpeglib). Checkpoints are saved in its layout with random weights and
non-trivial BatchNorm statistics, converted with ``tools/convert_weights.py`` and compared
on the same raw coefficients.
"""

import importlib.util
import json
import os
import pathlib
import pickle

import dctnet_release as release
import numpy as np
import pytest
import torch
import torchvision

from freqdet.classification import build_classifier, load_classifier
from freqdet.classification.convert import torchvision_to_classifier
from freqdet.classification.official import OfficialEvalTransform, official_stats
from freqdet.dct import channel_indices
from freqdet.safe_load import UntrustedCheckpointError

ROOT = pathlib.Path(__file__).resolve().parents[1]
TABLES = ROOT / "freqdet" / "classification" / "official_stats"


def tool(name: str):
    """A script of tools/ as a module (its main() runs in this process: no second torch import)."""
    spec = importlib.util.spec_from_file_location(f"tool_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def table(name: str, channels: int):
    """(mean, std) as (C, 1, 1) of the release's ``name`` table, subset as its NormalizeDCT subsets it."""
    with open(TABLES / f"{name}.json") as f:
        record = json.load(f)
    index = list(range(192)) if channels == 192 else release.subset_index(channels)
    return tuple(torch.tensor([record[key][i] for i in index]).view(-1, 1, 1) for key in ("mean", "std"))


def raw_coefficients(channels: int, cells: int, seed: int = 0) -> torch.Tensor:
    """Raw DCT coefficients of the kind a JPEG holds: a DC around -100, ACs of a few tens."""
    generator = torch.Generator().manual_seed(seed)
    raw = 25 * torch.randn(1, channels, cells, cells, generator=generator)
    raw[:, 0] += -100
    return raw.round()


def official_checkpoint(tmp_path, arch: str, channels: int, data_parallel: bool, num_classes: int = 1000):
    model_class = release.ResNetDCTUpscaledStatic if arch == "resnet50" else release.MobileNetV2DCTSubsetWoinp
    model = release.randomize(model_class(channels, num_classes), seed=channels)
    path = tmp_path / f"{arch}_{channels}_model_best.pth.tar"
    release.save_checkpoint(model, path, data_parallel)
    return model, path


def convert(*args) -> int:
    return tool("convert_weights").main([str(a) for a in args])


def test_the_packaged_tables_are_the_releases():
    # Figures as printed in the release's classification/datasets/__init__.py (train_upscaled_static_std)
    # and, for the detection table's DC, in DESIGN.md's facts about segmentation/configs/mean_std.py.
    classification, detection = official_stats("classification"), official_stats("detection")
    assert classification.channels == detection.channels == tuple(range(192))
    assert [classification.std[i] for i in (0, 1, 8, 64, 128, 191)] == [
        259.96,
        2.7776,
        3.9907,
        81.161,
        75.848,
        9.6861e-03,
    ]
    assert classification.mean[0] == pytest.approx(-88.4, abs=0.05) and classification.std[0] == pytest.approx(
        260.0, abs=0.05
    )
    assert detection.mean[0] == pytest.approx(-123.4, abs=0.05) and detection.std[0] == pytest.approx(169.0, abs=0.05)
    assert "kaix90/DCTNet" in classification.info["source"] and "mean_std.py" in detection.info["source"]
    # Our square selections pick the release's subsets (its main/__init__.py), in its order.
    for count in (24, 32, 64):
        assert list(channel_indices(count)) == release.subset_index(count)


@pytest.mark.parametrize(
    "arch, channels, data_parallel, cells",
    [
        ("resnet50", 24, True, 28),
        ("resnet50", 64, False, 28),
        ("mobilenet_v2", 24, False, 112),
        ("mobilenet_v2", 32, True, 112),  # the release pools 7x7: 112 cells in
    ],
)
def test_a_converted_official_classifier_gives_the_releases_logits(tmp_path, arch, channels, data_parallel, cells):
    theirs, path = official_checkpoint(tmp_path, arch, channels, data_parallel)
    out = tmp_path / "converted.pth"
    assert convert("--source", "official", "--arch", arch, "--target", "classifier", path, out) == 0
    ours = load_classifier(out)
    assert not ours.training and ours.layout == "official"
    raw = raw_coefficients(channels, cells)
    mean, std = table("classification", channels)
    with torch.no_grad():
        expected, logits = theirs((raw - mean) / std), ours(raw)
    scale = expected.abs().max()
    assert scale > 1
    assert torch.allclose(logits, expected, rtol=1e-5, atol=1e-5 * scale), (logits - expected).abs().max() / scale
    if arch == "resnet50":
        # The same weights in this package's own layout (layer2 at stride 2) are another network.
        other = build_classifier(arch, 1000, channels, layout="torchvision").eval()
        other.load_state_dict(ours.state_dict())
        with torch.no_grad():
            assert (other(raw) - expected).abs().max() > 0.01 * scale


@pytest.mark.parametrize("channels", [24, 64])
def test_an_official_resnet_becomes_a_detectron2_backbone_with_the_releases_layers(tmp_path, channels):
    from test_classification import detector

    from freqdet.detection.checkpoint import FreqdetCheckpointer
    from freqdet.detection.convert import detectron2_backbone_report

    theirs, path = official_checkpoint(tmp_path, "resnet50", channels, data_parallel=channels == 24)
    out = tmp_path / "d2.pth"
    assert convert("--source", "official", "--target", "detectron2", path, out) == 0
    model = detector(channels).eval()
    assert detectron2_backbone_report(model, torch.load(out, weights_only=True)["model"]) == ([], [], [])
    FreqdetCheckpointer(model).load(str(out))
    raw = raw_coefficients(channels, 32)
    mean, std = table("detection", channels)
    with torch.no_grad():
        features = model.backbone.bottom_up(model.normalization(raw[0])[None])
        expected = theirs.layer_outputs((raw - mean) / std, standard_strides=True)
    for name, layer in zip(("res2", "res3", "res4", "res5"), expected):
        assert features[name].shape == layer.shape
        assert torch.allclose(features[name], layer, rtol=1e-4, atol=1e-5 * layer.abs().max()), name


@pytest.fixture(scope="module")
def photos(photo_path):
    import sklearn

    images = pathlib.Path(sklearn.__file__).parent / "datasets" / "images"
    return [images / "china.jpg", images / "flower.jpg", pathlib.Path(photo_path)]


# The release's valloader_upscaled_static: resize the shorter side to 512 and crop 448 (ResNet-50),
# 1024 and 896 (MobileNetV2).
@pytest.mark.parametrize("resize, crop, channels", [(512, 448, 24), (1024, 896, 32)])
def test_official_preprocessing_is_the_releases_pipeline(tmp_path, photos, resize, crop, channels):
    transform = OfficialEvalTransform(crop, channel_indices(channels))
    assert transform.resize == resize
    for path in photos:
        ours = transform(path)
        assert ours.dtype == torch.int16 and ours.shape == (channels, crop // 8, crop // 8)
        assert torch.equal(ours.float(), release.release_val_input(path, resize, crop, channels, tmp_path)), path.name


def train_cls(*args):
    """tools/train_cls.py in this process: (exit status, the JSON line it printed)."""
    module = tool("train_cls")
    from contextlib import redirect_stdout
    from io import StringIO

    printed = StringIO()
    with redirect_stdout(printed):
        status = module.main([str(a) for a in args])
    return status, json.loads(printed.getvalue().strip().splitlines()[-1])


def test_evaluate_scores_official_weights_on_the_releases_inputs(tmp_path):
    from freqdet.demo import prepare_demo_folder

    theirs, path = official_checkpoint(tmp_path, "resnet50", 24, data_parallel=True, num_classes=4)
    out = tmp_path / "r50_dct24.pth"
    assert convert("--source", "official", "--target", "classifier", path, out) == 0
    status, result = train_cls(
        "--demo",
        "--evaluate",
        "--weights",
        out,
        "--preprocess",
        "official",
        "--crop",
        32,
        "--batch-size",
        50,
        "--workers",
        0,
    )
    assert status == 0 and result["images"] == 100
    # The release's own evaluation of its model: its pipeline (crop 32 of a 37-pixel resize, as 448 of 512), its table.
    mean, std = table("classification", 24)
    val = pathlib.Path(prepare_demo_folder()) / "val"
    inputs, labels = [], []
    for label, folder in enumerate(sorted(p for p in val.iterdir() if p.is_dir())):
        for image in sorted(folder.iterdir()):
            inputs.append(release.release_val_input(image, 37, 32, 24, tmp_path))
            labels.append(label)
    with torch.no_grad():
        predicted = theirs((torch.stack(inputs) - mean) / std).argmax(dim=1)
    hits = int((predicted == torch.tensor(labels)).sum())
    assert result["top1"] == pytest.approx(hits) and result["top5"] == 100.0  # four classes: all in the top 5


def test_init_from_a_converted_checkpoint_keeps_its_network_and_normalization(tmp_path):
    _, path = official_checkpoint(tmp_path, "mobilenet_v2", 24, data_parallel=False)
    converted = tmp_path / "mnv2_dct24.pth"
    assert convert("--source", "official", "--arch", "mobilenet_v2", "--target", "classifier", path, converted) == 0
    run = tmp_path / "run"
    status, _ = train_cls(
        "--demo",
        "--init",
        converted,
        "--crop",
        64,
        "--epochs",
        1,
        "--max-steps",
        1,
        "--batch-size",
        4,
        "--workers",
        0,
        "--output",
        run,
    )
    assert status == 0
    best = torch.load(run / "model_best.pth", weights_only=True)
    start = torch.load(converted, weights_only=True)
    assert (best["arch"], best["layout"], best["channels"]) == ("mobilenet_v2", "official", list(channel_indices(24)))
    assert best["num_classes"] == 4 and "classification table" in best["normalization"]
    for key in ("input.normalization.mean", "input.normalization.std"):
        assert torch.equal(best["model"][key], start["model"][key])
    assert not (run / "dct_stats.json").exists()  # the release's table, not statistics of these images
    assert load_classifier(run / "model_best.pth").classifier[1].out_features == 4
    with pytest.raises(SystemExit, match="--layout 'torchvision' but it holds 'official'"):
        train_cls("--demo", "--init", converted, "--layout", "torchvision", "--output", run)


def test_init_from_torchvision_rgb_weights_slices_the_input_channels_as_the_release(tmp_path):
    from freqdet.classification.engine import ClassificationTrainer

    rgb = torchvision.models.resnet50(weights=None).state_dict()
    path = tmp_path / "resnet50.pth"
    torch.save(rgb, path)
    args = tool("train_cls").parse_args(
        [
            "--demo",
            "--init",
            str(path),
            "--layout",
            "official",
            "--init-input",
            "slice",
            "--crop",
            "64",
            "--workers",
            "0",
            "--output",
            str(tmp_path / "run"),
        ]
    )
    model = ClassificationTrainer(args).model
    assert torch.equal(model.layer1[0].conv1.weight, rgb["layer1.0.conv1.weight"][:, :24])
    assert torch.equal(model.layer1[0].downsample[0].weight, rgb["layer1.0.downsample.0.weight"][:, :24])
    assert torch.equal(model.layer3[2].conv2.weight, rgb["layer3.2.conv2.weight"])
    assert model.layer2[0].conv2.stride == (1, 1)
    # MobileNetV2: the t=1 block cut to C channels, or its depthwise kernels repeated over 6 inputs each for 192.
    rgb = torchvision.models.mobilenet_v2(weights=None).state_dict()
    for channels in (24, 192):
        state, report = torchvision_to_classifier(
            rgb, channels, arch="mobilenet_v2", layout="official", input_init="slice"
        )
        assert not report.unmapped and all(k.startswith("features.0.") for k in report.dropped)
        depthwise = rgb["features.1.conv.0.0.weight"]
        expected = depthwise[:24] if channels == 24 else depthwise.repeat(1, 6, 1, 1)
        assert torch.equal(state["features.0.conv.0.0.weight"], expected)
        assert torch.equal(state["features.16.conv.2.weight"], rgb["features.17.conv.2.weight"])
        build_classifier("mobilenet_v2", 1000, channels, layout="official").load_state_dict(state, strict=False)


class Payload:
    """Unpickling this runs ``os.makedirs(marker)``: a stand-in for code a downloaded checkpoint could run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.makedirs, (self.marker,)


def test_a_crafted_pickle_checkpoint_is_refused_and_runs_nothing(tmp_path, capsys):
    from freqdet.detection.checkpoint import FreqdetCheckpointer

    marker = tmp_path / "code_ran"
    _, path = official_checkpoint(tmp_path, "mobilenet_v2", 24, data_parallel=True)
    checkpoint = torch.load(path, weights_only=True)
    crafted = tmp_path / "model_best.pth.tar"
    torch.save({**checkpoint, "extra": Payload(marker)}, crafted)
    out = tmp_path / "converted.pth"

    assert convert("--source", "official", "--arch", "mobilenet_v2", "--target", "classifier", crafted, out) == 2
    message = capsys.readouterr().err
    assert str(crafted) in message and "--trust-checkpoint" in message and "os.makedirs" in message
    with pytest.raises(UntrustedCheckpointError, match="--trust-checkpoint"):
        load_classifier(crafted)
    with pytest.raises(SystemExit, match="refusing to load"):
        train_cls("--demo", "--evaluate", "--weights", crafted)
    with pytest.raises(UntrustedCheckpointError, match=str(crafted)):
        FreqdetCheckpointer(torch.nn.Linear(2, 2)).load(str(crafted))
    pickled = tmp_path / "model.pkl"  # Detectron2's model-zoo format is a plain pickle
    pickled.write_bytes(pickle.dumps({"model": {"weight": Payload(marker)}, "__author__": "someone"}, protocol=2))
    with pytest.raises(UntrustedCheckpointError, match="os.makedirs"):
        FreqdetCheckpointer(torch.nn.Linear(2, 2)).load(str(pickled))
    assert not marker.exists() and not out.exists()

    # The guard is what stopped it: trusted, the same file runs its code, and converts.
    assert (
        convert(
            "--source",
            "official",
            "--arch",
            "mobilenet_v2",
            "--target",
            "classifier",
            "--trust-checkpoint",
            crafted,
            out,
        )
        == 0
    )
    assert marker.exists() and out.exists()


def test_model_zoo_pickles_of_arrays_still_load(tmp_path):
    from freqdet.detection.checkpoint import FreqdetCheckpointer

    model = torch.nn.Linear(3, 2)
    weights = {"weight": np.full((2, 3), 0.5, np.float32), "bias": np.array([1.0, -1.0], np.float32)}
    path = tmp_path / "R-test.pkl"
    path.write_bytes(pickle.dumps({"model": weights, "__author__": "test"}, protocol=2))
    FreqdetCheckpointer(model).load(str(path))
    assert torch.equal(model.weight, torch.full((2, 3), 0.5)) and torch.equal(model.bias, torch.tensor([1.0, -1.0]))
