"""Config files, add_freqdet_config, the model zoo and the default statistics."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch
from detectron2 import model_zoo
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.modeling import META_ARCH_REGISTRY, build_model

import freqdet
from freqdet.dct import channel_indices
from freqdet.demo import packaged_photos
from freqdet.detection.config import ConfigKeyError, check_can_learn, dct_selection, dct_stats_from_config, load_config
from freqdet.detection.meta_arch import dct_twin
from freqdet.detection.switch import dct_backbone_name
from freqdet.stats import natural_photo_stats

ROOT = pathlib.Path(__file__).resolve().parents[1]
DCT_CONFIGS = {
    "mask_rcnn_dct_R50_FPN.yaml": (True, 24),
    "mask_rcnn_dct_R50_FPN_64.yaml": (True, 64),
    "mask_rcnn_dct_R50_FPN_192.yaml": (True, 192),
    "faster_rcnn_dct_R50_FPN.yaml": (False, 24),
    "faster_rcnn_dct_R50_FPN_64.yaml": (False, 64),
}
SCRATCH_CONFIGS = {"mask_rcnn_dct_R50_FPN_scratch.yaml": True, "faster_rcnn_dct_R50_FPN_scratch.yaml": False}
# What a DCT config changes in a Detectron2 config: the input, nothing else.
INPUT_KEYS = {
    ("MODEL", "META_ARCHITECTURE"),
    ("MODEL", "BACKBONE", "NAME"),
    ("MODEL", "DCT"),
    ("INPUT", "DCT"),
    ("TEST", "VIS_IMAGES"),
    ("TEST", "VIS_SCORE_THRESH"),
}


def load(name):
    cfg = get_cfg()
    freqdet.add_freqdet_config(cfg)
    cfg.merge_from_file(str(ROOT / "configs" / name))
    return cfg


def test_import_registers_everything():
    assert META_ARCH_REGISTRY.get("DCTGeneralizedRCNN") is freqdet.detection.DCTGeneralizedRCNN
    assert {"freqdet_demo_train", "freqdet_demo_val"} <= set(DatasetCatalog.list())


def test_base_is_detectron2s_base():
    ours, stock = get_cfg(), get_cfg()
    ours.merge_from_file(str(ROOT / "configs" / "Base-RCNN-FPN.yaml"))
    stock.merge_from_file(model_zoo.get_config_file("Base-RCNN-FPN.yaml"))
    assert ours == stock


@pytest.mark.parametrize("name", sorted(DCT_CONFIGS))
def test_dct_configs_build_the_paper_models(name):
    mask_on, channels = DCT_CONFIGS[name]
    cfg = load(name)
    cfg.MODEL.DEVICE = "cpu"
    assert dct_selection(cfg) == channel_indices(channels)
    # COCO 1x, as Detectron2's R50-FPN.
    assert (cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER) == (16, 0.02, 90000)
    assert cfg.DATASETS.TRAIN == ("coco_2017_train",) and cfg.DATASETS.TEST == ("coco_2017_val",)
    model = build_model(cfg)
    assert model.roi_heads.mask_on == mask_on
    assert model.backbone.bottom_up.res2[0].conv1.weight.shape[1] == channels
    assert model.backbone.bottom_up.res2[0].conv1.weight.shape[0] == 64  # ResNet-50 bottleneck


@pytest.mark.parametrize(
    "name, mask_on", [("mask_rcnn_rgb_R50_FPN.yaml", True), ("faster_rcnn_rgb_R50_FPN.yaml", False)]
)
def test_rgb_baselines_are_detectron2s(name, mask_on):
    ours = load(name)
    stock = get_cfg()
    freqdet.add_freqdet_config(stock)
    zoo = (
        "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml"
        if mask_on
        else "COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml"
    )
    stock.merge_from_file(model_zoo.get_config_file(zoo))
    assert ours == stock


@pytest.mark.parametrize(
    "opts, message",
    [
        (["MODEL.DCT.PATTERN", "circle"], "unknown channel pattern"),
        (["MODEL.DCT.CHANNELS", 25], "supported counts"),
        (["MODEL.DCT.INDICES", [0, 0, 1]], "repeated"),
        (["MODEL.DCT.INDICES", [0, 192]], "0..191"),
    ],
)
def test_bad_selections_name_the_config_key(opts, message):
    cfg = load("mask_rcnn_dct_R50_FPN.yaml")
    cfg.merge_from_list(opts)
    with pytest.raises(ValueError, match=f"cfg.MODEL.DCT.*{message}"):
        dct_selection(cfg)


def test_statistics_sources(tmp_path):
    cfg = load("mask_rcnn_dct_R50_FPN.yaml")
    assert dct_stats_from_config(cfg, dct_selection(cfg)) is None
    stats = tmp_path / "stats.json"
    stats.write_text('{"mean": %s, "std": %s}' % (list(range(192)), [1.5] * 192))
    cfg.MODEL.DCT.STATS_FILE = str(stats)
    mean, std = dct_stats_from_config(cfg, dct_selection(cfg))
    assert list(mean) == list(channel_indices(24)) and set(std) == {1.5}
    stats.write_text('{"mean": [0, 1], "std": [1, 1]}')
    with pytest.raises(ValueError, match=r"have 2 values; expected 192 \(all channels\) or 24"):
        dct_stats_from_config(cfg, dct_selection(cfg))
    cfg.MODEL.DCT.STATS_FILE = str(tmp_path / "absent.json")
    with pytest.raises(ValueError, match="cannot read DCT statistics"):
        dct_stats_from_config(cfg, dct_selection(cfg))


def differing_keys(a, b, prefix=(), ignored=INPUT_KEYS):
    """Dotted key paths where two configs differ, but for ``ignored`` (a sub-config there counts as one)."""
    out = set()
    for key in set(a) | set(b):
        path = prefix + (key,)
        if path in ignored:
            continue
        if key in a and key in b and hasattr(a[key], "items") and hasattr(b[key], "items"):
            out |= differing_keys(a[key], b[key], path, ignored)
        elif a.get(key) != b.get(key):
            out.add(".".join(path))
    return out


@pytest.mark.parametrize("name, mask_on", sorted(SCRATCH_CONFIGS.items()))
def test_scratch_configs_are_detectron2s_scratch_recipe_on_dct_inputs(name, mask_on):
    ours = load(name)
    stock = get_cfg()
    freqdet.add_freqdet_config(stock)
    stock.merge_from_file(model_zoo.get_config_file("Misc/scratch_mask_rcnn_R_50_FPN_3x_gn.yaml"))
    stock.MODEL.MASK_ON = mask_on
    assert differing_keys(ours, stock) == set()
    assert ours.MODEL.META_ARCHITECTURE == "DCTGeneralizedRCNN" and dct_selection(ours) == channel_indices(24)
    assert (ours.MODEL.RESNETS.NORM, ours.MODEL.FPN.NORM, ours.MODEL.WEIGHTS, ours.MODEL.BACKBONE.FREEZE_AT) == (
        "GN",
        "GN",
        "",
        0,
    )
    ours.MODEL.DEVICE = "cpu"
    model = build_model(ours)
    assert type(model.backbone.bottom_up.res2[0].conv1.norm).__name__ == "GroupNorm"
    assert model.roi_heads.mask_on == mask_on


# freqdet's config -> Detectron2's model-zoo config it is the DCT form of.
ARCHITECTURE_CONFIGS = {
    "retinanet_dct_R50_FPN_1x.yaml": "COCO-Detection/retinanet_R_50_FPN_1x.yaml",
    "keypoint_rcnn_dct_R50_FPN_1x.yaml": "COCO-Keypoints/keypoint_rcnn_R_50_FPN_1x.yaml",
    "panoptic_fpn_dct_R50_1x.yaml": "COCO-PanopticSegmentation/panoptic_fpn_R_50_1x.yaml",
    "semantic_dct_R50_FPN_1x.yaml": "Misc/semantic_R_50_FPN_1x.yaml",
}


@pytest.mark.parametrize("name", sorted(ARCHITECTURE_CONFIGS))
def test_architecture_configs_are_detectron2s_on_dct_inputs(name):
    ours = load(name)
    stock = get_cfg()
    freqdet.add_freqdet_config(stock)
    stock.merge_from_file(model_zoo.get_config_file(ARCHITECTURE_CONFIGS[name]))
    # Besides the input: no RGB weights, and the stride placement of converted torchvision weights.
    ignored = INPUT_KEYS | {("MODEL", "WEIGHTS"), ("MODEL", "RESNETS", "STRIDE_IN_1X1")}
    assert differing_keys(ours, stock, ignored=ignored) == set()
    assert ours.MODEL.META_ARCHITECTURE == dct_twin(stock.MODEL.META_ARCHITECTURE).__name__
    assert ours.MODEL.BACKBONE.NAME == dct_backbone_name(stock.MODEL.BACKBONE.NAME)
    assert (ours.MODEL.WEIGHTS, ours.MODEL.RESNETS.STRIDE_IN_1X1) == ("", False)
    assert dct_selection(ours) == channel_indices(24)
    ours.MODEL.DEVICE = "cpu"
    model = build_model(ours)
    assert isinstance(model, META_ARCH_REGISTRY.get(stock.MODEL.META_ARCHITECTURE))
    assert model.backbone.bottom_up.res2[0].conv1.in_channels == 24


def test_training_a_frozen_bn_config_needs_weights():
    cfg = load("mask_rcnn_dct_R50_FPN.yaml")
    with pytest.raises(ValueError, match="FrozenBN and MODEL.WEIGHTS is empty"):
        check_can_learn(cfg)
    cfg.MODEL.WEIGHTS = "dct_r50.pth"
    check_can_learn(cfg)
    check_can_learn(load("mask_rcnn_dct_R50_FPN_scratch.yaml"))  # GroupNorm learns from scratch


def test_unknown_keys_name_the_closest_valid_ones(tmp_path):
    with pytest.raises(
        ConfigKeyError, match=r"unknown config key 'SOLVER.MAXITER' in the overrides; did you mean SOLVER.MAX_ITER"
    ):
        load_config("configs/demo/mask_rcnn_dct_demo.yaml", ["SOLVER.MAXITER", 3])
    typo = tmp_path / "typo.yaml"
    typo.write_text(
        f'_BASE_: "{ROOT / "configs" / "demo" / "mask_rcnn_dct_demo.yaml"}"\nINPUT:\n  DCT:\n    WIRE_TYPE: int8\n'
    )
    with pytest.raises(
        ConfigKeyError, match=r"'INPUT.DCT.WIRE_TYPE' in .*typo.yaml; did you mean INPUT.DCT.WIRE_DTYPE"
    ):
        load_config(str(typo))


def test_model_zoo_finds_every_config_by_name():
    names = freqdet.model_zoo.list_configs()
    assert {"mask_rcnn_dct_R50_FPN_scratch.yaml", "demo/mask_rcnn_dct_demo.yaml"} <= set(names)
    for name in names:
        assert (
            pathlib.Path(freqdet.model_zoo.get_config_file(name)).read_bytes() == (ROOT / "configs" / name).read_bytes()
        )
    assert freqdet.model_zoo.get_config("configs/faster_rcnn_dct_R50_FPN_scratch.yaml").MODEL.MASK_ON is False
    with pytest.raises(FileNotFoundError, match="not one of freqdet's configs"):
        freqdet.model_zoo.get_config_file("nope.yaml")


@pytest.mark.slow
def test_model_zoo_works_from_an_installed_package(tmp_path):
    """setup.py's build (what pip installs from a wheel) carries the configs and the statistics."""
    build = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path / "lib")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    installed = tmp_path / "lib" / "freqdet"
    assert (installed / "configs").is_dir() and not (installed / "configs").is_symlink()
    code = (
        "import freqdet; from freqdet.model_zoo import get_config; cfg = get_config('demo/mask_rcnn_dct_demo.yaml'); "
        "print(freqdet.__file__, cfg.MODEL.DCT.CHANNELS, len(freqdet.stats.natural_photo_stats().mean))"
    )
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "lib"))
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    path, channels, count = result.stdout.split()[-3:]
    assert path.startswith(str(installed)) and (channels, count) == ("24", "192")


