#!/usr/bin/env python
"""Train ResNet-50 or MobileNetV2 classifiers on DCT (or RGB) inputs: the paper's ImageNet experiments.

    python tools/train_cls.py --demo --arch resnet50 --channels 24 --crop 128 --epochs 4   # CPU, minutes
    torchrun --nproc_per_node 8 tools/train_cls.py --data /imagenet --arch resnet50 --channels 24
    torchrun --nproc_per_node 8 tools/train_cls.py --data /imagenet --arch mobilenet_v2 --channels 32 --epochs 150

--data is an ImageFolder root with train/ and val/ (one folder per class, the ImageNet
layout); --demo generates a small one on first use. DCT inputs follow the paper: a crop of
448 (ResNet-50) or 896 (MobileNetV2) pixels, Y at the crop's size and Cb/Cr at 2x, so
(C, 56, 56) or (C, 112, 112) channels. Checkpoints (checkpoint.pth, model_best.pth) go to
--output; --resume continues from checkpoint.pth. tools/convert_weights.py turns a
ResNet-50-DCT checkpoint into Detectron2 backbone weights.
"""
import argparse
import json
import logging
import sys

from freqdet.classification.engine import ClassificationTrainer
from freqdet.classification.models import ARCHITECTURES
from freqdet.dct import PATTERNS


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="ImageFolder root holding train/ and val/")
    source.add_argument("--demo", action="store_true", help="use the built-in demo ImageFolder")
    parser.add_argument("--arch", choices=ARCHITECTURES, default="resnet50")
    parser.add_argument("--input", choices=["dct", "rgb"], default="dct")
    parser.add_argument("--channels", type=int, default=24, help="DCT channel count (with --pattern)")
    parser.add_argument("--pattern", choices=PATTERNS, default="square")
    parser.add_argument("--indices", type=lambda s: [int(i) for i in s.split(",")], default=None,
                        help="explicit comma-separated channel indices 0..191 (overrides --channels)")
    parser.add_argument("--crop", type=int, default=None, help="crop in pixels (default 448/896 DCT, 224 RGB)")
    parser.add_argument("--min-scale", type=float, default=0.08, help="smallest crop area fraction in training")
    parser.add_argument("--gate", action="store_true", help="learn the channel selection (all given channels in)")
    parser.add_argument("--gate-lambda", type=float, default=0.01, help="weight of the channels-on loss")
    parser.add_argument("--gate-init-on", type=float, default=2.0, help="initial on-logit bias (off is 0.1)")
    parser.add_argument("--epochs", type=int, default=90)
    parser.add_argument("--batch-size", type=int, default=64, help="per process")
    parser.add_argument("--lr", type=float, default=0.1, help="for a total batch of 256; scale it with yours")
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--schedule", choices=["cosine", "step"], default="cosine")
    parser.add_argument("--steps", type=int, nargs="+", default=[30, 60, 80], help="epochs of 10x decay (step schedule)")
    parser.add_argument("--warmup-epochs", type=float, default=0.0)
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    parser.add_argument("--clip-grad", type=float, default=0.0, help="clip the gradient norm to this (0: off)")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True, help="mixed precision on GPU")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--stats-images", type=int, default=1000, help="images for the DCT normalization statistics")
    parser.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: no limit)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="output/cls")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    if args.gate and args.input != "dct":
        parser.error("--gate switches DCT channels: it needs --input dct")
    return args


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(name)s] %(message)s", datefmt="%H:%M:%S")
    args = parse_args(argv)
    trainer = ClassificationTrainer(args)
    results = trainer.train()
    if trainer.rank == 0:
        print(json.dumps({"val_top1": results.get("top1"), "val_top5": results.get("top5"),
                          "best_top1": trainer.best_top1, "ranks_agree": results["ranks_agree"]}))
    return 0 if results["ranks_agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
