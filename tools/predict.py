#!/usr/bin/env python
"""Run a trained detector on image files: a picture per image and, with --json, COCO results.

    python tools/predict.py --config-file configs/demo/mask_rcnn_dct_demo.yaml \\
        --input photos/ 'more/*.jpg' one.jpg --output predictions/ --confidence 0.5 --json \\
        MODEL.WEIGHTS output/demo/mask_rcnn_dct_demo/model_final.pth
    python tools/predict.py --model exported/model.onnx --input photos/ --output predictions/ --json

--input takes files, folders (their image files) and glob patterns. For each image it writes
DIR/<name>.png, the predictions drawn on the image by Detectron2's Visualizer with the class
names of the config's first test set (or of --dataset); with --json also DIR/predictions.json,
the detections as COCO results (file name, category id and name, box [x, y, w, h] in the
original image's pixels, score, RLE mask). Files that cannot be read are reported by name
and skipped; the rest still get predictions. --confidence sets MODEL.ROI_HEADS.SCORE_THRESH_TEST.
--model runs a file written by tools/export_model.py (ONNX or TorchScript) through freqdet.deploy
instead of a config and weights: the same pictures and JSON, with the class names and the
score threshold stored in the file (--confidence then drops detections below it).
"""

import argparse
import glob
import json
import os
import sys
import time

# freqdet before Detectron2: importing it first keeps its dependencies' import-time notices quiet.
import freqdet.deploy
from freqdet.detection import DCTPredictor
from freqdet.detection.cli import add_register_coco_argument, register_coco_datasets
from freqdet.detection.config import load_config
from freqdet.io import ImageDecodeError, read_image
from freqdet.known_warnings import quiet_known_warnings
from freqdet.safe_load import TRUST_FLAG, UntrustedCheckpointError

# isort: split
import torch
from detectron2.data import Metadata, MetadataCatalog
from detectron2.evaluation.coco_evaluation import instances_to_coco_json
from detectron2.structures import Boxes, Instances
from detectron2.utils.visualizer import Visualizer
from PIL import Image
from tqdm import tqdm

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def expand_inputs(patterns):
    """Files, the image files of folders (sorted), and glob matches, in the order given, without repeats."""
    paths = []
    for pattern in patterns:
        if os.path.isdir(pattern):
            found = sorted(
                os.path.join(pattern, f) for f in os.listdir(pattern) if f.lower().endswith(IMAGE_EXTENSIONS)
            )
        elif glob.has_magic(pattern):
            found = sorted(glob.glob(pattern, recursive=True))
        else:
            found = [pattern]
        paths += [p for p in found if p not in paths]
    return paths


def picture_name(path, taken):
    """DIR/<stem>.png, numbered when two inputs share a stem."""
    stem = os.path.splitext(os.path.basename(path))[0]
    name, k = f"{stem}.png", 1
    while name in taken:
        name, k = f"{stem}_{k}.png", k + 1
    taken.add(name)
    return name


def instances_of(detections: freqdet.deploy.Detections) -> Instances:
    """freqdet.deploy's detections as Detectron2's Instances (for its Visualizer and COCO results)."""
    instances = Instances(detections.image_size)
    instances.pred_boxes = Boxes(torch.from_numpy(detections.boxes))
    instances.scores = torch.from_numpy(detections.scores)
    instances.pred_classes = torch.from_numpy(detections.classes)
    if detections.masks is not None:
        instances.pred_masks = torch.from_numpy(detections.masks)
    if detections.keypoints is not None:
        instances.pred_keypoints = torch.from_numpy(detections.keypoints)
    return instances


class ExportedPredictor:
    """An exported model (freqdet.deploy) with DCTPredictor's predict_batch and metadata."""

    def __init__(self, path, confidence=None):
        self.model = freqdet.deploy.load(path)
        if not isinstance(self.model, freqdet.deploy.DeployedModel):
            raise ValueError(f"{path!r} is an exported classifier; --model takes a detector of tools/export_model.py")
        meta = self.model.metadata
        self.confidence = confidence
        ids = {int(k): v for k, v in meta.get("thing_dataset_id_to_contiguous_id", {}).items()}
        self.metadata = Metadata(name=os.path.basename(path), thing_classes=meta.get("thing_classes", []))
        if ids:
            self.metadata.thing_dataset_id_to_contiguous_id = ids
        self.dct, self.mapper = self.model.dct, None

    def predict_batch(self, images):
        outputs = []
        for image in images:
            instances = instances_of(self.model(image))
            if self.confidence is not None:
                instances = instances[instances.scores >= self.confidence]
            outputs.append({"instances": instances})
        return outputs


