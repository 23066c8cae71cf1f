"""Exported detectors (tools/export_model.py) served by freqdet.deploy, against the PyTorch model.

The reference is the model itself in PyTorch, through Detectron2's own post-processing
(``DCTPredictor``, which ends in ``detector_postprocess``): the exported graph under ONNX Runtime
and TorchScript, with freqdet.deploy's input and post-processing around it, must give its
detections on real photos and demo images of several sizes.
"""

import importlib.util
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from helpers import ROOT, small_cfg

import freqdet
import freqdet.deploy
import freqdet.exporting
from freqdet.demo import packaged_photos
from freqdet.detection.checkpoint import FreqdetCheckpointer

pytest.importorskip("onnxruntime", reason="freqdet's deploy extra (pip install -e .[deploy]) is not installed")

CONFIG = "configs/demo/mask_rcnn_dct_demo.yaml"
# Slim heads on helpers.small_cfg's ResNet-18 and image sizes: a 12 MB model, exported in seconds.
SLIM = ["MODEL.FPN.OUT_CHANNELS", "64", "MODEL.ROI_BOX_HEAD.FC_DIM", "256", "MODEL.ROI_MASK_HEAD.CONV_DIM", "64"]
SMALL = [
    "MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64",
    "INPUT.MIN_SIZE_TRAIN", "(128,160)", "INPUT.MAX_SIZE_TRAIN", "240",
    "INPUT.MIN_SIZE_TEST", "144", "INPUT.MAX_SIZE_TEST", "240",
] + SLIM  # fmt: skip


