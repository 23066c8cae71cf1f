"""Detectron2's own configs of every supported architecture, switched by ``freqdet.use_dct_input``.

Each config comes from Detectron2's model zoo unchanged, is switched to 24 DCT channels from
scratch, shrunk for a CPU (ResNet-18 depth where the heads allow, small images) and pointed at the
built-in demo data of its kind; then it trains two iterations, evaluates with the evaluator its
dataset names (Detectron2's), and predicts on a real photo it never saw. The twins' inlined
forwards are held to the stock classes' on inputs made equal by construction.
"""

import copy
import inspect
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from detectron2 import model_zoo
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.layers import ShapeSpec
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, ProposalNetwork, SemanticSegmentor, build_model
from detectron2.modeling.meta_arch.semantic_seg import SemSegFPNHead
from detectron2.modeling.proposal_generator import build_proposal_generator
from detectron2.structures import Boxes, ImageList, Instances
from detectron2.utils.events import EventStorage
from helpers import ROOT

import freqdet
from freqdet import DCTPredictor, read_image
from freqdet.detection.backbone import DCTStem
from freqdet.detection.config import load_config
from freqdet.detection.datasets import DEMO_KEYPOINT_OKS_SIGMAS
from freqdet.detection.meta_arch import DCTInput, DCTProposalNetwork, DCTSemanticSegmentor
from freqdet.detection.trainer import DCTTrainer

SMALL = [
    "MODEL.DEVICE", "cpu",
    "MODEL.RESNETS.DEPTH", 18,
    "MODEL.RESNETS.RES2_OUT_CHANNELS", 64,
    "MODEL.FPN.OUT_CHANNELS", 64,
    "MODEL.RESNETS.NORM", "BN",
    "MODEL.WEIGHTS", "",
    "INPUT.MIN_SIZE_TRAIN", (128,),
    "INPUT.MAX_SIZE_TRAIN", 192,
    "INPUT.MIN_SIZE_TEST", 128,
    "INPUT.MAX_SIZE_TEST", 192,
    "SOLVER.IMS_PER_BATCH", 2,
    "SOLVER.BASE_LR", 0.001,
    "SOLVER.MAX_ITER", 2,
    "SOLVER.STEPS", (),
    "SOLVER.WARMUP_ITERS", 0,
    "SOLVER.CHECKPOINT_PERIOD", 1000,
    "DATALOADER.NUM_WORKERS", 0,
    "MODEL.DCT.STATS_NUM_IMAGES", 4,
    "TEST.DETECTIONS_PER_IMAGE", 10,
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0,  # an untrained model's detections, for every evaluator
    "MODEL.RETINANET.SCORE_THRESH_TEST", 0.0,
    "MODEL.RPN.POST_NMS_TOPK_TRAIN", 100,
    "MODEL.RPN.POST_NMS_TOPK_TEST", 50,
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 64,
]  # fmt: skip
INSTANCES = ["MODEL.ROI_HEADS.NUM_CLASSES", 6, "MODEL.RETINANET.NUM_CLASSES", 6]
KEYPOINTS = ["MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS", 2, "TEST.KEYPOINT_OKS_SIGMAS", list(DEMO_KEYPOINT_OKS_SIGMAS)]
# Detectron2 builds res5 heads for R50 and deeper only: a thin one.
C5 = ["MODEL.RESNETS.DEPTH", 50, "MODEL.RESNETS.WIDTH_PER_GROUP", 16]
# Detectron2's config -> (demo data, overrides, what its predictions hold, what its evaluation reports).
ARCHITECTURES = {
    "COCO-Detection/retinanet_R_50_FPN_1x.yaml": ("freqdet_demo_{}", INSTANCES, {"instances"}, {"bbox"}),
    "COCO-Keypoints/keypoint_rcnn_R_50_FPN_1x.yaml": (
        "freqdet_demo_{}_keypoints",
        INSTANCES + KEYPOINTS,
        {"instances"},
        {"bbox", "keypoints"},
    ),
    "Misc/cascade_mask_rcnn_R_50_FPN_1x.yaml": ("freqdet_demo_{}", INSTANCES, {"instances"}, {"bbox", "segm"}),
    "COCO-Detection/faster_rcnn_R_50_C4_1x.yaml": ("freqdet_demo_{}", INSTANCES + C5, {"instances"}, {"bbox"}),
    "COCO-Detection/faster_rcnn_R_50_DC5_1x.yaml": ("freqdet_demo_{}", INSTANCES + C5, {"instances"}, {"bbox"}),
    "COCO-Detection/rpn_R_50_FPN_1x.yaml": ("freqdet_demo_{}", [], {"proposals"}, {"box_proposals"}),
    "COCO-PanopticSegmentation/panoptic_fpn_R_50_1x.yaml": (
        "freqdet_demo_{}_panoptic_separated",
        INSTANCES + ["MODEL.SEM_SEG_HEAD.NUM_CLASSES", 2],
        {"instances", "sem_seg", "panoptic_seg"},
        {"bbox", "segm", "sem_seg"},
    ),
    "Misc/semantic_R_50_FPN_1x.yaml": (
        "freqdet_demo_{}_sem_seg",
        ["MODEL.SEM_SEG_HEAD.NUM_CLASSES", 7],
        {"sem_seg"},
        {"sem_seg"},
    ),
}
EVAL_IMAGES = 4


