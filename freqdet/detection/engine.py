"""Training: :class:`DCTTrainer`, the config and dataset checks before it, and the training set's DCT statistics."""

import copy
import logging
import os

import detectron2.utils.comm as comm
from detectron2.data import (
    DatasetCatalog,
    DatasetMapper,
    MetadataCatalog,
    build_detection_test_loader,
    build_detection_train_loader,
)
from detectron2.data.common import DatasetFromList
from detectron2.engine import DefaultTrainer, HookBase
from detectron2.evaluation import COCOEvaluator
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.utils.logger import setup_logger

from ..dct import NUM_CHANNELS
from ..demo import prepare_demo
from ..stats import ChannelStats, compute_stats, load_matching, save_stats
from . import inputs
from .bad_images import SkipBadImages, skipped_images
from .checkpoint import FreqdetCheckpointer
from .config import (
    check_can_learn,
    check_device,
    dct_selection,
    dct_source,
    dct_stats_from_config,
    on_bad_image,
    transform_on,
    wire_dtype,
)
from .datasets import DEMO_DATASETS
from .mapper import DCTDatasetMapper
from .meta_arch import DCTGeneralizedRCNN

logger = logging.getLogger(__name__)


class DatasetNotFoundError(FileNotFoundError):
    """A dataset named in the config is not registered or its files are missing."""


def is_dct_model(cfg) -> bool:
    return issubclass(META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE), DCTGeneralizedRCNN)


def build_mapper(cfg, is_train: bool):
    """The DCT mapper for frequency-domain models, Detectron2's own for RGB baselines."""
    return DCTDatasetMapper(cfg, is_train) if is_dct_model(cfg) else DatasetMapper(cfg, is_train)


def has_compiled_ops() -> bool:
    """False where detectron2._C is freqdet's stand-in (no C++ COCO evaluation)."""
    from detectron2 import _C

    return not getattr(_C, "FREQDET_STANDIN", False)


_COCO_LAYOUT = """Detectron2 looks for COCO under $DETECTRON2_DATASETS (now {root!r}) in this layout:
  coco/annotations/instances_train2017.json
  coco/annotations/instances_val2017.json
  coco/train2017/*.jpg
  coco/val2017/*.jpg
Download it from https://cocodataset.org and set DETECTRON2_DATASETS, or try freqdet on
the built-in demo data:
  python tools/train_net.py --config-file configs/demo/mask_rcnn_dct_demo.yaml"""


def check_datasets(cfg, names=None) -> None:
    """Make sure every dataset the config names is registered and on disk (generating the demo).

    Raises :class:`DatasetNotFoundError` with the expected layout instead of a traceback
    from deep inside the data loader.
    """
    names = names if names is not None else list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST)
    for name in names:
        if name not in DatasetCatalog.list():
            raise DatasetNotFoundError(
                f"dataset {name!r} is not registered. Register it with Detectron2's DatasetCatalog "
                "(e.g. register_coco_instances) before training, or use one of the built-in demo "
                f"datasets: {', '.join(DEMO_DATASETS)}"
            )
        if name in DEMO_DATASETS:
            prepare_demo()
            continue
        meta = MetadataCatalog.get(name)
        paths = [p for p in (meta.get("json_file", None), meta.get("image_root", None)) if p]
        missing = [p for p in paths if not os.path.exists(p)]
        if missing:
            message = f"dataset {name!r} is not on this machine: missing {', '.join(missing)}."
            if name.startswith("coco_"):
                message += "\n" + _COCO_LAYOUT.format(root=os.getenv("DETECTRON2_DATASETS", "datasets"))
            raise DatasetNotFoundError(message)


