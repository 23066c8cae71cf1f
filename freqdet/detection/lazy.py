"""freqdet in Detectron2's LazyConfig world: what a Python config needs to take DCT inputs.

One call switches a LazyConfig from pixels to DCT channels (in a config file, after
Detectron2's own ``model``, ``dataloader`` and ``optimizer`` are defined)::

    from freqdet.detection.lazy import use_dct_input
    use_dct_input(model, dataloader, optimizer, channels=24)

It makes the model a :class:`~freqdet.detection.meta_arch.DCTGeneralizedRCNN` whose ResNet has
a :class:`~freqdet.detection.backbone.DCTStem` and stages whose res2 takes the selected
channels (every other setting kept: depth, norm, stride placement, freeze_at, heads), makes
the loaders' mappers :class:`~freqdet.detection.mapper.DCTDatasetMapper` (augmentations kept),
normalizes with the training set's statistics (:func:`training_set_statistic`: computed once by
the main process into ``train.output_dir/dct_stats.json``, or read from
``train.init_checkpoint`` when that holds them), puts the channel gate's learning-rate factor
into the optimizer's parameters (:func:`dct_optimizer_params`) and lets COCO evaluation run on
a Detectron2 without compiled ops. ``model.channels`` / ``model.pattern`` then choose the
channels for the model and both mappers at once (``model.channels=64`` on the command line).

The builders are plain functions and classes for ``LazyCall``: :func:`channel_statistic`,
:func:`training_set_statistic`, :func:`dct_optimizer_params`, :func:`clipped_sgd`,
:func:`~freqdet.detection.backbone.dct_resnet_stages`,
:func:`~freqdet.detection.backbone.build_dct_resnet`,
:func:`~freqdet.detection.bad_images.build_train_loader`.
"""

import functools
import logging
import os
from typing import Dict, List, Optional, Sequence, Tuple, Union

import detectron2.utils.comm as comm
import torch
from detectron2.config import CfgNode, LazyConfig, instantiate
from detectron2.config import LazyCall as L
from detectron2.data import DatasetMapper, build_detection_train_loader
from detectron2.evaluation import COCOEvaluator
from detectron2.modeling import GeneralizedRCNN
from detectron2.modeling.backbone import ResNet
from detectron2.solver import get_default_optimizer_params
from detectron2.solver.build import maybe_add_gradient_clipping
from detectron2.utils.registry import locate
from omegaconf import DictConfig

from ..dct import resolve_channels
from ..normalization import ChannelMismatchError, selected_channels
from ..safe_load import load_checkpoint
from ..stats import NATURAL_PHOTO_STATS, ChannelStats, cached_stats, load_stats, natural_photo_stats
from .backbone import DCTStem, dct_resnet_stages
from .bad_images import build_train_loader
from .checks import check_datasets, check_output_dir
from .config import check_amp_device, check_device_name
from .dataset_stats import measure_training_set, training_dicts
from .gate import gate_lr_groups
from .mapper import DCTDatasetMapper
from .meta_arch import DCTGeneralizedRCNN
from .trainer import has_compiled_ops, show_freqdet_log

logger = logging.getLogger(__name__)

ChannelsArg = Union[int, Sequence[int]]
KINDS = ("mean", "std")


def channel_statistic(
    kind: str, channels: ChannelsArg = 24, pattern: str = "square", stats_file: str = ""
) -> List[float]:
    """The per-channel ``kind`` ("mean" or "std") of a selection as a plain list, from
    ``stats_file`` (the JSON of ``tools/compute_dct_stats.py``), or from the statistics freqdet
    ships (natural photographs) when it is empty: for ``model.dct_mean`` / ``model.dct_std``."""
    selection = resolve_channels(channels, pattern)
    source = os.path.expanduser(stats_file) if stats_file else NATURAL_PHOTO_STATS
    stats = load_stats(source) if stats_file else natural_photo_stats()
    return _pick(stats.pick(selection, repr(source)), kind)


