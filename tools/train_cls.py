#!/usr/bin/env python
"""Train ResNet-50 or MobileNetV2 classifiers on DCT (or RGB) inputs: the paper's ImageNet experiments.

    python tools/train_cls.py --demo --arch resnet50 --channels 24 --crop 128 --epochs 4   # CPU, minutes
    torchrun --nproc_per_node 8 tools/train_cls.py --data /imagenet --arch resnet50 --channels 24
    torchrun --nproc_per_node 8 tools/train_cls.py --data /imagenet --arch mobilenet_v2 --channels 32 --epochs 150
    # an official checkpoint, converted (tools/convert_weights.py), on ImageNet's val/ as the release evaluates it
    python tools/train_cls.py --data /imagenet --evaluate --weights r50_dct24.pth --preprocess official
    # fine-tune from it, or start from torchvision's RGB weights with the release's channel slicing
    python tools/train_cls.py --data /mydata --init r50_dct24.pth --epochs 30 --lr 0.01
    python tools/train_cls.py --data /imagenet --init resnet50-0676ba61.pth --layout official --init-input slice

--data is an ImageFolder root with train/ and val/ (one folder per class, the ImageNet
layout); --demo generates a small one on first use. DCT inputs follow the paper: a crop of
448 (ResNet-50) or 896 (MobileNetV2) pixels, Y at the crop's size and Cb/Cr at 2x, so
(C, 56, 56) or (C, 112, 112) channels. --layout official builds the release's networks
(ResNet-50 with layer2 at stride 1, MobileNetV2 without its first stage). Checkpoints
(checkpoint.pth, model_best.pth) record the network, channels and normalization and go to
--output; --resume continues from checkpoint.pth. --evaluate and --init take the network
(architecture, layout, channels) from their checkpoint. Checkpoints are read without
running code from them; --trust-checkpoint allows files that need pickled objects.
tools/convert_weights.py turns a ResNet-50-DCT checkpoint into Detectron2 backbone weights.
"""

import argparse
import json
import logging
import sys

from freqdet.classification.convert import INPUT_INITS
from freqdet.classification.engine import DEFAULTS, ClassificationConfig, ClassificationTrainer
from freqdet.classification.models import ARCHITECTURES, LAYOUTS
from freqdet.dct import PATTERNS
from freqdet.safe_load import TRUST_FLAG, UntrustedCheckpointError

DEFAULT = ClassificationConfig()


