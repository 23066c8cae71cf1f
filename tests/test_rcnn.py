"""Mask R-CNN and Faster R-CNN with DCT inputs: training steps and inference on the CPU."""

import copy

import numpy as np
import pytest
import torch
from detectron2.data import DatasetMapper
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from helpers import small_cfg

from freqdet import DCTDatasetMapper
from freqdet.dct import upscaled_idct
from freqdet.detection import DCTGeneralizedRCNN

CONFIGS = {"mask": "configs/demo/mask_rcnn_dct_demo.yaml", "faster": "configs/demo/faster_rcnn_dct_demo.yaml"}


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_trains_and_predicts_inside_the_original_image(demo_dicts, kind):
    torch.manual_seed(0)
    np.random.seed(0)
    cfg = small_cfg(
        CONFIGS[kind],
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
        0.0,
        "MODEL.DCT.MEAN",
        [0.0] * 24,
        "MODEL.DCT.STD",
        [100.0] * 24,
    )
    model = build_model(cfg)
    assert isinstance(model, DCTGeneralizedRCNN) and model.roi_heads.mask_on == (kind == "mask")
    train_mapper, test_mapper = DCTDatasetMapper(cfg, True), DCTDatasetMapper(cfg, False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.005, momentum=0.9)
    model.train()
    with EventStorage(0):
        for step in range(3):
            batch = [train_mapper(copy.deepcopy(d)) for d in demo_dicts[2 * step : 2 * step + 2]]
            losses = model(batch)
            expected = {"loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"} | (
                {"loss_mask"} if kind == "mask" else set()
            )
            assert set(losses) == expected
            assert all(torch.isfinite(v) for v in losses.values())
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()

    model.eval()
    inputs = [test_mapper(copy.deepcopy(d)) for d in demo_dicts[10:12]]
    assert inputs[0]["image_size"] != (inputs[0]["height"], inputs[0]["width"])  # resized for the net
    with torch.no_grad():
        outputs = model(inputs)
    for x, out in zip(inputs, outputs):
        instances = out["instances"]
        h, w = x["height"], x["width"]
        assert instances.image_size == (h, w) and len(instances) > 0
        boxes = instances.pred_boxes.tensor
        assert boxes[:, 0].min() >= 0 and boxes[:, 1].min() >= 0
        assert boxes[:, 2].max() <= w and boxes[:, 3].max() <= h
        if kind == "mask":
            assert instances.pred_masks.shape[1:] == (h, w)


def test_normalizes_on_the_device_and_keeps_pixel_sizes(demo_dicts):
    cfg = small_cfg(CONFIGS["faster"], "MODEL.DCT.MEAN", list(range(24)), "MODEL.DCT.STD", [2.0] * 24)
    model = build_model(cfg)
    inputs = [DCTDatasetMapper(cfg, False)(copy.deepcopy(d)) for d in demo_dicts[:2]]
    images = model.preprocess_image(inputs)
    assert images.image_sizes == [tuple(x["image_size"]) for x in inputs]
    assert images.tensor.shape[-2] % 8 == 0 and images.tensor.shape[-1] % 8 == 0  # 32 pixels = 8 cells
    for i, x in enumerate(inputs):
        c, h, w = x["dct"].shape
        expected = (x["dct"].float() - torch.arange(24.0).view(-1, 1, 1)) / 2
        assert torch.allclose(images.tensor[i, :, :h, :w], expected)
    assert torch.equal(model.state_dict()["normalization.std"].flatten(), torch.full((24,), 2.0))


def test_rejects_mismatched_sizes(demo_dicts):
    cfg = small_cfg(CONFIGS["faster"])
    model = build_model(cfg)
    x = DCTDatasetMapper(cfg, False)(copy.deepcopy(demo_dicts[0]))
    x["image_size"] = (x["image_size"][0] + 8, x["image_size"][1])
    with pytest.raises(ValueError, match="does not match"):
        model.preprocess_image([x])


def test_missing_dct_input_is_explained(demo_dicts):
    model = build_model(small_cfg(CONFIGS["faster"]))
    with pytest.raises(KeyError, match="DCTDatasetMapper"):
        model.preprocess_image([{"file_name": "x.jpg"}])


