"""The checks before a run: the config and its datasets, failing early with one-line messages."""

import os
import tempfile

from detectron2.data import DatasetCatalog, MetadataCatalog

from ..demo import prepare_demo
from .config import (
    check_amp_device,
    check_can_learn,
    check_device,
    dct_selection,
    dct_source,
    dct_stats_from_config,
    on_bad_image,
    preprocess,
    transform_on,
    wire_dtype,
)
from .datasets import DEMO_DATASETS
from .mapper import is_dct_model


class DatasetNotFoundError(FileNotFoundError):
    """A dataset named in the config is not registered or its files are missing."""


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


class OutputDirError(OSError):
    """The output folder cannot be created or written to."""


def check_output_dir(path: str) -> None:
    """Create ``path`` if needed and write a file there; :class:`OutputDirError` naming it if either fails."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise OutputDirError(
            f"cannot write to the output folder {os.path.abspath(path)!r} ({e.strerror or e}): set OUTPUT_DIR to "
            "a folder you can write to"
        ) from None


def check_amp(cfg) -> None:
    """ValueError if ``SOLVER.AMP.ENABLED`` asks for mixed precision where Detectron2's AMPTrainer
    cannot run it (it needs CUDA)."""
    check_amp_device(cfg.SOLVER.AMP.ENABLED, str(cfg.MODEL.DEVICE), "cfg.SOLVER.AMP.ENABLED")


def check_config(cfg, training: bool = True) -> None:
    """Fail early, with one-line messages that name the key or file, on what would fail later.

    Checks the device, that the output folder can be written to, that a training config can
    learn (:func:`~.config.check_can_learn`) in its precision (:func:`check_amp`), the datasets
    (the test sets only when not ``training``; see :func:`check_datasets`) and, for
    frequency-domain models, the channel
    selection, the wire dtype, where the transform runs, the bad-image policy and any
    configured statistics.
    """
    check_device(cfg)
    check_output_dir(cfg.OUTPUT_DIR)
    if training:
        check_can_learn(cfg)
        check_amp(cfg)
    check_datasets(cfg, None if training else list(cfg.DATASETS.TEST))
    if is_dct_model(cfg):
        selection = dct_selection(cfg)
        wire_dtype(cfg)
        transform_on(cfg)
        dct_source(cfg)
        preprocess(cfg)
        on_bad_image(cfg)
        dct_stats_from_config(cfg, selection)
