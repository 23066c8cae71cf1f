"""freqdet in Detectron2's LazyConfig world: what a Python config needs to take DCT inputs.

One call switches a LazyConfig from pixels to DCT channels (in a config file, after
Detectron2's own ``model``, ``dataloader`` and ``optimizer`` are defined)::

    from freqdet.detection.lazy import use_dct_input
    use_dct_input(model, dataloader, optimizer, channels=24)

It takes any model whose backbone is a ``LazyCall(ResNet)`` built by ``ResNet.make_default_stages``,
as ``model.backbone`` (C4) or as an FPN's ``bottom_up``: Detectron2's Faster, Mask, keypoint and
Cascade R-CNN, C4, RetinaNet, Panoptic FPN and the LSJ recipes. The model becomes its class's DCT
twin (:func:`~freqdet.detection.meta_arch.dct_twin`), its ResNet gets a
:class:`~freqdet.detection.backbone.DCTStem` and stages whose res2 takes the selected channels
(every other setting kept: depth, norm, stride placement, freeze_at, heads), the loaders' mappers
become :class:`~freqdet.detection.mapper.DCTDatasetMapper` (augmentations kept), the channel gate's
learning-rate factor goes into the optimizer's parameters (:func:`dct_optimizer_params`) and COCO
evaluation runs on a Detectron2 without compiled ops. ``model.channels`` / ``model.pattern`` then
choose the channels for the model and both mappers at once (``model.channels=64``).

Building the model reads no data: it starts with the statistics freqdet ships, or a checkpoint's
when ``train.init_checkpoint`` holds them. The training set's are measured where training starts:
:func:`set_training_statistics` (which freqdet's ``tools/lazyconfig_train_net.py`` calls before the
first step) instantiates ``dataloader.dct_stats`` (:func:`training_set_statistics`: computed once
by the main process into ``train.output_dir/dct_stats.json``, reused from there).

The builders are plain functions and classes for ``LazyCall``: :func:`channel_statistic`,
:func:`training_set_statistics`, :func:`dct_optimizer_params`, :func:`clipped_sgd`,
:func:`~freqdet.detection.backbone.dct_resnet_stages`,
:func:`~freqdet.detection.backbone.build_dct_resnet`,
:func:`~freqdet.detection.bad_images.build_train_loader`.
"""

import functools
import logging
import os
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import detectron2.utils.comm as comm
import numpy as np
import torch
from detectron2.config import CfgNode, LazyConfig, instantiate
from detectron2.config import LazyCall as L
from detectron2.data import DatasetMapper, build_detection_train_loader
from detectron2.evaluation import COCOEvaluator, DatasetEvaluators
from detectron2.modeling.backbone import ResNet
from detectron2.solver import get_default_optimizer_params
from detectron2.solver.build import maybe_add_gradient_clipping
from detectron2.utils.registry import locate
from omegaconf import DictConfig, ListConfig, OmegaConf

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
from .meta_arch import DCTInput, dct_twin
from .switch import rgb_weights
from .trainer import has_compiled_ops, show_freqdet_log

logger = logging.getLogger(__name__)

ChannelsArg = Union[int, Sequence[int]]
KINDS = ("mean", "std")


class MeasuredStats(NamedTuple):
    """A selection's per-channel statistics and where they come from, as the log says it."""

    mean: List[float]
    std: List[float]
    source: str


