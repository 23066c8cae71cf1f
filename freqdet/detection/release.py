"""The official DCTNet release's trained detectors, computing what the release computes.

The release (github.com/kaix90/DCTNet, ``segmentation/``, a fork of mmdetection v1.0) trained
Mask and Faster R-CNN R50-FPN on DCT inputs. Their layers are Detectron2's (ResNet-50 without
its stem, FPN with a max-pooled P6, a 3x3-conv RPN head, a two-fc box head, a four-conv mask
head), so converted weights (:func:`freqdet.detection.convert.release_detector_to_detectron2`)
load into freqdet's model unchanged. What differs is the arithmetic around the layers, where
mmdetection v1 keeps Detectron1's conventions. :class:`ReleaseDCTRCNN` computes the
release's test-time output with those layers, step for step from its code
(``mmdet/core/anchor/anchor_generator.py``, ``core/bbox/transforms.py``,
``models/anchor_heads/rpn_head.py``, ``models/roi_extractors/single_level.py``,
``ops/roi_align``, ``ops/nms``, ``models/bbox_heads/bbox_head.py``,
``core/post_processing/bbox_nms.py``, ``models/mask_heads/fcn_mask_head.py``,
``models/detectors/test_mixins.py``). Each step is a key of ``cfg.MODEL.DCT.RELEASE``, True
for the release's way and False for Detectron2's, so that what each one moves can be measured:

- ``ANCHORS``: a base anchor of side ``stride`` scaled, centred at ``(stride - 1) / 2`` with
  corners at ``centre -/+ (side - 1) / 2``, rounded to pixels (Detectron2: centred at 0, exact).
- ``BOX_CODER``: widths ``x2 - x1 + 1``, corners at ``centre -/+ (w - 1) / 2``, and boxes
  clamped to ``[0, size - 1]`` (Detectron2: ``x2 - x1``, clipped to ``[0, size]``); boxes come
  out with ``x2 + 1``, ``y2 + 1`` so that Detectron2's COCO widths are the release's.
- ``NMS``: IoU with the ``+ 1`` widths (Detectron2: without).
- ``ROI_LEVELS``: level ``floor(log2(sqrt((w + 1)(h + 1)) / 56 + 1e-6))`` of p2..p5.
- ``ROI_ALIGN``: RoIAlign over ``[x1, x2 + 1]`` without the half-pixel shift, 2 x 2 samples
  a bin (Detectron2: the config's pooler).
- ``RESCALE``: boxes divided by the resize's one scale factor before the class-wise NMS,
  which then runs in the original image's pixels (Detectron2: NMS in the resized image,
  then each axis scaled by its own ratio and clipped).
- ``MASK_PASTE``: each 28 x 28 mask resized bilinearly to the box truncated to integers,
  ``[x1, x1 + w)`` with ``w = x2 - x1 + 1``, then thresholded at 0.5 (Detectron2:
  ``paste_masks_in_image``).

The RPN keeps the release's order of operations whatever the keys say: per level, the
``PRE_NMS_TOPK_TEST`` best anchors, decoded, NMS at ``NMS_THRESH``; then the
``POST_NMS_TOPK_TEST`` best over all levels. Its NMS suppresses at IoU strictly above the
threshold, as its CUDA kernel (with which the release's figures were measured) does.

Its input is the release's pipeline, ``INPUT.DCT.PREPROCESS "release"``
(:mod:`freqdet.release_pipeline`). Inference only: fine-tune a converted release detector
with ``configs/mask_rcnn_dct_R50_FPN.yaml``, whose model has the same layers.
"""

import math
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import paste_masks_in_image
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.poolers import assign_boxes_to_levels
from detectron2.structures import Boxes, Instances
from torchvision.ops import nms, roi_align

from . import inputs
from .meta_arch import DCTGeneralizedRCNN

STEPS = ("ANCHORS", "BOX_CODER", "NMS", "ROI_LEVELS", "ROI_ALIGN", "RESCALE", "MASK_PASTE")
WH_RATIO_CLIP = 16 / 1000  # the release's delta2bbox clamps log(w / w_anchor) to +/- log(1000 / 16)
FINEST_SCALE = 56  # its SingleRoIExtractor's finest_scale
ROI_ALIGN_SAMPLES = 2  # its RoIAlign(sample_num=2)
MASK_THRESHOLD = 0.5  # its test_cfg.rcnn.mask_thr_binary


