"""Weights into a Detectron2 detector's keys, for ``MODEL.WEIGHTS``.

:func:`classifier_to_detectron2` maps :class:`freqdet.classification.models.ResNet50DCT`
(torchvision's names) onto :func:`freqdet.detection.backbone.build_resnet_dct_fpn_backbone`
(Detectron2's names): ``layerN`` -> ``backbone.bottom_up.res{N+1}``, the gate under
``backbone.bottom_up.stem.gate``, and the input normalization (statistics and channels) onto
the meta-architecture's. :func:`convert_to_detectron2` does it from any source
``tools/convert_weights.py`` reads, and :func:`model_fit` checks the result against a config.

:func:`release_detector_to_detectron2` maps the official release's trained detectors
(mmdetection v1 names) onto the whole Detectron2 model, heads included.
"""

import re
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from detectron2.modeling import build_model
from torch import nn

from ..classification.checkpoints import NORMALIZATION_PREFIX, is_classifier_checkpoint, recorded_network
from ..classification.convert import StateDict, convert_to_classifier, official_to_classifier, unwrap
from ..classification.official import official_stats, table_provenance
from ..classification.report import Report
from ..dct import NUM_CHANNELS, channel_indices
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


def detectron2_backbone_report(
    model: nn.Module, converted: StateDict, prefix: str = "backbone.bottom_up."
) -> Tuple[List[str], List[str], List[str]]:
    """(missing, unexpected, mismatched) keys if ``converted`` were loaded into a Detectron2 model.

    Missing and unexpected: keys under ``prefix`` (the ResNet's; "" for the whole model).
    Mismatched: keys present in both with other shapes (another channel count or class count),
    and ``normalization.selected`` if the selections differ.
    """
    state = model.state_dict()
    expected = {k for k in state if k.startswith(prefix)}
    given = {k for k in converted if k.startswith(prefix)}
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

    ``source`` is as for :func:`freqdet.classification.convert.convert_to_classifier`, or
    ``"release-detector"``: one of the official release's trained detectors, the whole model
    (:func:`release_detector_to_detectron2`). The official release's weights are normalized
    with its detection table.
    """
    if source == "release-detector":
        state, report = release_detector_to_detectron2(checkpoint, origin)
        record = {
            "model": state,
            "__converted_from__": source,
            "channels": selected_channels(state, DETECTOR_NORMALIZATION_PREFIX),
            "normalization": table_provenance("detection"),
        }
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get("meta"), dict):
            record["release_meta"] = {k: v for k, v in checkpoint["meta"].items() if isinstance(v, (str, int, float))}
        return record, [("release detector -> detectron2", report)]
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


def model_fit(
    state: StateDict, config_file: str, opts: Sequence = (), prefix: str = "backbone.bottom_up."
) -> Tuple[List[str], List[str], List[str]]:
    """:func:`detectron2_backbone_report` of ``state`` against the model of a config (built on the CPU)."""
    model = build_model(load_config(config_file, ["MODEL.DEVICE", "cpu", *opts]))
    return detectron2_backbone_report(model, state, prefix)


# The release's detector names (mmdetection v1) -> Detectron2's, for what is not the ResNet.
_RELEASE_HEADS = [
    (
        re.compile(r"neck\.lateral_convs\.(\d)\.conv\.(weight|bias)"),
        lambda m: f"backbone.fpn_lateral{int(m[1]) + 2}.{m[2]}",
    ),
    (re.compile(r"neck\.fpn_convs\.(\d)\.conv\.(weight|bias)"), lambda m: f"backbone.fpn_output{int(m[1]) + 2}.{m[2]}"),
    (re.compile(r"rpn_head\.rpn_conv\.(weight|bias)"), lambda m: f"proposal_generator.rpn_head.conv.{m[1]}"),
    (
        re.compile(r"rpn_head\.rpn_cls\.(weight|bias)"),
        lambda m: f"proposal_generator.rpn_head.objectness_logits.{m[1]}",
    ),
    (re.compile(r"rpn_head\.rpn_reg\.(weight|bias)"), lambda m: f"proposal_generator.rpn_head.anchor_deltas.{m[1]}"),
    (
        re.compile(r"bbox_head\.shared_fcs\.(\d)\.(weight|bias)"),
        lambda m: f"roi_heads.box_head.fc{int(m[1]) + 1}.{m[2]}",
    ),
    (
        re.compile(r"mask_head\.convs\.(\d)\.conv\.(weight|bias)"),
        lambda m: f"roi_heads.mask_head.mask_fcn{int(m[1]) + 1}.{m[2]}",
    ),
    (re.compile(r"mask_head\.upsample\.(weight|bias)"), lambda m: f"roi_heads.mask_head.deconv.{m[1]}"),
]
# Class-indexed outputs: mmdetection v1 puts the background first; Detectron2's box classifier
# puts it last, and its box regressor and mask predictor have none.
_RELEASE_CLASSES = {
    "bbox_head.fc_cls": ("roi_heads.box_predictor.cls_score", "last", 1),
    "bbox_head.fc_reg": ("roi_heads.box_predictor.bbox_pred", "drop", 4),
    "mask_head.conv_logits": ("roi_heads.mask_head.predictor", "drop", 1),
}


def _without_background(value: torch.Tensor, where: str, rows: int) -> torch.Tensor:
    """Rows of per-class outputs (``rows`` per class, the background's first) in Detectron2's order."""
    background, classes = value[:rows], value[rows:]
    return torch.cat([classes, background]) if where == "last" else classes


def release_detector_to_detectron2(checkpoint, source: str = "the checkpoint") -> Tuple[StateDict, Report]:
    """The official release's Mask or Faster R-CNN checkpoint (``latest.pth``: ``state_dict`` with
    mmdetection v1 names, and ``meta``) -> the keys of freqdet's R50-FPN detector.

    ResNet (``backbone.layerN``) as :func:`classifier_to_detectron2` maps it; FPN, RPN head, box
    head and mask head by name; class-indexed outputs reordered (the background, first in the
    release, is last in Detectron2's classifier and dropped from its regressor and mask
    predictor); the unused stem (``backbone.conv1`` / ``bn1``, which the release's forward
    skips) and BatchNorm counters left out; the channel selection read off ``layer1.0.conv1``
    and the release's detection table written in for it. Every other tensor must find a place:
    ValueError naming the leftovers otherwise.
    """
    state = unwrap(checkpoint)
    key = "backbone.layer1.0.conv1.weight"
    if key not in state or "rpn_head.rpn_conv.weight" not in state:
        raise ValueError(
            f"{source} is not one of the release's detectors (no {key!r} or 'rpn_head.rpn_conv.weight'); its "
            "ImageNet classifiers convert with --source official"
        )
    count = int(state[key].shape[1])
    try:
        channels = channel_indices(count, "square")
    except ValueError as e:
        raise ValueError(
            f"{source} takes {count} DCT channels; the release's selections have 24, 32, 48, 64 or {NUM_CHANNELS}"
        ) from e
    report, out, counters = Report(), {}, 0
    backbone = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.layer")}
    converted, backbone_report = classifier_to_detectron2(backbone)
    for old, new in backbone_report.mapped:
        out[new] = converted[new]
        report.mapped.append(("backbone." + old, new))
    leftovers = ["backbone." + k for k in backbone_report.unmapped]
    counters += sum(1 for k in backbone if k.endswith("num_batches_tracked"))
    for name, value in state.items():
        if name.startswith("backbone.layer"):
            continue
        if name.startswith(("backbone.conv1.", "backbone.bn1.")):
            report.dropped.append(name)
            continue
        if name.endswith("num_batches_tracked"):
            counters += 1
            continue
        prefix, _, tensor = name.rpartition(".")
        if prefix in _RELEASE_CLASSES:
            target, where, rows = _RELEASE_CLASSES[prefix]
            out[f"{target}.{tensor}"] = _without_background(value, where, rows)
            report.mapped.append((name, f"{target}.{tensor}"))
            continue
        match = next(
            ((pattern.fullmatch(name), rename) for pattern, rename in _RELEASE_HEADS if pattern.fullmatch(name)), None
        )
        if match is None:
            leftovers.append(name)
            continue
        out[match[1](match[0])] = value
        report.mapped.append((name, match[1](match[0])))
    if leftovers:
        raise ValueError(
            f"{source}: {len(leftovers)} tensors have no place in freqdet's R50-FPN detector: {', '.join(leftovers)}"
        )
    mean, std = official_stats("detection").pick(channels, "the release's detection table")
    out["normalization.selected"] = selection_mask(channels)
    out["normalization.mean"] = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    out["normalization.std"] = torch.as_tensor(std, dtype=torch.float32).view(-1, 1, 1)
    classes = (
        out["roi_heads.box_predictor.cls_score.weight"].shape[0] - 1
        if "roi_heads.box_predictor.cls_score.weight" in out
        else None
    )
    report.notes.append(
        f"{count} DCT channels (the square selection), normalized with {table_provenance('detection')}; "
        f"{classes} classes, the background moved last; the stem the release's forward skips left out"
    )
    if counters:
        report.notes.append(f"left out {counters} BatchNorm num_batches_tracked counters (FrozenBN has none)")
    return out, report
