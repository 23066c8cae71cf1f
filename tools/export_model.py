#!/usr/bin/env python
"""Export a trained detector to TorchScript or ONNX, with its frequency input, for freqdet.deploy.

    python tools/export_model.py --config-file configs/demo/mask_rcnn_dct_demo.yaml \\
        --format onnx --output exported/ MODEL.WEIGHTS output/demo/mask_rcnn_dct_demo/model_final.pth

The arguments are those of Detectron2's tools/deploy/export_model.py. It writes OUTPUT/model.onnx
(--format onnx) or OUTPUT/model.ts (torchscript): a graph that takes one image's wire
coefficients ("dct", in the dtype the model was trained on) and its resized size in pixels
("image_size", int64 (h, w)), and returns the detections before Detectron2's post-processing
("boxes", "scores", "classes", and "mask_probs" / "keypoints" where the model has those heads);
an RGB baseline (GeneralizedRCNN) takes "image", (3, h, w) uint8. The graph is traced on
--sample-image (default: the first image of the config's first test set) and runs on images of
any size. The channel selection, wire dtype, statistics, test resize, class names and freqdet's
version are stored in the file. Afterwards the tool runs the exported file through
freqdet.deploy on the sample and prints how its detections compare with the PyTorch model's.
R-CNNs (Faster, Mask, keypoint, Cascade) and RetinaNet export; what cannot (another
meta-architecture, the compressed-domain input, scripting) is refused in one line saying why.

    python tools/export_model.py --classifier output/cls/model_best.pth --format onnx --output exported/

exports a DCT classifier of tools/train_cls.py instead: its graph takes a batch of int16 DCT
crops, (N, C, S/8, S/8) for the evaluation crop S (--crop; default the architecture's, 448 or 896),
and returns the logits. See docs/deploy.md.
"""

import argparse
import os
import sys

# freqdet before Detectron2: importing it first keeps its dependencies' import-time notices quiet.
import freqdet.deploy
from freqdet import exporting
from freqdet.detection import export
from freqdet.detection.checkpoint import FreqdetCheckpointer
from freqdet.detection.cli import add_config_arguments, add_debug_argument, user_errors
from freqdet.detection.config import load_config
from freqdet.detection.switch import use_dct_input
from freqdet.known_warnings import quiet_known_warnings
from freqdet.safe_load import TRUST_FLAG, UntrustedCheckpointError, load_checkpoint

