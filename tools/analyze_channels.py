#!/usr/bin/env python
"""Which frequency channels does a trained gate select? Heat map, rates, and a top-K config.

    python tools/analyze_channels.py --config-file configs/demo/mask_rcnn_dct_demo_gate.yaml \\
        --weights output/demo/mask_rcnn_dct_demo_gate/model_final.pth --top-k 24 \\
        --static-config configs/demo/mask_rcnn_dct_demo.yaml --output output/demo/channels

Runs the gate over a dataset (the config's first training set by default) with a progress
bar and writes, in --output:
  heatmap.png    three 8x8 grids (Y, Cb, Cr) of selection rates, numbered like the paper's Fig. 5
  channels.json  the 192 selection rates and mean on-probabilities (null for channels not taken)
  top{K}.yaml    a config inheriting --static-config that takes the K most selected channels
"""

import argparse
import json
import os
import sys

import numpy as np

# freqdet before Detectron2: importing it first keeps its dependencies' import-time notices quiet.
from freqdet.detection import DCTDatasetMapper
from freqdet.detection.channel_analysis import gate_statistics, top_k, write_selection_config
from freqdet.detection.checkpoint import FreqdetCheckpointer
from freqdet.detection.checks import DatasetNotFoundError, check_datasets
from freqdet.detection.config import load_config
from freqdet.known_warnings import quiet_known_warnings
from freqdet.safe_load import TRUST_FLAG, UntrustedCheckpointError
from freqdet.stats import evenly_spaced
from freqdet.visualize import plot_selection_heatmap

# isort: split
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model


def as_list(values):
    """JSON-friendly: NaN (a channel the model does not take) becomes null."""
    return [None if np.isnan(v) else round(float(v), 6) for v in values]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, help="the gated model's config")
    parser.add_argument("--weights", required=True, help="its trained checkpoint")
    parser.add_argument("--dataset", default=None, help="dataset to analyze (default: the first training set)")
    parser.add_argument("--num-images", type=int, default=0, help="images spread over the dataset (0: all)")
    parser.add_argument("--top-k", type=int, default=24)
    parser.add_argument(
        "--static-config", default=None, help="config the top-K config inherits (default: --config-file)"
    )
    parser.add_argument("--output", default="output/channels")
    parser.add_argument(
        TRUST_FLAG,
        action="store_true",
        help="allow a checkpoint that needs pickled Python objects (it can run code when loaded)",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, KEY VALUE pairs")
    args = parser.parse_args(argv)
    quiet_known_warnings()

    try:
        cfg = load_config(args.config_file, args.opts)
        cfg.freeze()
        dataset = args.dataset or cfg.DATASETS.TRAIN[0]
        check_datasets(cfg, [dataset])
        model = build_model(cfg)
        FreqdetCheckpointer(model, trust=args.trust_checkpoint).load(args.weights)
    except (DatasetNotFoundError, ValueError, UntrustedCheckpointError) as e:
        sys.exit(f"error: {e}")
    if model.gate is None:
        sys.exit(f"error: {args.config_file} has no channel gate (MODEL.DCT.GATE.NAME is empty)")
    dicts = evenly_spaced(DatasetCatalog.get(dataset), args.num_images)
    stats = gate_statistics(model, DCTDatasetMapper(cfg, is_train=False), dicts)
    chosen = top_k(stats["selection_rate"], stats["probability"], args.top_k)

    os.makedirs(args.output, exist_ok=True)
    title = (
        f"{dataset}, {stats['num_images']} images: {stats['channels_on_per_image']:.1f} of "
        f"{len(model.channels)} channels on per image"
    )
    plot_selection_heatmap(stats["selection_rate"], title).savefig(os.path.join(args.output, "heatmap.png"), dpi=110)
    report = {
        "dataset": dataset,
        "num_images": stats["num_images"],
        "channels_on_per_image": stats["channels_on_per_image"],
        "selection_rate": as_list(stats["selection_rate"]),
        "probability": as_list(stats["probability"]),
        "top_k": chosen,
    }
    with open(os.path.join(args.output, "channels.json"), "w") as f:
        json.dump(report, f, indent=1)
    config_path = os.path.join(args.output, f"top{args.top_k}.yaml")
    run_dir = os.path.join(os.path.dirname(cfg.OUTPUT_DIR.rstrip("/")) or ".", f"top{args.top_k}_from_gate")
    write_selection_config(chosen, args.static_config or args.config_file, config_path, run_dir)
    print(f"{stats['channels_on_per_image']:.1f} channels on per image; top {args.top_k}: {chosen}")
    if stats["channels_on_per_image"] < 1:
        print(
            "warning: at inference the gate switches (almost) every channel off: its decisions had not "
            "settled (train longer, or raise MODEL.DCT.GATE.LR_FACTOR); the top-K above ranks channels by "
            "their mean on-probability instead",
            file=sys.stderr,
        )
    print(f"wrote {args.output}/heatmap.png, channels.json and {config_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
