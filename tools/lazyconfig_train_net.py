#!/usr/bin/env python
"""Train or evaluate a LazyConfig (a Python config) with DCT inputs, on Detectron2's training loop.

    python tools/lazyconfig_train_net.py --config-file configs/demo/mask_rcnn_dct_demo.py   # CPU, demo data
    python tools/lazyconfig_train_net.py --config-file new_baselines/mask_rcnn_dct_R_50_FPN_100ep_LSJ.py \\
        --num-gpus 8
    python tools/lazyconfig_train_net.py --config-file configs/demo/mask_rcnn_dct_demo.py --eval-only \\
        train.init_checkpoint=output/demo/mask_rcnn_dct_demo_lazy/model_final.pth
    python tools/lazyconfig_train_net.py --config-file new_baselines/mask_rcnn_dct_R_50_FPN_100ep_LSJ.py \\
        --register-coco mine_train train.json images/ --register-coco mine_val val.json images/ \\
        dataloader.train.dataset.names=mine_train dataloader.test.dataset.names=mine_val \\
        model.roi_heads.num_classes=2   # your own COCO-format data
    python tools/lazyconfig_train_net.py --config-file COCO-Detection/retinanet_R_50_FPN_1x.py --dct-input 24 \\
        train.init_checkpoint="" model.backbone.bottom_up.freeze_at=0 \\
        model.backbone.bottom_up.stages.norm=SyncBN   # any of Detectron2's ResNet LazyConfigs on 24 DCT channels

The arguments and the loop of Detectron2's own tools/lazyconfig_train_net.py (which runs
freqdet's LazyConfigs unchanged too): overrides as key=value, ``train.*`` for the run,
``--resume``, ``--num-gpus`` / ``--num-machines`` for Detectron2's launcher. What this one adds,
as tools/train_net.py has it for the yacs configs:

- the config checked before any work (device, AMP on a CPU, output folder, datasets), and
  errors a user can fix reported in one line (``--debug`` shows the traceback);
- checkpoints written whole or not at all, read without running code from them
  (``--trust-checkpoint`` allows pickled objects), ``--resume`` from the newest readable one;
- SIGTERM and Ctrl-C save the current iteration before the run stops;
- the count of skipped images (``dataloader.train.mapper.bad_image_log``) in the metrics;
- predictions on the test set drawn to ``train.output_dir/predictions.png``;
- ``--register-coco NAME JSON IMAGE_DIR`` registers COCO-format datasets, as in tools/train_net.py;
- ``--dct-input N`` (with ``--dct-pattern``) switches the config's model, loaders and optimizer to N
  DCT channels (freqdet.detection.lazy.use_dct_input) before the overrides apply;
- a DCT model's statistics measured over the training set where training starts, not when the model
  is built (freqdet.detection.lazy.set_training_statistics; none with --eval-only), and one log line
  saying where they come from.
"""

import logging
import os

# freqdet before Detectron2: importing it first keeps its dependencies' import-time notices quiet.
from freqdet.detection.bad_images import SkippedImagesHook
from freqdet.detection.checkpoint import FreqdetCheckpointer
from freqdet.detection.cli import (
    launched,
    register_coco_datasets,
    training_argument_parser,
    user_errors,
)
from freqdet.detection.config import any_config_path
from freqdet.detection.interruption import InterruptionHook, place_interruption
from freqdet.detection.lazy import check_lazy_config, dataset_names, load_lazy_config, set_training_statistics
from freqdet.detection.predictions import draw_predictions
from freqdet.detection.trainer import LAZY_FIXES, TRAINING_STOPS, training_stops
from freqdet.known_warnings import quiet_known_warnings
from freqdet.safe_load import UntrustedCheckpointError

# isort: split
import detectron2.utils.comm as comm
from detectron2.config import instantiate
from detectron2.engine import (
    AMPTrainer,
    SimpleTrainer,
    default_setup,
    default_writers,
    hooks,
    launch,
)
from detectron2.engine.defaults import create_ddp_model
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils.logger import setup_logger

logger = logging.getLogger("freqdet")

# What a user can fix, met while setting up a run: a config (ValueError and its kinds: a channel
# mismatch, an override that does not parse; KeyError: one that names no key), a folder or file
# (OSError), an untrusted checkpoint.
SETUP_ERRORS = (ValueError, KeyError, OSError, UntrustedCheckpointError)
VIS_IMAGES, VIS_SCORE_THRESH = 6, 0.5


def evaluate(cfg, model):
    """COCO (or the config's) evaluation of ``model`` on ``dataloader.test``; None without an evaluator."""
    if "evaluator" not in cfg.dataloader:
        return None
    results = inference_on_dataset(model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator))
    print_csv_format(results)
    return results


