"""Classifier checkpoints: what each records, and the model each describes.

Every classifier checkpoint this package writes (``tools/train_cls.py``'s ``checkpoint.pth``
and ``model_best.pth``, ``tools/convert_weights.py --target classifier``) is a dict with

- ``model``: the state dict; a DCT model's holds ``input.normalization.{selected,mean,std}``;
- ``arch``: ``"resnet50"`` or ``"mobilenet_v2"``; ``layout``: ``"torchvision"`` or ``"official"``;
- ``channels``: the global DCT channel indices (None for RGB); ``num_classes``;
- ``normalization``: one line saying where the normalization statistics come from;

and whatever its writer adds (``results``, ``classes``, ``optimizer``, ``converted_from``).
:func:`recorded_network` reads the network back. Files are read with
:func:`freqdet.safe_load.load_checkpoint`: tensors and plain data only unless trusted.
"""

import os
from typing import Dict, NamedTuple, Optional, Sequence, Tuple

from torch import nn

from ..gate import ChannelGate
from ..normalization import selected_channels
from ..safe_load import load_checkpoint
from .models import ARCHITECTURES, build_classifier, check_layout
from .report import Report

# The classifier head's weight of each architecture (its rows are the classes).
HEAD_KEYS = {"resnet50": "fc.weight", "mobilenet_v2": "classifier.1.weight"}
# Where a DCT classifier's ChannelNormalization lives in its state dict.
NORMALIZATION_PREFIX = "input.normalization."


def classifier_record(
    state: Dict,
    arch: str,
    layout: str,
    channels: Optional[Sequence[int]],
    num_classes: int,
    normalization: str,
    **extra,
) -> Dict:
    """The checkpoint dict of a classifier (see the module's docstring)."""
    return {
        "model": state,
        "arch": arch,
        "layout": check_layout(layout),
        "channels": list(channels) if channels is not None else None,
        "num_classes": int(num_classes),
        "normalization": normalization,
        **extra,
    }


class Network(NamedTuple):
    """The network a classifier checkpoint records."""

    arch: str
    layout: str
    channels: Optional[Tuple[int, ...]]
    num_classes: int
    gate: bool  # a channel gate after the normalization
    gate_norm: bool  # the gate has its BatchNorm


def is_classifier_checkpoint(checkpoint) -> bool:
    """Whether ``checkpoint`` is one of this package's classifier checkpoints (not a bare state dict)."""
    return (
        isinstance(checkpoint, dict)
        and isinstance(checkpoint.get("model"), dict)
        and "arch" in checkpoint
        and "layout" in checkpoint
    )


def recorded_network(checkpoint, source: str = "the checkpoint") -> Network:
    """The network a classifier checkpoint records; ValueError naming ``source`` if it is not one."""
    if not is_classifier_checkpoint(checkpoint):
        raise ValueError(
            f"{source} is not a freqdet classifier checkpoint (a dict with 'model', 'arch' and 'layout'); "
            "convert the official release's checkpoints with tools/convert_weights.py --source official "
            "--target classifier"
        )
    state = checkpoint["model"]
    arch = checkpoint["arch"]
    if arch not in ARCHITECTURES or HEAD_KEYS[arch] not in state:
        raise ValueError(
            f"{source} records architecture {arch!r} but holds no {HEAD_KEYS.get(arch, 'classifier head')!r}; "
            f"expected one of {ARCHITECTURES}"
        )
    channels = checkpoint.get("channels")
    if channels is None:
        channels = selected_channels(state, NORMALIZATION_PREFIX)
    gate = any(k.startswith("input.gate.") for k in state)
    return Network(
        arch,
        check_layout(checkpoint["layout"]),
        tuple(int(c) for c in channels) if channels is not None else None,
        int(state[HEAD_KEYS[arch]].shape[0]),
        gate,
        any(k.startswith("input.gate.norm.") for k in state),
    )


def build_network(network: Network, num_classes: Optional[int] = None) -> nn.Module:
    """A freshly initialised model of the network (``num_classes`` to change its head)."""
    gate = ChannelGate(len(network.channels), norm="BN" if network.gate_norm else "") if network.gate else None
    return build_classifier(network.arch, num_classes or network.num_classes, network.channels, gate, network.layout)


def classifier_from_checkpoint(checkpoint, source: str = "the checkpoint") -> nn.Module:
    """The model a loaded classifier checkpoint describes, with its weights, in eval mode."""
    network = recorded_network(checkpoint, source)
    state = checkpoint["model"]
    if network.channels is not None and NORMALIZATION_PREFIX + "mean" not in state:
        raise ValueError(
            f"{source} holds no DCT normalization (input.normalization.mean/std): it is a starting "
            "point for training (tools/train_cls.py --init), not a model to evaluate"
        )
    model = build_network(network)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"the weights in {source} do not fit the network it records ({network}): {e}") from e
    return model.eval()


def load_classifier(path, trust: bool = False, map_location="cpu") -> nn.Module:
    """The classifier a checkpoint file describes, with its weights, in eval mode.

    A DCT model takes raw coefficients (its normalization is inside it), e.g. those of
    :class:`~.data.DCTCropTransform` or, for the official release's weights,
    :class:`~.official.OfficialEvalTransform`. ``trust`` allows files that need pickled
    Python objects (see :func:`freqdet.safe_load.load_checkpoint`).
    """
    checkpoint = load_checkpoint(path, trust=trust, map_location=map_location)
    return classifier_from_checkpoint(checkpoint, repr(os.fspath(path)))


def load_initial_weights(model: nn.Module, state: Dict, source: str) -> Report:
    """Load a starting point into ``model``, keeping the model's fresh tensors where ``state`` has
    another shape (the head of another class count), no normalization statistics, or no gate.

    Anything else missing or unexpected means the weights are of another network: ValueError.
    """
    ours = model.state_dict()
    fresh = [
        k for k, v in state.items() if k in ours and ours[k].shape != v.shape and not k.startswith(NORMALIZATION_PREFIX)
    ]
    kept = {k: v for k, v in state.items() if k not in fresh}
    incompatible = model.load_state_dict(kept, strict=False)
    allowed = set(fresh) | {NORMALIZATION_PREFIX + name for name in ("mean", "std", "selected")}
    if not any(k.startswith("input.gate.") for k in state):
        allowed |= {k for k in ours if k.startswith("input.gate.")}
    missing = [k for k in incompatible.missing_keys if k not in allowed]
    if missing or incompatible.unexpected_keys:
        raise ValueError(
            f"the weights in {source} are not of this network: missing {missing}, "
            f"unexpected {incompatible.unexpected_keys}"
        )
    report = Report(mapped=[(k, k) for k in kept])
    report.reinitialized = [f"{k} ({tuple(state[k].shape)} in {source}, {tuple(ours[k].shape)} here)" for k in fresh]
    report.reinitialized += [k for k in incompatible.missing_keys if k.startswith("input.gate.")]
    return report
