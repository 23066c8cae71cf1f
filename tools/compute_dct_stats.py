#!/usr/bin/env python
"""Per-channel mean and std of the 192 DCT channels, over a config's training set or over photos.

    python tools/compute_dct_stats.py --config-file configs/mask_rcnn_dct_R50_FPN.yaml \\
        --num-images 5000 --output coco_dct_stats.json
    python tools/compute_dct_stats.py --config-file mask_rcnn_dct_R50_FPN_scratch.yaml \\
        --register-coco mine_train train.json images/ --output mine_stats.json DATASETS.TRAIN "('mine_train',)"
    python tools/compute_dct_stats.py --config-file new_baselines/mask_rcnn_dct_R_50_FPN_100ep_LSJ.py \
        --num-images 5000 --output coco_dct_stats.json dataloader.train.dataset.names=coco_2017_train
    python tools/compute_dct_stats.py --photos --output freqdet/natural_photo_stats.json

With --config-file it streams the training images through the DCT dataset mapper (as at
test time), with a progress bar, and writes the JSON that MODEL.DCT.STATS_FILE reads
(tools/train_net.py and freqdet.DCTTrainer do this by themselves when no statistics are
configured; this is for computing them once and sharing them between runs). A LazyConfig
(.py; overrides as key=value) is measured the same way: its training set, through its test
mapper (what freqdet.detection.lazy.training_set_statistic computes when training). With --photos
it measures natural photographs (by default the ones matplotlib and scikit-learn ship)
with the detection pipeline at COCO's training sizes, each photo and its mirror image:
the statistics freqdet ships as every model's default.
"""

import argparse
import json
import sys

from freqdet.config_files import config_path
from freqdet.demo import packaged_photos
from freqdet.detection.checks import DatasetNotFoundError, check_datasets
from freqdet.detection.cli import add_register_coco_argument, register_coco_datasets
from freqdet.detection.config import load_config
from freqdet.detection.dataset_stats import compute_config_stats
from freqdet.detection.lazy import dataset_names, lazy_config_stats, load_lazy_config
from freqdet.known_warnings import quiet_known_warnings
from freqdet.stats import measure_photos, save_stats


def main(argv=None) -> int:
    quiet_known_warnings()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config-file", help="a config (path or freqdet config name) whose training set to measure")
    source.add_argument(
        "--photos",
        nargs="*",
        metavar="PHOTO",
        help="measure these photos (none given: the ones matplotlib and scikit-learn ship)",
    )
    parser.add_argument("--num-images", type=int, default=0, help="images spread over the training set (0: all)")
    parser.add_argument("--output", required=True, help="JSON file to write")
    add_register_coco_argument(parser)
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE pairs (yacs), key=value (LazyConfig)"
    )
    args = parser.parse_args(argv)
    try:
        if args.photos is not None:
            stats = measure_photos(args.photos or packaged_photos())
        else:
            register_coco_datasets(args.register_coco)
            path = config_path(args.config_file)
            if path.endswith(".py"):
                cfg = load_lazy_config(path, args.opts)
                check_datasets(None, dataset_names(cfg.dataloader.train))
                stats = lazy_config_stats(cfg, args.num_images)
            else:
                cfg = load_config(path, args.opts)
                check_datasets(cfg, cfg.DATASETS.TRAIN)
                stats = compute_config_stats(cfg, args.num_images)
    except (DatasetNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")
    save_stats(stats, args.output)
    print(
        json.dumps(
            {
                "output": args.output,
                "num_images": stats.info["num_images"],
                "Y_DC_mean_std": (stats.mean[0], stats.std[0]),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