def draw(cfg, model):
    if "test" not in cfg.dataloader or not comm.is_main_process():
        return
    path = os.path.join(cfg.train.output_dir, "predictions.png")
    name = dataset_names(cfg.dataloader.test)[0]
    draw_predictions(model, instantiate(cfg.dataloader.test.mapper), name, VIS_IMAGES, path, VIS_SCORE_THRESH)
    logger.info(f"Predictions on {name} (score >= {VIS_SCORE_THRESH}) drawn to {path}")


def build_training(cfg, model, trust: bool):
    """Detectron2's trainer (AMP or not), optimizer, loader and hooks for ``model``, with freqdet's checkpointer."""
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    loader = instantiate(cfg.dataloader.train)
    model = create_ddp_model(model, **cfg.train.ddp)
    trainer = (AMPTrainer if cfg.train.amp.enabled else SimpleTrainer)(model, loader, optimizer)
    checkpointer = FreqdetCheckpointer(model, cfg.train.output_dir, trust=trust, optimizer=optimizer, trainer=trainer)
    interruption = InterruptionHook(checkpointer)
    main = comm.is_main_process()
    skipped = cfg.dataloader.train.mapper.get("bad_image_log")
    trainer.register_hooks(
        place_interruption(
            [
                hooks.IterationTimer(),
                hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
                hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if main else None,
                hooks.EvalHook(cfg.train.eval_period, lambda: evaluate(cfg, model)),
                SkippedImagesHook(skipped) if skipped and main else None,
                hooks.PeriodicWriter(default_writers(cfg.train.output_dir, cfg.train.max_iter), cfg.train.log_period)
                if main
                else None,
            ],
            interruption,
        )
    )
    return trainer, checkpointer, interruption


def setup_config(args):
    """The LazyConfig of the command line, checked before any work: datasets registered, switched to DCT
    inputs by ``--dct-input``, overrides applied; ValueError for a flag meant for yacs configs."""
    if args.config_adder:
        raise ValueError(
            f"--config-adder {' '.join(args.config_adder)}: it adds a project's keys to a yacs config "
            "(tools/train_net.py); a LazyConfig imports what it needs itself: drop --config-adder"
        )
    register_coco_datasets(args.register_coco)
    cfg = load_lazy_config(args.config_file, args.opts, dct_input=args.dct_input, dct_pattern=args.dct_pattern)
    check_lazy_config(cfg, training=not args.eval_only)
    return cfg


def checkpoint_to_load(cfg, checkpointer, resume: bool) -> str:
    """The file ``resume_or_load`` will read: the newest checkpoint on ``--resume``, else ``train.init_checkpoint``."""
    if resume and checkpointer.has_checkpoint():
        return checkpointer.get_checkpoint_file()
    return cfg.train.init_checkpoint


def main(args):
    """One process of the run: the config loaded and checked, the model built (reading no data), its
    statistics set (the training set's when training, measured or reused; a checkpoint's), then
    training or evaluation."""
    quiet_known_warnings()
    with user_errors(SETUP_ERRORS, args.debug):
        cfg = setup_config(args)
        default_setup(cfg, args)
        setup_logger(cfg.train.output_dir, distributed_rank=comm.get_rank(), name="freqdet")
        model = instantiate(cfg.model)
        model.to(cfg.train.device)
        if args.eval_only:
            evaluated = create_ddp_model(model)
            checkpointer = FreqdetCheckpointer(evaluated, cfg.train.output_dir, trust=args.trust_checkpoint)
            set_training_statistics(model, cfg, checkpoint_to_load(cfg, checkpointer, args.resume), measure=False)
            checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
        else:
            trainer, checkpointer, interruption = build_training(cfg, model, args.trust_checkpoint)
            set_training_statistics(model, cfg, checkpoint_to_load(cfg, checkpointer, args.resume))
            checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
            # A checkpoint records the iteration it ended: continue with the next one.
            start = trainer.iter + 1 if args.resume and checkpointer.has_checkpoint() else 0
    if args.eval_only:
        results = evaluate(cfg, evaluated)
        draw(cfg, evaluated)
        return results
    with user_errors(TRAINING_STOPS, args.debug), training_stops(trainer, interruption, LAZY_FIXES):
        trainer.train(start, cfg.train.max_iter)
    draw(cfg, model)


def parse_args(argv=None):
    return training_argument_parser().parse_args(argv)


if __name__ == "__main__":
    quiet_known_warnings()
    args = parse_args()
    with user_errors((ValueError,), args.debug):
        if not args.config_file:
            raise ValueError("no --config-file: give a LazyConfig's path or name (e.g. demo/mask_rcnn_dct_demo.py)")
        args.config_file = any_config_path(args.config_file)
    with launched():
        launch(
            main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
        )
