"""Detectron2's own LazyConfigs of every ResNet architecture, switched by ``freqdet.detection.lazy.use_dct_input``.

Each config comes from Detectron2's model zoo unchanged and is switched to DCT channels. Building
its model reads no data and gives the DCT twin of the config's class, whose parameters are the
stock model's but for the stem (gone) and res2's input; shrunk for a CPU (ResNet-18, small images,
2 per batch) and pointed at the demo data of its kind, it trains two iterations with the losses
of the stock class. freqdet's tools/lazyconfig_train_net.py trains one of them (RetinaNet) with
``--dct-input``, and refuses Detectron2's RGB ImageNet weights and ``--config-adder``.
"""

import copy
import importlib.util
import json
import logging
import math

import pytest
import torch
from detectron2 import model_zoo
from detectron2.config import instantiate
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.detection_utils import create_keypoint_hflip_indices
from detectron2.engine import SimpleTrainer
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import BasicStem
from detectron2.utils.events import EventStorage
from detectron2.utils.registry import locate
from helpers import ROOT, run_lazy_tool
from omegaconf import DictConfig, ListConfig, OmegaConf

from freqdet.dct import channel_indices
from freqdet.detection.backbone import DCTStem
from freqdet.detection.datasets import DEMO_KEYPOINT_OKS_SIGMAS
from freqdet.detection.lazy import set_training_statistics, use_dct_input
from freqdet.detection.meta_arch import dct_twin
from freqdet.stats import natural_photo_stats

CHANNELS = 24
CASCADE = "common/models/cascade_rcnn.py"  # Detectron2's Cascade R-CNN is a model LazyConfig only
# Detectron2's LazyConfig -> the demo data of its kind ({} is the split).
ARCHITECTURES = {
    "COCO-Detection/retinanet_R_50_FPN_1x.py": "freqdet_demo_{}",
    "COCO-Detection/fcos_R_50_FPN_1x.py": "freqdet_demo_{}",
    "COCO-Keypoints/keypoint_rcnn_R_50_FPN_1x.py": "freqdet_demo_{}_keypoints",
    "COCO-PanopticSegmentation/panoptic_fpn_R_50_1x.py": "freqdet_demo_{}_panoptic_separated",
    CASCADE: "freqdet_demo_{}",
    "COCO-InstanceSegmentation/mask_rcnn_R_50_C4_1x.py": "freqdet_demo_{}",
    "new_baselines/mask_rcnn_R_50_FPN_100ep_LSJ.py": "freqdet_demo_{}",
}
C4 = "COCO-InstanceSegmentation/mask_rcnn_R_50_C4_1x.py"  # its res5 is Bottleneck-only: built, not shrunk and trained
TRAINED = [name for name in ARCHITECTURES if name != C4]


def detectron2_config(name):
    """Detectron2's LazyConfig ``name``; Cascade R-CNN's model with Mask R-CNN FPN 1x's data and schedule."""
    if name != CASCADE:
        return model_zoo.get_config(name)
    cfg = model_zoo.get_config("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.py")
    cfg.model = model_zoo.get_config(CASCADE).model
    return cfg


def stock_class(cfg):
    target = cfg.model._target_
    return locate(target) if isinstance(target, str) else target


def switched(name):
    """Detectron2's config ``name`` switched to DCT channels (skipped where freqdet has no twin of its class)."""
    cfg = detectron2_config(name)
    try:
        dct_twin(stock_class(cfg))
    except ValueError as e:
        pytest.skip(f"{name}: {e}")
    use_dct_input(cfg.model, cfg.dataloader, cfg.optimizer, channels=CHANNELS)
    return cfg


def resnet_of(model):
    return model.backbone.bottom_up if hasattr(model.backbone, "bottom_up") else model.backbone


NARROW = {256: 64, 1024: 256}  # the FPN's and the heads' widths -> a CPU test's
WIDTH_KEYS = {"in_channels", "out_channels", "conv_dims", "fc_dims", "input_shape"}