def check_config(cfg, training: bool = True) -> None:
    """Fail early, with one-line messages that name the key or file, on what would fail later.

    Checks the device, that a training config can learn (:func:`~.config.check_can_learn`),
    the datasets (the test sets only when not ``training``; see :func:`check_datasets`) and,
    for frequency-domain models, the channel selection, the wire dtype, where the transform
    runs, the bad-image policy and any configured statistics.
    """
    check_device(cfg)
    if training:
        check_can_learn(cfg)
    check_datasets(cfg, None if training else list(cfg.DATASETS.TEST))
    if is_dct_model(cfg):
        selection = dct_selection(cfg)
        wire_dtype(cfg)
        transform_on(cfg)
        dct_source(cfg)
        on_bad_image(cfg)
        dct_stats_from_config(cfg, selection)


def compute_config_stats(cfg, num_images: int) -> ChannelStats:
    """Per-channel mean and std of all 192 channels over the config's training sets.

    Images are mapped as at test time (``DCTDatasetMapper`` in inference mode, the
    config's source and geometry), so the statistics describe what the model normalizes.
    Unusable images follow ``INPUT.DCT.ON_BAD_IMAGE``: they stop the pass, or are left out
    and listed in ``OUTPUT_DIR/skipped_images.tsv``.
    """
    dicts = []
    for name in cfg.DATASETS.TRAIN:
        dicts.extend(DatasetCatalog.get(name))
    mapper_cfg = copy.deepcopy(cfg)
    mapper_cfg.defrost()
    mapper_cfg.MODEL.DCT.INDICES = list(range(NUM_CHANNELS))
    mapper_cfg.INPUT.DCT.WIRE_DTYPE = "int16" if mapper_cfg.INPUT.DCT.SOURCE == "jpeg" else "float32"
    mapper_cfg.MODEL.DCT.TRANSFORM_ON = "cpu"
    bad_image_log = os.path.join(cfg.OUTPUT_DIR, "skipped_images.tsv") if on_bad_image(cfg) == "skip" else None
    mapper = DCTDatasetMapper(mapper_cfg, is_train=False, bad_image_log=bad_image_log)
    channels = list(range(NUM_CHANNELS))
    logger.info(
        f"Computing DCT channel statistics over {min(num_images or len(dicts), len(dicts))} of the "
        f"{len(dicts)} training images (MODEL.DCT.STATS_NUM_IMAGES {num_images})"
    )

    def coefficients(d):
        mapped = mapper(d)
        return (
            None
            if mapped is None
            else inputs.coefficients(mapped, channels, "cpu", mapper.image_format, mapper.wire_dtype)
        )

    return compute_stats(dicts, coefficients, channels, num_images)


def ensure_dct_stats(cfg):
    """Return ``cfg`` with DCT statistics: computed over the training set when none are configured.

    The main process computes them (with a progress bar) into ``OUTPUT_DIR/dct_stats.json``
    unless that file holds them already (e.g. on ``--resume``); other processes wait and read it.
    """
    if not is_dct_model(cfg) or dct_stats_from_config(cfg, dct_selection(cfg)) is not None:
        return cfg
    path = os.path.join(cfg.OUTPUT_DIR, "dct_stats.json")
    if comm.is_main_process() and load_matching(path, dct_selection(cfg)) is None:
        stats = compute_config_stats(cfg, cfg.MODEL.DCT.STATS_NUM_IMAGES)
        save_stats(stats, path)
        logger.info(f"DCT channel statistics of {stats.info['num_images']} training images written to {path}")
    comm.synchronize()
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.DCT.STATS_FILE = path
    cfg.freeze()
    return cfg


class SkippedImagesHook(HookBase):
    """Puts the number of training images skipped so far (ON_BAD_IMAGE "skip") into EventStorage."""

    def __init__(self, path: str, period: int = 20):
        self.path, self.period = path, period

    def after_step(self):
        last = self.trainer.iter + 1 >= self.trainer.max_iter
        if (self.trainer.iter + 1) % self.period == 0 or last:
            count = len(skipped_images(self.path))
            self.trainer.storage.put_scalar("data/skipped_images", count, smoothing_hint=False)
            if last and count:
                logger.warning(f"{count} bad training images were skipped; they are listed in {self.path}")


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
        return hooks

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
