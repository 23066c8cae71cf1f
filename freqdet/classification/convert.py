"""Weight conversions into this package's classifiers (Detectron2-free).

Every conversion returns the converted state dict and a :class:`Report` of what was
mapped, re-initialised, dropped or not understood, so nothing changes silently.

- :func:`official_to_classifier`: the official DCTNet release's ``model_best.pth.tar``
  (``state_dict``, possibly under ``module.``) -> this package's classifier in the
  ``"official"`` layout, with one of the release's normalization tables for its channels
  (which it infers from the input convolution, the release's selections being the square
  ones). ResNet-50 (``ResNetDCT_Upscaled_Static``): ``model.0.*`` .. ``model.3.*`` =
  layer1..layer4, ``fc.*``, the gate as ``inp_GM.*``. MobileNetV2
  (``MobileNetV2DCT_Subset_woinp``): tonylins' MobileNetV2 names, ``features.*`` without the
  first stage, ``conv.*`` (the last 1x1 convolution), ``classifier.*``.
- :func:`torchvision_to_classifier`: torchvision's RGB ResNet-50 or MobileNetV2 -> a DCT
  classifier of C input channels: the stem (ResNet-50, and MobileNetV2 in the official
  layout) dropped, the rest reused, and the layers that read the input either
  re-initialised (``"reinit"``) or cut from the RGB weights as the release does
  (``"slice"``: the first C input channels of layer1's first convolutions for ResNet-50;
  for MobileNetV2 the first C channels of the t=1 block, or its depthwise kernels repeated
  over 192 channels).

:mod:`freqdet.detection.convert` maps a classifier's keys onto a Detectron2 detector's.
"""

import re
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from ..dct import NUM_CHANNELS, channel_indices, resolve_channels
from ..normalization import selected_channels, selection_mask
from .checkpoints import HEAD_KEYS, NORMALIZATION_PREFIX, classifier_record, recorded_network
from .models import ARCHITECTURES, LAYOUTS, check_channel_count
from .official import official_stats, table_provenance
from .report import Report

StateDict = Dict[str, torch.Tensor]
INPUT_INITS = ("reinit", "slice")


def unwrap(checkpoint) -> StateDict:
    """The state dict inside a checkpoint (``state_dict`` or ``model`` entry), ``module.`` prefixes removed."""
    state = checkpoint
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    return {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}


def _check_arch(arch: str) -> None:
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; use one of {ARCHITECTURES}")


# --- the official release -------------------------------------------------------------------

_OFFICIAL_GATE = {"inp_gate.0.": "mix.", "inp_gate.1.": "norm.", "inp_gate_l.": "logits."}
# tonylins' InvertedResidual.conv indices -> torchvision's, for the t=1 block and the others.
_BLOCK_T1 = {"0": "0.0", "1": "0.1", "3": "1", "4": "2"}
_BLOCK_T6 = {"0": "0.0", "1": "0.1", "3": "1.0", "4": "1.1", "6": "2", "7": "3"}
_LAST_MOBILENET_BLOCK = 16  # features.16 is the 320-channel block; the release's conv.* follows it


def _official_key(key: str, arch: str):
    """Our name of one of the release's keys, or None."""
    if key.startswith("inp_GM."):
        rest = key[len("inp_GM.") :]
        prefix = next((p for p in _OFFICIAL_GATE if rest.startswith(p)), None)
        return f"input.gate.{_OFFICIAL_GATE[prefix]}{rest[len(prefix) :]}" if prefix else None
    if arch == "resnet50":
        layer = re.match(r"model\.([0-3])\.(.*)", key)
        if layer:
            return f"layer{int(layer.group(1)) + 1}.{layer.group(2)}"
        return key if key.startswith("fc.") else None
    block = re.match(r"features\.(\d+)\.conv\.(\d+)\.(\w+)$", key)
    if block and int(block.group(1)) <= _LAST_MOBILENET_BLOCK:
        index, position, tensor = block.groups()
        part = (_BLOCK_T1 if index == "0" else _BLOCK_T6).get(position)
        return f"features.{index}.conv.{part}.{tensor}" if part else None
    last = re.match(r"conv\.([01])\.(\w+)$", key)
    if last:
        return f"features.{_LAST_MOBILENET_BLOCK + 1}.{last.group(1)}.{last.group(2)}"
    return key.replace("classifier.", "classifier.1.", 1) if re.match(r"classifier\.(weight|bias)$", key) else None


# The input convolution of each release model, and the channel count its weight's shape gives.
_OFFICIAL_INPUT = {
    "resnet50": ("model.0.0.conv1.weight", lambda w: w.shape[1]),
    # C < 32: (C, 1, 3, 3); 32: (32, 1, 3, 3); 192: a grouped (32, 6, 3, 3).
    "mobilenet_v2": ("features.0.conv.0.weight", lambda w: w.shape[0] * w.shape[1]),
}