def narrowed(node, key=None):
    """A model config's FPN and head widths (``in_channels``, ``conv_dims``, ``fc_dims``, ShapeSpecs'
    ``channels``, ...) made :data:`NARROW`'s, in place; interpolations and other numbers untouched."""
    if isinstance(node, (DictConfig, ListConfig)):
        keys = [k for k, _ in node.items_ex(resolve=False)] if isinstance(node, DictConfig) else range(len(node))
        for k in keys:
            if not OmegaConf.is_interpolation(node, k):
                node[k] = narrowed(node[k], k if isinstance(node, DictConfig) else key)
        return node
    if isinstance(node, ShapeSpec):
        return node._replace(channels=NARROW.get(node.channels, node.channels))
    if isinstance(node, int) and key in WIDTH_KEYS:
        return NARROW.get(node, node)
    return node


def on_demo_data(cfg, name, output_dir):
    """``cfg`` shrunk for a CPU (ResNet-18 with trainable norms, narrow FPN and heads, small images, 2 per
    batch, no workers) and pointed at the demo data of its kind; the same for the stock and the switched config."""
    model, loader, data = narrowed(cfg.model), cfg.dataloader, ARCHITECTURES[name]
    resnet = model.backbone.get("bottom_up", model.backbone)
    resnet.stages.depth, resnet.freeze_at = 18, 0
    resnet.stages.pop("stride_in_1x1", None)  # ResNet-18's BasicBlock has no such choice
    if resnet.stages.norm == "FrozenBN":
        resnet.stages.norm = "BN"
    top = model.backbone.get("top_block", {})
    if top.get("in_channels") == 2048:  # RetinaNet's P6 from res5
        top.in_channels = 512
    heads = model.get("roi_heads")
    if heads is None:
        model.num_classes = 6
    else:
        heads.update(num_classes=6, batch_size_per_image=64)
    if "keypoint_head" in (heads or {}):
        heads.keypoint_head.update(num_keypoints=2, conv_dims=[64, 64])
        loader.train.mapper.keypoint_hflip_indices = create_keypoint_hflip_indices([data.format("train")])
        loader.evaluator.kpt_oks_sigmas = list(DEMO_KEYPOINT_OKS_SIGMAS)
    if "sem_seg_head" in model:
        model.sem_seg_head.num_classes = 2  # the demo's stuff: things, background
    loader.train.dataset.names, loader.test.dataset.names = data.format("train"), data.format("val")
    loader.train.update(total_batch_size=2, num_workers=0)
    loader.test.num_workers = 0
    first = loader.train.mapper.augmentations[0]
    if "crop_size" in loader.train.mapper.augmentations[1]:  # LSJ: ResizeScale + FixedSizeCrop
        first.update(target_height=160, target_width=160)
        loader.train.mapper.augmentations[1].crop_size = (160, 160)
    else:
        first.update(short_edge_length=(128, 160), max_size=240)
    loader.test.mapper.augmentations[0].update(short_edge_length=144, max_size=240)
    if "dct_stats" in loader:
        loader.dct_stats.num_images = 2
    cfg.train.update(output_dir=str(output_dir), device="cpu", init_checkpoint="")
    cfg.optimizer.lr = 0.001  # from scratch, without the recipes' warm-up
    return cfg