def subset(name: str, count: int = EVAL_IMAGES) -> str:
    """A registered dataset's first ``count`` images under a new name, with its metadata."""
    small = f"{name}_first{count}"
    if small not in DatasetCatalog.list():
        DatasetCatalog.register(small, lambda: DatasetCatalog.get(name)[:count])
        MetadataCatalog.get(small).set(**{k: v for k, v in MetadataCatalog.get(name).as_dict().items() if k != "name"})
    return small


def overrides(config: str, output_dir) -> list:
    data, extra, _, _ = ARCHITECTURES[config]
    opts = SMALL + extra + ["OUTPUT_DIR", str(output_dir)]
    return opts + ["DATASETS.TRAIN", (data.format("train"),), "DATASETS.TEST", (subset(data.format("val")),)]


def short_name(config: str) -> str:
    return os.path.basename(config).replace(".yaml", "")


def test_the_switch_changes_the_input_alone():
    for config in ARCHITECTURES:
        stock = get_cfg()
        stock.merge_from_file(model_zoo.get_config_file(config))
        ours = freqdet.use_dct_input(stock.clone(), 24, weights="")
        stock_class = META_ARCH_REGISTRY.get(stock.MODEL.META_ARCHITECTURE)
        ours_class = META_ARCH_REGISTRY.get(ours.MODEL.META_ARCHITECTURE)
        assert issubclass(ours_class, stock_class) and issubclass(ours_class, DCTInput), config
        assert ours.MODEL.BACKBONE.NAME != stock.MODEL.BACKBONE.NAME
        assert (ours.MODEL.WEIGHTS, ours.MODEL.BACKBONE.FREEZE_AT, ours.MODEL.DCT.CHANNELS) == ("", 0, 24)
        for key in set(stock.MODEL) - {"META_ARCHITECTURE", "BACKBONE", "WEIGHTS"}:
            assert ours.MODEL[key] == stock.MODEL[key], (config, key)
        assert {k: v for k, v in ours.MODEL.BACKBONE.items() if k not in ("NAME", "FREEZE_AT")} == {
            k: v for k, v in stock.MODEL.BACKBONE.items() if k not in ("NAME", "FREEZE_AT")
        }
        for key in set(stock) - {"MODEL"}:  # freqdet's own keys (INPUT.DCT) come on top
            if isinstance(stock[key], dict):
                assert {k: ours[key][k] for k in stock[key]} == stock[key], (config, key)
            else:
                assert ours[key] == stock[key], (config, key)


def test_detectron2s_rgb_weights_are_refused_in_one_line_naming_both_ways():
    with pytest.raises(ValueError) as caught:
        freqdet.use_dct_input(load_config("COCO-Detection/retinanet_R_50_FPN_1x.yaml"), 24)
    message = str(caught.value)
    assert "\n" not in message and "ImageNetPretrained" in message
    assert "tools/convert_weights.py" in message and 'MODEL.WEIGHTS ""' in message and "GN" in message


def test_what_has_no_dct_form_is_refused_before_anything_changes():
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME = "build_vit_backbone"
    before = cfg.dump()
    with pytest.raises(ValueError, match="build_vit_backbone.*no DCT form"):
        freqdet.use_dct_input(cfg, 24, weights="")
    assert cfg.dump() == before

    class MyRCNN(META_ARCH_REGISTRY.get("GeneralizedRCNN")):
        pass

    with pytest.raises(ValueError, match="DCTMyRCNN"):
        freqdet.detection.meta_arch.dct_twin(MyRCNN)


