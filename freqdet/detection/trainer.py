"""DCTTrainer: Detectron2's DefaultTrainer for freqdet's configs."""

import logging
import os
import re
import traceback

import detectron2.utils.comm as comm
from detectron2.data import build_detection_test_loader, build_detection_train_loader
from detectron2.data.common import DatasetFromList
from detectron2.engine import DefaultTrainer
from detectron2.evaluation import COCOEvaluator
from detectron2.utils.logger import setup_logger

from ..io import ImageDecodeError
from .bad_images import SkipBadImages, SkippedImagesHook
from .checkpoint import CheckpointSaveError, FreqdetCheckpointer
from .checks import check_config
from .cli import one_line
from .dataset_stats import ensure_dct_stats
from .interruption import InterruptionHook, RunInterrupted
from .mapper import DCTDatasetMapper, build_mapper

logger = logging.getLogger(__name__)

_WORKER_DIED = re.compile(r"DataLoader worker \(pid", re.IGNORECASE)


class DataLoaderWorkerError(RuntimeError):
    """A data-loader worker process died (killed by a signal, such as the out-of-memory killer's)."""


# What stops a training run for a cause the user can fix: reported by the tools in one line, so
# Detectron2's log of the traceback is left out for them (TrainerBase logs every exception).
TRAINING_STOPS = (RunInterrupted, CheckpointSaveError, ImageDecodeError, DataLoaderWorkerError)


def _worker_died(error: BaseException) -> bool:
    """Whether the data loader failed because a worker process died: PyTorch says so, or a pipe
    or shared-memory transfer from the worker broke (not an error raised inside the worker,
    which the DataLoader re-raises with the worker's traceback in its message)."""
    message = str(error)
    if isinstance(error, RuntimeError) and _WORKER_DIED.search(message):
        return True
    if "Original Traceback" in message or not isinstance(error, (OSError, EOFError, RuntimeError)):
        return False
    raised_in = traceback.extract_tb(error.__traceback__)[-3:]
    return any(f"torch{os.sep}utils{os.sep}data" in f.filename or "multiprocessing" in f.filename for f in raised_in)


class _WithoutTracebackOfTrainingStops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (isinstance(error, TRAINING_STOPS) or (error is not None and _worker_died(error)))


def has_compiled_ops() -> bool:
    """False where detectron2._C is freqdet's stand-in (no C++ COCO evaluation)."""
    from detectron2 import _C

    return not getattr(_C, "FREQDET_STANDIN", False)