@pytest.fixture
def no_data(monkeypatch):
    """Any dataset read fails."""

    def refuse(name):
        raise AssertionError(f"dataset {name!r} read")

    monkeypatch.setattr(DatasetCatalog, "get", refuse)


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_the_switched_config_builds_the_dct_twin_without_reading_data(name, no_data):
    cfg = switched(name)
    cfg.dataloader.train.dataset.names = cfg.dataloader.test.dataset.names = "no_such_dataset"
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    stock_cfg = detectron2_config(name)
    stock = instantiate(stock_cfg.model)
    assert type(model) is dct_twin(stock_class(stock_cfg)) and isinstance(model, stock_class(stock_cfg))

    resnet = resnet_of(model)
    assert isinstance(resnet.stem, DCTStem) and not any(isinstance(m, BasicStem) for m in model.modules())
    assert resnet.res2[0].conv1.in_channels == resnet.res2[0].shortcut.in_channels == CHANNELS
    assert model.channels == channel_indices(CHANNELS)
    shipped = natural_photo_stats().pick(channel_indices(CHANNELS))
    assert torch.allclose(model.normalization.mean.flatten(), torch.as_tensor(shipped[0], dtype=torch.float32))

    # Every parameter and buffer is the stock model's, of its shape, but the stem's and res2's input.
    prefix = "backbone.bottom_up." if hasattr(stock.backbone, "bottom_up") else "backbone."
    ours = {k: v.shape for k, v in model.state_dict().items()}
    theirs = {k: v.shape for k, v in stock.state_dict().items()}
    assert set(ours) - set(theirs) == {f"normalization.{k}" for k in ("selected", "mean", "std")}
    assert set(theirs) - set(ours) == {k for k in theirs if k.startswith(prefix + "stem.")}
    changed = {k for k in set(ours) & set(theirs) if ours[k] != theirs[k]}
    assert changed == {prefix + "res2.0.conv1.weight", prefix + "res2.0.shortcut.weight"}
    stem_channels = resnet_of(stock).stem.out_channels
    assert all(ours[k][1] == CHANNELS and theirs[k][1] == stem_channels for k in changed)


@pytest.mark.slow
@pytest.mark.parametrize("name", TRAINED)
def test_it_trains_on_the_demo_data_with_the_stock_classes_losses(name, tmp_path, caplog):
    cfg = on_demo_data(switched(name), name, tmp_path)
    stock_cfg = on_demo_data(detectron2_config(name), name, tmp_path / "stock")
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    caplog.set_level(logging.INFO, logger="freqdet.detection.lazy")
    logging.getLogger("freqdet.detection.lazy").addHandler(caplog.handler)
    try:
        line = set_training_statistics(model, cfg)
    finally:
        logging.getLogger("freqdet.detection.lazy").removeHandler(caplog.handler)
    data = cfg.dataloader.train.dataset.names
    assert line == f"DCT normalization of the model: measured over 2 images of {data} into {tmp_path}/dct_stats.json"
    assert line in caplog.messages
    stats = json.loads((tmp_path / "dct_stats.json").read_text())
    selection = list(channel_indices(CHANNELS))
    assert torch.allclose(model.normalization.mean.flatten(), torch.tensor(stats["mean"])[selection])

    cfg.optimizer.params.model = model
    trainer = SimpleTrainer(model, instantiate(cfg.dataloader.train), instantiate(cfg.optimizer))
    trainer.train(0, 2)
    ours = {k: v for k, (v, _) in trainer.storage.latest().items() if k.startswith("loss_")}
    assert ours and all(math.isfinite(v) for v in ours.values())

    stock = instantiate(stock_cfg.model).train()
    mapper = instantiate(stock_cfg.dataloader.train.mapper)
    with EventStorage(0):
        theirs = stock([mapper(copy.deepcopy(d)) for d in DatasetCatalog.get(data)[:2]])
    assert set(ours) == set(theirs)