def channel_statistic(
    kind: str, channels: ChannelsArg = 24, pattern: str = "square", stats_file: str = "", checkpoint: str = ""
) -> List[float]:
    """The per-channel ``kind`` ("mean" or "std") of a selection as a plain list, for ``model.dct_mean`` /
    ``model.dct_std``; reads no dataset. A freqdet checkpoint's own when ``checkpoint`` (e.g.
    ``"${train.init_checkpoint}"``) holds them (one of other channels is refused,
    :class:`ChannelMismatchError`); else ``stats_file``'s (the JSON of ``tools/compute_dct_stats.py``);
    else the statistics freqdet ships (natural photographs)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    selection = resolve_channels(channels, pattern)
    saved = checkpoint_statistics(checkpoint, selection) if checkpoint else None
    if saved is not None:
        return _pick(saved, kind)
    source = os.path.expanduser(stats_file) if stats_file else NATURAL_PHOTO_STATS
    stats = load_stats(source) if stats_file else natural_photo_stats()
    return _pick(stats.pick(selection, repr(source)), kind)


def training_set_statistics(
    channels: ChannelsArg = 24,
    pattern: str = "square",
    *,
    datasets: Union[str, Sequence[str]],
    mapper: DCTDatasetMapper,
    num_images: int = 500,
    output_dir: str,
) -> MeasuredStats:
    """The training set's per-channel statistics of a selection (``dataloader.dct_stats``, which
    :func:`set_training_statistics` instantiates where training starts).

    Over ``num_images`` images of ``datasets`` (0: all), each mapped by ``mapper``'s augmentations at
    test time (:func:`~.dataset_stats.measure_training_set`, as ``DCTTrainer`` does): the main process
    computes them into ``output_dir/dct_stats.json``, or reuses that file when it holds them for the
    same datasets and number of images; the other processes wait and read it.
    """
    if not isinstance(mapper, DCTDatasetMapper):
        raise ValueError(
            f"dataloader.dct_stats.mapper is a {type(mapper).__name__}: the training set's DCT statistics are "
            "measured by a DCTDatasetMapper (freqdet.detection.lazy.use_dct_input sets the test mapper's)"
        )
    selection = resolve_channels(channels, pattern)
    names = [datasets] if isinstance(datasets, str) else list(datasets)
    path = os.path.join(output_dir, "dct_stats.json")
    if comm.is_main_process():
        os.makedirs(output_dir, exist_ok=True)
    computed = []

    def compute():
        show_freqdet_log()
        stats = measure_training_set(training_dicts(names), mapper, num_images)
        computed.append(stats.info["num_images"])
        return stats

    measured = {"datasets": names, "images_asked": num_images}
    stats = cached_stats(path, selection, compute, comm.is_main_process(), comm.synchronize, **measured)
    mean, std = (_pick(stats.pick(selection, repr(path)), kind) for kind in KINDS)
    if computed:
        source = f"measured over {computed[0]} images of {', '.join(names)} into {path}"
    else:
        source = f"reused from {path} ({stats.info.get('num_images', '?')} images of {', '.join(names)})"
    return MeasuredStats(mean, std, source)


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
    """The per-channel ``kind`` ("mean" or "std") of :func:`training_set_statistics`; a freqdet
    checkpoint's own instead when ``checkpoint`` holds them (nothing measured; a checkpoint of another
    channel selection is refused before any work, :class:`ChannelMismatchError`)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    saved = checkpoint_statistics(checkpoint, resolve_channels(channels, pattern)) if checkpoint else None
    if saved is not None:
        return _pick(saved, kind)
    stats = training_set_statistics(
        channels, pattern, datasets=datasets, mapper=mapper, num_images=num_images, output_dir=output_dir
    )
    return _pick((stats.mean, stats.std), kind)


def set_training_statistics(
    model: torch.nn.Module, cfg: DictConfig, checkpoint: Optional[str] = None, *, measure: bool = True
) -> Optional[str]:
    """Set a DCT model's normalization for a run of the LazyConfig ``cfg``, where training starts, and
    log one line saying where the statistics come from; returns it (None for a model of pixels).

    - A freqdet checkpoint's own when ``checkpoint`` (default ``train.init_checkpoint``; ``--resume``
      passes the file it continues from) holds them: loading it sets them anyway, nothing is measured.
    - Else, with ``measure``, the training set's: ``dataloader.dct_stats`` instantiated
      (:func:`training_set_statistics`), measured or reused from ``train.output_dir/dct_stats.json``.
    - Else (``measure=False``, as for ``--eval-only``; or ``dataloader.dct_stats`` None) the ones it was
      built with: freqdet's shipped statistics, or what ``model.dct_mean`` / ``model.dct_std`` gave.
    """
    module = getattr(model, "module", model)  # inside DistributedDataParallel
    if not isinstance(module, DCTInput):
        return None
    normalization = module.normalization
    if checkpoint is None:
        checkpoint = OmegaConf.select(cfg, "train.init_checkpoint", default="") or ""
    saved = checkpoint_statistics(str(checkpoint), normalization.channels) if checkpoint else None
    spec = OmegaConf.select(cfg, "dataloader.dct_stats", default=None)
    if saved is not None:
        normalization.set_stats(*saved)
        source = f"the checkpoint's ({checkpoint})"
    elif measure and spec is not None:
        stats = instantiate(spec)
        normalization.set_stats(stats.mean, stats.std)
        source = stats.source
    else:
        source = _built_statistics(normalization, str(checkpoint))
    line = f"DCT normalization of the model: {source}"
    logger.info(line)
    return line


def _built_statistics(normalization, checkpoint: str) -> str:
    """What the statistics a model was built with are, for the log."""
    shipped = natural_photo_stats().pick(normalization.channels, NATURAL_PHOTO_STATS)
    ours = (normalization.mean.flatten().cpu().numpy(), normalization.std.flatten().cpu().numpy())
    same = all(np.allclose(a, b) for a, b in zip(ours, shipped))
    source = f"the ones freqdet ships ({NATURAL_PHOTO_STATS})" if same else "those of model.dct_mean / model.dct_std"
    unread = checkpoint and ("://" in checkpoint or not checkpoint.endswith(".pth"))  # what checkpoint_statistics skips
    return source + (f", unless {checkpoint} holds its own (loading it sets them)" if unread else "")