@pytest.mark.parametrize("wire, fuse", [("int16", True), ("int8", True), ("float32", True), ("int16", False)])
def test_transform_on_the_device_gives_the_cpu_paths_numbers(demo_dicts, wire, fuse):
    opts = [
        "INPUT.DCT.WIRE_DTYPE",
        wire,
        "INPUT.DCT.FUSE_RESIZE",
        fuse,
        "MODEL.DCT.MEAN",
        [5.0] * 24,
        "MODEL.DCT.STD",
        [50.0] * 24,
        "INPUT.DCT.SOURCE",
        "pixels",  # the device transforms decoded pixels; "planes" reads the file's YCbCr on the CPU only
    ]
    cpu_cfg = small_cfg(CONFIGS["faster"], *opts)
    device_cfg = small_cfg(CONFIGS["faster"], *opts, "MODEL.DCT.TRANSFORM_ON", "device")
    model = build_model(cpu_cfg)
    for seed, d in enumerate(demo_dicts[:3]):
        np.random.seed(seed)
        shipped = DCTDatasetMapper(cpu_cfg, True)(copy.deepcopy(d))
        np.random.seed(seed)
        pixels = DCTDatasetMapper(device_cfg, True)(copy.deepcopy(d))
        assert "dct" not in pixels and pixels["image"].dtype == torch.uint8
        if fuse:  # the decoded pixels travel, and the model applies the resize
            assert pixels["image"].shape[-2:] == (d["height"], d["width"]) and "resize" in pixels
        assert torch.equal(shipped["instances"].gt_boxes.tensor, pixels["instances"].gt_boxes.tensor)
        a, b = model.preprocess_image([shipped]), model.preprocess_image([pixels])
        assert a.image_sizes == b.image_sizes
        assert torch.allclose(a.tensor, b.tensor, atol=1e-5)


