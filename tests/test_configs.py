"""Config files and add_freqdet_config."""
import pathlib

import pytest
from detectron2 import model_zoo
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.modeling import META_ARCH_REGISTRY, build_model

import freqdet
from freqdet.detection.config import dct_selection, dct_stats_from_config
from freqdet.dct import channel_indices

ROOT = pathlib.Path(__file__).resolve().parents[1]
DCT_CONFIGS = {
    "mask_rcnn_dct_R50_FPN.yaml": (True, 24),
    "mask_rcnn_dct_R50_FPN_64.yaml": (True, 64),
    "mask_rcnn_dct_R50_FPN_192.yaml": (True, 192),
    "faster_rcnn_dct_R50_FPN.yaml": (False, 24),
    "faster_rcnn_dct_R50_FPN_64.yaml": (False, 64),
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


@pytest.mark.parametrize("name, mask_on", [("mask_rcnn_rgb_R50_FPN.yaml", True), ("faster_rcnn_rgb_R50_FPN.yaml", False)])
def test_rgb_baselines_are_detectron2s(name, mask_on):
    ours = load(name)
    stock = get_cfg()
    freqdet.add_freqdet_config(stock)
    zoo = "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml" if mask_on else "COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml"
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


DEMO = ROOT / "configs" / "demo"
RGB_TWINS = [("mask_rcnn_rgb_demo.yaml", "mask_rcnn_dct_demo.yaml"), ("faster_rcnn_rgb_demo.yaml", "faster_rcnn_dct_demo.yaml")]


def load_demo(name):
    return load(f"demo/{name}")


@pytest.mark.parametrize("rgb, dct", RGB_TWINS)
def test_rgb_demo_twins_differ_from_the_dct_demo_only_in_the_input(rgb, dct):
    ours, twin = load_demo(rgb), load_demo(dct)
    stock = get_cfg()  # Detectron2's own R-CNN FPN: its meta-architecture and backbone
    stock.merge_from_file(model_zoo.get_config_file("Base-RCNN-FPN.yaml"))
    assert ours.MODEL.META_ARCHITECTURE == stock.MODEL.META_ARCHITECTURE
    assert ours.MODEL.BACKBONE.NAME == stock.MODEL.BACKBONE.NAME
    assert ours.MODEL.RESNETS.STEM_OUT_CHANNELS == 64 and ours.MODEL.RESNETS.DEPTH == 18
    assert ours.OUTPUT_DIR == f"output/demo/{rgb[:-5]}"
    # The merged configs, input keys aside, are equal: depth, norm, heads, sizes, schedule, SEED.
    ours.MODEL.META_ARCHITECTURE = twin.MODEL.META_ARCHITECTURE
    ours.MODEL.BACKBONE.NAME = twin.MODEL.BACKBONE.NAME
    ours.OUTPUT_DIR = twin.OUTPUT_DIR
    assert ours == twin


def test_rgb_demo_model_is_the_dct_demo_model_with_detectron2s_stem():
    dct = build_model(load_demo("mask_rcnn_dct_demo.yaml"))
    rgb = build_model(load_demo("mask_rcnn_rgb_demo.yaml"))
    assert type(rgb).__name__ == "GeneralizedRCNN" and type(rgb.backbone.bottom_up.stem).__name__ == "BasicStem"
    assert rgb.backbone.bottom_up.stem.conv1.weight.shape == (64, 3, 7, 7)
    assert {k: v.stride for k, v in rgb.backbone.output_shape().items()} == {k: v.stride for k, v in dct.backbone.output_shape().items()}

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