def load_tool(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def images():
    """Real photos (scikit-learn's, matplotlib's) and demo images: five sizes."""
    from detectron2.data import DatasetCatalog

    return list(dict.fromkeys(packaged_photos())) + [d["file_name"] for d in DatasetCatalog.get("freqdet_demo_val")[:2]]


def train_briefly(weights_dir):
    """The slim demo detector after 30 SGD steps on the demo data (seconds)."""
    from detectron2.data import build_detection_train_loader, get_detection_dataset_dicts
    from detectron2.data.samplers import TrainingSampler
    from detectron2.engine import SimpleTrainer
    from detectron2.modeling import build_model
    from detectron2.solver import build_optimizer

    cfg = small_cfg(CONFIG, *SLIM, "SOLVER.BASE_LR", 0.01)
    torch.manual_seed(0)
    model = build_model(cfg)
    dataset = get_detection_dataset_dicts(cfg.DATASETS.TRAIN)
    loader = build_detection_train_loader(
        dataset=dataset,
        mapper=freqdet.DCTDatasetMapper(cfg, True),
        sampler=TrainingSampler(len(dataset), seed=0),
        total_batch_size=2,
        num_workers=0,
    )
    SimpleTrainer(model, loader, build_optimizer(cfg, model)).train(0, 30)
    FreqdetCheckpointer(model, str(weights_dir)).save("model_final")
    return str(weights_dir / "model_final.pth")


def export(tmp, fmt, opts):
    out = tmp / fmt
    load_tool("export_model").main(["--config-file", CONFIG, "--format", fmt, "--output", str(out), *SMALL, *opts])
    return str(out / freqdet.exporting.FILE_NAMES[fmt])


@pytest.fixture(scope="module")
def trained(module_tmp):
    tmp = module_tmp("export")
    weights = train_briefly(tmp)
    opts = ["MODEL.WEIGHTS", weights, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.05"]
    return {fmt: export(tmp, fmt, opts) for fmt in ("onnx", "torchscript")}, opts


@pytest.fixture(scope="module")
def untrained(module_tmp):
    """Random weights (saved, so that the export and the reference read the same), threshold 0."""
    from detectron2.modeling import build_model

    tmp = module_tmp("export_random")
    torch.manual_seed(3)
    FreqdetCheckpointer(build_model(small_cfg(CONFIG, *SLIM)), str(tmp)).save("random")
    opts = ["MODEL.WEIGHTS", str(tmp / "random.pth"), "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"]
    return {"onnx": export(tmp, "onnx", opts)}, opts


def reference_predictor(opts):
    return freqdet.DCTPredictor(small_cfg(CONFIG, *SLIM, *opts))


def in_score_order(outputs):
    """Detections (a dict of arrays) sorted by score, then by x0: an order that does not depend on
    how a runtime breaks ties between equal scores."""
    order = np.lexsort((outputs["boxes"][:, 0], -outputs["scores"]))
    return {k: v[order] for k, v in outputs.items()}


def assert_same_detections(detections, instances, where):
    assert len(detections) == len(instances) > 0, where
    np.testing.assert_array_equal(detections.classes, instances.pred_classes.numpy(), err_msg=where)
    np.testing.assert_allclose(detections.boxes, instances.pred_boxes.tensor.numpy(), atol=1e-2, rtol=0, err_msg=where)
    np.testing.assert_allclose(detections.scores, instances.scores.numpy(), atol=1e-4, rtol=0, err_msg=where)
    ours, theirs = detections.masks, instances.pred_masks.numpy()
    assert ours.shape == theirs.shape, where
    inter = (ours & theirs).sum(axis=(1, 2))
    union = np.maximum((ours | theirs).sum(axis=(1, 2)), 1)
    # IoU >= 0.99, except for masks of a few pixels, where one pixel read at 0.5 within rounding
    # (boxes agree to 1e-4 px, not exactly) flips the IoU: those may differ by two pixels.
    close = (inter / union >= 0.99) | (union - inter <= 2)
    assert close.all() and (inter / union)[union > 100].min() >= 0.99, where


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_the_exported_trained_detector_gives_the_pytorch_models_detections(trained, fmt):
    paths, opts = trained
    predictor, deployed = reference_predictor(opts), freqdet.deploy.load(paths[fmt])
    sizes = set()
    for path in images():
        detections = deployed(path)
        assert_same_detections(detections, predictor(path)["instances"], f"{fmt} on {path}")
        sizes.add(detections.image_size)
    assert len(sizes) >= 4  # the graph was traced on one of them


@pytest.mark.slow
def test_an_untrained_detector_at_a_zero_threshold_exports_too(untrained):
    """The graph's raw outputs against the eager model's before post-processing (untrained masks
    hover at 0.5, so their pasted, thresholded form is a coin toss; their probabilities are not)."""
    paths, opts = untrained
    predictor, deployed = reference_predictor(opts), freqdet.deploy.load(paths["onnx"])
    for path in images()[:3]:
        ours = deployed.run(deployed.inputs(path)[0])
        with torch.no_grad():
            theirs = predictor.model.inference([predictor.mapper({"file_name": path})], do_postprocess=False)[0]
        expected = {
            "boxes": theirs.pred_boxes.tensor.numpy(),
            "scores": theirs.scores.numpy(),
            "classes": theirs.pred_classes.numpy(),
            "mask_probs": theirs.pred_masks.numpy(),
        }
        assert len(ours["scores"]) == len(expected["scores"]) > 10, path
        if not np.allclose(ours["boxes"], expected["boxes"], atol=1e-2):
            # Scores that tie may come out of ONNX Runtime's sort in another order: compare sorted.
            assert np.unique(expected["scores"]).size < len(expected["scores"]), path
            ours, expected = in_score_order(ours), in_score_order(expected)
        np.testing.assert_allclose(ours["boxes"], expected["boxes"], atol=1e-2, rtol=0, err_msg=path)
        np.testing.assert_allclose(ours["scores"], expected["scores"], atol=1e-4, rtol=0, err_msg=path)
        np.testing.assert_array_equal(ours["classes"], expected["classes"], err_msg=path)
        np.testing.assert_allclose(ours["mask_probs"], expected["mask_probs"], atol=1e-4, rtol=0, err_msg=path)


@pytest.mark.slow
def test_the_metadata_travels_in_the_file(trained):
    from detectron2.data import MetadataCatalog

    paths, opts = trained
    for fmt, path in paths.items():
        meta = freqdet.deploy.load(path).metadata
        assert meta["freqdet_version"] == freqdet.__version__ and meta["format"] == fmt
        assert meta["channels"] == list(freqdet.dct.resolve_channels(24, "square"))
        assert meta["wire_dtype"] == "int16" and meta["inputs"] == ["dct", "image_size"]
        assert meta["outputs"] == ["boxes", "scores", "classes", "mask_probs"]
        assert meta["statistics"]["source"] == f"the weights file {opts[1]}"
        state = torch.load(opts[1], weights_only=True)["model"]
        np.testing.assert_allclose(meta["statistics"]["mean"], state["normalization.mean"].flatten().numpy())
        assert meta["thing_classes"] == MetadataCatalog.get("freqdet_demo_val").thing_classes
        assert (meta["min_size_test"], meta["max_size_test"]) == (144, 240)


@pytest.mark.slow
def test_the_served_model_refuses_coefficients_of_another_selection_or_dtype(trained, photo_rgb):
    deployed = freqdet.deploy.load(trained[0]["onnx"])
    image = np.ascontiguousarray(photo_rgb[:, :, ::-1])
    size = image.shape[:2]
    for channels, dtype in [(freqdet.dct.resolve_channels(32, "square"), "int16"), (deployed.channels, "int8")]:
        wire = freqdet.dct.wire.encode_image(image, channels, "BGR", dtype)
        with pytest.raises(ValueError, match="the model takes \\(24, rows, columns\\) int16 coefficients"):
            deployed.predict_coefficients(wire, size, size)
    wire = freqdet.dct.wire.encode_image(image, deployed.channels, "BGR", "int16")
    assert len(deployed.predict_coefficients(wire, size, size)) > 0


@pytest.mark.slow
def test_serving_needs_no_detectron2(trained, photo_path):
    """freqdet.deploy in a process where Detectron2 cannot be imported, from a file and from bytes."""
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["detectron2"] = None  # any import of it now fails
        import freqdet.deploy
        from freqdet.io import InMemory
        model = freqdet.deploy.load({trained[0]["onnx"]!r})
        a = model({photo_path!r})
        b = model(InMemory(open({photo_path!r}, "rb").read()))
        assert "freqdet.detection" not in sys.modules and not any(m.startswith("detectron2.") for m in sys.modules)
        assert (a.boxes == b.boxes).all()
        print(len(a), a.image_size)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = freqdet.deploy.load(trained[0]["onnx"])(photo_path)
    assert result.stdout.split()[0] == str(len(expected)) and len(expected) > 0


def test_the_test_resize_is_detectron2s():
    from detectron2.data.transforms import ResizeShortestEdge

    for h, w in [(480, 640), (640, 480), (333, 1000), (1000, 333), (17, 23), (800, 1333), (801, 1334), (1, 5000)]:
        for short, longest in [(800, 1333), (144, 240), (600, 1000)]:
            assert freqdet.deploy.resized_size(h, w, short, longest) == ResizeShortestEdge.get_output_shape(
                h, w, short, longest
            ), (h, w, short, longest)


def test_the_post_processing_is_detectron2s(rng):
    """freqdet.deploy.postprocess against Detectron2's detector_postprocess on random detections:
    boxes partly outside the image, empty after clipping, thin, and soft masks."""
    from detectron2.modeling.postprocessing import detector_postprocess
    from detectron2.structures import Boxes, Instances

    resized, size, n = (120, 150), (317, 401), 40
    x0, y0 = rng.uniform(-30, 160, n), rng.uniform(-30, 130, n)
    boxes = np.stack([x0, y0, x0 + rng.uniform(0.2, 90, n), y0 + rng.uniform(0.2, 70, n)], axis=1).astype(np.float32)
    boxes[0] = [-20, -20, -5, 40]  # empty once clipped
    outputs = {
        "boxes": boxes,
        "scores": rng.uniform(0, 1, n).astype(np.float32),
        "classes": rng.integers(0, 6, n),
        "mask_probs": rng.uniform(0, 1, (n, 1, 28, 28)).astype(np.float32),
        "keypoints": rng.uniform(0, 120, (n, 2, 3)).astype(np.float32),
    }
    ours = freqdet.deploy.postprocess(outputs, resized, size, 0.5)
    raw = Instances(resized)
    raw.pred_boxes = Boxes(torch.from_numpy(boxes.copy()))
    raw.scores = torch.from_numpy(outputs["scores"])
    raw.pred_classes = torch.from_numpy(outputs["classes"])
    raw.pred_masks = torch.from_numpy(outputs["mask_probs"])
    raw.pred_keypoints = torch.from_numpy(outputs["keypoints"].copy())
    theirs = detector_postprocess(raw, *size)
    assert len(ours) == len(theirs) < n
    np.testing.assert_allclose(ours.boxes, theirs.pred_boxes.tensor.numpy(), atol=1e-4)
    np.testing.assert_array_equal(ours.scores, theirs.scores.numpy())
    np.testing.assert_allclose(ours.keypoints, theirs.pred_keypoints.numpy(), atol=1e-4)
    differing = (ours.masks != theirs.pred_masks.numpy()).sum(axis=(1, 2))
    assert differing.max() <= 2 and ours.masks.sum() > 1000  # a pixel whose value is 0.5 within rounding


@pytest.mark.slow
@pytest.mark.parametrize(
    "config, flags, opts, says",
    [
        ("configs/demo/semantic_dct_demo.yaml", [], [], "DCTSemanticSegmentor (DCTSemanticSegmentor) does not export"),
        ("configs/demo/keypoint_rcnn_dct_demo.yaml", [], [], "keypoint R-CNN does not export to ONNX"),
        (CONFIG, ["--export-method", "scripting"], [], "--export-method scripting is not supported"),
        (CONFIG, [], ["INPUT.DCT.SOURCE", "jpeg"], "INPUT.DCT.SOURCE 'jpeg' does not export"),
    ],
)
def test_what_does_not_export_is_refused_in_one_line(tmp_path, capsys, config, flags, opts, says):
    with pytest.raises(SystemExit) as stopped:
        load_tool("export_model").main(["--config-file", config, "--output", str(tmp_path)] + flags + SMALL + opts)
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert stopped.value.code == 2 and len(errors) == 1 and says in errors[0], errors
    assert not list(tmp_path.glob("model.*"))


@pytest.mark.slow
def test_predict_takes_an_exported_model(trained, tmp_path, photo_path):
    """tools/predict.py with --model writes the pictures and COCO results it writes with the checkpoint."""
    paths, opts = trained
    predict = load_tool("predict")
    inputs = [photo_path, images()[-1]]
    assert predict.main(["--config-file", CONFIG, "--input", *inputs, "--output", str(tmp_path / "ckpt"), "--json"]
                        + SMALL + opts) == 0  # fmt: skip
    assert (
        predict.main(["--model", paths["onnx"], "--input", *inputs, "--output", str(tmp_path / "onnx"), "--json"]) == 0
    )
    theirs = json.loads((tmp_path / "ckpt/predictions.json").read_text())
    ours = json.loads((tmp_path / "onnx/predictions.json").read_text())
    assert len(ours) == len(theirs) > 0
    for a, b in zip(ours, theirs):
        assert (a["file_name"], a["category_id"], a["category_name"]) == (
            b["file_name"],
            b["category_id"],
            b["category_name"],
        )
        np.testing.assert_allclose(a["bbox"], b["bbox"], atol=1e-2)
        assert abs(a["score"] - b["score"]) < 1e-4
    assert sorted(p.name for p in (tmp_path / "onnx").glob("*.png")) == sorted(
        p.name for p in (tmp_path / "ckpt").glob("*.png")
    )


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_an_exported_classifier_gives_the_pytorch_models_logits(tmp_path, rng, fmt):
    """A DCT MobileNetV2 checkpoint (random weights, its own statistics) through --classifier: the
    served logits on real photos equal the checkpoint's model on its evaluation transform; any batch."""
    from freqdet.classification.checkpoints import classifier_record, load_classifier
    from freqdet.classification.data import DCTCropTransform
    from freqdet.classification.models import build_classifier

    channels = freqdet.dct.resolve_channels(24, "square")
    torch.manual_seed(0)
    model = build_classifier("mobilenet_v2", 5, channels)
    model.input.set_stats(rng.normal(0, 20, 24), rng.uniform(5, 50, 24))
    record = classifier_record(
        model.state_dict(), "mobilenet_v2", "torchvision", channels, 5, "test", classes=list("vwxyz")
    )
    torch.save(record, tmp_path / "classifier.pth")
    args = ["--classifier", str(tmp_path / "classifier.pth"), "--crop", "128", "--format", fmt]
    assert load_tool("export_model").main(args + ["--output", str(tmp_path / "out")]) == 0
    deployed = freqdet.deploy.load(tmp_path / "out" / freqdet.exporting.FILE_NAMES[fmt])
    reference, transform = load_classifier(tmp_path / "classifier.pth"), DCTCropTransform(128, channels, train=False)
    assert deployed.metadata["classes"] == list("vwxyz") and deployed.metadata["crop"] == 128
    crops = []
    for path in images()[:3]:
        crops.append(transform(path)[None])
        with torch.no_grad():
            expected = reference(crops[-1])[0].numpy()
        served = deployed(path)
        np.testing.assert_allclose(served.logits, expected, atol=1e-4, rtol=1e-4)
        probabilities = np.exp(expected) / np.exp(expected).sum()
        ranked = served.top(5)
        assert sorted(name for name, _ in ranked) == list("vwxyz")
        np.testing.assert_allclose(sorted(p for _, p in ranked), np.sort(probabilities), atol=1e-5)
    (batch,) = deployed.graph((torch.cat(crops),))
    assert batch.shape == (3, 5)


@pytest.mark.slow
def test_keypoint_rcnn_exports_to_torchscript(tmp_path):
    """Keypoint R-CNN (random weights, threshold 0) to TorchScript: boxes, scores and keypoints in the
    file's pixels as the PyTorch model's through Detectron2's post-processing, on two sizes."""
    from detectron2.modeling import build_model

    config = "configs/demo/keypoint_rcnn_dct_demo.yaml"
    torch.manual_seed(5)
    FreqdetCheckpointer(build_model(small_cfg(config, *SLIM)), str(tmp_path)).save("random")
    opts = ["MODEL.WEIGHTS", str(tmp_path / "random.pth"), "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"]
    tool = ["--config-file", config, "--format", "torchscript", "--output", str(tmp_path / "ts")]
    assert load_tool("export_model").main(tool + SMALL + opts) == 0
    deployed = freqdet.deploy.load(tmp_path / "ts" / "model.ts")
    assert deployed.metadata["outputs"] == ["boxes", "scores", "classes", "keypoints"]
    predictor = freqdet.DCTPredictor(small_cfg(config, *SLIM, *opts))
    for path in images()[:2]:
        detections, instances = deployed(path), predictor(path)["instances"]
        assert len(detections) == len(instances) > 10
        np.testing.assert_allclose(detections.boxes, instances.pred_boxes.tensor.numpy(), atol=1e-2, rtol=0)
        np.testing.assert_allclose(detections.scores, instances.scores.numpy(), atol=1e-4, rtol=0)
        np.testing.assert_allclose(detections.keypoints, instances.pred_keypoints.numpy(), atol=1e-2, rtol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_retinanet_exports(tmp_path, fmt):
    """RetinaNet (random weights, threshold 0: the cap of 1000 candidates per level binds on the large
    levels and not on the small ones) gives the PyTorch model's detections on three sizes."""
    from detectron2.modeling import build_model

    config = "configs/demo/retinanet_dct_demo.yaml"
    torch.manual_seed(6)
    model = build_model(small_cfg(config, *SLIM))
    with torch.no_grad():  # RetinaNet's initial head scores every anchor about 0.01: spread them, so none tie
        model.head.cls_score.weight.mul_(300)
    FreqdetCheckpointer(model, str(tmp_path)).save("random")
    opts = ["MODEL.WEIGHTS", str(tmp_path / "random.pth"), "MODEL.RETINANET.SCORE_THRESH_TEST", "0.0"]
    tool = ["--config-file", config, "--format", fmt, "--output", str(tmp_path / fmt)]
    assert load_tool("export_model").main(tool + SMALL + opts) == 0
    deployed = freqdet.deploy.load(tmp_path / fmt / freqdet.exporting.FILE_NAMES[fmt])
    predictor = freqdet.DCTPredictor(small_cfg(config, *SLIM, *opts))
    for path in images()[:3]:
        ours, theirs = deployed(path), predictor(path)["instances"]
        expected = {"boxes": theirs.pred_boxes.tensor.numpy(), "scores": theirs.scores.numpy()}
        got = {"boxes": ours.boxes, "scores": ours.scores}
        assert len(ours) == len(theirs) == 100, path
        if not np.allclose(got["boxes"], expected["boxes"], atol=1e-2):  # tied scores, another order
            got, expected = in_score_order(got), in_score_order(expected)
        np.testing.assert_allclose(got["boxes"], expected["boxes"], atol=1e-2, rtol=0, err_msg=path)
        np.testing.assert_allclose(got["scores"], expected["scores"], atol=1e-4, rtol=0, err_msg=path)
