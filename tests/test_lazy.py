"""freqdet's LazyConfigs against the yacs configs and against Detectron2's own LazyConfigs and tool."""

import copy
import json
import math
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch
from detectron2 import model_zoo as d2_model_zoo
from detectron2.config import LazyConfig, instantiate
from detectron2.data import DatasetCatalog
from detectron2.layers import NaiveSyncBatchNorm, get_norm
from detectron2.modeling import GeneralizedRCNN, build_model
from detectron2.solver import get_default_optimizer_params
from detectron2.utils.registry import _convert_target_to_string
from omegaconf import DictConfig, ListConfig

import freqdet
from freqdet.dct import channel_indices
from freqdet.detection.backbone import DCTStem
from freqdet.detection.config import ConfigFileError, load_config
from freqdet.detection.dataset_stats import compute_config_stats
from freqdet.detection.lazy import (
    channel_statistic,
    clipped_sgd,
    dct_optimizer_params,
    lazy_config_stats,
    set_training_statistics,
    training_set_statistic,
    training_set_statistics,
    use_dct_input,
)
from freqdet.detection.mapper import DCTDatasetMapper
from freqdet.stats import NATURAL_PHOTO_STATS, natural_photo_stats

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEMO = "demo/mask_rcnn_dct_demo.py"
LSJ_EPOCHS = (100, 200, 400)
LAZY_CONFIGS = [n for n in freqdet.model_zoo.list_configs() if n.endswith(".py")]


def lazy(name, *overrides):
    return freqdet.model_zoo.get_config(name, overrides)


def flat(cfg) -> dict:
    """Every leaf of a LazyConfig as {dotted key: value}, callables by name, interpolations unresolved."""
    out = {}

    def visit(node, prefix):
        if isinstance(node, (DictConfig, dict)):
            items = node.items_ex(resolve=False) if isinstance(node, DictConfig) else node.items()
            for k, v in items:
                visit(v, f"{prefix}{k}.")
        elif isinstance(node, (ListConfig, list, tuple)):
            if not len(node):
                out[prefix[:-1]] = []
            for i, v in enumerate(node._iter_ex(resolve=False) if isinstance(node, ListConfig) else node):
                visit(v, f"{prefix}{i}.")
        else:
            out[prefix[:-1]] = name_of(node) if callable(node) else node

    visit(cfg, "")
    return out


def name_of(function) -> str:
    """A callable as a LazyConfig names it; a lambda defined in a config file has no importable name."""
    return "<lambda>" if function.__name__ == "<lambda>" else _convert_target_to_string(function)


def plain(value):
    """A module attribute as comparable plain data (configs' lists as tuples, Detectron2's helpers by their fields)."""
    if isinstance(value, (int, float, str, bool, type(None))):
        return value
    if isinstance(value, (tuple, list, ListConfig)):
        return tuple(plain(x) for x in value)
    if isinstance(value, (dict, DictConfig)):
        return {k: plain(x) for k, x in value.items()}
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.flatten().tolist()))
    if hasattr(value, "__dict__") and not isinstance(value, torch.nn.Module):
        return type(value).__name__, plain({k: x for k, x in vars(value).items() if not k.startswith("_")})
    return type(value).__name__


def settings(module: torch.nn.Module) -> dict:
    values = {k: plain(v) for k, v in vars(module).items() if not k.startswith("_")}
    if isinstance(
        values.get("loss_weight"), dict
    ):  # Detectron2's yacs path lists the box loss alone; a missing key weighs 1
        values["loss_weight"] = {k: values["loss_weight"].get(k, 1.0) for k in ("loss_cls", "loss_box_reg")}
    return values


@pytest.fixture
def no_data(monkeypatch):
    """Any dataset read fails."""

    def refuse(name):
        raise AssertionError(f"dataset {name!r} read")

    monkeypatch.setattr(DatasetCatalog, "get", refuse)


@pytest.fixture(scope="module")
def demo_pair():
    lazy_cfg = lazy(DEMO)
    yacs_cfg = freqdet.model_zoo.get_config("demo/mask_rcnn_dct_demo.yaml")
    return lazy_cfg, yacs_cfg