def official_channels(state: StateDict, arch: str, source: str = "the checkpoint") -> Tuple[int, ...]:
    """The release's channel selection a checkpoint of ``arch`` takes, read off its input convolution.

    The release's models take its square selections (24, 32, 48, 64) or all 192 channels.
    """
    key, count_of = _OFFICIAL_INPUT[arch]
    if key not in state:
        other = next((a for a, (k, _) in _OFFICIAL_INPUT.items() if k in state), None)
        hint = (
            f"; it looks like the release's {other}: use --arch {other}"
            if other
            else "; is it a checkpoint of the official DCTNet release?"
        )
        raise ValueError(f"{source} has no {key!r}, the input convolution of the release's {arch}{hint}")
    count = int(count_of(state[key]))
    try:
        return channel_indices(count, "square")
    except ValueError as e:
        raise ValueError(
            f"{source} takes {count} DCT channels ({key} is {tuple(state[key].shape)}); the "
            f"release's selections have 24, 32, 48, 64 or {NUM_CHANNELS}"
        ) from e


def official_to_classifier(
    checkpoint, arch: str = "resnet50", table: str = "classification", source: str = "the checkpoint"
) -> Tuple[StateDict, Report]:
    """The release's checkpoint of ``arch`` -> keys of this package's classifier in the official layout.

    The release's normalization ``table`` (:func:`freqdet.classification.official.official_stats`:
    ``"classification"`` for its ImageNet models, ``"detection"`` for a detector's backbone)
    becomes ``input.normalization`` for the channels the checkpoint takes.
    """
    _check_arch(arch)
    state = unwrap(checkpoint)
    channels = official_channels(state, arch, source)
    report, out = Report(), {}
    for key, value in state.items():
        new = _official_key(key, arch)
        if new is None:
            report.unmapped.append(key)
            continue
        out[new] = value
        report.mapped.append((key, new))
    mean, std = official_stats(table).pick(channels, table)
    out[NORMALIZATION_PREFIX + "selected"] = selection_mask(channels)
    out[NORMALIZATION_PREFIX + "mean"] = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    out[NORMALIZATION_PREFIX + "std"] = torch.as_tensor(std, dtype=torch.float32).view(-1, 1, 1)
    named = "all" if len(channels) == NUM_CHANNELS else f"the square selection {list(channels)}"
    report.notes.append(f"{len(channels)} DCT channels ({named}), normalized with {table_provenance(table)}")
    return out, report


# --- torchvision's RGB models -----------------------------------------------------------------


def _fresh_conv(shape: Sequence[int], generator: torch.Generator) -> torch.Tensor:
    """Kaiming normal, fan-out, as torchvision initialises convolutions."""
    fan_out = shape[0] * torch.Size(shape[2:]).numel()
    return torch.empty(*shape).normal_(0, (2.0 / fan_out) ** 0.5, generator=generator)


def _fresh_norm(key: str, channels: int) -> torch.Tensor:
    """A BatchNorm tensor as a fresh BatchNorm2d holds it."""
    tensor = key.rpartition(".")[2]
    if tensor == "num_batches_tracked":
        return torch.zeros((), dtype=torch.long)
    return torch.ones(channels) if tensor in ("weight", "running_var") else torch.zeros(channels)


def _input_layers(arch: str, layout: str) -> Dict[str, str]:
    """Our keys (prefixes) of the layers that read the DCT input -> what they are."""
    if arch == "resnet50":
        return {"layer1.0.conv1.weight": "conv", "layer1.0.downsample.0.weight": "conv"}
    if layout == "torchvision":
        return {"features.0.0.": "conv", "features.0.1.": "norm"}
    return {
        "features.0.conv.0.0.": "depthwise",
        "features.0.conv.0.1.": "depthwise norm",
        "features.0.conv.1.": "pointwise",
    }


def _rgb_key(key: str, arch: str, layout: str):
    """Our key of a torchvision RGB key, or None for the stem the DCT model drops."""
    if arch == "resnet50":
        return None if key.startswith(("conv1.", "bn1.")) else key
    if layout == "torchvision":
        return key
    index = re.match(r"features\.(\d+)\.(.*)", key)
    if index:
        return None if index.group(1) == "0" else f"features.{int(index.group(1)) - 1}.{index.group(2)}"
    return key


def _t1_width(channels: int, rgb_width: int) -> int:
    """Width of the official MobileNetV2's t=1 block for ``channels`` inputs: C below 32, else 32
    (at 192 its depthwise convolution groups 6 inputs per output)."""
    return min(channels, rgb_width)