def release_anchors(size: float, stride: int, ratios: Sequence[float], grid: Tuple[int, int]) -> torch.Tensor:
    """(h * w * A, 4) anchors of one level as mmdetection v1 lays them out (location-major, x fastest)."""
    scale = torch.tensor([size / stride])
    h_ratios = torch.sqrt(torch.tensor(list(ratios), dtype=torch.float32))
    w_ratios = 1 / h_ratios
    ws = (stride * w_ratios[:, None] * scale[None, :]).view(-1)
    hs = (stride * h_ratios[:, None] * scale[None, :]).view(-1)
    centre = 0.5 * (stride - 1)
    base = torch.stack(
        [centre - 0.5 * (ws - 1), centre - 0.5 * (hs - 1), centre + 0.5 * (ws - 1), centre + 0.5 * (hs - 1)], dim=-1
    ).round()
    shift_x = torch.arange(grid[1]) * stride
    shift_y = torch.arange(grid[0]) * stride
    xx, yy = shift_x.repeat(len(shift_y)), shift_y.view(-1, 1).repeat(1, len(shift_x)).view(-1)
    shifts = torch.stack([xx, yy, xx, yy], dim=-1).type_as(base)
    return (base[None, :, :] + shifts[:, None, :]).view(-1, 4)


def release_decode(boxes: torch.Tensor, deltas: torch.Tensor, stds: Sequence[float], image_size) -> torch.Tensor:
    """mmdetection v1's ``delta2bbox``: (N, 4k) deltas on (N, 4) boxes, widths ``x2 - x1 + 1``,
    clamped to ``[0, W - 1]`` x ``[0, H - 1]`` of ``image_size`` (H, W)."""
    d = deltas * deltas.new_tensor(stds).repeat(deltas.size(1) // 4)
    dx, dy, dw, dh = d[:, 0::4], d[:, 1::4], d[:, 2::4], d[:, 3::4]
    limit = abs(math.log(WH_RATIO_CLIP))
    dw, dh = dw.clamp(min=-limit, max=limit), dh.clamp(min=-limit, max=limit)
    px = ((boxes[:, 0] + boxes[:, 2]) * 0.5).unsqueeze(1).expand_as(dx)
    py = ((boxes[:, 1] + boxes[:, 3]) * 0.5).unsqueeze(1).expand_as(dy)
    pw = (boxes[:, 2] - boxes[:, 0] + 1.0).unsqueeze(1).expand_as(dw)
    ph = (boxes[:, 3] - boxes[:, 1] + 1.0).unsqueeze(1).expand_as(dh)
    gw, gh = pw * dw.exp(), ph * dh.exp()
    gx, gy = torch.addcmul(px, pw, dx), torch.addcmul(py, ph, dy)  # as the release computes them (one rounding)
    x1 = (gx - gw * 0.5 + 0.5).clamp(min=0, max=image_size[1] - 1)
    y1 = (gy - gh * 0.5 + 0.5).clamp(min=0, max=image_size[0] - 1)
    x2 = (gx + gw * 0.5 - 0.5).clamp(min=0, max=image_size[1] - 1)
    y2 = (gy + gh * 0.5 - 0.5).clamp(min=0, max=image_size[0] - 1)
    return torch.stack([x1, y1, x2, y2], dim=-1).view_as(deltas)


def detectron2_decode(boxes: torch.Tensor, deltas: torch.Tensor, stds: Sequence[float], image_size) -> torch.Tensor:
    """Detectron2's ``Box2BoxTransform`` with weights 1 / ``stds``, clipped to ``[0, W]`` x ``[0, H]``."""
    decoded = Box2BoxTransform(weights=tuple(1.0 / s for s in stds)).apply_deltas(deltas, boxes)
    k = decoded.size(1) // 4
    clipped = Boxes(decoded.reshape(-1, 4))
    clipped.clip(tuple(image_size))
    return clipped.tensor.view(-1, 4 * k)


def iou_nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float, plus_one: bool) -> torch.Tensor:
    """Indices kept by NMS (IoU strictly above ``threshold`` suppresses), by decreasing score; with
    ``plus_one`` widths are ``x2 - x1 + 1`` (the IoU of the boxes grown by one at x2 and y2)."""
    if plus_one:
        boxes = boxes + boxes.new_tensor([0.0, 0.0, 1.0, 1.0])
    return nms(boxes, scores, threshold)


