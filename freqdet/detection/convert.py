"""Classifier weights -> a Detectron2 detector's keys, for ``MODEL.WEIGHTS``.

Maps :class:`freqdet.classification.models.ResNet50DCT` (torchvision's names) onto
:func:`freqdet.detection.backbone.build_resnet_dct_fpn_backbone` (Detectron2's names):
``layerN`` -> ``backbone.bottom_up.res{N+1}``, the gate under ``backbone.bottom_up.stem.gate``,
and the input normalization (statistics and channels) onto the meta-architecture's.
"""

import re
from typing import List, Tuple

import torch
from torch import nn

from ..classification.convert import Report, StateDict, unwrap
from ..normalization import selection_mask, upgrade_legacy_keys

_BLOCK = re.compile(r"layer([1-4])\.(\d+)\.(.+)")
_PARTS = {
    "conv1": "conv1",
    "conv2": "conv2",
    "conv3": "conv3",
    "bn1": "conv1.norm",
    "bn2": "conv2.norm",
    "bn3": "conv3.norm",
    "downsample.0": "shortcut",
    "downsample.1": "shortcut.norm",
}
_NORMALIZATION = "input.normalization."


def classifier_to_detectron2(checkpoint) -> Tuple[StateDict, Report]:
    """ResNet-50-DCT (a state dict or a checkpoint of ``tools/train_cls.py``) -> detector keys.

    BatchNorm's ``num_batches_tracked`` is dropped for the backbone (Detectron2 turns
    its norms into FrozenBN); the classifier's head (``fc``) has no detector counterpart.
    Both layouts give the same backbone: the detector keeps the standard strides (1, 2, 2, 2)
    where the official classifier runs layer2 at stride 1, as the release's own detector does.
    The channels a checkpoint records become the detector's ``normalization.selected``,
    which loading checks against the config's selection.
    """
    report, out, counters = Report(), {}, 0
    state = unwrap(checkpoint)
    upgrade_legacy_keys(state, "input.")
    channels = checkpoint.get("channels") if isinstance(checkpoint, dict) else None
    if isinstance(checkpoint, dict) and checkpoint.get("layout") == "official":
        report.notes.append(
            "the official layout's layer2 (stride 1 in the release's classifier) becomes res3 at "
            "the standard stride 2, as in the release's detection backbone"
        )
    if isinstance(channels, (list, tuple)) and _NORMALIZATION + "selected" not in state:
        state[_NORMALIZATION + "selected"] = selection_mask([int(c) for c in channels])
    if _NORMALIZATION + "selected" in state:
        count = int(torch.as_tensor(state[_NORMALIZATION + "selected"]).sum())
        report.notes.append(f"recorded the classifier's {count} DCT channels as normalization.selected")
    for key, value in state.items():
        new = None
        block = _BLOCK.match(key)
        if block:
            stage, index, rest = block.groups()
            module, _, tensor = rest.rpartition(".")
            if tensor == "num_batches_tracked":
                counters += 1
                continue
            if module in _PARTS:
                new = f"backbone.bottom_up.res{int(stage) + 1}.{index}.{_PARTS[module]}.{tensor}"
        elif key.startswith("input.gate."):
            new = "backbone.bottom_up.stem.gate." + key[len("input.gate.") :]
        elif key.startswith(_NORMALIZATION):
            new = "normalization." + key[len(_NORMALIZATION) :]
        elif key.startswith("fc."):
            report.dropped.append(key)
            continue
        if new is None:
            report.unmapped.append(key)
            continue
        out[new] = value
        report.mapped.append((key, new))
    if counters:
        report.notes.append(f"left out {counters} BatchNorm num_batches_tracked counters (FrozenBN has none)")
    return out, report


def detectron2_backbone_report(model: nn.Module, converted: StateDict) -> Tuple[List[str], List[str], List[str]]:
    """(missing, unexpected, mismatched) keys if ``converted`` were loaded into a Detectron2 model.

    Missing and unexpected: backbone keys. Mismatched: keys present in both with other
    shapes (another channel count), and ``normalization.selected`` if the selections differ.
    """
    state = model.state_dict()
    expected = {k for k in state if k.startswith("backbone.bottom_up.")}
    given = {k for k in converted if k.startswith("backbone.bottom_up.")}
    mismatched = [
        k
        for k in sorted(set(state) & set(converted))
        if state[k].shape != converted[k].shape
        or (k == "normalization.selected" and not torch.equal(state[k], converted[k]))
    ]
    return sorted(expected - given), sorted(given - expected), mismatched