def build_predictor(args):
    """DCTPredictor of --config-file and its weights, or ExportedPredictor of --model."""
    if args.model:
        if args.opts:
            raise ValueError(f"--model takes no config overrides (got {' '.join(args.opts)})")
        return ExportedPredictor(args.model, args.confidence)
    if not args.config_file:
        raise ValueError("give --config-file (with MODEL.WEIGHTS) or --model (a file of tools/export_model.py)")
    register_coco_datasets(args.register_coco)
    cfg = load_config(args.config_file, args.opts)
    if args.confidence is not None:
        cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = args.confidence
    if not cfg.MODEL.WEIGHTS:
        raise ValueError("no weights: add MODEL.WEIGHTS path/to/model_final.pth")
    return DCTPredictor(cfg, trust_checkpoint=args.trust_checkpoint)


def main(argv=None) -> int:
    quiet_known_warnings()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", help="the model's config (a path or a freqdet config name)")
    parser.add_argument("--model", help="instead of a config: a model written by tools/export_model.py")
    parser.add_argument("--input", nargs="+", required=True, help="image files, folders or glob patterns")
    parser.add_argument("--output", required=True, help="folder for the pictures (and predictions.json)")
    parser.add_argument(
        "--confidence", type=float, default=None, help="minimum score (MODEL.ROI_HEADS.SCORE_THRESH_TEST)"
    )
    parser.add_argument("--json", action="store_true", help="also write DIR/predictions.json (COCO results)")
    parser.add_argument(
        "--dataset", default=None, help="dataset whose class names to use (default: the first test set)"
    )
    parser.add_argument("--batch-size", type=int, default=1, help="images per forward pass")
    parser.add_argument(
        TRUST_FLAG,
        action="store_true",
        help="allow weights that need pickled Python objects (they can run code when loaded)",
    )
    add_register_coco_argument(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, KEY VALUE pairs (MODEL.WEIGHTS ...)")
    args = parser.parse_args(argv)

    try:
        predictor = build_predictor(args)
    except (ValueError, FileNotFoundError, UntrustedCheckpointError) as e:
        sys.exit(f"error: {e}")
    metadata = MetadataCatalog.get(args.dataset) if args.dataset else predictor.metadata
    contiguous_to_id = (
        {v: k for k, v in metadata.get("thing_dataset_id_to_contiguous_id", {}).items()} if metadata else {}
    )
    classes = metadata.get("thing_classes", None) if metadata else None
    paths = expand_inputs(args.input)
    if not paths:
        sys.exit(f"error: no image files in {args.input}")
    os.makedirs(args.output, exist_ok=True)

    results, skipped, taken, done = [], [], set(), 0
    start = time.perf_counter()
    files_only = (
        predictor.dct and predictor.mapper is not None and predictor.mapper.source == "jpeg"
    )  # the compressed path reads files itself
    with tqdm(total=len(paths), desc="predicting", unit="img") as bar:
        for first in range(0, len(paths), args.batch_size):
            batch = []
            for path in paths[first : first + args.batch_size]:
                try:
                    batch.append((path, read_image(path, format="BGR")))
                except ImageDecodeError as e:
                    skipped.append(path)
                    tqdm.write(f"skipped {path}: {e.reason}", file=sys.stderr)
            if batch:
                outputs = predictor.predict_batch([p if files_only else image for p, image in batch])
                for (path, image), output in zip(batch, outputs):
                    instances = output["instances"].to("cpu")
                    drawn = Visualizer(image[:, :, ::-1], metadata).draw_instance_predictions(instances)
                    Image.fromarray(drawn.get_image()).save(os.path.join(args.output, picture_name(path, taken)))
                    for r in instances_to_coco_json(instances, done):
                        r.update(
                            file_name=path,
                            category_name=classes[r["category_id"]] if classes else None,
                            category_id=contiguous_to_id.get(r["category_id"], r["category_id"]),
                        )
                        results.append(r)
                    done += 1
            bar.update(len(paths[first : first + args.batch_size]))
    elapsed = time.perf_counter() - start
    if args.json:
        with open(os.path.join(args.output, "predictions.json"), "w") as f:
            json.dump(results, f)
    print(
        f"{done} images in {elapsed:.1f} s ({done / elapsed:.2f} images/s), {len(results)} detections, "
        f"{len(skipped)} skipped; wrote {args.output}"
    )
    return 0 if done else 1


if __name__ == "__main__":
    sys.exit(main())