def resnet_of(model):
    """The ResNet of a model's backbone (an FPN's bottom_up, or the backbone itself)."""
    return getattr(model.backbone, "bottom_up", model.backbone)


@pytest.mark.slow
@pytest.mark.parametrize("config", ARCHITECTURES, ids=short_name)
def test_each_architecture_trains_evaluates_and_predicts_on_dct_inputs(config, tmp_path, photo_path):
    _, _, outputs, tasks = ARCHITECTURES[config]
    cfg = freqdet.use_dct_input(load_config(config, overrides(config, tmp_path)), 24)
    cfg.freeze()
    stock = build_model(load_config(config, overrides(config, tmp_path / "rgb")))
    trainer = DCTTrainer(cfg)
    trainer.resume_or_load(resume=False)
    model = trainer.model
    assert isinstance(model, type(stock)) and isinstance(model, DCTInput)
    resnet = resnet_of(model)
    assert isinstance(resnet.stem, DCTStem) and resnet.res2[0].conv1.in_channels == 24
    assert not any(isinstance(m, torch.nn.Conv2d) and m.in_channels == 3 for m in model.modules())
    assert [(n, s.stride) for n, s in model.backbone.output_shape().items()] == [
        (n, s.stride) for n, s in stock.backbone.output_shape().items()
    ]
    stock_heads = {k: v.shape for k, v in stock.state_dict().items() if not k.startswith(("backbone.", "pixel_"))}
    assert {k: v.shape for k, v in model.state_dict().items() if k in stock_heads} == stock_heads
    trainer.train()
    assert trainer.iter == cfg.SOLVER.MAX_ITER

    results = DCTTrainer.test(cfg, model)
    assert tasks <= set(results), (config, sorted(results))

    predictor_cfg = cfg.clone()
    predictor_cfg.defrost()
    predictor_cfg.MODEL.WEIGHTS = os.path.join(cfg.OUTPUT_DIR, "model_final.pth")
    predicted = DCTPredictor(predictor_cfg)(photo_path)
    height, width = read_image(photo_path, format="BGR").shape[:2]
    assert set(predicted) == outputs
    if "sem_seg" in outputs:
        assert predicted["sem_seg"].shape == (cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, height, width)
    if "panoptic_seg" in outputs:
        assert predicted["panoptic_seg"][0].shape == (height, width)
    for key in {"instances", "proposals"} & outputs:
        found = predicted[key]
        assert found.image_size == (height, width)
        boxes = (found.pred_boxes if key == "instances" else found.proposal_boxes).tensor
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
        if "pred_keypoints" in found.get_fields():
            assert found.pred_keypoints.shape[1:] == (2, 3)
    if "keypoints" in tasks:
        assert found.has("pred_keypoints")


