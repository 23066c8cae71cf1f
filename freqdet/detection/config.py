"""Config keys of freqdet, added to a Detectron2 config by :func:`add_freqdet_config`."""

import difflib
import importlib
import os
import re
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import yaml
from detectron2.config import CfgNode as CN

from ..config_files import config_path
from ..dct import WIRE_DTYPES, resolve_channels
from ..io import MAX_IMAGE_PIXELS
from ..stats import ChannelStats, load_stats

TRANSFORM_PLACES = ("cpu", "device")
SOURCES = ("planes", "pixels", "jpeg")
PREPROCESSES = ("freqdet", "release")
BAD_IMAGE_POLICIES = ("raise", "skip")


def add_freqdet_config(cfg: CN) -> None:
    """Add freqdet's keys (``MODEL.DCT``, ``INPUT.DCT``) to a Detectron2 config, in place."""
    cfg.MODEL.DCT = CN()
    # Which frequency channels the model takes: a count with a pattern (see
    # freqdet.dct.channel_indices), or an explicit list of global indices 0..191 that
    # overrides both.
    cfg.MODEL.DCT.CHANNELS = 24
    cfg.MODEL.DCT.PATTERN = "square"
    cfg.MODEL.DCT.INDICES = []
    # Per-channel normalization applied on the device. STATS_FILE is a JSON file with
    # "mean" and "std" lists and the "channels" they describe (freqdet/stats.py; without
    # "channels": all 192, or the selected ones); MEAN and STD lists of 192 values or of
    # the selected ones, when given, override it. With neither, a model normalizes with
    # the statistics freqdet ships (natural photographs, freqdet/natural_photo_stats.json),
    # and training (tools/train_net.py, freqdet.DCTTrainer) first computes the training
    # set's own into OUTPUT_DIR/dct_stats.json. The statistics are buffers of the model, so
    # they are saved in, and restored from, every checkpoint.
    cfg.MODEL.DCT.STATS_FILE = ""
    cfg.MODEL.DCT.MEAN = []
    cfg.MODEL.DCT.STD = []
    # How many training images tools/train_net.py reads to compute missing statistics.
    cfg.MODEL.DCT.STATS_NUM_IMAGES = 500

    # Learned channel selection (freqdet/detection/gate.py): a gate in the backbone's stem
    # switches each input channel on or off per image. NAME "" means no gate; LAMBDA
    # weighs loss_gate, the number of channels on per image.
    cfg.MODEL.DCT.GATE = CN()
    cfg.MODEL.DCT.GATE.NAME = ""
    cfg.MODEL.DCT.GATE.LAMBDA = 0.01
    cfg.MODEL.DCT.GATE.NORM = "BN"
    cfg.MODEL.DCT.GATE.TAU = 1.0
    cfg.MODEL.DCT.GATE.INIT_OFF = 0.1
    cfg.MODEL.DCT.GATE.INIT_ON = 2.0
    # The gate's learning rate is the solver's times this (short schedules need it larger).
    cfg.MODEL.DCT.GATE.LR_FACTOR = 1.0

    # The official release's trained detectors (configs/release/, freqdet/detection/release.py):
    # ReleaseDCTRCNN computes the release's (mmdetection v1.0) inference step for step. Each key
    # is one step where mmdetection v1 differs from Detectron2: True takes the release's way,
    # False Detectron2's, so that what each one moves can be measured.
    cfg.MODEL.DCT.RELEASE = CN()
    cfg.MODEL.DCT.RELEASE.ANCHORS = True  # anchors centred at (stride - 1) / 2, corners rounded
    cfg.MODEL.DCT.RELEASE.BOX_CODER = True  # widths x2 - x1 + 1, boxes clamped to the image size - 1
    cfg.MODEL.DCT.RELEASE.NMS = True  # IoU with the + 1 widths
    cfg.MODEL.DCT.RELEASE.ROI_LEVELS = True  # floor(log2(sqrt((w + 1)(h + 1)) / 56)), clamped to p2..p5
    cfg.MODEL.DCT.RELEASE.ROI_ALIGN = True  # RoIAlign over [x1, x2 + 1] without the half-pixel shift, 2x2 samples
    cfg.MODEL.DCT.RELEASE.RESCALE = True  # boxes divided by one scale factor before the class-wise NMS
    cfg.MODEL.DCT.RELEASE.MASK_PASTE = True  # masks resized to the truncated integer box, then thresholded

    # Where the frequency transform runs: "cpu" (in the data loader, which then ships
    # coefficients in INPUT.DCT.WIRE_DTYPE) or "device" (the loader ships the augmented
    # uint8 pixels and the model transforms them on its device; the coefficients are
    # rounded as the wire dtype would round them, so both give the same numbers as
    # INPUT.DCT.SOURCE "pixels"; the default "planes" reads the JPEG's own YCbCr instead, on the
    # CPU only, whose coefficients differ from its decoded pixels' by a fraction of a unit on average).
    cfg.MODEL.DCT.TRANSFORM_ON = "cpu"

    cfg.INPUT.DCT = CN()
    # The dtype coefficients travel in: "int16", "int8" or "float32" (freqdet/dct/wire.py).
    cfg.INPUT.DCT.WIRE_DTYPE = "int16"
    # Let the frequency transform absorb the augmentation's resizes and flips (and the crop
    # and grey pad of FixedSizeCrop) instead of applying them to the pixels first (faster;
    # Pillow's uint8 rounding of the resized pixels is the only difference). Only when the
    # augmentations are of those kinds.
    cfg.INPUT.DCT.FUSE_RESIZE = True
    # Where the coefficients come from: "planes" (a JPEG's own Y, Cb and Cr planes, the paper's
    # upscaled transform computed from them without converting colours to BGR and back; see
    # freqdet/io/planes.py; used where the transform absorbs the augmentations and runs on the
    # CPU, and the file is a YCbCr or greyscale JPEG with chroma subsampled 1 or 2 per axis;
    # "pixels" otherwise), "pixels" (decode to INPUT.FORMAT, augment, the paper's upscaled
    # transform) or "jpeg" (the file's own quantized coefficients, read without decoding
    # pixels and resampled to the training grid on the device; see freqdet/io/coefficients.py).
    # "jpeg" ships int16, takes only resize and flip augmentations, and runs on the CPU path.
    cfg.INPUT.DCT.SOURCE = "planes"
    # How a test image becomes coefficients: "freqdet" (the paper's pipeline as freqdet computes
    # it, INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST) or "release" (the official release's detection
    # pipeline step for step: mmcv's resize to MAX_SIZE_TEST x MIN_SIZE_TEST keeping the ratio,
    # pixels padded to 32, OpenCV 2x / 4x upscales, JPEG re-encodes; freqdet/release_pipeline.py;
    # needs OpenCV). Training always uses "freqdet".
    cfg.INPUT.DCT.PREPROCESS = "freqdet"
    # What a training run does with an image it cannot use (corrupt, truncated, not an
    # image, larger than MAX_IMAGE_PIXELS, or not the size its annotation says): "raise"
    # stops with the file and the reason; "skip" logs it once, counts it in EventStorage
    # (data/skipped_images), lists it in OUTPUT_DIR/skipped_images.tsv and goes on with
    # other images. Evaluation always raises.
    cfg.INPUT.DCT.ON_BAD_IMAGE = "raise"
    # Images with more pixels are refused from their header (0: no limit). The only limit on
    # JPEGs; other formats, read by Pillow, also meet its PIL.Image.MAX_IMAGE_PIXELS.
    cfg.INPUT.DCT.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS

    # After training (and with --eval-only), tools/train_net.py draws this many images of
    # the first test set, ground truth next to predictions, into OUTPUT_DIR/predictions.png,
    # showing the predictions that score at least VIS_SCORE_THRESH (0.5, as Detectron2's
    # demo draws; the evaluation keeps MODEL.ROI_HEADS.SCORE_THRESH_TEST).
    cfg.TEST.VIS_IMAGES = 0
    cfg.TEST.VIS_SCORE_THRESH = 0.5