def _sliced(key: str, kind: str, value: torch.Tensor, channels: int, arch: str) -> torch.Tensor:
    """The release's cut of an RGB input layer for ``channels`` inputs (ValueError where it has none)."""
    if arch == "resnet50":
        if channels > value.shape[1]:
            raise ValueError(
                f"slicing keeps at most the {value.shape[1]} input channels of {key}, not {channels}; "
                "use --init-input reinit (the release re-initialises them for 192 channels)"
            )
        return value[:, :channels]
    if value.ndim == 0:  # num_batches_tracked
        return value
    if kind == "pointwise":
        return value[:, : _t1_width(channels, value.shape[1])]
    width = _t1_width(channels, value.shape[0])
    if kind == "depthwise":  # at 192 the release repeats each kernel over its group's 6 inputs
        return value[:width].repeat(1, channels // width, 1, 1)
    return value[:width]


def _fresh(kind: str, key: str, value: torch.Tensor, channels: int, generator: torch.Generator) -> torch.Tensor:
    """A freshly initialised input layer for ``channels`` inputs, of the RGB ``value``'s kind."""
    if kind == "conv":  # ResNet-50's 1x1 input convolutions, MobileNetV2's first convolution
        return _fresh_conv((value.shape[0], channels, *value.shape[2:]), generator)
    if kind == "pointwise":
        return _fresh_conv((value.shape[0], _t1_width(channels, value.shape[1]), *value.shape[2:]), generator)
    if kind == "depthwise":
        width = _t1_width(channels, value.shape[0])
        return _fresh_conv((width, channels // width, *value.shape[2:]), generator)
    width = value.shape[0] if value.ndim else 0
    return _fresh_norm(key, _t1_width(channels, width) if kind == "depthwise norm" else width)


def torchvision_to_classifier(
    state: StateDict,
    channels: int,
    seed: int = 0,
    arch: str = "resnet50",
    layout: str = "torchvision",
    input_init: str = "reinit",
) -> Tuple[StateDict, Report]:
    """torchvision's RGB ``arch`` -> a DCT classifier of ``channels`` inputs in ``layout``.

    ``input_init`` "reinit" gives the layers that read the input fresh weights (seeded);
    "slice" cuts them from the RGB weights as the release does (ResNet-50 up to 64
    channels; MobileNetV2 in the official layout only).
    """
    _check_arch(arch)
    if layout not in LAYOUTS or input_init not in INPUT_INITS:
        raise ValueError(
            f"layout must be one of {LAYOUTS} and input_init one of {INPUT_INITS}, got {layout!r} and {input_init!r}"
        )
    check_channel_count(arch, layout, channels)
    if input_init == "slice" and arch == "mobilenet_v2" and layout == "torchvision":
        raise ValueError(
            "the torchvision MobileNetV2 layout's first convolution reads 3 RGB channels, so there is "
            "nothing to slice: use --init-input reinit, or --layout official"
        )
    report, out = Report(), {}
    generator = torch.Generator().manual_seed(seed)
    inputs = _input_layers(arch, layout)
    for key, value in unwrap(state).items():
        new = _rgb_key(key, arch, layout)
        if new is None:
            report.dropped.append(key)
            continue
        if not new.startswith(("layer", "fc.", "features.", "classifier.")):
            report.unmapped.append(key)
            continue
        kind = next((k for prefix, k in inputs.items() if new.startswith(prefix)), None)
        if kind is None:
            out[new] = value
            report.mapped.append((key, new))
        elif input_init == "slice":
            out[new] = _sliced(new, kind, value, channels, arch)
            report.mapped.append((key, f"{new} (cut to {tuple(out[new].shape)} for {channels} input channels)"))
        else:
            out[new] = _fresh(kind, new, value, channels, generator)
            shape = f" ({value.shape[1]} -> {channels} input channels)" if kind == "conv" else ""
            report.reinitialized.append(new + shape)
    return out, report


SOURCES = ("classifier", "official", "torchvision")


def convert_to_classifier(
    checkpoint,
    source: str,
    origin: str = "the checkpoint",
    arch: str = "resnet50",
    channels: Optional[int] = None,
    layout: str = "torchvision",
    input_init: str = "reinit",
) -> Tuple[Dict, List[Tuple[str, Report]]]:
    """A classifier checkpoint (:func:`~.checkpoints.classifier_record`) of weights from ``source``,
    and the reports of each step.

    ``source`` is ``"official"`` (the release's ``model_best.pth.tar``; its classification
    table is written in for its channels), ``"torchvision"`` (RGB weights; ``channels`` DCT
    inputs, ``layout`` and ``input_init`` as :func:`torchvision_to_classifier`), or
    ``"classifier"`` (one of ours, passed through). ``origin`` names the file in messages
    and in the record's ``converted_from``.
    """
    if source == "official":
        state, report = official_to_classifier(checkpoint, arch, "classification", origin)
        selection = selected_channels(state, NORMALIZATION_PREFIX)
        layout, normalization = "official", table_provenance("classification")
    elif source == "torchvision":
        if channels is None:
            raise ValueError("--source torchvision needs --channels (the DCT input channels)")
        selection = resolve_channels(channels)
        state, report = torchvision_to_classifier(
            checkpoint, len(selection), arch=arch, layout=layout, input_init=input_init
        )
        normalization = "none yet: computed over the training images when training starts (tools/train_cls.py --init)"
    elif source == "classifier":
        recorded_network(checkpoint, origin)
        return dict(checkpoint, model=unwrap(checkpoint)), []
    else:
        raise ValueError(f"unknown conversion source {source!r}; use one of {SOURCES}")
    num_classes = state[HEAD_KEYS[arch]].shape[0]
    record = classifier_record(
        state, arch, layout, selection, num_classes, normalization, converted_from=f"{source}: {origin}"
    )
    return record, [(f"{source} -> classifier", report)]