def release_levels(boxes: torch.Tensor, num_levels: int) -> torch.Tensor:
    """mmdetection v1's ``map_roi_levels``: the index (0 = the finest) of each box's level."""
    scale = torch.sqrt((boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1))
    return torch.floor(torch.log2(scale / FINEST_SCALE + 1e-6)).clamp(min=0, max=num_levels - 1).long()


def release_roi_align(feature: torch.Tensor, rois: torch.Tensor, size: int, spatial_scale: float) -> torch.Tensor:
    """mmdetection v1's RoIAlign (``sample_num=2``) of (K, 5) rois ``[batch, x1, y1, x2, y2]``.

    Its bins span ``[x1, x2 + 1] * scale`` with no half-pixel shift; torchvision's aligned
    RoIAlign spans ``[x1, x2] * scale - 0.5``, so the rois are moved by ``0.5 / scale`` (and x2,
    y2 by one more) to sample the same points with the same bilinear interpolation."""
    shifted = rois.clone()
    shifted[:, 1:] += 0.5 / spatial_scale
    shifted[:, 3:] += 1.0
    return roi_align(feature, shifted, size, spatial_scale, ROI_ALIGN_SAMPLES, aligned=True)


def release_paste(probabilities: torch.Tensor, rois: torch.Tensor, scale: float, size: Tuple[int, int]) -> torch.Tensor:
    """mmdetection v1's ``get_seg_masks``: (N, h, w) mask probabilities of (N, 4) rois in the resized
    image -> (N, H, W) bool masks of the original image: each box divided by ``scale`` and
    truncated to integers, the mask resized bilinearly (half-pixel centres, as OpenCV's
    INTER_LINEAR) to ``x2 - x1 + 1`` by ``y2 - y1 + 1`` pixels there, then thresholded."""
    height, width = size
    boxes = (rois.cpu().numpy() / scale).astype("int32")
    masks = torch.zeros((len(boxes), height, width), dtype=torch.bool)
    for i, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        w, h = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)
        resized = F.interpolate(probabilities[i][None, None].cpu(), size=(h, w), mode="bilinear", align_corners=False)
        binary = resized[0, 0] > MASK_THRESHOLD
        top, left = max(y1, 0), max(x1, 0)
        bottom, right = min(y1 + h, height), min(x1 + w, width)
        if bottom > top and right > left:
            masks[i, top:bottom, left:right] = binary[top - y1 : bottom - y1, left - x1 : right - x1]
    return masks