# isort: split
import numpy as np
import torch
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--config-file", help="a detector's config (a path or a freqdet config name)")
    model.add_argument("--classifier", help="instead: a DCT classifier's checkpoint (tools/train_cls.py)")
    parser.add_argument("--crop", type=int, default=None, help="a classifier's crop in pixels (default: its arch's)")
    parser.add_argument("--format", choices=exporting.FORMATS, default="onnx", help="the exported file's format")
    parser.add_argument("--export-method", choices=export.METHODS, default="tracing", help="how the graph is made")
    parser.add_argument("--sample-image", default=None, help="the image the graph is traced on")
    parser.add_argument("--output", required=True, help="folder for model.onnx / model.ts")
    parser.add_argument(
        TRUST_FLAG, action="store_true", help="allow weights that need pickled Python objects (they can run code)"
    )
    add_config_arguments(parser)
    add_debug_argument(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, KEY VALUE pairs (MODEL.WEIGHTS ...)")
    return parser.parse_args(argv)


def sample_image(cfg, given):
    """--sample-image, else the first image of the config's first test set."""
    if given:
        if not os.path.isfile(given):
            raise FileNotFoundError(f"--sample-image {given!r} does not exist")
        return given
    if not len(cfg.DATASETS.TEST):
        raise ValueError("the config has no DATASETS.TEST to take a sample from: give --sample-image")
    return DatasetCatalog.get(cfg.DATASETS.TEST[0])[0]["file_name"]


def build(args):
    """The config, the model with its weights, and where its statistics came from."""
    cfg = load_config(args.config_file, list(args.opts) + ["MODEL.DEVICE", "cpu"], config_adders=args.config_adder)
    if args.dct_input is not None:
        use_dct_input(cfg, channels=args.dct_input, pattern=args.dct_pattern)
    model = build_model(cfg).eval()
    checkpointer = FreqdetCheckpointer(model, trust=args.trust_checkpoint)
    if cfg.MODEL.WEIGHTS:
        checkpointer.load(cfg.MODEL.WEIGHTS)
    else:
        print("warning: no MODEL.WEIGHTS: exporting randomly initialized weights", file=sys.stderr)
    return cfg, model, export.statistics_source(cfg, checkpointer.loaded_model_keys)


def compare(model, deployed, mapped, sample) -> str:
    """The exported file's detections on the sample against the PyTorch model's, in one line."""
    with torch.no_grad():
        reference = model([mapped])[0]["instances"]
    detections = deployed(sample)
    if len(detections) != len(reference):
        return f"{len(detections)} detections, the PyTorch model {len(reference)}: the export differs"
    if not len(detections):
        return "no detections on the sample from either (lower MODEL.ROI_HEADS.SCORE_THRESH_TEST to compare)"
    expected = reference.pred_boxes.tensor.numpy()
    boxes = np.abs(detections.boxes - expected).max(axis=1)
    scores = np.abs(detections.scores - reference.scores.numpy()).max()
    order = "in the same order"
    if boxes.max() > 1e-2:  # tied scores (untrained weights) may come out in another order
        nearest = np.abs(detections.boxes[:, None] - expected[None]).max(axis=2).min(axis=1)
        moved = int((boxes > 1e-2).sum())
        boxes, order = nearest, f"{moved} of them in another order (tied scores)"
    return (
        f"{len(detections)} detections as the PyTorch model's on the sample, {order}: boxes within "
        f"{boxes.max():.2g} px, scores within {scores:.2g}"
    )


def export_classifier(args) -> str:
    """--classifier: the checkpoint's network exported, the batch dynamic; what it printed."""
    from freqdet.classification.checkpoints import classifier_from_checkpoint, recorded_network
    from freqdet.classification.data import DCTCropTransform
    from freqdet.classification.models import DCT_CROP
    from freqdet.demo import packaged_photos

    if args.export_method != "tracing":
        raise ValueError("--export-method scripting is not supported: use tracing (the graph takes any batch size)")
    checkpoint = load_checkpoint(args.classifier, trust=args.trust_checkpoint)
    network = recorded_network(checkpoint, repr(args.classifier))
    if network.channels is None:
        raise ValueError(
            f"{args.classifier!r} is an RGB classifier (torchvision's model): export it with torch.onnx directly; "
            "tools/export_model.py and freqdet.deploy take DCT classifiers"
        )
    model = classifier_from_checkpoint(checkpoint, repr(args.classifier))
    crop = args.crop or DCT_CROP[network.arch]
    sample_path = sample_image(None, args.sample_image) if args.sample_image else packaged_photos()[0]
    sample = DCTCropTransform(crop, network.channels, train=False)(sample_path)[None]
    norm = model.input.normalization
    statistics = {
        "source": f"the checkpoint {args.classifier}",
        "mean": norm.mean.flatten().tolist(),
        "std": norm.std.flatten().tolist(),
    }
    metadata = exporting.classifier_metadata(network, crop, checkpoint.get("classes", []), statistics, args.format)
    path = os.path.join(args.output, exporting.FILE_NAMES[args.format])
    exporting.write(model, (sample,), args.format, path, metadata, {"dct": {0: "batch"}, "logits": {0: "batch"}})
    with torch.no_grad():
        expected = model(sample)[0].numpy()
    got = freqdet.deploy.load(path)(sample_path).logits
    return (
        f"wrote {path} ({os.path.getsize(path) / 2**20:.1f} MiB): {network.arch}, {len(network.channels)} DCT "
        f"channels, crop {crop}; logits on the sample within {np.abs(got - expected).max():.2g} of the PyTorch model's"
    )


def main(argv=None) -> int:
    quiet_known_warnings()
    args = parse_args(argv)
    errors = (ValueError, FileNotFoundError, UntrustedCheckpointError, ImportError)
    if args.classifier:
        with user_errors(errors, args.debug):
            line = export_classifier(args)
        print(line)
        return 0
    with user_errors(errors, args.debug):
        cfg, model, statistics = build(args)
        why = export.refusal(cfg, model, args.export_method, args.format)
        if why:
            raise ValueError(why)
        sample = sample_image(cfg, args.sample_image)
        path = os.path.join(args.output, exporting.FILE_NAMES[args.format])
        path, metadata, mapped = export.export_detector(cfg, model, sample, args.format, path, statistics)
        line = compare(model, freqdet.deploy.load(path), mapped, sample)
    inputs, outputs = ", ".join(metadata["inputs"]), ", ".join(metadata["outputs"])
    print(f"wrote {path} ({os.path.getsize(path) / 2**20:.1f} MiB): inputs {inputs}; outputs {outputs}")
    if "channels" in metadata:
        print(
            f"input: {len(metadata['channels'])} DCT channels {metadata['channels']}, {metadata['wire_dtype']} on the "
            f"wire; statistics from {statistics}"
        )
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