def test_predicts_from_plain_images_like_defaultpredictor(demo_dicts):
    # Without absorbing the resize, so that both inputs come from the same resized pixels.
    cfg = small_cfg(CONFIGS["mask"], "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0, "INPUT.DCT.FUSE_RESIZE", False)
    model = build_model(cfg).eval()
    d = demo_dicts[5]
    mapped = DCTDatasetMapper(cfg, False)(copy.deepcopy(d))
    pixels = DatasetMapper(cfg, False)(copy.deepcopy(d))  # what DefaultPredictor feeds: "image", "height", "width"
    with torch.no_grad():
        a, b = model([mapped])[0]["instances"], model([pixels])[0]["instances"]
    assert a.image_size == b.image_size == (d["height"], d["width"])
    assert torch.allclose(a.pred_boxes.tensor, b.pred_boxes.tensor, atol=1e-3)


def test_training_visualization_draws_the_rebuilt_image(demo_dicts):
    cfg = small_cfg(CONFIGS["mask"], "VIS_PERIOD", 1)
    model = build_model(cfg)
    batch = [DCTDatasetMapper(cfg, True)(copy.deepcopy(d)) for d in demo_dicts[:2]]
    with EventStorage(0) as storage:
        model(batch)
    drawn = {name: image for name, image, _ in storage._vis_data}
    name = next(n for n in drawn if "proposals" in n)
    h, w = batch[0]["image_size"]
    assert drawn[name].shape == (3, h, 2 * w)
    # The picture is drawn on the image rebuilt from the shipped DCT channels.
    rebuilt = upscaled_idct(batch[0]["dct"].float().numpy(), model.channels, (h, w), "RGB")
    left = drawn[name][:, :, :w].transpose(1, 2, 0).astype(np.float32)
    assert np.median(np.abs(left - np.clip(rebuilt, 0, 255))) < 2


def test_the_predictions_picture_shows_what_scores_above_the_threshold(monkeypatch, tmp_path):
    """draw_predictions, as tools/train_net.py calls it with TEST.VIS_SCORE_THRESH."""
    from detectron2.structures import Boxes, Instances
    from detectron2.utils.visualizer import Visualizer

    from freqdet.detection.predictions import draw_predictions

    class Scored(torch.nn.Module):
        def forward(self, inputs):
            out = []
            for x in inputs:
                instances = Instances((x["height"], x["width"]))
                instances.pred_boxes = Boxes(
                    torch.tensor([[2.0, 2.0, 30.0, 30.0], [5.0, 5.0, 40.0, 20.0], [1.0, 1.0, 9.0, 9.0]])
                )
                instances.scores = torch.tensor([0.9, 0.4, 0.1])
                instances.pred_classes = torch.tensor([0, 1, 2])
                out.append({"instances": instances})
            return out

    drawn = []
    original = Visualizer.draw_instance_predictions
    monkeypatch.setattr(
        Visualizer,
        "draw_instance_predictions",
        lambda self, predictions: drawn.append(len(predictions)) or original(self, predictions),
    )
    mapper = lambda d: dict(d)  # noqa: E731  (the stand-in model reads only the sizes)
    for threshold, count in ((0.5, 1), (0.3, 2), (0.0, 3)):
        drawn.clear()
        draw_predictions(Scored(), mapper, "freqdet_demo_val", 2, str(tmp_path / "p.png"), score_threshold=threshold)
        assert drawn == [count, count]


def test_the_predictions_picture_of_a_semantic_model_and_of_an_rpn(monkeypatch, tmp_path):
    """tools/train_net.py draws what each kind of model predicts: a class per pixel, proposals."""
    from detectron2.structures import Boxes, Instances
    from detectron2.utils.visualizer import Visualizer

    from freqdet.detection.predictions import draw_predictions

    class Dense(torch.nn.Module):
        kind = "sem_seg"

        def forward(self, inputs):
            out = []
            for x in inputs:
                if self.kind == "sem_seg":
                    scores = torch.zeros(7, x["height"], x["width"])
                    scores[3, : x["height"] // 2] = 1.0  # class 3 above, class 0 below
                    out.append({"sem_seg": scores})
                else:
                    proposals = Instances((x["height"], x["width"]))
                    proposals.proposal_boxes = Boxes(torch.tensor([[2.0, 2.0, 30.0, 30.0], [5.0, 5.0, 40.0, 20.0]]))
                    proposals.objectness_logits = torch.tensor([3.0, -3.0])
                    out.append({"proposals": proposals})
            return out

    seen = []
    sem_seg, overlay = Visualizer.draw_sem_seg, Visualizer.overlay_instances
    monkeypatch.setattr(
        Visualizer, "draw_sem_seg", lambda self, seg, **kw: seen.append(seg) or sem_seg(self, seg, **kw)
    )
    monkeypatch.setattr(
        Visualizer, "overlay_instances", lambda self, **kw: seen.append(kw.get("boxes")) or overlay(self, **kw)
    )

    def sized(d):  # the stand-in model reads only the image's size
        from PIL import Image

        with Image.open(d["file_name"]) as image:
            return dict(d, height=image.height, width=image.width)

    model = Dense()
    draw_predictions(model, sized, "freqdet_demo_val_sem_seg", 1, str(tmp_path / "s.png"))
    predicted = [s for s in seen if s is not None and s.ndim == 2 and s.shape[0] > 4]
    assert predicted and set(predicted[-1][:1].unique().tolist()) == {3} and predicted[-1][-1, 0] == 0
    seen.clear()
    model.kind = "proposals"
    draw_predictions(model, sized, "freqdet_demo_val", 1, str(tmp_path / "p.png"), score_threshold=0.5)
    assert [b.tolist() for b in seen if isinstance(b, np.ndarray)] == [[[2.0, 2.0, 30.0, 30.0]]]


@pytest.mark.slow
def test_rgb_demo_twin_takes_detectron2s_mapper_and_draws_its_predictions(tmp_path):
    from detectron2.data import DatasetCatalog
    from detectron2.modeling import GeneralizedRCNN
    from PIL import Image

    from freqdet.detection.mapper import build_mapper
    from freqdet.detection.predictions import draw_predictions

    cfg = small_cfg("configs/demo/mask_rcnn_rgb_demo.yaml")
    model = build_model(cfg)
    mapper = build_mapper(cfg, False)
    assert type(model) is GeneralizedRCNN and type(mapper) is DatasetMapper
    path = draw_predictions(
        model, mapper, "freqdet_demo_val", 2, str(tmp_path / "predictions.png"), score_threshold=0.0
    )
    first, last = DatasetCatalog.get("freqdet_demo_val")[0], DatasetCatalog.get("freqdet_demo_val")[-1]
    # Two rows (ground truth | predictions, drawn at 2x with an 8-pixel gap), each with an 8-pixel margin below.
    widest = max(first["width"], last["width"])
    with Image.open(path) as picture:
        assert picture.size == (2 * 2 * widest + 8, 2 * (first["height"] + last["height"]) + 16)