def test_the_lazy_demo_builds_the_yacs_demos_model(demo_pair, no_data):
    lazy_cfg, yacs_cfg = demo_pair
    torch.manual_seed(0)
    ours = instantiate(lazy_cfg.model)  # reads no data: the shipped statistics, as the yacs model's before training
    torch.manual_seed(0)
    theirs = build_model(yacs_cfg)
    assert str(ours) == str(theirs)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    ours_state, theirs_state = ours.state_dict(), theirs.state_dict()
    assert ours_state.keys() == theirs_state.keys()
    assert all(torch.equal(ours_state[k], theirs_state[k]) for k in ours_state)  # same init, same seed
    modules = dict(theirs.named_modules())
    for name, module in ours.named_modules():
        assert settings(module) == settings(modules[name]), name


def test_the_lazy_demo_maps_as_the_yacs_demo(demo_pair, demo_dicts):
    lazy_cfg, yacs_cfg = demo_pair
    for split, is_train in (("train", True), ("test", False)):
        ours = instantiate(lazy_cfg.dataloader[split].mapper)
        theirs = DCTDatasetMapper(yacs_cfg, is_train=is_train)
        assert isinstance(ours, DCTDatasetMapper) and ours.fuse
        for seed, d in enumerate(demo_dicts[:6]):
            np.random.seed(seed)
            a = ours(copy.deepcopy(d))
            np.random.seed(seed)
            b = theirs(copy.deepcopy(d))
            assert tuple(a["image_size"]) == tuple(b["image_size"])
            assert a["dct"].dtype == b["dct"].dtype == torch.int16 and torch.equal(a["dct"], b["dct"])
            if is_train:
                assert torch.equal(a["instances"].gt_boxes.tensor, b["instances"].gt_boxes.tensor)


def test_the_training_set_statistics_are_the_yacs_trainers(demo_pair, tmp_path):
    lazy_cfg, yacs_cfg = demo_pair
    yacs_cfg = yacs_cfg.clone()
    yacs_cfg.OUTPUT_DIR = str(tmp_path / "yacs")
    expected = compute_config_stats(yacs_cfg, 6)
    assert np.array_equal(lazy_config_stats(lazy_cfg, 6).mean, expected.mean)
    mapper = instantiate(lazy_cfg.dataloader.test.mapper)
    selection = channel_indices(24)
    common = dict(datasets="freqdet_demo_train", mapper=mapper, num_images=6, output_dir=str(tmp_path / "lazy"))
    measured = training_set_statistics(24, **common)
    path = tmp_path / "lazy" / "dct_stats.json"
    assert measured.source == f"measured over 6 images of freqdet_demo_train into {path}"
    mean = training_set_statistic("mean", 24, **common)
    std = training_set_statistic("std", 24, **common)  # read back from the cache
    assert np.allclose(mean, expected.mean[list(selection)]) and np.allclose(std, expected.std[list(selection)])
    assert mean == measured.mean and std == measured.std
    assert training_set_statistics(24, **common).source == f"reused from {path} (6 images of freqdet_demo_train)"
    cached = json.loads(path.read_text())
    assert cached["datasets"] == ["freqdet_demo_train"] and cached["images_asked"] == 6


def test_channel_statistic_picks_the_shipped_or_a_files_statistics(tmp_path):
    selection = list(channel_indices(64))
    mean, std = natural_photo_stats().pick(selection)
    assert np.allclose(channel_statistic("mean", 64), mean) and np.allclose(channel_statistic("std", 64), std)
    path = tmp_path / "stats.json"
    path.write_text(json.dumps({"channels": selection, "mean": list(range(64)), "std": [2.0] * 64}))
    assert channel_statistic("mean", selection, stats_file=str(path)) == list(map(float, range(64)))
    with pytest.raises(ValueError, match="lack channels"):
        channel_statistic("mean", 192, stats_file=str(path))


