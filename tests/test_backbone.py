"""The frequency-domain ResNet-FPN against Detectron2's stock R50-FPN."""

import pytest
import torch
from detectron2 import model_zoo
from detectron2.config import get_cfg
from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import BACKBONE_REGISTRY, build_backbone

import freqdet
from freqdet.dct import separable_dct


def configs(**resnets):
    """The stock R50-FPN config, and ours with the DCT backbone and the same settings."""
    stock = get_cfg()
    stock.merge_from_file(model_zoo.get_config_file("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml"))
    for key, value in resnets.items():
        stock.MODEL.RESNETS[key] = value
    ours = stock.clone()
    freqdet.add_freqdet_config(ours)
    ours.MODEL.BACKBONE.NAME = "build_resnet_dct_fpn_backbone"
    return stock, ours


def test_registered():
    assert (
        BACKBONE_REGISTRY.get("build_resnet_dct_fpn_backbone")
        is freqdet.detection.backbone.build_resnet_dct_fpn_backbone
    )
    assert BACKBONE_REGISTRY.get("build_resnet_dct_backbone") is freqdet.detection.backbone.build_resnet_dct_backbone


@pytest.mark.slow
@torch.no_grad()
@pytest.mark.parametrize("size", [(96, 128), (100, 131)])
def test_shapes_and_strides_match_stock_r50_fpn(photo_rgb, size):
    stock_cfg, ours_cfg = configs()
    stock, ours = build_backbone(stock_cfg).eval(), build_backbone(ours_cfg).eval()
    assert stock.output_shape() == ours.output_shape()
    assert {k: v.stride for k, v in ours.output_shape().items()} == {"p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}
    assert ours.size_divisibility == stock.size_divisibility == 32

    h, w = size
    padded = (-(-h // 32) * 32, -(-w // 32) * 32)  # what SIZE_DIVISIBILITY does to the pixel image
    pixels = torch.zeros(1, 3, *padded)
    pixels[:, :, :h, :w] = torch.from_numpy(photo_rgb[:h, :w].copy()).permute(2, 0, 1)
    dct = separable_dct(pixels, 24, "RGB")
    assert dct.shape[-2:] == (padded[0] // 4, padded[1] // 4)
    out_stock, out_ours = stock(pixels), ours(dct)
    assert {k: v.shape for k, v in out_stock.items()} == {k: v.shape for k, v in out_ours.items()}


def test_parameters_are_stock_resnet_minus_the_stem():
    stock_cfg, ours_cfg = configs()
    stock, ours = build_backbone(stock_cfg).state_dict(), build_backbone(ours_cfg).state_dict()
    stem = {k for k in stock if ".stem." in k}
    assert stem and not any(".stem." in k for k in ours)
    assert set(ours) == set(stock) - stem
    reshaped = {k for k in ours if ours[k].shape != stock[k].shape}
    assert reshaped == {"bottom_up.res2.0.conv1.weight", "bottom_up.res2.0.shortcut.weight"}
    assert ours["bottom_up.res2.0.conv1.weight"].shape[1] == 24


@pytest.mark.parametrize("freeze_at", [0, 2, 3])
def test_freeze_at_freezes_what_stock_freezes(freeze_at):
    stock_cfg, ours_cfg = configs()
    for cfg in (stock_cfg, ours_cfg):
        cfg.MODEL.BACKBONE.FREEZE_AT = freeze_at
    frozen = [
        {n for n, p in build_backbone(cfg).named_parameters() if not p.requires_grad and ".stem." not in n}
        for cfg in (stock_cfg, ours_cfg)
    ]
    assert frozen[0] == frozen[1]
    assert bool(frozen[1]) == (freeze_at >= 2)


@pytest.mark.parametrize("norm", ["FrozenBN", "BN", "GN", "SyncBN"])
def test_norm_matches_stock(norm):
    stock_cfg, ours_cfg = configs(NORM=norm)
    stock, ours = build_backbone(stock_cfg), build_backbone(ours_cfg)
    kinds = [
        {n: type(m).__name__ for n, m in model.bottom_up.named_modules() if n.endswith("norm") and "stem" not in n}
        for model in (stock, ours)
    ]
    assert kinds[0] == kinds[1]
    if norm == "FrozenBN":
        assert isinstance(ours.bottom_up.res3[0].conv1.norm, FrozenBatchNorm2d)


def test_depth_and_out_features():
    _, cfg = configs(DEPTH=18, RES2_OUT_CHANNELS=64, OUT_FEATURES=["res3", "res4", "res5"])
    cfg.MODEL.FPN.IN_FEATURES = ["res3", "res4", "res5"]
    backbone = build_backbone(cfg)
    assert {k: v.stride for k, v in backbone.output_shape().items()} == {"p3": 8, "p4": 16, "p5": 32, "p6": 64}
    assert type(backbone.bottom_up.res2[0]).__name__ == "BasicBlock"
    assert backbone.bottom_up.res2[0].conv1.weight.shape[1] == 24