class ConfigKeyError(ValueError):
    """A config file or override names a key that does not exist."""


class ConfigFileError(ValueError):
    """A config file that is not valid YAML."""


def _yaml_error_message(error: yaml.YAMLError, path: str) -> str:
    """The file, line and column (1-based) of a YAML error, and what is wrong there."""
    mark = getattr(error, "problem_mark", None)
    where = f"{getattr(mark, 'name', None) or path}"
    if mark is not None:
        where += f", line {mark.line + 1}, column {mark.column + 1}"
    problem = getattr(error, "problem", None) or str(error)
    context = getattr(error, "context", None)
    return f"config file {where}: {problem}" + (f" ({context})" if context else "") + ": fix the YAML there"


def config_adder(spec: Union[str, Callable]) -> Callable:
    """A project's config function (``add_pointrend_config``) from ``"module:function"``, or itself."""
    if callable(spec):
        return spec
    module, _, name = str(spec).partition(":")
    if not module or not name:
        raise ValueError(f"config adder {spec!r}: give it as module:function (e.g. point_rend:add_pointrend_config)")
    try:
        adder = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"config adder {spec!r} cannot be loaded ({e}): is {module} on PYTHONPATH?") from None
    if not callable(adder):
        raise ValueError(f"config adder {spec!r} is not a function")
    return adder