@pytest.mark.parametrize("name", sorted(DCT_CONFIGS) + sorted(SCRATCH_CONFIGS))
def test_models_without_statistics_normalize_with_the_natural_photo_table(name):
    cfg = load(name)
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg).eval()
    mean, std = natural_photo_stats().pick(dct_selection(cfg))
    assert torch.allclose(model.normalization.mean.flatten().double(), torch.from_numpy(mean), rtol=1e-6)
    assert torch.allclose(model.normalization.std.flatten().double(), torch.from_numpy(std), rtol=1e-6)


@pytest.mark.slow
def test_the_natural_photo_table_is_what_its_tool_measures(tmp_path):
    table = natural_photo_stats()
    assert table.info["photos"] == [os.path.basename(p) for p in packaged_photos()]
    output = tmp_path / "stats.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "compute_dct_stats.py"), "--photos", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    measured = freqdet.stats.load_stats(str(output))
    assert measured.channels == table.channels == tuple(range(192))
    np.testing.assert_allclose(measured.mean, table.mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(measured.std, table.std, rtol=1e-6, atol=1e-9)


def test_a_real_photo_normalized_with_the_default_table_is_of_unit_scale():
    """The default normalization puts a natural photo's low-frequency channels at unit scale
    (mean 0, std 1 would leave the DC of Y in the hundreds)."""
    cfg = load("mask_rcnn_dct_R50_FPN_scratch.yaml")
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg).eval()
    mapper = freqdet.DCTDatasetMapper(cfg, is_train=False)
    with torch.no_grad():
        x = model.preprocess_image([mapper({"file_name": packaged_photos()[0]})]).tensor[0]
    h, w = (s // 4 for s in mapper({"file_name": packaged_photos()[0]})["image_size"])
    x = x[:, :h, :w]
    assert x.mean(dim=(1, 2)).abs().max() < 1.5 and (x.std(dim=(1, 2)) < 3).all() and x[0].std() > 0.3


DEMO = ROOT / "configs" / "demo"
RGB_TWINS = [
    (f"{arch}_rgb_demo.yaml", f"{arch}_dct_demo.yaml")
    for arch in ("mask_rcnn", "faster_rcnn", "retinanet", "keypoint_rcnn", "semantic", "panoptic_fpn")
]


def load_demo(name):
    return load(f"demo/{name}")


@pytest.mark.parametrize("rgb, dct", RGB_TWINS)
def test_rgb_demo_twins_differ_from_the_dct_demo_only_in_the_input(rgb, dct):
    ours, twin = load_demo(rgb), load_demo(dct)
    # Detectron2's own meta-architecture and backbone, whose DCT twins the DCT demo names.
    assert META_ARCH_REGISTRY.get(ours.MODEL.META_ARCHITECTURE).__module__.startswith("detectron2.")
    assert dct_twin(ours.MODEL.META_ARCHITECTURE).__name__ == twin.MODEL.META_ARCHITECTURE
    assert dct_backbone_name(ours.MODEL.BACKBONE.NAME) == twin.MODEL.BACKBONE.NAME
    assert ours.MODEL.RESNETS.STEM_OUT_CHANNELS == 64 and ours.MODEL.RESNETS.DEPTH == 18
    assert ours.OUTPUT_DIR == f"output/demo/{rgb[:-5]}"
    # The merged configs, input keys aside, are equal: depth, norm, heads, sizes, schedule, SEED.
    ours.MODEL.META_ARCHITECTURE = twin.MODEL.META_ARCHITECTURE
    ours.MODEL.BACKBONE.NAME = twin.MODEL.BACKBONE.NAME
    ours.OUTPUT_DIR = twin.OUTPUT_DIR
    assert ours == twin


@pytest.mark.parametrize("rgb_name, dct_name", RGB_TWINS)
def test_rgb_demo_model_is_the_dct_demo_model_with_detectron2s_stem(rgb_name, dct_name):
    dct = build_model(load_demo(dct_name))
    rgb = build_model(load_demo(rgb_name))
    assert dct_twin(type(rgb)) is type(dct) and type(rgb.backbone.bottom_up.stem).__name__ == "BasicStem"
    assert rgb.backbone.bottom_up.stem.conv1.weight.shape == (64, 3, 7, 7)
    assert {k: v.stride for k, v in rgb.backbone.output_shape().items()} == {
        k: v.stride for k, v in dct.backbone.output_shape().items()
    }

    def shapes(model):  # everything after the input: res2 from its second block on, FPN, RPN, heads
        skip = ("backbone.bottom_up.stem.", "backbone.bottom_up.res2.0.", "normalization.")
        return {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.startswith(skip)}

    assert shapes(rgb) == shapes(dct)
    assert rgb.backbone.bottom_up.res2[0].conv1.weight.shape[1:] == (64, 3, 3)
    assert dct.backbone.bottom_up.res2[0].conv1.weight.shape[1:] == (24, 3, 3)


def test_dct64_demo_is_the_dct_demo_with_64_channels():
    ours, base = load_demo("mask_rcnn_dct64_demo.yaml"), load_demo("mask_rcnn_dct_demo.yaml")
    assert dct_selection(ours) == channel_indices(64)
    ours.merge_from_list(["MODEL.DCT.CHANNELS", 24, "OUTPUT_DIR", base.OUTPUT_DIR])
    assert ours == base


def test_gate_top24_demo_is_what_the_channel_analysis_writes_for_its_channels(tmp_path):
    from freqdet.detection.channel_analysis import write_selection_config

    ours, base = load_demo("mask_rcnn_dct_gate_top24_demo.yaml"), load_demo("mask_rcnn_dct_demo.yaml")
    chosen = list(ours.MODEL.DCT.INDICES)
    assert len(chosen) == len(set(chosen)) == 24 and dct_selection(ours) == tuple(sorted(chosen))
    written = tmp_path / "channels" / "top24.yaml"
    write_selection_config(chosen, str(ROOT / "configs/demo/mask_rcnn_dct_demo.yaml"), str(written))
    analysis = get_cfg()
    freqdet.add_freqdet_config(analysis)
    analysis.merge_from_file(str(written))
    analysis.OUTPUT_DIR = ours.OUTPUT_DIR
    assert ours == analysis  # the same merged config, so the same runs
    ours.merge_from_list(["MODEL.DCT.INDICES", [], "OUTPUT_DIR", base.OUTPUT_DIR])
    assert ours == base  # and the square demo's but for the channels
