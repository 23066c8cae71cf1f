"""Weight conversions into this package's classifiers (Detectron2-free).

Every conversion returns the converted state dict and a :class:`Report` of what was
mapped, re-initialised, dropped or not understood, so nothing changes silently.

- :func:`official_to_classifier`: the official DCTNet release's ``model_best.pth.tar``
  (``state_dict`` with ``model.0.*`` .. ``model.3.*`` = layer1..layer4, ``fc.*``, the gate
  as ``inp_GM.*``, possibly under ``module.``) -> this package's ResNet-50-DCT.
- :func:`torchvision_to_classifier`: torchvision's RGB ResNet-50 -> ResNet-50-DCT with C
  input channels: layer1..layer4 reused, the stem dropped, and the two convolutions of
  layer1's first block that read the input re-initialised for C channels.

:mod:`freqdet.detection.convert` maps a classifier's keys onto a Detectron2 detector's.
"""
import re
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import torch

StateDict = Dict[str, torch.Tensor]


@dataclass
class Report:
    """What a conversion did with each key."""

    mapped: List[Tuple[str, str]] = field(default_factory=list)
    reinitialized: List[str] = field(default_factory=list)
    dropped: List[str] = field(default_factory=list)
    unmapped: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"mapped {len(self.mapped)} tensors"] + self.notes
        for title, keys in (("re-initialised", self.reinitialized), ("dropped", self.dropped),
                            ("not understood (left out)", self.unmapped)):
            if keys:
                lines.append(f"{title} ({len(keys)}): " + ", ".join(keys))
        return "\n".join(lines)


def unwrap(checkpoint) -> StateDict:
    """The state dict inside a checkpoint (``state_dict`` or ``model`` entry), ``module.`` prefixes removed."""
    state = checkpoint
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


_OFFICIAL_GATE = {"inp_gate.0.": "mix.", "inp_gate.1.": "norm.", "inp_gate_l.": "logits."}


def official_to_classifier(checkpoint) -> Tuple[StateDict, Report]:
    """The official release's ResNet-50-DCT checkpoint -> :class:`~.models.ResNet50DCT` keys."""
    report, out = Report(), {}
    for key, value in unwrap(checkpoint).items():
        new = None
        layer = re.match(r"model\.([0-3])\.(.*)", key)
        if layer:
            new = f"layer{int(layer.group(1)) + 1}.{layer.group(2)}"
        elif key.startswith("fc."):
            new = key
        elif key.startswith("inp_GM."):
            rest = key[len("inp_GM."):]
            prefix = next((p for p in _OFFICIAL_GATE if rest.startswith(p)), None)
            new = f"input.gate.{_OFFICIAL_GATE[prefix]}{rest[len(prefix):]}" if prefix else None
        if new is None:
            report.unmapped.append(key)
            continue
        out[new] = value
        report.mapped.append((key, new))
    return out, report


def torchvision_to_classifier(state: StateDict, channels: int, seed: int = 0) -> Tuple[StateDict, Report]:
    """torchvision's RGB ResNet-50 -> ResNet-50-DCT with ``channels`` inputs (input convs re-initialised)."""
    report, out = Report(), {}
    generator = torch.Generator().manual_seed(seed)
    for key, value in unwrap(state).items():
        if key.startswith(("conv1.", "bn1.")):
            report.dropped.append(key)
        elif key in ("layer1.0.conv1.weight", "layer1.0.downsample.0.weight"):
            fresh = torch.empty(value.shape[0], channels, *value.shape[2:])
            fan_out = fresh.shape[0] * fresh[0, 0].numel()
            out[key] = fresh.normal_(0, (2.0 / fan_out) ** 0.5, generator=generator)  # Kaiming, fan-out, as torchvision
            report.reinitialized.append(f"{key} ({value.shape[1]} -> {channels} input channels)")
        elif key.startswith(("layer", "fc.")):
            out[key] = value
            report.mapped.append((key, key))
        else:
            report.unmapped.append(key)
    return out, report