def any_config_path(config_file: str) -> str:
    """The path of ``config_file``: a file, one of freqdet's configs by name, or one of Detectron2's
    model-zoo configs by name (``COCO-Detection/retinanet_R_50_FPN_1x.yaml``); ValueError if none."""
    try:
        return config_path(config_file)
    except ValueError as ours:
        from detectron2 import model_zoo

        try:
            return model_zoo.get_config_file(config_file)
        except RuntimeError:
            raise ours from None


def load_config(
    config_file: str,
    opts: Sequence = (),
    *,
    config_adders: Sequence[Union[str, Callable]] = (),
) -> CN:
    """Detectron2's default config with freqdet's keys, merged with a file and KEY VALUE overrides.

    ``config_file`` is a path, the name of one of freqdet's configs (:mod:`freqdet.config_files`,
    e.g. ``configs/mask_rcnn_dct_R50_FPN.yaml`` from any folder) or of Detectron2's model zoo.
    ``config_adders``: a project's functions that add its keys first (``add_pointrend_config``, or
    ``"point_rend:add_pointrend_config"``). To switch the loaded config to DCT inputs, pass it to
    :func:`freqdet.use_dct_input`.
    An unknown key raises :class:`ConfigKeyError` naming it and the closest valid keys; a file
    that is not valid YAML, :class:`ConfigFileError` naming the file, line and column.
    """
    from detectron2.config import get_cfg

    cfg = get_cfg()
    add_freqdet_config(cfg)
    for adder in config_adders:
        config_adder(adder)(cfg)
    path = any_config_path(config_file)
    if path.endswith(".py"):
        raise ConfigFileError(
            f"{path} is a LazyConfig (Python): run it with Detectron2's tools/lazyconfig_train_net.py, or load it "
            "with freqdet.model_zoo.get_config / detectron2.config.LazyConfig.load (see docs/lazyconfig.md)"
        )
    opts = list(opts)
    if len(opts) % 2:
        raise ValueError(f"config overrides must be KEY VALUE pairs; got an odd number: {opts}")
    for source, merge in (
        (path, lambda: cfg.merge_from_file(path)),
        ("the overrides", lambda: cfg.merge_from_list(opts)),
    ):
        try:
            merge()
        except yaml.YAMLError as e:
            raise ConfigFileError(_yaml_error_message(e, path)) from None
        except (KeyError, AssertionError) as e:
            unknown = re.search(r"Non-existent (?:config )?key: (\S+)", str(e))
            if unknown is None:
                raise
            raise ConfigKeyError(_unknown_key_message(cfg, unknown.group(1).strip("'\""), source)) from None
    return cfg


def all_keys(cfg: CN, prefix: str = "") -> List[str]:
    """Every leaf key of a config, dotted."""
    keys = []
    for name, value in cfg.items():
        keys += all_keys(value, f"{prefix}{name}.") if isinstance(value, CN) else [prefix + name]
    return keys


def _unknown_key_message(cfg: CN, key: str, source: str) -> str:
    keys = all_keys(cfg)
    close = difflib.get_close_matches(key, keys, n=3, cutoff=0.6)
    if not close:  # the right name under another parent
        tail = key.rsplit(".", 1)[-1]
        close = [k for k in keys if k.rsplit(".", 1)[-1] == tail][:3]
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return f"unknown config key {key!r} in {source}{hint}"


def dct_selection(cfg: CN) -> Tuple[int, ...]:
    """The sorted global channel indices a config selects (validated)."""
    dct = cfg.MODEL.DCT
    try:
        if len(dct.INDICES):
            return resolve_channels(list(dct.INDICES))
        return resolve_channels(int(dct.CHANNELS), dct.PATTERN)
    except ValueError as e:
        raise ValueError(f"bad channel selection in cfg.MODEL.DCT: {e}") from e


def choice(cfg: CN, key: str, choices: Sequence[str]) -> str:
    """The value of a dotted config ``key`` that must be one of ``choices``; ValueError naming both."""
    value = cfg
    for part in key.split("."):
        value = value[part]
    if value not in choices:
        raise ValueError(f"cfg.{key} is {value!r}; use one of {tuple(choices)}")
    return value


