"""What freqdet's command-line tools share: ``--register-coco`` (COCO-format datasets registered
from the command line, with their class names and class count), and errors a user can fix
reported in one line instead of a traceback (``--debug`` shows it)."""

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
from contextlib import contextmanager
from typing import List, Sequence, Tuple, Type

import detectron2.utils.comm as comm
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from torch.multiprocessing import ProcessExitedException

from .interruption import forwarding_signals


def add_register_coco_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--register-coco",
        nargs=3,
        action="append",
        default=[],
        metavar=("NAME", "JSON", "IMAGE_DIR"),
        help="register a COCO-format dataset (instances JSON and image folder) under NAME, for "
        "DATASETS.TRAIN / DATASETS.TEST; repeatable",
    )


def register_coco(name: str, json_file: str, image_dir: str) -> List[str]:
    """Register a COCO-format instances dataset as Detectron2's ``register_coco_instances`` does,
    with its class names and category-id mapping read from the JSON now (sorted by category id,
    as Detectron2's loader maps them), so the metadata is complete before the dataset is first
    loaded. Returns the class names."""
    for path, kind in ((json_file, "annotation JSON"), (image_dir, "image folder")):
        if not os.path.exists(path):
            raise ValueError(f"--register-coco {name}: the {kind} {path!r} does not exist")
    try:
        with open(json_file) as f:
            categories = sorted(json.load(f)["categories"], key=lambda c: c["id"])
        classes = [c["name"] for c in categories]
        id_map = {c["id"]: i for i, c in enumerate(categories)}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(
            f"--register-coco {name}: {json_file!r} is not a COCO instances JSON with 'categories' ({e})"
        ) from e
    if name in DatasetCatalog.list():
        registered = MetadataCatalog.get(name)
        if (registered.get("json_file", None), registered.get("image_root", None)) == (json_file, image_dir):
            return classes
        raise ValueError(f"--register-coco {name}: a dataset of that name is registered already; pick another name")
    register_coco_instances(
        name, {"thing_classes": classes, "thing_dataset_id_to_contiguous_id": id_map}, json_file, image_dir
    )
    return classes


def register_coco_datasets(specs: Sequence[Sequence[str]]) -> dict:
    """Register each (name, json, image dir) of ``--register-coco``; {name: class names}."""
    return {name: register_coco(name, json_file, image_dir) for name, json_file, image_dir in specs}


def classes_override(cfg, registered: dict, opts: Sequence[str]) -> List[str]:
    """``MODEL.ROI_HEADS.NUM_CLASSES N`` for a training set registered from the command line,
    unless the overrides set it: a user's dataset needs no hand-counted classes."""
    train = [registered[n] for n in cfg.DATASETS.TRAIN if n in registered]
    if not train or "MODEL.ROI_HEADS.NUM_CLASSES" in list(opts)[0::2]:
        return []
    count = len(train[0])
    if any(len(c) != count for c in train):
        raise ValueError(
            f"the training sets {list(cfg.DATASETS.TRAIN)} have different numbers of classes; "
            "set MODEL.ROI_HEADS.NUM_CLASSES"
        )
    return ["MODEL.ROI_HEADS.NUM_CLASSES", count]


DEBUG_ENV = "FREQDET_DEBUG"


def training_argument_parser() -> argparse.ArgumentParser:
    """Detectron2's ``default_argument_parser`` with what freqdet's training tools add:
    ``--register-coco``, ``--debug`` and the flag that trusts pickled checkpoints."""
    from detectron2.engine import default_argument_parser

    from ..safe_load import TRUST_FLAG

    parser = default_argument_parser()
    add_register_coco_argument(parser)
    add_config_arguments(parser)
    add_debug_argument(parser)
    parser.add_argument(
        TRUST_FLAG,
        action="store_true",
        help="allow checkpoints that need pickled Python objects (they can run code when loaded)",
    )
    return parser


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """``--dct-input N`` (switch any supported config to N DCT channels), ``--dct-pattern`` and
    ``--config-adder module:function`` (a project's keys, e.g. PointRend's)."""
    parser.add_argument(
        "--dct-input",
        type=int,
        default=None,
        metavar="N",
        help="switch the config (one of Detectron2's, a project's or your own) to N DCT channels: its "
        "meta-architecture and backbone become their DCT twins, every other key stays (freqdet.use_dct_input)",
    )
    parser.add_argument(
        "--dct-pattern", default="square", choices=("square", "triangle"), help="the channels --dct-input picks"
    )
    parser.add_argument(
        "--config-adder",
        action="append",
        default=[],
        metavar="MODULE:FUNCTION",
        help="a project's function adding its config keys before the file is read (e.g. "
        "point_rend:add_pointrend_config); repeatable",
    )


def add_debug_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--debug",
        action="store_true",
        help=f"show the traceback of errors otherwise reported in one line (or set {DEBUG_ENV}=1)",
    )


def one_line(error: BaseException) -> str:
    """An error's message on one line; for an error re-raised from a DataLoader worker (whose
    message carries the worker's traceback), the worker's own message."""
    text = str(error)
    if "Original Traceback" in text:
        last = text.strip().splitlines()[-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return " ".join(text.split())


@contextmanager
def user_errors(errors: Tuple[Type[BaseException], ...], debug: bool = False):
    """Turn ``errors`` raised inside the block into ``error: <one line>`` and an exit: status 2,
    or the error's own ``exit_code``. With ``debug`` (or ``FREQDET_DEBUG=1``) the error
    propagates with its traceback. In a process of a run launched by :func:`launched`, the line
    goes to a file that the launching process prints once the run has stopped (so that it is
    printed once, whichever processes met it, and before any is terminated)."""
    try:
        yield
    except errors as e:
        if debug or os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            raise
        folder = os.environ.get(_ERRORS_ENV)
        if folder and comm.get_world_size() > 1:
            with open(os.path.join(folder, f"{comm.get_rank():06d}"), "w") as f:
                f.write(one_line(e))
        else:
            sys.stderr.write(f"error: {one_line(e)}\n")
            sys.stderr.flush()
        sys.exit(getattr(e, "exit_code", 2))


_ERRORS_ENV = "FREQDET_ERRORS_DIR"


@contextmanager
def launched():
    """Around Detectron2's ``launch``: when a process of a multi-process run stops on a
    :func:`user_errors` error, print the error of the lowest-ranked process that met one, once
    (``[process R]`` when it is not the main one), and exit with its status. SIGTERM and Ctrl-C
    reach every worker, which save and stop (:func:`~freqdet.detection.interruption.forwarding_signals`)."""
    folder = tempfile.mkdtemp(prefix="freqdet-errors-")
    os.environ[_ERRORS_ENV] = folder
    try:
        with forwarding_signals() as received:
            yield
    except ProcessExitedException as e:
        reports = sorted(os.listdir(folder))
        if reports:
            rank = int(reports[0])
            with open(os.path.join(folder, reports[0])) as f:
                line = f.read()
            sys.stderr.write(f"error: {f'[process {rank}] ' if rank else ''}{line}\n")
            sys.exit(e.exit_code)
        if received["signum"]:  # the workers ended before their training could save anything
            name = signal.Signals(received["signum"]).name
            sys.stderr.write(f"error: stopped by {name} before training began: nothing to save\n")
            sys.exit(128 + received["signum"])
        if e.signal_name:  # killed: it could say nothing itself
            sys.exit(f"error: {e}")
        sys.exit(e.exit_code)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        del os.environ[_ERRORS_ENV]