@pytest.mark.parametrize("epochs", LSJ_EPOCHS)
def test_the_lsj_configs_are_detectron2s_but_for_the_input(epochs):
    theirs = d2_model_zoo.get_config(f"new_baselines/mask_rcnn_R_50_FPN_{epochs}ep_LSJ.py")
    ours = lazy(f"new_baselines/mask_rcnn_dct_R_50_FPN_{epochs}ep_LSJ.py")
    a, b = flat(ours), flat(theirs)
    stem, stages = "model.backbone.bottom_up.stem.", "model.backbone.bottom_up.stages."
    heads_norm = ("model.roi_heads.box_head.conv_norm", "model.roi_heads.mask_head.conv_norm")
    input_keys = {
        "model._target_",
        "model.channels",
        "model.pattern",
        "model.wire_dtype",
        "dataloader.train._target_",
        "dataloader.evaluator.use_fast_impl._target_",
        "optimizer.params._target_",
        "optimizer.params.base_lr",
        "optimizer.params.gate_lr_factor",
        *heads_norm,
    }
    for split in ("train", "test"):
        input_keys |= {f"dataloader.{split}.mapper.{k}" for k in ("_target_", "channels", "pattern", "wire_dtype")}
        input_keys.add(f"dataloader.{split}.mapper.transform_on")
    changed = {k for k in set(a) | set(b) if a.get(k, "absent") != b.get(k, "absent")}
    statistics = ("model.dct_mean.", "model.dct_std.", "dataloader.dct_stats.")
    input_changes = {k for k in changed if k.startswith((stem, stages, *statistics))}
    assert changed - input_changes <= input_keys
    assert {"model._target_", "dataloader.train.mapper._target_", "dataloader.test.mapper._target_"} <= changed
    assert a[stages + "_target_"].endswith("dct_resnet_stages") and a[stem + "_target_"].endswith("DCTStem")
    for key in ("depth", "norm", "stride_in_1x1"):
        assert a[stages + key] == b[stages + key]
    assert a[stem + "norm"] == b[stem + "norm"] == "SyncBN"
    assert a["dataloader.train._target_"].endswith("build_train_loader")
    # Detectron2's heads' norm is a lambda; freqdet names the same layer.
    for key in heads_norm:
        assert a[key] == "naiveSyncBN_N"
        layer, reference = get_norm(a[key], 8), theirs.model.roi_heads.box_head.conv_norm(8)
        assert type(layer) is type(reference) is NaiveSyncBatchNorm and layer._stats_mode == reference._stats_mode


@pytest.mark.parametrize("epochs", LSJ_EPOCHS)
def test_the_faster_rcnn_twins_are_the_mask_configs_without_masks(epochs):
    mask = flat(lazy(f"new_baselines/mask_rcnn_dct_R_50_FPN_{epochs}ep_LSJ.py"))
    faster = flat(lazy(f"new_baselines/faster_rcnn_dct_R_50_FPN_{epochs}ep_LSJ.py"))
    changed = {k.split(".")[2] if k.startswith("model.roi_heads.") else k for k in set(mask) ^ set(faster)}
    changed |= {k for k in set(mask) & set(faster) if mask[k] != faster[k]}
    mask_keys = {"mask_in_features", "mask_pooler", "mask_head"}
    assert {k for k in changed if k not in mask_keys} == {"dataloader.train.mapper.use_instance_mask"}
    assert faster["dataloader.train.mapper.use_instance_mask"] is False
    assert all(faster[f"model.roi_heads.{k}"] is None for k in mask_keys)


def test_an_lsj_model_takes_dct_channels_and_its_mapper_absorbs_the_crop(demo_dicts, monkeypatch):
    cfg = lazy("new_baselines/mask_rcnn_dct_R_50_FPN_100ep_LSJ.py", "model.channels=64")
    with monkeypatch.context() as patched:  # COCO is not here: building the model must not look for it
        patched.setattr(DatasetCatalog, "get", lambda name: pytest.fail(f"dataset {name!r} read"))
        model = instantiate(cfg.model)
    assert torch.allclose(model.normalization.mean.flatten(), torch.tensor(channel_statistic("mean", 64)))
    assert isinstance(model.backbone.bottom_up.stem, DCTStem)
    assert model.channels == channel_indices(64)
    assert model.backbone.bottom_up.res2[0].conv1.in_channels == 64
    assert model.backbone.bottom_up.res2[0].shortcut.in_channels == 64
    cfg.dataloader.train.mapper.augmentations[0].target_height = 256
    cfg.dataloader.train.mapper.augmentations[0].target_width = 256
    cfg.dataloader.train.mapper.augmentations[1].crop_size = (256, 256)
    mapper = instantiate(cfg.dataloader.train.mapper)
    assert mapper.fuse and mapper.channels == channel_indices(64)
    mapped = mapper(copy.deepcopy(demo_dicts[0]))
    assert tuple(mapped["image_size"]) == (256, 256) and mapped["dct"].shape == (64, 64, 64)