def wire_dtype(cfg: CN) -> str:
    return choice(cfg, "INPUT.DCT.WIRE_DTYPE", sorted(WIRE_DTYPES))


def transform_on(cfg: CN) -> str:
    return choice(cfg, "MODEL.DCT.TRANSFORM_ON", TRANSFORM_PLACES)


def on_bad_image(cfg: CN) -> str:
    return choice(cfg, "INPUT.DCT.ON_BAD_IMAGE", BAD_IMAGE_POLICIES)


def preprocess(cfg: CN) -> str:
    """INPUT.DCT.PREPROCESS, checked against the keys it constrains."""
    value = choice(cfg, "INPUT.DCT.PREPROCESS", PREPROCESSES)
    if value == "release" and (
        cfg.INPUT.DCT.SOURCE == "jpeg" or cfg.INPUT.DCT.WIRE_DTYPE != "int16" or cfg.MODEL.DCT.TRANSFORM_ON != "cpu"
    ):
        raise ValueError(
            "cfg.INPUT.DCT.PREPROCESS 'release' computes int16 coefficients from pixels in the data loader: set "
            "INPUT.DCT.SOURCE 'planes' or 'pixels', INPUT.DCT.WIRE_DTYPE 'int16' and MODEL.DCT.TRANSFORM_ON 'cpu'"
        )
    return value


def dct_source(cfg: CN) -> str:
    """INPUT.DCT.SOURCE, checked against the keys it constrains."""
    source = choice(cfg, "INPUT.DCT.SOURCE", SOURCES)
    if source == "jpeg" and (cfg.INPUT.DCT.WIRE_DTYPE != "int16" or cfg.MODEL.DCT.TRANSFORM_ON != "cpu"):
        raise ValueError(
            "cfg.INPUT.DCT.SOURCE 'jpeg' ships the file's dequantized coefficients as int16 from the "
            "data loader: set INPUT.DCT.WIRE_DTYPE 'int16' and MODEL.DCT.TRANSFORM_ON 'cpu'"
        )
    return source


def dct_stats_from_config(cfg: CN, selection) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """(mean, std) of the selected channels from MEAN/STD or STATS_FILE; None if neither is set."""
    dct = cfg.MODEL.DCT
    if len(dct.MEAN) or len(dct.STD):
        stats = ChannelStats(None, np.asarray(dct.MEAN, np.float64), np.asarray(dct.STD, np.float64))
        return stats.pick(selection, "cfg.MODEL.DCT.MEAN/STD")
    if dct.STATS_FILE:
        path = os.path.expanduser(dct.STATS_FILE)
        return load_stats(path).pick(selection, repr(path))
    return None


def check_device(cfg: CN) -> None:
    """ValueError, before any work, if ``MODEL.DEVICE`` names a device this machine lacks."""
    check_device_name(str(cfg.MODEL.DEVICE), "cfg.MODEL.DEVICE", "MODEL.DEVICE cpu")


def check_device_name(device: str, key: str, cpu_setting: str) -> None:
    """ValueError naming ``key`` and how to run on the CPU if ``device`` is CUDA where there is none."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"{key} is {device!r} but torch sees no CUDA GPU on this machine: run with {cpu_setting} (or install "
            "a CUDA build of torch where there is a GPU)"
        )


def check_amp_device(enabled: bool, device: str, key: str) -> None:
    """ValueError naming ``key`` if mixed precision is asked for where Detectron2's AMPTrainer cannot run
    it (it needs CUDA)."""
    if enabled and not device.startswith("cuda"):
        raise ValueError(
            f"{key} is True but the device is {device!r}: Detectron2's AMPTrainer trains in mixed precision "
            f"on CUDA GPUs only; set {key} False to train on the CPU"
        )


def check_can_learn(cfg: CN) -> None:
    """ValueError if training this config would leave the backbone unable to learn:
    FrozenBatchNorm (norms that never update) with no pretrained ``MODEL.WEIGHTS``."""
    if cfg.MODEL.RESNETS.NORM == "FrozenBN" and not cfg.MODEL.WEIGHTS:
        raise ValueError(
            "this config cannot learn: MODEL.RESNETS.NORM is FrozenBN and MODEL.WEIGHTS is empty, so the "
            "backbone's normalization stays at its random start. Pass pretrained DCT weights as MODEL.WEIGHTS "
            "(tools/convert_weights.py), or train from scratch with configs/mask_rcnn_dct_R50_FPN_scratch.yaml "
            "(GroupNorm, FREEZE_AT 0)"
        )
