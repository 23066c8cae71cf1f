#!/usr/bin/env python
"""Convert classifier weights into freqdet's classifiers or into Detectron2 backbone weights.

    # our classifier (tools/train_cls.py) -> MODEL.WEIGHTS for the DCT detectors
    python tools/convert_weights.py --source classifier --target detectron2 output/cls/model_best.pth dct_r50.pth
    # the official DCTNet release's model_best.pth.tar -> our classifier (its outputs, its classification table)
    python tools/convert_weights.py --source official --arch resnet50 --target classifier \\
        model_best.pth.tar r50_dct24.pth
    python tools/convert_weights.py --source official --arch mobilenet_v2 --target classifier \\
        model_best.pth.tar mnv2_dct32.pth
    # ... or -> Detectron2 backbone weights, normalized with the release's detection table
    python tools/convert_weights.py --source official --target detectron2 model_best.pth.tar dct_r50.pth
    # the release's trained Mask / Faster R-CNN (latest.pth) -> the whole detector, for configs/release/
    python tools/convert_weights.py --source release-detector --target detectron2 latest.pth mask_rcnn_dct24.pth
    # torchvision's RGB ResNet-50 -> a ResNet-50-DCT starting point with 24 input channels
    python tools/convert_weights.py --source torchvision --channels 24 --target classifier resnet50.pth init.pth

Prints what was mapped, re-initialised, dropped or not understood. The official release's
checkpoints carry no normalization: its fixed tables (freqdet/classification/official_stats/)
are written into the converted weights for their channels, which are read off the input
convolution. A classifier target records its architecture, layout, channels and
normalization (tools/train_cls.py --evaluate / --init and freqdet.classification.load_classifier
read them). With --target detectron2 and --config-file, also checks that the converted
weights fill every backbone parameter of that config's model (no missing or unexpected
keys). Checkpoints are read without running code from them: one that needs pickled Python
objects is refused unless --trust-checkpoint is given. The conversions themselves are
freqdet.classification.convert.convert_to_classifier and freqdet.detection.convert.convert_to_detectron2.
"""

import argparse
import sys

import torch

from freqdet.classification.convert import INPUT_INITS, SOURCES, convert_to_classifier
from freqdet.classification.models import ARCHITECTURES, LAYOUTS
from freqdet.safe_load import TRUST_FLAG, UntrustedCheckpointError, load_checkpoint


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--source",
        choices=SOURCES + ("release-detector",),
        required=True,
        help="release-detector: one of the official release's trained Mask / Faster R-CNN (latest.pth), "
        "to --target detectron2",
    )
    parser.add_argument("--target", choices=["classifier", "detectron2"], required=True)
    parser.add_argument("--arch", choices=ARCHITECTURES, default="resnet50", help="the official or torchvision model")
    parser.add_argument("--channels", type=int, default=None, help="DCT input channels (torchvision source)")
    parser.add_argument(
        "--layout",
        choices=LAYOUTS,
        default="torchvision",
        help="classifier layout for torchvision weights ('official': the release's networks)",
    )
    parser.add_argument(
        "--init-input",
        choices=INPUT_INITS,
        default="reinit",
        help="torchvision source: re-initialise the layers that read the input, or slice their "
        "input channels as the official release does",
    )
    parser.add_argument(
        TRUST_FLAG,
        action="store_true",
        help="allow a checkpoint that needs pickled Python objects (it can run code when loaded)",
    )
    parser.add_argument("--config-file", default=None, help="a detector config to check the result against")
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides for --config-file")
    args = parser.parse_args(argv)
    if args.opts and not args.config_file:
        parser.error(
            f"{' '.join(args.opts)!r} after OUTPUT are config overrides for --config-file; put options "
            "before INPUT OUTPUT"
        )
    if args.source == "release-detector" and args.target != "detectron2":
        parser.error("--source release-detector converts to --target detectron2")
    try:
        checkpoint = load_checkpoint(args.input, trust=args.trust_checkpoint)
        if args.target == "detectron2":
            from freqdet.detection.convert import convert_to_detectron2 as convert
        else:
            convert = convert_to_classifier
        result, reports = convert(
            checkpoint, args.source, repr(args.input), args.arch, args.channels, args.layout, args.init_input
        )
    except (UntrustedCheckpointError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for step, report in reports:
        print(f"[{step}]\n{report}")
    torch.save(result, args.output)
    print(f"wrote {args.output} ({len(result['model'])} tensors)")
    if args.config_file and args.target == "detectron2":
        from freqdet.detection.convert import model_fit

        whole = args.source == "release-detector"  # the whole detector, not a backbone alone
        missing, unexpected, mismatched = model_fit(
            result["model"], args.config_file, args.opts, "" if whole else "backbone.bottom_up."
        )
        print(
            f"against {args.config_file}: {len(missing)} missing, {len(unexpected)} unexpected "
            f"{'model' if whole else 'backbone'} keys, {len(mismatched)} of another shape or channel selection"
        )
        for key in missing + unexpected + mismatched:
            print(f"  {key}")
        return 1 if missing or unexpected or mismatched else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
