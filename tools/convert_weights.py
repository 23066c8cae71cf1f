#!/usr/bin/env python
"""Convert classifier weights into freqdet's ResNet-50-DCT or into Detectron2 backbone weights.

    # our classifier (tools/train_cls.py) -> MODEL.WEIGHTS for the DCT detectors
    python tools/convert_weights.py --source classifier --target detectron2 output/cls/model_best.pth dct_r50.pth
    # the official DCTNet release's model_best.pth.tar -> ours or Detectron2
    python tools/convert_weights.py --source official --target detectron2 model_best.pth.tar dct_r50.pth
    # torchvision's RGB ResNet-50 -> a ResNet-50-DCT starting point with 24 input channels
    python tools/convert_weights.py --source torchvision --channels 24 --target classifier resnet50.pth init.pth

Prints what was mapped, re-initialised, dropped or not understood. With --target
detectron2 and --config-file, also checks that the converted weights fill every backbone
parameter of that config's model (no missing or unexpected keys).
"""
import argparse
import sys

import torch

from freqdet.classification.convert import official_to_classifier, torchvision_to_classifier, unwrap


def convert(checkpoint, source: str, target: str, channels: int = None):
    """(state dict, list of (step, report))."""
    reports = []
    if source == "official":
        state, report = official_to_classifier(checkpoint)
        reports.append(("official -> classifier", report))
    elif source == "torchvision":
        if channels is None:
            raise ValueError("--source torchvision needs --channels (the DCT input channels)")
        state, report = torchvision_to_classifier(checkpoint, channels)
        reports.append(("torchvision -> classifier", report))
    else:
        state = checkpoint if target == "detectron2" else unwrap(checkpoint)  # keeps the recorded channels
    if target == "detectron2":
        from freqdet.detection.convert import classifier_to_detectron2

        state, report = classifier_to_detectron2(state)
        reports.append(("classifier -> detectron2", report))
    return state, reports


def check_against_config(state, config_file: str, opts):
    from detectron2.modeling import build_model

    from freqdet.detection.config import load_config
    from freqdet.detection.convert import detectron2_backbone_report

    return detectron2_backbone_report(build_model(load_config(config_file, ["MODEL.DEVICE", "cpu", *opts])), state)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", choices=["classifier", "official", "torchvision"], required=True)
    parser.add_argument("--target", choices=["classifier", "detectron2"], required=True)
    parser.add_argument("--channels", type=int, default=None, help="DCT input channels (torchvision source)")
    parser.add_argument("--config-file", default=None, help="a detector config to check the result against")
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides for --config-file")
    args = parser.parse_args(argv)
    checkpoint = torch.load(args.input, map_location="cpu", weights_only=False)
    state, reports = convert(checkpoint, args.source, args.target, args.channels)
    for step, report in reports:
        print(f"[{step}]\n{report}")
    torch.save({"model": state, "__converted_from__": args.source}, args.output)
    print(f"wrote {args.output} ({len(state)} tensors)")
    if args.config_file and args.target == "detectron2":
        missing, unexpected, mismatched = check_against_config(state, args.config_file, args.opts)
        print(f"against {args.config_file}: {len(missing)} missing, {len(unexpected)} unexpected backbone "
              f"keys, {len(mismatched)} of another shape or channel selection")
        for key in missing + unexpected + mismatched:
            print(f"  {key}")
        return 1 if missing or unexpected or mismatched else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