@pytest.mark.parametrize("name", LAZY_CONFIGS)
def test_lazy_configs_round_trip_through_save_and_load(name, tmp_path):
    cfg = lazy(name)
    path = tmp_path / "config.yaml"
    LazyConfig.save(cfg, str(path))
    assert not (tmp_path / "config.yaml.pkl").exists()
    assert flat(LazyConfig.load(str(path))) == flat(cfg)


def test_model_zoo_gives_lazy_configs_and_load_config_refuses_them():
    assert {DEMO, "common/models/mask_rcnn_dct_fpn.py", "new_baselines/mask_rcnn_dct_R_50_FPN_400ep_LSJ.py"} <= set(
        LAZY_CONFIGS
    )
    assert lazy(DEMO, "train.max_iter=7").train.max_iter == 7
    model = lazy("common/models/faster_rcnn_dct_fpn.py").model
    assert model.roi_heads.mask_head is None and model.backbone.bottom_up.stages.stride_in_1x1 is False
    with pytest.raises(ConfigFileError, match="LazyConfig.*lazyconfig_train_net.py"):
        load_config(DEMO)


def test_use_dct_input_refuses_what_it_cannot_switch():
    model = d2_model_zoo.get_config("common/models/mask_rcnn_fpn.py").model
    custom = copy.deepcopy(model)
    custom.backbone.bottom_up.stages.block_class = "mine"
    with pytest.raises(ValueError, match="block_class"):
        use_dct_input(custom)
    mine = copy.deepcopy(model)
    mine._target_ = type("MyRCNN", (GeneralizedRCNN,), {})
    with pytest.raises(ValueError, match="MyRCNN subclasses Detectron2's GeneralizedRCNN"):
        use_dct_input(mine)  # dct_twin's message: a DCT class of one's own
    regnet = d2_model_zoo.get_config("new_baselines/mask_rcnn_regnetx_4gf_dds_FPN_100ep_LSJ.py").model
    with pytest.raises(ValueError, match="model.backbone.bottom_up is RegNet"):
        use_dct_input(regnet)
    use_dct_input(model)
    with pytest.raises(ValueError, match="DCT inputs already"):
        use_dct_input(model)


def test_the_gate_learns_at_its_factor_and_the_rest_as_detectron2_sets_it():
    cfg = freqdet.model_zoo.get_config("demo/mask_rcnn_dct_demo_gate.yaml")
    model = build_model(cfg)
    gate = {id(p) for p in model.gate.parameters()}
    reference = get_default_optimizer_params(model, base_lr=0.02, weight_decay_norm=0.0)
    groups = dct_optimizer_params(model, base_lr=0.02, gate_lr_factor=10.0, weight_decay_norm=0.0)
    lr = {id(p): g.get("lr") for g in groups for p in g["params"]}
    decay = {id(p): g.get("weight_decay") for g in groups for p in g["params"]}
    for group in reference:
        for p in group["params"]:
            assert lr[id(p)] == pytest.approx(0.2 if id(p) in gate else 0.02)
            assert decay[id(p)] == group.get("weight_decay")
    assert len(lr) == sum(len(g["params"]) for g in reference) and gate <= set(lr)
    with pytest.raises(ValueError, match="base_lr"):
        dct_optimizer_params(model, gate_lr_factor=10.0)


def test_clipped_sgd_clips_each_parameters_gradient_norm():
    params = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))]
    params[0].grad, params[1].grad = torch.tensor([30.0, 40.0, 0.0]), torch.tensor([0.3, 0.4])
    clipped_sgd(params, lr=1.0, momentum=0.0, weight_decay=0.0, clip_type="norm", clip_value=10.0).step()
    assert torch.allclose(params[0].data, -torch.tensor([6.0, 8.0, 0.0]))  # norm 50 -> 10
    assert torch.allclose(params[1].data, -torch.tensor([0.3, 0.4]))  # under the limit: as it was