@META_ARCH_REGISTRY.register()
class ReleaseDCTRCNN(DCTGeneralizedRCNN):
    """:class:`DCTGeneralizedRCNN` whose inference is the official release's (see the module)."""

    @configurable
    def __init__(
        self,
        *,
        steps: Dict[str, bool],
        anchor_sizes: Sequence[float],
        anchor_ratios: Sequence[float],
        rpn_topk: Tuple[int, int],
        rpn_nms_threshold: float,
        rpn_stds: Sequence[float],
        box_stds: Sequence[float],
        score_threshold: float,
        nms_threshold: float,
        detections_per_image: int,
        **kwargs,
    ):
        """
        Args:
            steps: for each of :data:`STEPS`, whether it is done the release's way.
            anchor_sizes, anchor_ratios: one anchor size per RPN level, and the aspect ratios.
            rpn_topk: (proposals per level before NMS, proposals kept over all levels).
            rpn_nms_threshold: the RPN's NMS IoU.
            rpn_stds, box_stds: the box coder's delta stds (1 / Detectron2's weights).
            score_threshold, nms_threshold, detections_per_image: the class-wise NMS.
            kwargs: the arguments of :class:`DCTGeneralizedRCNN`.
        """
        super().__init__(**kwargs)
        unknown = set(steps) - set(STEPS)
        if unknown:
            raise ValueError(f"unknown release steps {sorted(unknown)}; they are {STEPS}")
        self.steps = {name: bool(steps.get(name, True)) for name in STEPS}
        self.anchor_sizes, self.anchor_ratios = list(anchor_sizes), list(anchor_ratios)
        self.rpn_topk, self.rpn_nms_threshold = tuple(rpn_topk), rpn_nms_threshold
        self.rpn_stds, self.box_stds = list(rpn_stds), list(box_stds)
        self.score_threshold, self.nms_threshold = score_threshold, nms_threshold
        self.detections_per_image = detections_per_image

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        sizes = [s[0] if isinstance(s, (list, tuple)) else s for s in cfg.MODEL.ANCHOR_GENERATOR.SIZES]
        ret.update(
            steps={name: cfg.MODEL.DCT.RELEASE[name] for name in STEPS},
            anchor_sizes=sizes,
            anchor_ratios=cfg.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS[0],
            rpn_topk=(cfg.MODEL.RPN.PRE_NMS_TOPK_TEST, cfg.MODEL.RPN.POST_NMS_TOPK_TEST),
            rpn_nms_threshold=cfg.MODEL.RPN.NMS_THRESH,
            rpn_stds=[1.0 / w for w in cfg.MODEL.RPN.BBOX_REG_WEIGHTS],
            box_stds=[1.0 / w for w in cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS],
            score_threshold=cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST,
            nms_threshold=cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST,
            detections_per_image=cfg.TEST.DETECTIONS_PER_IMAGE,
        )
        return ret

    def forward(self, batched_inputs: List[Dict[str, torch.Tensor]]):
        if self.training:
            raise ValueError(
                "ReleaseDCTRCNN computes the official release's inference and does not train: fine-tune a "
                "converted release detector with configs/mask_rcnn_dct_R50_FPN.yaml (the same layers) instead"
            )
        return self.inference(batched_inputs)

    def inference(self, batched_inputs, detected_instances=None, do_postprocess=True):
        """One dict ``{"instances": Instances}`` per input, in the pixels of its original image
        (``height`` x ``width``), as the release's ``simple_test`` returns its detections."""
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        return [
            {"instances": self._detect(features, i, x, images.image_sizes[i])} for i, x in enumerate(batched_inputs)
        ]

    def _decode(self, boxes, deltas, stds, image_size):
        decode = release_decode if self.steps["BOX_CODER"] else detectron2_decode
        return decode(boxes, deltas, stds, image_size)

    def _nms(self, boxes, scores, threshold):
        return iou_nms(boxes, scores, threshold, self.steps["NMS"])

    def _detect(self, features, i: int, x: Dict, image_size: Tuple[int, int]) -> Instances:
        out_size = (int(x.get("height", image_size[0])), int(x.get("width", image_size[1])))
        scale = float(x.get(inputs.SCALE_FACTOR, image_size[0] / out_size[0]))
        features = {name: feature[i : i + 1] for name, feature in features.items()}
        proposals = self._proposals(features, image_size)
        boxes, scores, classes = self._boxes(features, proposals, image_size, scale)
        if self.steps["RESCALE"]:  # the NMS ran in the original image's pixels
            resized = boxes * scale
        else:  # Detectron2: each axis by its own ratio, after the NMS, then clipped
            resized = boxes
            ratio = boxes.new_tensor([out_size[1] / image_size[1], out_size[0] / image_size[0]]).repeat(2)
            clipped = Boxes(boxes * ratio)
            clipped.clip(out_size)
            boxes = clipped.tensor
        result = Instances(out_size)
        inclusive = self.steps["BOX_CODER"]  # the release's x2, y2 are pixels inside the box
        result.pred_boxes = Boxes(boxes + boxes.new_tensor([0.0, 0.0, 1.0, 1.0]) if inclusive else boxes)
        result.scores, result.pred_classes = scores, classes
        if self.roi_heads.mask_on:
            result.pred_masks = self._masks(features, resized, result.pred_boxes.tensor, classes, scale, out_size)
        return result

    def _proposals(self, features, image_size) -> torch.Tensor:
        rpn = self.proposal_generator
        level_features = [features[f] for f in rpn.in_features]
        logits, deltas = rpn.rpn_head(level_features)
        if self.steps["ANCHORS"]:
            strides = rpn.anchor_generator.strides
            anchors = [
                release_anchors(size, stride, self.anchor_ratios, f.shape[-2:]).to(f.device)
                for size, stride, f in zip(self.anchor_sizes, strides, level_features)
            ]
        else:
            anchors = [a.tensor for a in rpn.anchor_generator(level_features)]
        pre, post = self.rpn_topk
        kept = []
        for level_logits, level_deltas, level_anchors in zip(logits, deltas, anchors):
            scores = level_logits[0].permute(1, 2, 0).reshape(-1).sigmoid()
            level_deltas = level_deltas[0].permute(1, 2, 0).reshape(-1, 4)
            if scores.numel() > pre:
                scores, top = scores.topk(pre)
                level_deltas, level_anchors = level_deltas[top], level_anchors[top]
            boxes = self._decode(level_anchors, level_deltas, self.rpn_stds, image_size)
            keep = self._nms(boxes, scores, self.rpn_nms_threshold)[:post]
            kept.append(torch.cat([boxes[keep], scores[keep, None]], dim=1))
        kept = torch.cat(kept)
        _, top = kept[:, 4].topk(min(post, len(kept)))
        return kept[top, :4]

    def _pool(self, level_features: List[torch.Tensor], boxes: torch.Tensor, pooler) -> torch.Tensor:
        """Features of ``boxes`` (in the resized image) from p2..p5, through ``pooler``'s levels."""
        if self.steps["ROI_LEVELS"]:
            levels = release_levels(boxes, len(level_features))
        else:
            levels = assign_boxes_to_levels(
                [Boxes(boxes)], pooler.min_level, pooler.max_level, pooler.canonical_box_size, pooler.canonical_level
            )
        rois = torch.cat([boxes.new_zeros(len(boxes), 1), boxes], dim=1)
        size = pooler.output_size[0]
        pooled = level_features[0].new_zeros((len(boxes), level_features[0].shape[1], size, size))
        for level, (feature, level_pooler) in enumerate(zip(level_features, pooler.level_poolers)):
            inds = torch.nonzero(levels == level).flatten()
            if len(inds) == 0:
                continue
            if self.steps["ROI_ALIGN"]:
                pooled[inds] = release_roi_align(feature, rois[inds], size, level_pooler.spatial_scale)
            else:
                pooled[inds] = level_pooler(feature, rois[inds])
        return pooled

    def _boxes(self, features, proposals, image_size, scale: float):
        heads = self.roi_heads
        pooled = self._pool([features[f] for f in heads.in_features], proposals, heads.box_pooler)
        logits, deltas = heads.box_predictor(heads.box_head(pooled))
        probabilities = F.softmax(logits, dim=1)
        boxes = self._decode(proposals, deltas, self.box_stds, image_size)
        if self.steps["RESCALE"]:
            boxes = boxes / scale
        found_boxes, found_scores, found_classes = [], [], []
        for c in range(probabilities.shape[1] - 1):  # the last column is the background
            selected = probabilities[:, c] > self.score_threshold
            if not selected.any():
                continue
            class_boxes, class_scores = boxes[selected, 4 * c : 4 * c + 4], probabilities[selected, c]
            keep = self._nms(class_boxes, class_scores, self.nms_threshold)
            found_boxes.append(class_boxes[keep])
            found_scores.append(class_scores[keep])
            found_classes.append(torch.full((len(keep),), c, dtype=torch.int64, device=boxes.device))
        if not found_boxes:
            return boxes.new_zeros((0, 4)), boxes.new_zeros(0), torch.zeros(0, dtype=torch.int64, device=boxes.device)
        boxes, scores, classes = torch.cat(found_boxes), torch.cat(found_scores), torch.cat(found_classes)
        order = scores.argsort(descending=True, stable=True)[: self.detections_per_image]
        return boxes[order], scores[order], classes[order]

    def _masks(self, features, resized, boxes, classes, scale: float, out_size) -> torch.Tensor:
        """(N, H, W) bool masks: predicted on the ``resized`` boxes, pasted as the release pastes
        them or as Detectron2 pastes the output ``boxes``."""
        heads = self.roi_heads
        if len(resized) == 0:
            return torch.zeros((0, *out_size), dtype=torch.bool)
        pooled = self._pool([features[f] for f in heads.mask_in_features], resized, heads.mask_pooler)
        logits = heads.mask_head.layers(pooled)
        probabilities = logits[torch.arange(len(resized), device=logits.device), classes].sigmoid()
        if not self.steps["MASK_PASTE"]:
            return paste_masks_in_image(probabilities.cpu(), Boxes(boxes.cpu()), out_size, MASK_THRESHOLD)
        if self.steps["RESCALE"]:
            return release_paste(probabilities, resized, scale, out_size)
        inclusive = boxes - boxes.new_tensor([0.0, 0.0, 1.0, 1.0]) if self.steps["BOX_CODER"] else boxes
        return release_paste(probabilities, inclusive, 1.0, out_size)
