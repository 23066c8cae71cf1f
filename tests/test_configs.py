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