def test_the_training_sets_statistics_are_set_where_training_starts(demo_pair, tmp_path, monkeypatch):
    """Built, the model holds the shipped statistics; set_training_statistics measures (once: then reuses),
    or takes a checkpoint's, or with measure=False (--eval-only) keeps what it has, reading no data."""
    cfg = copy.deepcopy(demo_pair[0])
    cfg.train.output_dir = str(tmp_path / "run")
    cfg.dataloader.dct_stats.num_images = 4
    model = instantiate(cfg.model)
    shipped = torch.tensor(channel_statistic("mean", 24))
    assert torch.allclose(model.normalization.mean.flatten(), shipped)
    path = tmp_path / "run" / "dct_stats.json"
    measured = set_training_statistics(model, cfg)
    assert measured == f"DCT normalization of the model: measured over 4 images of freqdet_demo_train into {path}"
    stats = json.loads(path.read_text())
    selection = list(channel_indices(24))
    assert torch.allclose(model.normalization.mean.flatten(), torch.tensor(stats["mean"])[selection])
    checkpoint = tmp_path / "model.pth"
    torch.save({"model": model.state_dict()}, checkpoint)

    monkeypatch.setattr(DatasetCatalog, "get", lambda name: pytest.fail(f"dataset {name!r} read"))
    assert set_training_statistics(model, cfg).endswith(f"reused from {path} (4 images of freqdet_demo_train)")
    fresh = instantiate(cfg.model)
    assert set_training_statistics(fresh, cfg, measure=False).endswith(
        f"the ones freqdet ships ({NATURAL_PHOTO_STATS})"
    )
    assert torch.allclose(fresh.normalization.mean.flatten(), shipped)
    cfg.train.init_checkpoint = str(checkpoint)  # as --eval-only train.init_checkpoint=...: nothing measured
    fresh = instantiate(cfg.model)
    assert torch.allclose(fresh.normalization.mean.flatten(), model.normalization.mean.flatten())
    for measure in (False, True):
        line = set_training_statistics(fresh, cfg, measure=measure)
        assert line == f"DCT normalization of the model: the checkpoint's ({checkpoint})"
    rgb = instantiate(d2_model_zoo.get_config("common/models/retinanet.py").model)
    assert set_training_statistics(rgb, cfg) is None  # pixels: nothing to set


def test_a_lazy_model_with_the_channel_gate_learns_its_loss(demo_pair, demo_dicts):
    from detectron2.config import LazyCall as L
    from detectron2.utils.events import EventStorage

    from freqdet.gate import ChannelGate

    cfg = copy.deepcopy(demo_pair[0])
    cfg.model.channels = 192
    cfg.model.dct_mean = cfg.model.dct_std = None
    cfg.model.backbone.bottom_up.stem.gate = L(ChannelGate)(channels=192)
    model = instantiate(cfg.model).train()
    mapper = instantiate(cfg.dataloader.train.mapper)
    np.random.seed(0)
    with EventStorage(0) as storage:
        losses = model([mapper(copy.deepcopy(d)) for d in demo_dicts[:2]])
    gate_loss = float(losses["loss_gate"].detach())
    assert gate_loss > 0 and math.isfinite(gate_loss)
    assert 0 < storage.latest()["gate/channels_on"][0] <= 192


@pytest.mark.slow
def test_compute_dct_stats_measures_a_lazy_configs_training_set(demo_pair, tmp_path):
    output = tmp_path / "stats.json"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "compute_dct_stats.py"),
            "--config-file",
            DEMO,
            "--num-images",
            "5",
            "--output",
            str(output),
            "dataloader.train.dataset.names=freqdet_demo_val",
        ],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    written = json.loads(output.read_text())
    yacs_cfg = demo_pair[1].clone()
    yacs_cfg.DATASETS.TRAIN = ("freqdet_demo_val",)
    yacs_cfg.OUTPUT_DIR = str(tmp_path)
    expected = compute_config_stats(yacs_cfg, 5)
    assert written["num_images"] == 5 and np.allclose(written["mean"], expected.mean)


def test_build_dct_resnet_is_the_yacs_backbones_resnet():
    from freqdet.detection.backbone import build_dct_resnet, build_resnet_dct_backbone

    cfg = freqdet.model_zoo.get_config("mask_rcnn_dct_R50_FPN_64.yaml")
    torch.manual_seed(0)
    theirs = build_resnet_dct_backbone(cfg)
    torch.manual_seed(0)
    ours = build_dct_resnet(64, 50, norm="FrozenBN", stride_in_1x1=False, freeze_at=2)
    assert str(ours) == str(theirs) and ours._out_features == theirs._out_features
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()))
    assert [p.requires_grad for p in ours.parameters()] == [p.requires_grad for p in theirs.parameters()]
