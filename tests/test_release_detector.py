"""The official release's trained detectors in freqdet: their checkpoints convert (every tensor
placed), and freqdet's model with the release configs gives the release's detections, held to
the release's inference written again independently (dctnet_release_detector) on stand-in
weights in the release's layout; what each release-specific step moves; the commands."""

import json
import os
import pathlib
import subprocess
import sys

import dctnet_release_detector as release  # needs cv2 and jpeglib: the test extra installs them
import numpy as np
import pytest
import torch

from freqdet.detection.release import STEPS

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = {
    (24, True): "configs/release/mask_rcnn_dct24_R50_FPN_1x.yaml",
    (64, True): "configs/release/mask_rcnn_dct64_R50_FPN_1x.yaml",
    (24, False): "configs/release/faster_rcnn_dct24_R50_FPN_1x.yaml",
    (64, False): "configs/release/faster_rcnn_dct64_R50_FPN_1x.yaml",
}
SMALL_SCALE = (666, 400)  # a smaller img_scale keeps the CPU tests quick; the arithmetic is the same


def convert(checkpoint, output, config=None):
    """tools/convert_weights.py --source release-detector, checked against ``config`` if given."""
    check = ["--config-file", config] if config else []
    command = [sys.executable, "tools/convert_weights.py", "--source", "release-detector", "--target", "detectron2"]
    return subprocess.run(
        command + check + [str(checkpoint), str(output)], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def stand_ins(module_tmp, photo_path):
    """The release models' stand-ins, made when first asked for: (channels, mask) -> (reference
    model, its latest.pth, the converted weights, what the conversion printed)."""
    folder = module_tmp("release")

    class StandIns(dict):
        def __missing__(self, key):
            channels, mask = key
            calibration, _ = release.test_input(photo_path, channels, folder, SMALL_SCALE)
            model = release.randomize(release.ReleaseDetector(channels, mask), channels + mask, calibration)
            checkpoint = folder / f"latest_{channels}_{int(mask)}.pth"
            release.save_release_checkpoint(model, checkpoint)
            converted = folder / f"converted_{channels}_{int(mask)}.pth"
            result = convert(checkpoint, converted, CONFIGS[key])
            assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
            self[key] = model, checkpoint, converted, result.stdout
            return self[key]

    return StandIns()


@pytest.mark.slow
def test_every_tensor_of_each_release_model_finds_its_place(stand_ins):
    for channels, mask in CONFIGS:
        model, _, converted, printed = stand_ins[channels, mask]
        assert "0 missing, 0 unexpected model keys, 0 of another shape or channel selection" in printed, printed
        state = torch.load(converted, weights_only=True)["model"]
        assert state["normalization.selected"].nonzero().flatten().tolist() == sorted(
            [
                *release.SUBSETS[channels][0],
                *(64 + c for c in release.SUBSETS[channels][1]),
                *(128 + c for c in release.SUBSETS[channels][2]),
            ]
        )
        ours = model.state_dict()
        # The background is first in the release's classifier and last in Detectron2's.
        cls = state["roi_heads.box_predictor.cls_score.weight"]
        assert torch.equal(cls[:80], ours["bbox_head.fc_cls.weight"][1:]) and torch.equal(
            cls[80], ours["bbox_head.fc_cls.weight"][0]
        )
        assert torch.equal(state["roi_heads.box_predictor.bbox_pred.bias"], ours["bbox_head.fc_reg.bias"][4:])
        if mask:
            assert torch.equal(state["roi_heads.mask_head.predictor.weight"], ours["mask_head.conv_logits.weight"][1:])
        assert torch.equal(state["backbone.fpn_lateral3.weight"], ours["neck.lateral_convs.1.conv.weight"])
        assert torch.equal(
            state["backbone.bottom_up.res5.2.conv3.norm.running_var"], ours["backbone.layer4.2.bn3.running_var"]
        )


@pytest.mark.slow
def test_a_tensor_with_no_place_fails_the_conversion_naming_it(stand_ins, tmp_path):
    _, checkpoint, _, _ = stand_ins[24, True]
    record = torch.load(checkpoint, weights_only=False)
    record["state_dict"]["bbox_head.fc_extra.weight"] = torch.zeros(3)
    torch.save(record, tmp_path / "odd.pth")
    result = convert(tmp_path / "odd.pth", tmp_path / "out.pth")
    assert result.returncode == 2 and "bbox_head.fc_extra.weight" in result.stderr and "no place" in result.stderr
    assert not (tmp_path / "out.pth").exists()


def predictor(converted, config, scale, *opts):
    from freqdet import DCTPredictor
    from freqdet.detection.config import load_config

    cfg = load_config(
        config,
        [
            "MODEL.WEIGHTS",
            str(converted),
            "MODEL.DEVICE",
            "cpu",
            "INPUT.MAX_SIZE_TEST",
            scale[0],
            "INPUT.MIN_SIZE_TEST",
            scale[1],
            *opts,
        ],
    )
    return DCTPredictor(cfg)


def compare(ours, theirs):
    """(detections of theirs without a match in ours, largest box difference in px, largest score
    difference, smallest mask IoU) of freqdet's Instances against the release's detections."""
    boxes, scores, labels, masks = theirs
    our_boxes = ours.pred_boxes.tensor - torch.tensor([0.0, 0.0, 1.0, 1.0])  # back to the release's corners
    unmatched, box_diff, score_diff, mask_iou, used = 0, 0.0, 0.0, 1.0, set()
    for i in range(len(boxes)):
        distance = (our_boxes - boxes[i]).abs().max(dim=1).values
        distance[ours.pred_classes != labels[i]] = float("inf")
        for u in used:
            distance[u] = float("inf")
        j = int(distance.argmin()) if len(distance) else -1
        if j < 0 or distance[j] > 0.5:
            unmatched += 1
            continue
        used.add(j)
        box_diff = max(box_diff, float(distance[j]))
        score_diff = max(score_diff, abs(float(ours.scores[j] - scores[i])))
        if masks is not None:
            a, b = ours.pred_masks[j].numpy(), masks[i].astype(bool)
            union = (a | b).sum()
            mask_iou = min(mask_iou, float((a & b).sum() / union) if union else 1.0)
    return unmatched + (len(ours) - len(used)), box_diff, score_diff, mask_iou


def detections(model, path, channels, tmp_path, scale):
    x, meta = release.test_input(path, channels, tmp_path, scale)
    return release.ReleaseDetector.simple_test(model, x, meta)


@pytest.mark.slow
@pytest.mark.parametrize("channels, mask", [(24, True), (64, False)])
def test_freqdet_gives_the_releases_detections(stand_ins, channels, mask, demo_dicts, tmp_path):
    from freqdet.demo import packaged_photos

    model, _, converted, _ = stand_ins[channels, mask]
    ours = predictor(converted, CONFIGS[channels, mask], SMALL_SCALE)
    photos = packaged_photos()[:2] + [demo_dicts[0]["file_name"]]
    for path in photos:
        theirs = detections(model, path, channels, tmp_path, SMALL_SCALE)
        assert len(theirs[0]) > 10, f"the stand-in detects too little on {path} to compare"
        unmatched, box_diff, score_diff, mask_iou = compare(ours(path)["instances"], theirs)
        assert unmatched == 0 and box_diff <= 0.01 and score_diff <= 1e-4 and mask_iou >= 0.99, (
            path,
            unmatched,
            box_diff,
            score_diff,
            mask_iou,
        )


@pytest.mark.slow
def test_at_the_releases_own_scale(stand_ins, photo_path, tmp_path):
    model, _, converted, _ = stand_ins[24, True]
    theirs = detections(model, photo_path, 24, tmp_path, (1333, 800))
    ours = predictor(converted, CONFIGS[24, True], (1333, 800))(photo_path)["instances"]
    assert len(theirs[0]) > 10
    unmatched, box_diff, score_diff, mask_iou = compare(ours, theirs)
    assert unmatched == 0 and box_diff <= 0.01 and score_diff <= 1e-4 and mask_iou >= 0.99, (
        unmatched,
        box_diff,
        score_diff,
        mask_iou,
    )


RELEASE_SCALE = (1333, 800)


@pytest.mark.slow
@pytest.mark.release_figures
def test_the_release_figures_of_the_docs(stand_ins, demo_dicts, tmp_path):
    """The figures docs/release-detectors.md quotes: all four release models on the three packaged
    photos and two demo images at img_scale (666, 400), and Mask R-CNN DCT-24 on the photos at the
    release's own (1333, 800). Minutes on a CPU, so only on request:
    ``pytest -m release_figures -s tests/test_release_detector.py`` prints them."""
    from freqdet.demo import packaged_photos

    photos = packaged_photos()
    cases = [(key, path, SMALL_SCALE) for key in CONFIGS for path in photos + [d["file_name"] for d in demo_dicts[:2]]]
    cases += [((24, True), path, RELEASE_SCALE) for path in photos]
    totals = {"images": 0, "detections": 0, "unmatched": 0, "box_px": 0.0, "score": 0.0, "mask_iou": 1.0}
    predictors = {}
    for key, path, scale in cases:
        model, _, converted, _ = stand_ins[key]
        if (key, scale) not in predictors:
            predictors[key, scale] = predictor(converted, CONFIGS[key], scale)
        theirs = detections(model, path, key[0], tmp_path, scale)
        unmatched, box_diff, score_diff, mask_iou = compare(predictors[key, scale](path)["instances"], theirs)
        totals["images"] += 1
        totals["detections"] += len(theirs[0])
        totals["unmatched"] += unmatched
        totals["box_px"] = max(totals["box_px"], box_diff)
        totals["score"] = max(totals["score"], score_diff)
        totals["mask_iou"] = min(totals["mask_iou"], mask_iou)
    print(json.dumps({"release_figures": totals}, indent=1))
    assert totals["unmatched"] == 0 and totals["box_px"] <= 0.01 and totals["score"] <= 1e-4, totals
    assert totals["mask_iou"] >= 0.99, totals


def movement(ours, theirs):
    """How far freqdet's detections are from the release's: the share of the release's matched
    (same class, box IoU >= 0.5, greedily by score), and over those the mean largest corner shift
    in pixels, the mean score change and the mean mask IoU."""
    from detectron2.structures import Boxes, pairwise_iou

    boxes, scores, labels, masks = theirs
    our_boxes = ours.pred_boxes.tensor - torch.tensor([0.0, 0.0, 1.0, 1.0])
    iou = pairwise_iou(Boxes(boxes + torch.tensor([0.0, 0.0, 1.0, 1.0])), ours.pred_boxes)
    iou[labels[:, None] != ours.pred_classes[None, :]] = 0
    shifts, changes, mask_ious, used = [], [], [], set()
    for i in scores.argsort(descending=True).tolist():
        for u in used:
            iou[i, u] = 0
        if not iou.shape[1]:
            break
        # The best overlap; among equal ones (duplicate boxes), the closest score.
        j = int((iou[i] - 1e-6 * (ours.scores - scores[i]).abs()).argmax())
        if iou[i, j] < 0.5:
            continue
        used.add(j)
        shifts.append(float((our_boxes[j] - boxes[i]).abs().max()))
        changes.append(abs(float(ours.scores[j] - scores[i])))
        if masks is not None:
            a, b = ours.pred_masks[j].numpy(), masks[i].astype(bool)
            union = (a | b).sum()
            mask_ious.append(float((a & b).sum() / union) if union else 1.0)  # both empty: the same
    mean = lambda values: float(np.mean(values)) if values else float("nan")  # noqa: E731
    return {
        "matched": len(used) / max(len(boxes), 1),
        "shift_px": mean(shifts),
        "score": mean(changes),
        "mask_iou": mean(mask_ious),
    }


@pytest.mark.slow
def test_what_each_release_step_moves(stand_ins, photo_path, tmp_path):
    """Each step taken Detectron2's way instead, on the same stand-in and photo: how many of the
    release's detections survive and how far they move (the table of docs/release-detectors.md;
    ``pytest tests/test_release_detector.py -k moves -s`` prints it)."""
    model, _, converted, _ = stand_ins[24, True]
    scale = (400, 240)
    theirs = detections(model, photo_path, 24, tmp_path, scale)
    ours, rows = predictor(converted, CONFIGS[24, True], scale), {}
    for step in (None, *STEPS, "ALL"):
        off = STEPS if step == "ALL" else (step,) if step else ()
        ours.model.steps = {s: s not in off for s in STEPS}  # as MODEL.DCT.RELEASE.<s> False would set them
        rows[step or "none"] = movement(ours(photo_path)["instances"], theirs)
    print(json.dumps({"detections": len(theirs[0]), "with_the_step_detectron2s": rows}, indent=1))
    assert rows["none"]["matched"] == 1.0 and rows["none"]["shift_px"] < 0.01 and rows["none"]["mask_iou"] > 0.99
    moved = [s for s in STEPS if rows[s]["matched"] < 1 or rows[s]["shift_px"] > 0.01 or rows[s]["mask_iou"] < 0.99]
    assert moved == list(STEPS) and rows["ALL"]["shift_px"] > 0.1, rows  # each step is needed


@pytest.mark.slow
def test_eval_only_with_a_release_config_runs_end_to_end(stand_ins, demo_dicts, tmp_path):
    """On three demo images (the stand-in knows COCO's 80 classes, the demo 6: its classifying
    layers are left out and the AP means nothing; the path is what is checked)."""
    from freqdet.demo.coco_shapes import split_paths

    annotations = json.loads(pathlib.Path(split_paths("val")[0]).read_text())
    annotations["images"] = annotations["images"][:3]
    ids = {i["id"] for i in annotations["images"]}
    annotations["annotations"] = [a for a in annotations["annotations"] if a["image_id"] in ids]
    (tmp_path / "val.json").write_text(json.dumps(annotations))
    _, _, converted, _ = stand_ins[24, True]
    result = subprocess.run(
        [
            sys.executable,
            "tools/train_net.py",
            "--config-file",
            CONFIGS[24, True],
            "--eval-only",
            "--register-coco",
            "three",
            str(tmp_path / "val.json"),
            split_paths("val")[1],
            "DATASETS.TEST",
            "('three',)",
            "MODEL.ROI_HEADS.NUM_CLASSES",
            "6",
            "MODEL.DEVICE",
            "cpu",
            "MODEL.WEIGHTS",
            str(converted),
            "INPUT.MIN_SIZE_TEST",
            "256",
            "INPUT.MAX_SIZE_TEST",
            "480",
            "OUTPUT_DIR",
            str(tmp_path / "out"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, PYTHONWARNINGS="ignore"),
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert "Evaluation results for bbox" in log and "Evaluation results for segm" in log
    assert "[DCTDatasetMapper] 24 DCT channels shipped as int16, computed by the official release's" in log


def test_release_models_take_their_steps_from_the_config_and_do_not_train():
    from detectron2.modeling import build_model

    from freqdet.detection.config import load_config

    opts = ["MODEL.DEVICE", "cpu", "MODEL.DCT.RELEASE.NMS", False, "MODEL.DCT.RELEASE.MASK_PASTE", False]
    model = build_model(load_config(CONFIGS[24, True], opts)).train()
    assert model.steps == {s: s not in ("NMS", "MASK_PASTE") for s in STEPS}
    with pytest.raises(
        ValueError, match="fine-tune a converted release detector with configs/mask_rcnn_dct_R50_FPN.yaml"
    ):
        model([])


@pytest.mark.slow
def test_a_converted_release_detector_fine_tunes_with_the_standard_config(stand_ins, demo_dicts):
    """configs/mask_rcnn_dct_R50_FPN.yaml has the release's layers: everything loads but the
    classifying layers of another class count, which start afresh; a training step runs."""
    from detectron2.modeling import build_model
    from detectron2.utils.events import EventStorage

    from freqdet import DCTDatasetMapper
    from freqdet.detection.checkpoint import FreqdetCheckpointer
    from freqdet.detection.config import load_config

    _, _, converted, _ = stand_ins[24, True]
    cfg = load_config(
        "configs/mask_rcnn_dct_R50_FPN.yaml",
        [
            "MODEL.DEVICE",
            "cpu",
            "MODEL.WEIGHTS",
            str(converted),
            "MODEL.ROI_HEADS.NUM_CLASSES",
            6,
            "INPUT.MIN_SIZE_TRAIN",
            "(160,)",
            "INPUT.MAX_SIZE_TRAIN",
            240,
        ],
    )
    model = build_model(cfg)
    FreqdetCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    state = torch.load(converted, weights_only=True)["model"]
    ours = model.state_dict()
    kept = {k for k in state if ours[k].shape == state[k].shape and torch.equal(ours[k], state[k])}
    fresh = {
        f"roi_heads.{layer}.{tensor}"
        for layer in ("box_predictor.cls_score", "box_predictor.bbox_pred", "mask_head.predictor")
        for tensor in ("weight", "bias")
    }
    assert kept == set(state) - fresh
    model.train()
    with EventStorage():
        losses = model([DCTDatasetMapper(cfg, True)(d) for d in demo_dicts[:2]])
    assert all(torch.isfinite(v) for v in losses.values())