def parse_args(argv=None) -> ClassificationConfig:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="ImageFolder root holding train/ and val/")
    source.add_argument("--demo", action="store_true", help="use the built-in demo ImageFolder")
    parser.add_argument("--arch", choices=ARCHITECTURES, default=None, help=f"default {DEFAULTS['arch']}")
    parser.add_argument(
        "--layout",
        choices=LAYOUTS,
        default=None,
        help=f"'official': the release's networks (default {DEFAULTS['layout']})",
    )
    parser.add_argument("--input", choices=["dct", "rgb"], default=None, help=f"default {DEFAULTS['input']}")
    parser.add_argument(
        "--channels", type=int, default=None, help=f"DCT channel count (with --pattern; default {DEFAULTS['channels']})"
    )
    parser.add_argument("--pattern", choices=PATTERNS, default=DEFAULT.pattern)
    parser.add_argument(
        "--indices",
        type=lambda s: [int(i) for i in s.split(",")],
        default=None,
        help="explicit comma-separated channel indices 0..191 (overrides --channels)",
    )
    parser.add_argument("--crop", type=int, default=None, help="crop in pixels (default 448/896 DCT, 224 RGB)")
    parser.add_argument(
        "--min-scale", type=float, default=DEFAULT.min_scale, help="smallest crop area fraction in training"
    )
    parser.add_argument("--gate", action="store_true", help="learn the channel selection (all given channels in)")
    parser.add_argument("--gate-lambda", type=float, default=DEFAULT.gate_lambda, help="weight of the channels-on loss")
    parser.add_argument(
        "--gate-init-on", type=float, default=DEFAULT.gate_init_on, help="initial on-logit bias (off is 0.1)"
    )
    parser.add_argument("--epochs", type=int, default=DEFAULT.epochs)
    parser.add_argument("--batch-size", type=int, default=DEFAULT.batch_size, help="per process")
    parser.add_argument("--lr", type=float, default=DEFAULT.lr, help="for a total batch of 256; scale it with yours")
    parser.add_argument("--momentum", type=float, default=DEFAULT.momentum)
    parser.add_argument("--weight-decay", type=float, default=DEFAULT.weight_decay)
    parser.add_argument("--schedule", choices=["cosine", "step"], default=DEFAULT.schedule)
    parser.add_argument(
        "--steps", type=int, nargs="+", default=DEFAULT.steps, help="epochs of 10x decay (step schedule)"
    )
    parser.add_argument("--warmup-epochs", type=float, default=DEFAULT.warmup_epochs)
    parser.add_argument("--label-smoothing", type=float, default=DEFAULT.label_smoothing)
    parser.add_argument(
        "--clip-grad", type=float, default=DEFAULT.clip_grad, help="clip the gradient norm to this (0: off)"
    )
    parser.add_argument(
        "--amp", action=argparse.BooleanOptionalAction, default=DEFAULT.amp, help="mixed precision on GPU"
    )
    parser.add_argument("--workers", type=int, default=DEFAULT.workers)
    parser.add_argument(
        "--stats-images", type=int, default=DEFAULT.stats_images, help="images for the DCT normalization statistics"
    )
    parser.add_argument(
        "--max-steps", type=int, default=DEFAULT.max_steps, help="stop after this many steps (0: no limit)"
    )
    parser.add_argument("--seed", type=int, default=DEFAULT.seed)
    parser.add_argument("--output", default=DEFAULT.output)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--evaluate", action="store_true", help="top-1/top-5 of --weights on val/, no training")
    parser.add_argument("--weights", default=None, help="the classifier checkpoint --evaluate evaluates")
    parser.add_argument(
        "--init",
        default=None,
        help="start training from a classifier checkpoint (converted or trained) or torchvision's RGB weights",
    )
    parser.add_argument(
        "--init-input",
        choices=INPUT_INITS,
        default=DEFAULT.init_input,
        help="for RGB --init weights: re-initialise the layers that read the input, or slice "
        "their input channels as the official release does",
    )
    parser.add_argument(
        "--preprocess",
        choices=["freqdet", "official"],
        default=DEFAULT.preprocess,
        help="evaluation transform: freqdet's, or the official release's validation pipeline "
        "(OpenCV resize, crop, 2x upscale, libjpeg-turbo JPEG round trip)",
    )
    parser.add_argument(
        TRUST_FLAG,
        action="store_true",
        help="allow checkpoints that need pickled Python objects (they can run code when loaded)",
    )
    args = parser.parse_args(argv)
    if args.gate and args.input == "rgb":
        parser.error("--gate switches DCT channels: it needs --input dct")
    if args.evaluate != bool(args.weights):
        parser.error("--evaluate and --weights go together: --evaluate --weights CHECKPOINT")
    if args.evaluate and (args.init or args.resume):
        parser.error("--evaluate trains nothing: leave out --init and --resume")
    return ClassificationConfig(**vars(args))


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(name)s] %(message)s", datefmt="%H:%M:%S")
    config = parse_args(argv)
    try:
        trainer = ClassificationTrainer(config)
    except (UntrustedCheckpointError, ValueError, OSError, RuntimeError) as e:
        sys.exit(f"error: {e}")
    if config.evaluate:
        results = trainer.evaluate_weights()
        if trainer.rank == 0:
            print(
                json.dumps(
                    {
                        "top1": results["top1"],
                        "top5": results["top5"],
                        "images": results["images"],
                        "weights": config.weights,
                        "preprocess": config.preprocess,
                    }
                )
            )
        return 0
    results = trainer.train()
    if trainer.rank == 0:
        print(
            json.dumps(
                {
                    "val_top1": results.get("top1"),
                    "val_top5": results.get("top5"),
                    "best_top1": trainer.best_top1,
                    "ranks_agree": results["ranks_agree"],
                }
            )
        )
    return 0 if results["ranks_agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
