"""DCTTrainer: Detectron2's DefaultTrainer for freqdet's configs."""

import importlib.util
import logging
import os
import re
import traceback
from contextlib import contextmanager
from typing import Sequence, Tuple

import detectron2.utils.comm as comm
from detectron2.data import MetadataCatalog, build_detection_test_loader, build_detection_train_loader
from detectron2.engine import DefaultTrainer
from detectron2.evaluation import COCOEvaluator
from detectron2.utils.logger import setup_logger

from ..io import ImageDecodeError
from .bad_images import SkippedImagesHook, build_train_loader
from .checkpoint import CheckpointSaveError, FreqdetCheckpointer
from .checks import check_config
from .cli import one_line
from .dataset_stats import ensure_dct_stats
from .gate import gate_lr_groups
from .interruption import InterruptionHook, RunInterrupted, StopNow, place_interruption
from .mapper import build_mapper

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
        return not (isinstance(error, (*TRAINING_STOPS, StopNow)) or (error is not None and _worker_died(error)))


YACS_FIXES = ("DATALOADER.NUM_WORKERS or SOLVER.IMS_PER_BATCH", "set INPUT.DCT.ON_BAD_IMAGE skip")
LAZY_FIXES = (
    "dataloader.train.num_workers or dataloader.train.total_batch_size",
    "set dataloader.train.mapper.bad_image_log=FILE",
)


@contextmanager
def training_stops(trainer, interruption: InterruptionHook, fixes: Tuple[str, str] = YACS_FIXES):
    """Around a Detectron2 training loop (``trainer.train()``, with ``interruption`` among its
    hooks): what stops it for a cause the user can fix is raised as one of :data:`TRAINING_STOPS`,
    saying the fix (``fixes``: the config keys that lighten the data loader, and how to skip
    unusable images), and Detectron2's log of its traceback is left out (the tools print one
    line). After a signal, whatever raised, the last finished iteration is saved."""
    lighter_loader, skip_images = fixes
    detectron2_loop = logging.getLogger("detectron2.engine.train_loop")
    quiet = _WithoutTracebackOfTrainingStops()
    detectron2_loop.addFilter(quiet)
    try:
        yield
    except RunInterrupted:
        raise
    except Exception as e:
        if interruption.signum is not None:  # stopped by the signal, or a step it cut short
            raise interruption.stop(interruption.completed) from e
        if _worker_died(e):
            raise DataLoaderWorkerError(
                f"the data loader failed at iteration {trainer.iter} ({one_line(e)}): a worker process died; if "
                f"the system ran out of memory, lower {lighter_loader}, then continue with --resume"
            ) from e
        if isinstance(e, ImageDecodeError):
            raise ImageDecodeError(
                f"{one_line(e)}; training stopped at iteration {trainer.iter} (unusable images not skipped): "
                f"restore or remove the file, or {skip_images}, then continue with --resume"
            ) from e
        raise
    finally:
        detectron2_loop.removeFilter(quiet)