@pytest.mark.slow
def test_train_net_trains_detectron2s_retinanet_yaml_with_the_switch(tmp_path):
    config = "COCO-Detection/retinanet_R_50_FPN_1x.yaml"
    command = [sys.executable, str(ROOT / "tools" / "train_net.py"), "--config-file", config, "--dct-input", "24"]
    command += [str(o) if not isinstance(o, tuple) else repr(o) for o in overrides(config, tmp_path)]
    command += ["SOLVER.MAX_ITER", "1", "DATASETS.TEST", "()"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert os.path.isfile(tmp_path / "model_final.pth")
    assert "DCTRetinaNet" in (tmp_path / "log.txt").read_text()


# PointRend's instance segmentation config (projects/PointRend/configs/InstanceSegmentation/ in
# Detectron2's repository: Base-PointRend-RCNN-FPN.yaml under pointrend_rcnn_R_50_FPN_1x_coco.yaml),
# key for key; neither Detectron2's wheels nor its sdist ship the projects' configs.
POINTREND_BASE = """_BASE_: "{base}"
MODEL:
  MASK_ON: true
  ROI_BOX_HEAD:
    TRAIN_ON_PRED_BOXES: True
  ROI_MASK_HEAD:
    POOLER_TYPE: ""
    NAME: "PointRendMaskHead"
    FC_DIM: 1024
    NUM_FC: 2
    OUTPUT_SIDE_RESOLUTION: 7
    IN_FEATURES: ["p2"]
    POINT_HEAD_ON: True
  POINT_HEAD:
    FC_DIM: 256
    NUM_FC: 3
    IN_FEATURES: ["p2"]
INPUT:
  MASK_FORMAT: "bitmask"
"""
POINTREND = """_BASE_: Base-PointRend-RCNN-FPN.yaml
MODEL:
  WEIGHTS: detectron2://ImageNetPretrained/MSRA/R-50.pkl
  RESNETS:
    DEPTH: 50
"""


@pytest.mark.slow
def test_pointrend_trains_with_its_config_adder_evaluates_and_predicts(tmp_path, photo_path):
    """PointRend's config through ``--config-adder`` and ``--dct-input``, then ``load_config``'s adder."""
    point_rend = pytest.importorskip(
        "detectron2.projects.point_rend", reason="this Detectron2 was installed without its projects"
    )
    (tmp_path / "Base-PointRend-RCNN-FPN.yaml").write_text(
        POINTREND_BASE.format(base=model_zoo.get_config_file("Base-RCNN-FPN.yaml"))
    )
    config = tmp_path / "pointrend_rcnn_R_50_FPN_1x_coco.yaml"
    config.write_text(POINTREND)
    opts = SMALL + INSTANCES + ["MODEL.POINT_HEAD.NUM_CLASSES", 6, "OUTPUT_DIR", str(tmp_path)]
    opts += ["MODEL.ROI_MASK_HEAD.CONV_DIM", 64]  # PointRend's coarse head takes no fewer channels than this
    opts += ["DATASETS.TRAIN", ("freqdet_demo_train",), "DATASETS.TEST", ()]
    command = [sys.executable, str(ROOT / "tools" / "train_net.py"), "--config-file", str(config)]
    command += ["--config-adder", "detectron2.projects.point_rend:add_pointrend_config", "--dct-input", "24"]
    command += [str(o) if not isinstance(o, tuple) else repr(o) for o in opts]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    opts[opts.index("DATASETS.TEST") + 1] = (subset("freqdet_demo_val"),)
    cfg = load_config(str(config), opts, config_adders=[point_rend.add_pointrend_config])
    cfg = freqdet.use_dct_input(cfg, 24)
    cfg.MODEL.WEIGHTS = str(tmp_path / "model_final.pth")
    cfg.freeze()
    predictor = DCTPredictor(cfg)
    model = predictor.model
    assert isinstance(model, DCTInput) and type(model.roi_heads.mask_head).__name__ == "PointRendMaskHead"
    assert resnet_of(model).res2[0].conv1.in_channels == 24
    assert {"bbox", "segm"} <= set(DCTTrainer.test(cfg, model))
    predicted = predictor(photo_path)["instances"]
    height, width = read_image(photo_path, format="BGR").shape[:2]
    assert predicted.image_size == (height, width) and len(predicted) > 0
    assert predicted.pred_masks.shape[1:] == (height, width)


class Pooled(Backbone):
    """Two feature levels (strides 4 and 8 in pixels) of an input at stride 4 (the DCT grid's), or of
    pixels average-pooled by 4 first: the same features for a grid and its nearest 4x upsampling."""

    def __init__(self, channels: int, pool: int):
        super().__init__()
        self.pool = pool
        self.first = torch.nn.Conv2d(channels, 8, 3, padding=1)
        self.second = torch.nn.Conv2d(8, 8, 3, padding=1)

    @property
    def size_divisibility(self):
        return 32

    def output_shape(self):
        return {"p2": ShapeSpec(channels=8, stride=4), "p3": ShapeSpec(channels=8, stride=8)}

    def forward(self, x):
        p2 = self.first(F.avg_pool2d(x, self.pool) if self.pool > 1 else x)
        return {"p2": p2, "p3": self.second(F.max_pool2d(p2, 2))}


def equal_inputs(rng, sizes, channels, mean, std):
    """DCT inputs and the stock inputs that equal them: the normalized grid upsampled 4x as "pixels"."""
    ours, stock = [], []
    for (h, w), out in zip(sizes, [(100, 150), (70, 41)]):
        wire = torch.from_numpy(rng.integers(-300, 300, (len(channels), h, w)).astype(np.int16))
        labels = torch.from_numpy(rng.integers(0, 3, (4 * h, 4 * w))).long()
        labels[:5] = 255
        normalized = (wire.double() - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
        pixels = normalized.repeat_interleave(4, 1).repeat_interleave(4, 2).float()
        common = {"height": out[0], "width": out[1], "sem_seg": labels}
        ours.append(dict(common, dct=wire, image_size=(4 * h, 4 * w)))
        stock.append(dict(common, image=pixels))
    return ours, stock


@pytest.mark.parametrize("kind", ["semantic", "proposals"])
def test_the_twins_with_their_own_forward_equal_the_stock_classes(kind, rng):
    channels, mean, std = [0, 1, 64], [10.0, -3.0, 0.5], [40.0, 7.0, 2.0]
    backbone = Pooled(len(channels), 1)
    cfg = get_cfg()
    cfg.MODEL.RPN.IN_FEATURES, cfg.MODEL.ANCHOR_GENERATOR.SIZES = ["p2", "p3"], [[16], [32]]
    if kind == "semantic":
        head = SemSegFPNHead(
            input_shape=backbone.output_shape(), num_classes=3, conv_dims=8, common_stride=4, norm="", ignore_value=255
        )
        classes = (SemanticSegmentor, DCTSemanticSegmentor)
        parts = dict(sem_seg_head=head)
    else:
        classes = (ProposalNetwork, DCTProposalNetwork)
        parts = dict(proposal_generator=build_proposal_generator(cfg, backbone.output_shape()))
    stock_backbone = copy.deepcopy(backbone)
    stock_backbone.pool = 4
    zeros, ones = [0.0] * len(channels), [1.0] * len(channels)
    stock = classes[0](backbone=stock_backbone, pixel_mean=zeros, pixel_std=ones, **copy.deepcopy(parts))
    ours = classes[1](
        backbone=backbone, pixel_mean=zeros, pixel_std=ones, channels=channels, dct_mean=mean, dct_std=std, **parts
    )
    ours_inputs, stock_inputs = equal_inputs(rng, [(15, 22), (9, 13)], channels, mean, std)
    if kind == "proposals":
        boxes = torch.tensor([[4.0, 6.0, 40.0, 50.0], [20.0, 2.0, 60.0, 30.0]])
        for x in ours_inputs + stock_inputs:
            x["instances"] = gt_instances(x, boxes)
    for training in (True, False):
        results = []
        for model, inputs in ((stock, stock_inputs), (ours, ours_inputs)):
            model.train(training)
            torch.manual_seed(0)
            with torch.no_grad(), EventStorage():
                results.append(model(inputs))
        if training:
            assert results[0].keys() == results[1].keys()
            for key in results[0]:
                torch.testing.assert_close(results[1][key], results[0][key], rtol=1e-5, atol=1e-6)
        else:
            for a, b in zip(*results):
                if kind == "semantic":  # within the float sums of the pooling
                    torch.testing.assert_close(b["sem_seg"], a["sem_seg"], rtol=1e-4, atol=1e-4)
                else:
                    assert b["proposals"].image_size == a["proposals"].image_size
                    torch.testing.assert_close(
                        b["proposals"].proposal_boxes.tensor, a["proposals"].proposal_boxes.tensor
                    )
                    torch.testing.assert_close(b["proposals"].objectness_logits, a["proposals"].objectness_logits)


def gt_instances(x, boxes):
    size = x["image_size"] if "image_size" in x else tuple(x["image"].shape[-2:])
    instances = Instances(size)
    instances.gt_boxes = Boxes(boxes.clone())
    instances.gt_classes = torch.zeros(len(boxes), dtype=torch.long)
    return instances


class SquarePadded(Pooled):
    """A backbone that asks for square inputs of 64 pixels (``padding_constraints``, Detectron2 after 0.6)."""

    @property
    def padding_constraints(self):
        return {"square_size": 64}


def test_padding_constraints_are_honoured_or_refused_in_one_line(rng):
    backbone = SquarePadded(3, 1)
    head = SemSegFPNHead(input_shape=backbone.output_shape(), num_classes=3, conv_dims=8, common_stride=4, norm="")
    model = DCTSemanticSegmentor(
        backbone=backbone,
        sem_seg_head=head,
        pixel_mean=[0.0] * 3,
        pixel_std=[1.0] * 3,
        channels=[0, 1, 64],
        dct_mean=[0.0] * 3,
        dct_std=[1.0] * 3,
    )
    inputs, _ = equal_inputs(rng, [(9, 13)], [0, 1, 64], [0.0] * 3, [1.0] * 3)
    if "padding_constraints" in inspect.signature(ImageList.from_tensors).parameters:
        assert tuple(model.preprocess_image(inputs).tensor.shape[-2:]) == (16, 16)  # 64 pixels square, in cells
    else:  # Detectron2 0.6
        with pytest.raises(ValueError) as caught:
            model.preprocess_image(inputs)
        assert "\n" not in str(caught.value) and "square_size" in str(caught.value)