def training_set_statistic(
    kind: str,
    channels: ChannelsArg = 24,
    pattern: str = "square",
    *,
    datasets: Union[str, Sequence[str]],
    mapper: DCTDatasetMapper,
    num_images: int = 500,
    output_dir: str,
    checkpoint: str = "",
) -> List[float]:
    """The per-channel ``kind`` ("mean" or "std") of the training set, for a selection.

    - When ``checkpoint`` (``train.init_checkpoint``) is a freqdet checkpoint, its own statistics:
      loading it would set them anyway, so nothing is computed (``--eval-only``); a checkpoint of
      another channel selection is refused here, before any work (:class:`ChannelMismatchError`).
    - Otherwise the statistics of ``num_images`` images of ``datasets`` (0: all) mapped by
      ``mapper``'s augmentations at test time (:func:`~.dataset_stats.measure_training_set`, as
      ``DCTTrainer`` does): the main process computes them into ``output_dir/dct_stats.json``,
      or reuses that file when it holds them for the same datasets and number of images; the
      other processes wait and read it.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    selection = resolve_channels(channels, pattern)
    saved = checkpoint_statistics(checkpoint, selection) if checkpoint else None
    if saved is not None:
        return _pick(saved, kind)
    names = [datasets] if isinstance(datasets, str) else list(datasets)
    path = os.path.join(output_dir, "dct_stats.json")
    if comm.is_main_process():
        os.makedirs(output_dir, exist_ok=True)

    def compute():
        show_freqdet_log()
        stats = measure_training_set(training_dicts(names), mapper, num_images)
        logger.info(f"DCT channel statistics of {stats.info['num_images']} training images written to {path}")
        return stats

    measured = {"datasets": names, "images_asked": num_images}
    stats = cached_stats(path, selection, compute, comm.is_main_process(), comm.synchronize, **measured)
    return _pick(stats.pick(selection, repr(path)), kind)


def load_lazy_config(path: str, overrides: Sequence[str] = ()) -> DictConfig:
    """A LazyConfig file with ``key=value`` overrides; ValueError naming an override that does not
    parse (a flag after the overrides, which take everything after them, is one)."""
    from hydra.errors import OverrideParseException

    cfg = LazyConfig.load(path)
    try:
        return LazyConfig.apply_overrides(cfg, list(overrides))
    except OverrideParseException as e:
        raise ValueError(
            f"cannot read the overrides {list(overrides)} of {path} ({' '.join(str(e).split())}): give them as "
            "key=value, after any --flag"
        ) from None


def lazy_config_stats(cfg: DictConfig, num_images: int) -> ChannelStats:
    """Per-channel mean and std of all 192 channels over a LazyConfig's training set
    (``dataloader.train.dataset.names``), mapped by its test mapper: what
    :func:`training_set_statistic` measures (``tools/compute_dct_stats.py`` with a ``.py`` config)."""
    mapper = instantiate(cfg.dataloader.test.mapper)
    if not isinstance(mapper, DCTDatasetMapper):
        raise ValueError(
            f"dataloader.test.mapper of this LazyConfig is a {type(mapper).__name__}, not a DCTDatasetMapper: "
            "switch the config to DCT inputs first (freqdet.detection.lazy.use_dct_input)"
        )
    return measure_training_set(training_dicts(dataset_names(cfg.dataloader.train)), mapper, num_images)


def dataset_names(loader: DictConfig) -> List[str]:
    """The dataset names of a LazyConfig loader (``loader.dataset.names``, a name or a list)."""
    names = loader.dataset.get("names") if isinstance(loader.dataset, (dict, DictConfig)) else None
    if names is None:
        raise ValueError("the training set is measured by name: give dataloader.train.dataset.names")
    return [names] if isinstance(names, str) else list(names)


def _pick(mean_std, kind: str) -> List[float]:
    return [float(v) for v in mean_std[KINDS.index(kind)]]


def checkpoint_statistics(checkpoint: str, selection: Sequence[int]) -> Optional[Tuple[List[float], List[float]]]:
    """(mean, std) of the DCT normalization a checkpoint file holds, None if it holds none (or is
    not a local ``.pth`` file); :class:`ChannelMismatchError` naming it if it is of other channels,
    FileNotFoundError if a local path does not exist."""
    if "://" in checkpoint or not checkpoint.endswith(".pth"):
        return None
    path = os.path.expanduser(checkpoint)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"the checkpoint {checkpoint!r} (train.init_checkpoint) does not exist")
    stat = os.stat(path)
    saved = _normalization_of(path, stat.st_mtime_ns, stat.st_size)
    if saved is None:
        return None
    theirs, mean, std = saved
    if list(theirs) != list(selection):
        raise ChannelMismatchError(theirs, selection, source=repr(checkpoint))
    return mean, std


@functools.lru_cache(maxsize=4)
def _normalization_of(path: str, mtime_ns: int, size: int):
    """(channels, mean, std) of the model's normalization in a checkpoint file; None without one
    (read once per file version: the mean and the std are asked for separately)."""
    loaded = load_checkpoint(path)
    state = loaded.get("model", loaded) if isinstance(loaded, dict) else {}
    for key in state:
        if key.endswith("normalization.selected"):
            prefix = key[: -len("selected")]
            channels = selected_channels(state, prefix)
            mean = torch.as_tensor(state[prefix + "mean"]).flatten().tolist()
            std = torch.as_tensor(state[prefix + "std"]).flatten().tolist()
            return tuple(channels), mean, std
    return None


def dct_optimizer_params(
    model: torch.nn.Module, base_lr: Optional[float] = None, gate_lr_factor: float = 1.0, **kwargs
) -> List[Dict]:
    """Detectron2's ``get_default_optimizer_params(model, base_lr, **kwargs)``, the channel gate's
    parameters at ``gate_lr_factor`` x ``base_lr`` (``MODEL.DCT.GATE.LR_FACTOR`` of the yacs
    configs). In a LazyConfig: ``optimizer.params = L(dct_optimizer_params)(base_lr="${..lr}",
    gate_lr_factor=10.0, weight_decay_norm=0.0)``."""
    groups = get_default_optimizer_params(model, base_lr=base_lr, **kwargs)
    return gate_lr_groups(groups, model, gate_lr_factor, base_lr)


def clipped_sgd(
    params,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    nesterov: bool = False,
    clip_type: str = "value",
    clip_value: float = 1.0,
    norm_type: float = 2.0,
) -> torch.optim.Optimizer:
    """SGD with Detectron2's gradient clipping (``SOLVER.CLIP_GRADIENTS`` of the yacs configs:
    ``clip_type`` "value" or "norm" per parameter, "full_model" over all), which Detectron2's
    LazyConfig optimizers lack."""
    clipping = CfgNode(
        {
            "SOLVER": {
                "CLIP_GRADIENTS": {
                    "ENABLED": True,
                    "CLIP_TYPE": clip_type,
                    "CLIP_VALUE": clip_value,
                    "NORM_TYPE": norm_type,
                }
            }
        }
    )
    optimizer = maybe_add_gradient_clipping(clipping, torch.optim.SGD)
    return optimizer(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)


def _target(node) -> object:
    """The callable a LazyCall node names (a LazyConfig saved and loaded again holds its name)."""
    target = node.get("_target_") if isinstance(node, (dict, DictConfig)) else None
    return locate(target) if isinstance(target, str) else target


def use_dct_input(
    model: DictConfig,
    dataloader: Optional[DictConfig] = None,
    optimizer: Optional[DictConfig] = None,
    *,
    channels: ChannelsArg = 24,
    pattern: str = "square",
    wire_dtype: str = "int16",
    transform_on: str = "cpu",
    stats_images: int = 500,
) -> None:
    """Switch a LazyConfig's R-CNN from pixels to DCT channels, in place (see the module's doc).

    Args:
        model: a ``LazyCall(GeneralizedRCNN)`` whose backbone is a ``LazyCall(ResNet)`` with
            ``ResNet.make_default_stages`` (or an FPN on one), such as Detectron2's
            ``common/models/mask_rcnn_fpn.py`` and the LSJ configs.
        dataloader: its ``dataloader``: both mappers become DCT mappers of ``model.channels``
            and the model normalizes with the training set's statistics; None: the model keeps
            the statistics freqdet ships.
        optimizer: its ``optimizer``, for the gate's learning-rate factor
            (``optimizer.params.gate_lr_factor``).
        channels, pattern: the channels (a count with a pattern, or the indices).
        wire_dtype, transform_on: how coefficients travel (``INPUT.DCT.WIRE_DTYPE``) and where they
            are computed (``MODEL.DCT.TRANSFORM_ON``).
        stats_images: training images the statistics are measured over (0: all).
    """
    if not (isinstance(_target(model), type) and issubclass(_target(model), GeneralizedRCNN)):
        raise ValueError(f"use_dct_input needs a LazyCall(GeneralizedRCNN) model, got one of {_target(model)}")
    if issubclass(_target(model), DCTGeneralizedRCNN):
        raise ValueError("the model takes DCT inputs already (use_dct_input was called on it before)")
    backbone = model.backbone
    resnet, up = (backbone.bottom_up, "....") if "bottom_up" in backbone else (backbone, "...")
    if _target(resnet) is not ResNet:
        raise ValueError(f"use_dct_input needs a LazyCall(ResNet) backbone (or an FPN on one), got {_target(resnet)}")
    stages = resnet.stages
    if _target(stages) is not ResNet.make_default_stages:
        raise ValueError(
            f"use_dct_input rebuilds ResNet.make_default_stages, got {_target(stages)}: build the stages with "
            "freqdet.detection.backbone.dct_resnet_stages instead"
        )
    kept = {"depth", "norm", "stride_in_1x1"}
    other = sorted(set(stages) - kept - {"_target_"})
    if other:
        raise ValueError(f"use_dct_input keeps the stages' {sorted(kept)}, not {other}: use dct_resnet_stages")

    model._target_ = DCTGeneralizedRCNN
    model.channels, model.pattern, model.wire_dtype = channels, pattern, wire_dtype
    selection = {"channels": f"${{{up}channels}}", "pattern": f"${{{up}pattern}}"}
    stem_norm = resnet.stem.get("norm", "")
    resnet.stem = L(DCTStem)(**selection, norm=stem_norm)
    resnet.stages = L(dct_resnet_stages)(**selection, **{k: stages[k] for k in kept if k in stages})
    if dataloader is None:
        return
    for split in ("train", "test"):
        mapper = dataloader[split].mapper
        if _target(mapper) is not DatasetMapper:
            raise ValueError(
                f"use_dct_input replaces DatasetMapper, but dataloader.{split}.mapper is {_target(mapper)}"
            )
        mapper._target_ = DCTDatasetMapper
        mapper.update(
            channels="${model.channels}",
            pattern="${model.pattern}",
            wire_dtype="${model.wire_dtype}",
            transform_on=transform_on,
        )
    if _target(dataloader.train) is build_detection_train_loader:
        dataloader.train._target_ = build_train_loader
    dataset_names(dataloader.train)
    for kind in KINDS:
        model[f"dct_{kind}"] = L(training_set_statistic)(
            kind=kind,
            channels="${..channels}",
            pattern="${..pattern}",
            datasets="${dataloader.train.dataset.names}",
            mapper="${dataloader.test.mapper}",
            num_images=stats_images,
            output_dir="${train.output_dir}",
            checkpoint="${train.init_checkpoint}",
        )
    evaluator = dataloader.get("evaluator")
    if _target(evaluator) is COCOEvaluator and "use_fast_impl" not in evaluator:
        evaluator.use_fast_impl = L(has_compiled_ops)()
    if optimizer is not None and _target(optimizer.get("params")) is get_default_optimizer_params:
        optimizer.params._target_ = dct_optimizer_params
        optimizer.params.update(base_lr="${..lr}", gate_lr_factor=1.0)


def check_lazy_config(cfg: DictConfig, training: bool = True) -> None:
    """Fail early, with one-line messages naming the key, on what would fail later in a LazyConfig run:
    the device (``train.device``, and ``train.amp.enabled`` off CUDA), the output folder and the
    datasets (the test set's; the training set's too when ``training``)."""
    device = str(cfg.train.device)
    check_device_name(device, "train.device", "train.device=cpu")
    if training:
        check_amp_device(bool(cfg.train.amp.enabled), device, "train.amp.enabled")
    check_output_dir(cfg.train.output_dir)
    names = dataset_names(cfg.dataloader.test) if "test" in cfg.dataloader else []
    if training:
        names = dataset_names(cfg.dataloader.train) + names
    check_datasets(None, names)


def model_zoo_with_dct_input(name: str, channels: ChannelsArg = 24, pattern: str = "square"):
    """Detectron2's model-zoo LazyConfig ``name`` with its input switched to DCT by
    :func:`use_dct_input`, nothing else changed: ``(model, dataloader, optimizer, lr_multiplier,
    train)``, what a config file exports. The LSJ recipes give the heads' norm as a lambda
    building ``NaiveSyncBatchNorm(c, stats_mode="N")``, which ``LazyConfig.save`` cannot write;
    it becomes that layer's name in ``detectron2.layers.get_norm``."""
    from detectron2.model_zoo import get_config

    cfg = get_config(name)
    use_dct_input(cfg.model, cfg.dataloader, cfg.optimizer, channels=channels, pattern=pattern)
    heads = cfg.model.get("roi_heads", {})
    for head in ("box_head", "mask_head"):
        if head in heads and callable(heads[head].get("conv_norm")):
            heads[head].conv_norm = "naiveSyncBN_N"
    return cfg.model, cfg.dataloader, cfg.optimizer, cfg.lr_multiplier, cfg.train


def without_masks(model: DictConfig, dataloader: Optional[DictConfig] = None) -> None:
    """Make a LazyConfig's Mask R-CNN a Faster R-CNN, in place: no mask head, no masks loaded."""
    model.roi_heads.update(mask_in_features=None, mask_pooler=None, mask_head=None)
    if dataloader is not None:
        dataloader.train.mapper.use_instance_mask = False


__all__ = [
    "channel_statistic",
    "check_lazy_config",
    "checkpoint_statistics",
    "clipped_sgd",
    "dct_optimizer_params",
    "lazy_config_stats",
    "load_lazy_config",
    "training_set_statistic",
    "use_dct_input",
    "without_masks",
]