def lazy_tool():
    spec = importlib.util.spec_from_file_location("lazyconfig_train_net", ROOT / "tools" / "lazyconfig_train_net.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


RETINANET = "COCO-Detection/retinanet_R_50_FPN_1x.py"
DEMO_DATA = ["dataloader.train.dataset.names=freqdet_demo_train", "dataloader.test.dataset.names=freqdet_demo_val"]


def test_the_lazy_tool_refuses_rgb_weights_and_config_adders(tmp_path):
    tool = lazy_tool()

    def setup(*flags, overrides=()):
        args = tool.parse_args(["--config-file", RETINANET, *flags, "train.device=cpu", *DEMO_DATA, *overrides])
        args.config_file = tool.any_config_path(args.config_file)
        return tool.setup_config(args)

    rgb = setup(overrides=[f"train.output_dir={tmp_path}"])
    assert rgb.train.init_checkpoint.startswith("detectron2://ImageNetPretrained/")  # an RGB model takes them
    with pytest.raises(ValueError) as refused:
        setup("--dct-input", "24")
    message = str(refused.value)
    assert "\n" not in message and message.startswith("train.init_checkpoint is 'detectron2://ImageNetPretrained/")
    assert 'train.init_checkpoint=""' in message and "tools/convert_weights.py" in message
    with pytest.raises(ValueError, match="cannot learn: .*FrozenBN and model.backbone.bottom_up.freeze_at is 2"):
        setup("--dct-input", "24", overrides=["train.init_checkpoint="])
    scratch = [
        "train.init_checkpoint=",
        "model.backbone.bottom_up.freeze_at=0",
        "model.backbone.bottom_up.stages.norm=BN",
    ]
    cfg = setup("--dct-input", "24", "--dct-pattern", "triangle", overrides=[*scratch, "model.channels=32"])
    assert stock_class(cfg) is dct_twin(stock_class(rgb))
    assert cfg.model.channels == 32 and cfg.model.pattern == "triangle"
    with pytest.raises(ValueError, match="--config-adder .*yacs config.*drop --config-adder"):
        setup("--dct-input", "24", "--config-adder", "point_rend:add_pointrend_config", overrides=scratch)


@pytest.mark.slow
def test_the_lazy_tool_trains_detectron2s_retinanet_on_dct_inputs(tmp_path):
    val = MetadataCatalog.get("freqdet_demo_val")
    subset = json.loads(open(val.json_file).read())
    subset["images"] = subset["images"][:1]
    subset["annotations"] = [a for a in subset["annotations"] if a["image_id"] == subset["images"][0]["id"]]
    (tmp_path / "val1.json").write_text(json.dumps(subset))
    run = tmp_path / "run"
    result = run_lazy_tool(
        ROOT / "tools" / "lazyconfig_train_net.py",
        "--dct-input",
        str(CHANNELS),
        "--register-coco",
        "val1",
        str(tmp_path / "val1.json"),
        val.image_root,
        "train.init_checkpoint=",
        "model.backbone.bottom_up.freeze_at=0",
        "model.backbone.bottom_up.stages.norm=BN",
        "model.backbone.bottom_up.stages.depth=18",
        "model.backbone.top_block.in_channels=512",
        "model.num_classes=6",
        "dataloader.train.dataset.names=freqdet_demo_train",
        "dataloader.test.dataset.names=val1",
        "dataloader.train.total_batch_size=2",
        "dataloader.train.num_workers=0",
        "dataloader.test.num_workers=0",
        "dataloader.train.mapper.augmentations.0.short_edge_length=[128,160]",
        "dataloader.train.mapper.augmentations.0.max_size=240",
        "dataloader.test.mapper.augmentations.0.short_edge_length=144",
        "dataloader.test.mapper.augmentations.0.max_size=240",
        "dataloader.dct_stats.num_images=2",
        "train.max_iter=2",
        "train.device=cpu",
        f"train.output_dir={run}",
        cwd=tmp_path,
        config=str(model_zoo.get_config_file(RETINANET)),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert (
        f"DCT normalization of the model: measured over 2 images of freqdet_demo_train into {run}/dct_stats.json" in log
    )
    assert "copypaste: Task: bbox" in log  # Detectron2's COCOEvaluator on val1
    metrics = [json.loads(line) for line in (run / "metrics.json").read_text().splitlines()]
    losses = [m for m in metrics if "total_loss" in m][-1]  # the last training step's (evaluation follows)
    assert {"loss_cls", "loss_box_reg"} <= set(losses) and math.isfinite(losses["total_loss"])
    stats = json.loads((run / "dct_stats.json").read_text())
    state = torch.load(run / "model_final.pth", weights_only=True)["model"]
    assert "backbone.bottom_up.stem.conv1.weight" not in state
    assert state["backbone.bottom_up.res2.0.conv1.weight"].shape[1] == CHANNELS
    selection = list(channel_indices(CHANNELS))
    assert torch.allclose(state["normalization.mean"].flatten(), torch.tensor(stats["mean"])[selection])
