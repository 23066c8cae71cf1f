#!/usr/bin/env python
"""Train or evaluate Mask / Faster R-CNN with DCT inputs (or their RGB baselines) with Detectron2.

    python tools/train_net.py --config-file configs/mask_rcnn_dct_R50_FPN.yaml --num-gpus 8
    python tools/train_net.py --config-file configs/mask_rcnn_dct_R50_FPN.yaml --eval-only MODEL.WEIGHTS model.pth
    python tools/train_net.py --config-file configs/demo/mask_rcnn_dct_demo.yaml   # CPU, built-in demo data

Multi-machine runs use Detectron2's launcher flags (--num-machines, --machine-rank, --dist-url).
MODEL.WEIGHTS and --resume checkpoints are read without running code from them; a file that
needs pickled Python objects is refused unless --trust-checkpoint is given.
"""
import logging
import os
import sys

import detectron2.utils.comm as comm
from detectron2.engine import default_argument_parser, default_setup, launch
from detectron2.evaluation import verify_results
from detectron2.utils.logger import setup_logger

from freqdet.detection.checkpoint import FreqdetCheckpointer
from freqdet.detection.config import load_config
from freqdet.detection.engine import DatasetNotFoundError, Trainer, build_mapper, check_config, ensure_dct_stats
from freqdet.detection.predictions import draw_predictions
from freqdet.files import TRUST_FLAG


def setup_config(args):
    """The frozen config of the command line: file and KEY VALUE overrides."""
    cfg = load_config(args.config_file, args.opts)
    cfg.freeze()
    return cfg


def draw(cfg, model):
    if cfg.TEST.VIS_IMAGES > 0 and cfg.DATASETS.TEST and comm.is_main_process():
        path = os.path.join(cfg.OUTPUT_DIR, "predictions.png")
        draw_predictions(model, build_mapper(cfg, False), cfg.DATASETS.TEST[0], cfg.TEST.VIS_IMAGES, path)
        logging.getLogger("freqdet").info(f"Predictions on {cfg.DATASETS.TEST[0]} drawn to {path}")


def main(args):
    cfg = setup_config(args)
    default_setup(cfg, args)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="freqdet")
    if args.eval_only:
        model = Trainer.build_model(cfg)
        checkpointer = FreqdetCheckpointer(model, save_dir=cfg.OUTPUT_DIR, trust=args.trust_checkpoint)
        checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        results = Trainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, results)
        draw(cfg, model)
        return results

    cfg = ensure_dct_stats(cfg)
    trainer = Trainer(cfg, trust_checkpoint=args.trust_checkpoint)
    trainer.resume_or_load(resume=args.resume)
    results = trainer.train()
    draw(cfg, trainer.model)
    return results


def parse_args(argv=None):
    parser = default_argument_parser()
    parser.add_argument(TRUST_FLAG, action="store_true",
                        help="allow checkpoints that need pickled Python objects (they can run code when loaded)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    try:
        check_config(setup_config(args))
    except (DatasetNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