def load_lazy_config(
    path: str, overrides: Sequence[str] = (), *, dct_input: Optional[ChannelsArg] = None, dct_pattern: str = "square"
) -> DictConfig:
    """A LazyConfig file with ``key=value`` overrides; ValueError naming an override that does not
    parse (a flag after the overrides, which take everything after them, is one). ``dct_input``: its
    ``model``, ``dataloader`` and ``optimizer`` switched to that many DCT channels (or those indices,
    :func:`use_dct_input`) first, so that the overrides can set the switched keys too."""
    from hydra.errors import OverrideParseException

    cfg = LazyConfig.load(path)
    if dct_input is not None:
        if "model" not in cfg or "dataloader" not in cfg:
            raise ValueError(f"--dct-input switches a LazyConfig's model and dataloader, but {path} lacks one of them")
        use_dct_input(cfg.model, cfg.dataloader, cfg.get("optimizer"), channels=dct_input, pattern=dct_pattern)
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
    :func:`training_set_statistics` measures (``tools/compute_dct_stats.py`` with a ``.py`` config)."""
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


def _name(target) -> str:
    return getattr(target, "__qualname__", None) or repr(target)


def _resnet_of(model: DictConfig) -> Tuple[DictConfig, str, str]:
    """The ``LazyCall(ResNet)`` of a model's backbone (itself or an FPN's ``bottom_up``), the
    interpolation from its stem up to the model, and its key; ValueError naming what is there otherwise."""
    backbone = model.get("backbone") if isinstance(model, (dict, DictConfig)) else None
    nested = isinstance(backbone, (dict, DictConfig)) and "bottom_up" in backbone
    resnet, up, key = (
        (backbone.bottom_up, "....", "model.backbone.bottom_up") if nested else (backbone, "...", "model.backbone")
    )
    if _target(resnet) is not ResNet:
        raise ValueError(
            f"use_dct_input needs a LazyCall(ResNet) as model.backbone or as its bottom_up (under an FPN), but "
            f"{key} is {_name(_target(resnet))}: ViTs, RegNets and other stems have no res2 to take the DCT channels"
        )
    return resnet, up, key


def _switch_resnet(resnet: DictConfig, up: str) -> None:
    """A ResNet node's stem and stages made DCT's, its depth, norm and stride placement kept."""
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
    selection = {"channels": f"${{{up}channels}}", "pattern": f"${{{up}pattern}}"}
    stem_norm = resnet.stem.get("norm", "")
    resnet.stem = L(DCTStem)(**selection, norm=stem_norm)
    resnet.stages = L(dct_resnet_stages)(**selection, **{k: stages[k] for k in kept if k in stages})


def _switch_mappers(dataloader: DictConfig, transform_on: str) -> None:
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


def _fast_coco_evaluation(evaluator) -> None:
    """Every ``COCOEvaluator`` among a loader's evaluators (one, a list, ``DatasetEvaluators``) evaluating
    with Detectron2's compiled code where it exists, pycocotools' otherwise, unless it says which."""
    if isinstance(evaluator, (list, ListConfig)):
        for one in evaluator:
            _fast_coco_evaluation(one)
    elif _target(evaluator) is DatasetEvaluators:
        _fast_coco_evaluation(evaluator.get("evaluators", []))
    elif _target(evaluator) is COCOEvaluator and "use_fast_impl" not in evaluator:
        evaluator.use_fast_impl = L(has_compiled_ops)()


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
    """Switch a LazyConfig's model from pixels to DCT channels, in place (see the module's doc).

    Args:
        model: a ``LazyCall`` of a meta-architecture with a DCT twin (GeneralizedRCNN, RetinaNet,
            PanopticFPN, ...: :data:`~freqdet.detection.meta_arch.TWINS`; a class of your own that
            subclasses :class:`~freqdet.detection.meta_arch.DCTInput` is kept) whose backbone is a
            ``LazyCall(ResNet)`` with ``ResNet.make_default_stages``, or an FPN on one.
        dataloader: its ``dataloader``: both mappers become DCT mappers of ``model.channels``,
            ``model.dct_mean`` / ``model.dct_std`` read ``train.init_checkpoint``'s statistics when it
            holds them (else the shipped ones) and ``dataloader.dct_stats`` measures the training
            set's (:func:`set_training_statistics`); None: the model keeps the shipped statistics.
        optimizer: its ``optimizer``, for the gate's learning-rate factor
            (``optimizer.params.gate_lr_factor``).
        channels, pattern: the channels (a count with a pattern, or the indices).
        wire_dtype, transform_on: how coefficients travel (``INPUT.DCT.WIRE_DTYPE``) and where they
            are computed (``MODEL.DCT.TRANSFORM_ON``).
        stats_images: training images the statistics are measured over (0: all).

    ValueError in one line, before any change, for a model already switched, a class without a DCT
    twin (:func:`~freqdet.detection.meta_arch.dct_twin`'s message) or another backbone.
    """
    target = _target(model)
    if not isinstance(target, type):
        raise ValueError(f"use_dct_input needs a LazyCall of a meta-architecture (model._target_), got {target!r}")
    resnet, up, _ = _resnet_of(model)
    if _target(resnet.get("stem")) is DCTStem:
        raise ValueError(
            "the model takes DCT inputs already (use_dct_input was called on it before): set model.channels / "
            "model.pattern to change its channels"
        )
    twin = dct_twin(target)
    _switch_resnet(resnet, up)
    model._target_ = twin
    model.channels, model.pattern, model.wire_dtype = channels, pattern, wire_dtype
    if dataloader is None:
        return
    _switch_mappers(dataloader, transform_on)
    for kind in KINDS:
        model[f"dct_{kind}"] = L(channel_statistic)(
            kind=kind, channels="${..channels}", pattern="${..pattern}", checkpoint="${train.init_checkpoint}"
        )
    dataloader.dct_stats = L(training_set_statistics)(
        channels="${model.channels}",
        pattern="${model.pattern}",
        datasets="${dataloader.train.dataset.names}",
        mapper="${dataloader.test.mapper}",
        num_images=stats_images,
        output_dir="${train.output_dir}",
    )
    _fast_coco_evaluation(dataloader.get("evaluator"))
    if optimizer is not None and _target(optimizer.get("params")) is get_default_optimizer_params:
        optimizer.params._target_ = dct_optimizer_params
        optimizer.params.update(base_lr="${..lr}", gate_lr_factor=1.0)


def _is_dct_model(model) -> bool:
    target = _target(model)
    return isinstance(target, type) and issubclass(target, DCTInput)


def check_lazy_weights(cfg: DictConfig, training: bool = True) -> None:
    """ValueError in one line, for a DCT model, if ``train.init_checkpoint`` is one of Detectron2's RGB
    checkpoints (``detectron2://ImageNetPretrained/...``: a pixel stem, a res2 of 64 input channels),
    or, in training from random weights, if its ResNet could not learn (FrozenBN, res2 frozen)."""
    if not _is_dct_model(cfg.model):
        return
    checkpoint = str(OmegaConf.select(cfg, "train.init_checkpoint", default="") or "")
    resnet, _, key = _resnet_of(cfg.model)
    scratch = f'train.init_checkpoint="" {key}.freeze_at=0 {key}.stages.norm=BN (or GN, SyncBN)'
    if rgb_weights(checkpoint):
        raise ValueError(
            f"train.init_checkpoint is {checkpoint!r}, Detectron2's weights for RGB pixels, which a DCT model "
            "cannot take (no pixel stem; res2 takes the DCT channels): give a DCT backbone converted by "
            f"tools/convert_weights.py as train.init_checkpoint, or train from scratch with {scratch}"
        )
    if not training or checkpoint:
        return
    frozen = []
    if resnet.stages.get("norm") == "FrozenBN":
        frozen.append(f"{key}.stages.norm is FrozenBN")
    if (resnet.get("freeze_at") or 0) >= 2:
        frozen.append(f"{key}.freeze_at is {resnet.freeze_at}")
    if frozen:
        raise ValueError(
            f"this config cannot learn: train.init_checkpoint is empty (random weights) but {' and '.join(frozen)}, "
            f"so the ResNet would stay at its random start there: train from scratch with {scratch}, or give DCT "
            "weights (tools/convert_weights.py) as train.init_checkpoint"
        )


def check_lazy_config(cfg: DictConfig, training: bool = True) -> None:
    """Fail early, with one-line messages naming the key, on what would fail later in a LazyConfig run:
    the device (``train.device``, and ``train.amp.enabled`` off CUDA), the output folder, the weights
    of a DCT model (:func:`check_lazy_weights`) and the datasets (the test set's; the training set's
    too when ``training``)."""
    device = str(cfg.train.device)
    check_device_name(device, "train.device", "train.device=cpu")
    if training:
        check_amp_device(bool(cfg.train.amp.enabled), device, "train.amp.enabled")
    check_output_dir(cfg.train.output_dir)
    check_lazy_weights(cfg, training)
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
    "MeasuredStats",
    "channel_statistic",
    "check_lazy_config",
    "check_lazy_weights",
    "checkpoint_statistics",
    "clipped_sgd",
    "dct_optimizer_params",
    "lazy_config_stats",
    "load_lazy_config",
    "set_training_statistics",
    "training_set_statistic",
    "training_set_statistics",
    "use_dct_input",
    "without_masks",
]