def build_evaluator(dataset_name: str, output_folder: str, kpt_oks_sigmas: Sequence[float] = ()):
    """The evaluator(s) of a dataset by its metadata's ``evaluator_type``, as Detectron2's
    ``tools/train_net.py`` chooses them ("coco": boxes, masks and keypoints; "sem_seg";
    "coco_panoptic_seg": semantic, COCO and panoptic; Cityscapes; "pascal_voc"; "lvis"), with COCO's
    evaluation in pycocotools where Detectron2's compiled one is missing. ValueError in one line
    for a type without an evaluator, or one whose package is missing (panopticapi, lvis,
    cityscapesscripts). ``kpt_oks_sigmas``: ``TEST.KEYPOINT_OKS_SIGMAS``, for keypoints other than COCO's 17."""
    from detectron2 import evaluation as E

    kind = MetadataCatalog.get(dataset_name).get("evaluator_type", None)
    evaluators = []
    if kind in ("sem_seg", "coco_panoptic_seg"):
        evaluators.append(E.SemSegEvaluator(dataset_name, distributed=True, output_dir=output_folder))
    if kind in ("coco", "coco_panoptic_seg"):
        evaluators.append(
            COCOEvaluator(
                dataset_name,
                output_dir=output_folder,
                use_fast_impl=has_compiled_ops(),
                kpt_oks_sigmas=tuple(kpt_oks_sigmas),
            )
        )
    single = {
        "coco_panoptic_seg": (lambda: E.COCOPanopticEvaluator(dataset_name, output_folder), "panopticapi"),
        "cityscapes_instance": (lambda: E.CityscapesInstanceEvaluator(dataset_name), "cityscapesscripts"),
        "cityscapes_sem_seg": (lambda: E.CityscapesSemSegEvaluator(dataset_name), "cityscapesscripts"),
        "pascal_voc": (lambda: E.PascalVOCDetectionEvaluator(dataset_name), None),
        "lvis": (lambda: E.LVISEvaluator(dataset_name, output_dir=output_folder), "lvis"),
    }
    if kind in single:
        make, package = single[kind]
        if package is not None and importlib.util.find_spec(package) is None:
            if evaluators:  # panoptic quality needs panopticapi; the semantic and COCO parts do not
                logger.warning(f"{dataset_name}: no panoptic quality ({package} is not installed; pip install it)")
            else:
                raise ValueError(
                    f"the evaluator of {dataset_name!r} (evaluator_type {kind!r}) needs the package {package}, "
                    "which is not installed: pip install it, or set DATASETS.TEST to () to train without evaluation"
                )
        else:
            evaluators.append(make())
    if not evaluators:
        raise ValueError(
            f"no evaluator for {dataset_name!r}, whose evaluator_type is {kind!r}: set its metadata's evaluator_type "
            "to coco, sem_seg, coco_panoptic_seg, cityscapes_instance, cityscapes_sem_seg, pascal_voc or lvis, or "
            "override DCTTrainer.build_evaluator"
        )
    return evaluators[0] if len(evaluators) == 1 else E.DatasetEvaluators(evaluators)


def show_freqdet_log() -> None:
    """Log freqdet's messages as Detectron2's (``DefaultTrainer`` sets up the ``detectron2`` logger
    only), unless the program set up the ``freqdet`` logger itself."""
    if not logging.getLogger("freqdet").isEnabledFor(logging.INFO):
        setup_logger(name="freqdet", distributed_rank=comm.get_rank())


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
        show_freqdet_log()
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
        return place_interruption(hooks, self.interruption)

    def train(self):
        """``DefaultTrainer.train``, with what stops it for a cause the user can fix raised as one of
        :data:`TRAINING_STOPS`, whose message says the fix (the tools print it as one line)."""
        with training_stops(self, self.interruption):
            return super().train()

    @classmethod
    def build_optimizer(cls, cfg, model):
        """Detectron2's optimizer, the channel gate's parameters at ``MODEL.DCT.GATE.LR_FACTOR`` x the LR."""
        optimizer = super().build_optimizer(cfg, model)
        groups = gate_lr_groups(optimizer.param_groups, model, cfg.MODEL.DCT.GATE.LR_FACTOR)
        optimizer.param_groups.clear()
        for group in groups:
            optimizer.add_param_group(group)
        return optimizer

    @classmethod
    def build_train_loader(cls, cfg):
        mapper = build_mapper(cfg, True)
        return build_train_loader(**build_detection_train_loader.from_config(cfg, mapper=mapper))

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_detection_test_loader(cfg, dataset_name, mapper=build_mapper(cfg, False))

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        """The evaluator of the dataset's ``evaluator_type``, as Detectron2's ``tools/train_net.py`` picks it."""
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return build_evaluator(dataset_name, output_folder, cfg.TEST.KEYPOINT_OKS_SIGMAS)
