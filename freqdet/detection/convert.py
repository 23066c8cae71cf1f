"""Weights into a Detectron2 detector's keys, for ``MODEL.WEIGHTS``.

:func:`classifier_to_detectron2` maps :class:`freqdet.classification.models.ResNet50DCT`
(torchvision's names) onto :func:`freqdet.detection.backbone.build_resnet_dct_fpn_backbone`
(Detectron2's names): ``layerN`` -> ``backbone.bottom_up.res{N+1}``, the gate under
``backbone.bottom_up.stem.gate``, and the input normalization (statistics and channels) onto
the meta-architecture's. :func:`convert_to_detectron2` does it from any source
``tools/convert_weights.py`` reads, and :func:`backbone_fit` checks the result against a config.
"""

import re
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from detectron2.modeling import build_model
from torch import nn

from ..classification.checkpoints import NORMALIZATION_PREFIX, is_classifier_checkpoint, recorded_network
from ..classification.convert import StateDict, convert_to_classifier, official_to_classifier, unwrap
from ..classification.official import table_provenance
from ..classification.report import Report
from ..normalization import selected_channels, selection_mask
from .config import load_config

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
# Where the detector's ChannelNormalization lives in its state dict (DCTGeneralizedRCNN.normalization).
DETECTOR_NORMALIZATION_PREFIX = "normalization."


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
    channels = checkpoint.get("channels") if isinstance(checkpoint, dict) else None
    if isinstance(checkpoint, dict) and checkpoint.get("layout") == "official":
        report.notes.append(
            "the official layout's layer2 (stride 1 in the release's classifier) becomes res3 at "
            "the standard stride 2, as in the release's detection backbone"
        )
    if isinstance(channels, (list, tuple)) and NORMALIZATION_PREFIX + "selected" not in state:
        state[NORMALIZATION_PREFIX + "selected"] = selection_mask([int(c) for c in channels])
    if NORMALIZATION_PREFIX + "selected" in state:
        count = int(torch.as_tensor(state[NORMALIZATION_PREFIX + "selected"]).sum())
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
        elif key.startswith(NORMALIZATION_PREFIX):
            new = DETECTOR_NORMALIZATION_PREFIX + key[len(NORMALIZATION_PREFIX) :]
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
        or (k == DETECTOR_NORMALIZATION_PREFIX + "selected" and not torch.equal(state[k], converted[k]))
    ]
    return sorted(expected - given), sorted(given - expected), mismatched


def convert_to_detectron2(
    checkpoint,
    source: str,
    origin: str = "the checkpoint",
    arch: str = "resnet50",
    channels: Optional[int] = None,
    layout: str = "torchvision",
    input_init: str = "reinit",
) -> Tuple[Dict, List[Tuple[str, Report]]]:
    """A Detectron2 checkpoint (``model``, ``channels``, ``normalization``) of a ResNet-50's weights
    from ``source``, and the reports of each step.

    ``source`` is as for :func:`freqdet.classification.convert.convert_to_classifier`; the
    official release's weights are normalized with its detection table.
    """
    reports = []
    if arch != "resnet50":
        raise ValueError(f"Detectron2 backbones here are ResNets; --arch {arch} has no detector target")
    if source == "official":
        state, report = official_to_classifier(checkpoint, arch, "detection", origin)
        reports.append(("official -> classifier", report))
        classifier = {"model": state, "layout": "official"}
        normalization = table_provenance("detection")
    elif source == "torchvision":
        classifier, steps = convert_to_classifier(checkpoint, source, origin, arch, channels, layout, input_init)
        reports += steps
        normalization = None
    else:
        if is_classifier_checkpoint(checkpoint) and recorded_network(checkpoint, origin).arch != "resnet50":
            raise ValueError(
                f"{origin} is a {recorded_network(checkpoint, origin).arch} classifier; Detectron2 backbones here "
                "are ResNets"
            )
        classifier = checkpoint
        normalization = checkpoint.get("normalization") if isinstance(checkpoint, dict) else None
    state, report = classifier_to_detectron2(classifier)
    reports.append(("classifier -> detectron2", report))
    record = {
        "model": state,
        "__converted_from__": source,
        "channels": selected_channels(state, DETECTOR_NORMALIZATION_PREFIX),
        "normalization": normalization,
    }
    return record, reports


def backbone_fit(state: StateDict, config_file: str, opts: Sequence = ()) -> Tuple[List[str], List[str], List[str]]:
    """:func:`detectron2_backbone_report` of ``state`` against the model of a config (built on the CPU)."""
    return detectron2_backbone_report(build_model(load_config(config_file, ["MODEL.DEVICE", "cpu", *opts])), state)
