#!/usr/bin/env python
"""Per-channel mean and std of the 192 DCT channels over a config's training set.

    python tools/compute_dct_stats.py --config-file configs/mask_rcnn_dct_R50_FPN.yaml \\
        --num-images 5000 --output coco_dct_stats.json

Streams images through the DCT dataset mapper (as at test time), with a progress bar, and
writes the JSON that ``MODEL.DCT.STATS_FILE`` reads. tools/train_net.py does this by
itself when no statistics are configured; this tool is for computing them once and
sharing them between runs.
"""
import argparse
import json
import sys

from freqdet.detection.config import load_config
from freqdet.detection.engine import DatasetNotFoundError, check_datasets, compute_config_stats
from freqdet.stats import save_stats


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--num-images", type=int, default=0, help="images spread over the training set (0: all)")
    parser.add_argument("--output", required=True, help="JSON file to write")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, KEY VALUE pairs")
    args = parser.parse_args(argv)
    cfg = load_config(args.config_file, args.opts)
    try:
        check_datasets(cfg, cfg.DATASETS.TRAIN)
    except DatasetNotFoundError as e:
        sys.exit(f"error: {e}")
    stats = compute_config_stats(cfg, args.num_images)
    save_stats(stats, args.output)
    y_dc = (stats.mean[0], stats.std[0])
    print(json.dumps({"output": args.output, "num_images": stats.info["num_images"], "Y_DC_mean_std": y_dc}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
