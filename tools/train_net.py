#!/usr/bin/env python
"""Train or evaluate Mask / Faster R-CNN with DCT inputs (or their RGB baselines) with Detectron2.

    python tools/train_net.py --config-file configs/mask_rcnn_dct_R50_FPN_scratch.yaml --num-gpus 8
    python tools/train_net.py --config-file configs/mask_rcnn_dct_R50_FPN.yaml --eval-only MODEL.WEIGHTS model.pth
    python tools/train_net.py --config-file configs/demo/mask_rcnn_dct_demo.yaml   # CPU, built-in demo data
    python tools/train_net.py --config-file configs/mask_rcnn_dct_R50_FPN_scratch.yaml \\
        --register-coco shapes_train train.json images/ --register-coco shapes_val val.json images/ \\
        DATASETS.TRAIN "('shapes_train',)" DATASETS.TEST "('shapes_val',)"   # your own COCO-format data

--config-file takes a path or the name of one of freqdet's configs (freqdet.model_zoo),
from any folder. Multi-machine runs use Detectron2's launcher flags (--num-machines,
--machine-rank, --dist-url). MODEL.WEIGHTS and --resume checkpoints are read without running
code from them; a file that needs pickled Python objects is refused unless --trust-checkpoint
is given.
"""

import logging
import os

# freqdet before Detectron2: importing it first keeps its dependencies' import-time notices quiet.
from freqdet.detection.checkpoint import FreqdetCheckpointer
from freqdet.detection.checks import check_config, check_output_dir
from freqdet.detection.cli import (
    classes_override,
    launched,
    register_coco_datasets,
    training_argument_parser,
    user_errors,
)
from freqdet.detection.config import any_config_path, load_config
from freqdet.detection.mapper import build_mapper
from freqdet.detection.predictions import draw_predictions
from freqdet.detection.switch import use_dct_input
from freqdet.detection.trainer import TRAINING_STOPS, DCTTrainer
from freqdet.known_warnings import quiet_known_warnings
from freqdet.safe_load import UntrustedCheckpointError

# isort: split
import detectron2.utils.comm as comm
from detectron2.engine import default_setup, launch
from detectron2.evaluation import verify_results
from detectron2.utils.logger import setup_logger

logger = logging.getLogger("freqdet")

# What a user can fix, met while setting up a run: a config (ValueError and its kinds), a folder
# or file (OSError: output folder, datasets, weights), an untrusted checkpoint.
SETUP_ERRORS = (ValueError, OSError, UntrustedCheckpointError)


def setup_config(args):
    """The frozen config of the command line (datasets registered, file and KEY VALUE overrides,
    the class count of a training set registered with --register-coco), and that override."""
    registered = register_coco_datasets(args.register_coco)
    cfg = load_config(args.config_file, args.opts, config_adders=args.config_adder)
    if args.dct_input is not None:
        use_dct_input(cfg, args.dct_input, args.dct_pattern)
    classes = classes_override(cfg, registered, args.opts)
    cfg.merge_from_list(classes)
    cfg.freeze()
    return cfg, classes


def draw(cfg, model):
    if cfg.TEST.VIS_IMAGES > 0 and cfg.DATASETS.TEST and comm.is_main_process():
        path = os.path.join(cfg.OUTPUT_DIR, "predictions.png")
        draw_predictions(
            model,
            build_mapper(cfg, False),
            cfg.DATASETS.TEST[0],
            cfg.TEST.VIS_IMAGES,
            path,
            score_threshold=cfg.TEST.VIS_SCORE_THRESH,
        )
        logger.info(f"Predictions on {cfg.DATASETS.TEST[0]} (score >= {cfg.TEST.VIS_SCORE_THRESH}) drawn to {path}")


def main(args):
    """One process of the run: the config built (and checked) once, then training or evaluation.

    What a user can fix ends the run with one line on stderr and exit status 2 (``--debug`` shows
    the traceback): met while setting up (the config, the output folder, its datasets, the
    weights to load) or while training (a checkpoint that cannot be written, an unusable image, a
    data-loader worker that died). SIGTERM or Ctrl-C save the current iteration first and exit
    with 128 + the signal. In a run of several processes the line is printed once, by the
    launching process (``launched``).
    """
    quiet_known_warnings()
    with user_errors(SETUP_ERRORS, args.debug):
        cfg, classes = setup_config(args)
        check_output_dir(cfg.OUTPUT_DIR)  # default_setup writes there
        default_setup(cfg, args)
        setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="freqdet")
        if classes:
            logger.info(f"MODEL.ROI_HEADS.NUM_CLASSES {classes[1]}: the classes of {cfg.DATASETS.TRAIN[0]}")
        if args.eval_only:
            check_config(cfg, training=False)
            model = DCTTrainer.build_model(cfg)
            checkpointer = FreqdetCheckpointer(model, save_dir=cfg.OUTPUT_DIR, trust=args.trust_checkpoint)
            checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        else:
            trainer = DCTTrainer(cfg, trust_checkpoint=args.trust_checkpoint)  # checks the config first
            trainer.resume_or_load(resume=args.resume)
    if args.eval_only:
        results = DCTTrainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, results)
        draw(cfg, model)
        return results
    with user_errors(TRAINING_STOPS, args.debug):
        results = trainer.train()
    draw(cfg, trainer.model)
    return results


def parse_args(argv=None):
    return training_argument_parser().parse_args(argv)


def resolve_config_file(args):
    """--config-file as a path (a freqdet or Detectron2 model-zoo config's name becomes its path), as
    Detectron2's default_setup reads the file itself."""
    if not args.config_file:
        raise ValueError(
            "no --config-file: give a config's path or name (e.g. --config-file configs/demo/mask_rcnn_dct_demo.yaml), "
            "before any KEY VALUE overrides, which take everything after them"
        )
    args.config_file = any_config_path(args.config_file)
    return args


if __name__ == "__main__":
    quiet_known_warnings()
    args = parse_args()
    with user_errors((ValueError,), args.debug):
        resolve_config_file(args)
    with launched():
        launch(
            main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
        )