class DCTTrainer(DefaultTrainer):
    """Detectron2's ``DefaultTrainer`` for freqdet's configs (DCT models and their RGB baselines).

    - checks the config first (device, a backbone that can learn, datasets, DCT keys), with
      one-line errors;
    - computes the training set's DCT statistics when none are configured
      (``OUTPUT_DIR/dct_stats.json``), so the model normalizes its own data;
    - :class:`DCTDatasetMapper` for the training and test loaders (Detectron2's own for RGB
      models), with ``INPUT.DCT.ON_BAD_IMAGE`` and a count of skipped images;
    - crash-safe checkpoints that run no code from the files they load (``trust_checkpoint``
      allows pickled objects); the model itself refuses weights of another channel selection;
    - the channel gate's learning rate factor;
    - SIGTERM and Ctrl-C save a checkpoint of the current iteration before the run stops
      (:class:`~.interruption.RunInterrupted`); a data-loader worker that dies stops it with
      :class:`DataLoaderWorkerError`;
    - COCO evaluation that runs on either Detectron2: the fast C++ one where the compiled op
      exists, pycocotools' otherwise.

    Use it as ``DefaultTrainer``: ``trainer = DCTTrainer(cfg); trainer.resume_or_load(False);
    trainer.train()``; ``DCTTrainer.test(cfg, model)`` evaluates.
    """

    def __init__(self, cfg, trust_checkpoint: bool = False):
        if not logging.getLogger("freqdet").isEnabledFor(logging.INFO):  # as DefaultTrainer does for detectron2
            setup_logger(name="freqdet", distributed_rank=comm.get_rank())
        check_config(cfg)
        self.trust_checkpoint = trust_checkpoint  # read by build_hooks, which DefaultTrainer.__init__ calls
        super().__init__(ensure_dct_stats(cfg))

    def build_hooks(self):
        # DefaultTrainer.__init__ makes its checkpointer before calling build_hooks, whose
        # PeriodicCheckpointer takes self.checkpointer: swap it for ours here, before that.
        old = self.checkpointer
        self.checkpointer = FreqdetCheckpointer(
            old.model, old.save_dir, trust=self.trust_checkpoint, **old.checkpointables
        )
        hooks = super().build_hooks()
        if self.cfg.INPUT.DCT.ON_BAD_IMAGE == "skip" and comm.is_main_process():
            hooks.insert(-1, SkippedImagesHook(os.path.join(self.cfg.OUTPUT_DIR, "skipped_images.tsv")))
        self.interruption = InterruptionHook(self.checkpointer)
        return hooks + [self.interruption]  # last: after this step's metrics and periodic checkpoint

    def train(self):
        """``DefaultTrainer.train``, with what stops it for a cause the user can fix raised as one of
        :data:`TRAINING_STOPS`, whose message says the fix (the tools print it as one line)."""
        detectron2_loop = logging.getLogger("detectron2.engine.train_loop")
        quiet = _WithoutTracebackOfTrainingStops()
        detectron2_loop.addFilter(quiet)
        try:
            return super().train()
        except RunInterrupted:
            raise
        except Exception as e:
            if self.interruption.signum is not None:  # the signal cut the step short: keep the one before
                raise self.interruption.stop(self.iter - 1) from e
            if _worker_died(e):
                raise DataLoaderWorkerError(
                    f"the data loader failed at iteration {self.iter} ({one_line(e)}): a worker process died; if "
                    "the system ran out of memory, lower DATALOADER.NUM_WORKERS or SOLVER.IMS_PER_BATCH, then "
                    "continue with --resume"
                ) from e
            if isinstance(e, ImageDecodeError):
                raise ImageDecodeError(
                    f"{one_line(e)}; training stopped at iteration {self.iter} (INPUT.DCT.ON_BAD_IMAGE 'raise'): "
                    "restore or remove the file, or set INPUT.DCT.ON_BAD_IMAGE skip, then continue with --resume"
                ) from e
            raise
        finally:
            detectron2_loop.removeFilter(quiet)

    @classmethod
    def build_optimizer(cls, cfg, model):
        """Detectron2's optimizer, the channel gate's parameters at ``MODEL.DCT.GATE.LR_FACTOR`` x the LR."""
        optimizer = super().build_optimizer(cfg, model)
        factor = cfg.MODEL.DCT.GATE.LR_FACTOR
        gate_module = getattr(model, "gate", None)  # called before the model is wrapped in DDP
        gate = {id(p) for p in gate_module.parameters()} if gate_module is not None else set()
        if factor == 1.0 or not gate:
            return optimizer
        groups = []
        for group in optimizer.param_groups:
            for is_gate in (False, True):
                params = [p for p in group["params"] if (id(p) in gate) == is_gate]
                if params:
                    groups.append(dict(group, params=params, lr=group["lr"] * (factor if is_gate else 1.0)))
        optimizer.param_groups.clear()
        for group in groups:
            optimizer.add_param_group(group)
        return optimizer

    @classmethod
    def build_train_loader(cls, cfg):
        mapper = build_mapper(cfg, True)
        if cfg.INPUT.DCT.ON_BAD_IMAGE != "skip" or not isinstance(mapper, DCTDatasetMapper):
            return build_detection_train_loader(cfg, mapper=mapper)
        # Detectron2's own dataset, sampler and batching, with skipped images replaced by the
        # next one in order (its MapDataset would retry at random, and fails on Python 3.11).
        kwargs = build_detection_train_loader.from_config(cfg, mapper=mapper)
        kwargs["dataset"] = SkipBadImages(DatasetFromList(kwargs["dataset"], copy=False), mapper)
        kwargs["mapper"] = None
        return build_detection_train_loader(**kwargs)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_detection_test_loader(cfg, dataset_name, mapper=build_mapper(cfg, False))

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return COCOEvaluator(dataset_name, output_dir=output_folder, use_fast_impl=has_compiled_ops())
