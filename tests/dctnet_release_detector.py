"""The official DCTNet release's detectors and their test pipeline, written again for the tests.

Written from the release's source (github.com/kaix90/DCTNet, ``segmentation/``, an mmdetection
v1.0 fork), independently of freqdet: ``configs/mask_rcnn_r50_rpn_1x_DCT_static_24_wofreeze.py``;
``mmdet/models/backbones/resnet_static.py`` (``ResNetUpscaledStatic``: a stem that its forward
skips, layer1 taking C channels), ``necks/fpn.py``, ``anchor_heads/rpn_head.py`` and
``anchor_head.py``, ``core/anchor/anchor_generator.py``, ``core/bbox/transforms.py``
(``delta2bbox``), ``ops/nms`` (its CUDA kernel: IoU with ``+ 1`` widths, suppressed above the
threshold), ``ops/roi_align/src/roi_align_kernel.cu``, ``roi_extractors/single_level.py``,
``bbox_heads/convfc_bbox_head.py`` and ``bbox_head.py``, ``core/post_processing/bbox_nms.py``,
``mask_heads/fcn_mask_head.py``, ``detectors/test_mixins.py``; and its test pipeline
(``datasets/pipelines/transforms.py`` ``Resize`` with mmcv's ``imrescale`` and ``Pad``,
``transformsDCT.py`` ``ToDCTUpscaledStatic``, ``formatingDCT.py`` ``NormalizeDCTUpscaledStatic``).
Plain torch modules with the release's parameter names; its box arithmetic in plain torch
(NMS and RoIAlign as loops over the kernels' definitions); OpenCV, libjpeg-turbo (PyTurboJPEG)
and jpeglib for the pipeline. Not part of the package.
"""

import json
import math
import pathlib

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from dctnet_release import SUBSETS, make_layer, release_dct
from torch import nn

TABLE = pathlib.Path(__file__).resolve().parents[1] / "freqdet" / "classification" / "official_stats" / "detection.json"
NUM_CLASSES = 81  # the background first
STRIDES = (4, 8, 16, 32, 64)


# --- the model, with the release's parameter names ---------------------------------------


class ConvModule(nn.Module):
    """mmdetection's ConvModule without norm or activation: the convolution under ``conv``."""

    def __init__(self, cin, cout, kernel, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=padding)

    def forward(self, x):
        return self.conv(x)


class ResNetUpscaledStatic(nn.Module):
    """ResNet-50 with strides (1, 2, 2, 2) whose layer1 takes C channels; ``conv1`` / ``bn1`` exist
    (they are in its checkpoints) but its forward skips them."""

    def __init__(self, channels):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = make_layer(channels, 64, 3, 1)
        self.layer2 = make_layer(256, 128, 4, 2)
        self.layer3 = make_layer(512, 256, 6, 2)
        self.layer4 = make_layer(1024, 512, 3, 2)

    def forward(self, x):
        outs = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            outs.append(x)
        return outs


class FPN(nn.Module):
    def __init__(self):
        super().__init__()
        self.lateral_convs = nn.ModuleList(ConvModule(c, 256, 1) for c in (256, 512, 1024, 2048))
        self.fpn_convs = nn.ModuleList(ConvModule(256, 256, 3, padding=1) for _ in range(4))

    def forward(self, inputs):
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, inputs)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] += F.interpolate(laterals[i], scale_factor=2, mode="nearest")
        outs = [conv(x) for conv, x in zip(self.fpn_convs, laterals)]
        outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        return outs


class RPNHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.rpn_conv = nn.Conv2d(256, 256, 3, padding=1)
        self.rpn_cls = nn.Conv2d(256, 3, 1)
        self.rpn_reg = nn.Conv2d(256, 12, 1)

    def forward(self, x):
        x = F.relu(self.rpn_conv(x))
        return self.rpn_cls(x), self.rpn_reg(x)


class SharedFCBBoxHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.shared_fcs = nn.ModuleList([nn.Linear(256 * 7 * 7, 1024), nn.Linear(1024, 1024)])
        self.fc_cls = nn.Linear(1024, NUM_CLASSES)
        self.fc_reg = nn.Linear(1024, 4 * NUM_CLASSES)

    def forward(self, x):
        x = x.view(x.size(0), -1)
        for fc in self.shared_fcs:
            x = F.relu(fc(x))
        return self.fc_cls(x), self.fc_reg(x)


class FCNMaskHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList(ConvModule(256, 256, 3, padding=1) for _ in range(4))
        self.upsample = nn.ConvTranspose2d(256, 256, 2, stride=2)
        self.conv_logits = nn.Conv2d(256, NUM_CLASSES, 1)

    def forward(self, x):
        for conv in self.convs:
            x = F.relu(conv(x))
        return self.conv_logits(F.relu(self.upsample(x)))


class ReleaseDetector(nn.Module):
    """Mask (``mask=True``) or Faster R-CNN of the release, in eval mode, on normalized DCT inputs."""

    def __init__(self, channels: int, mask: bool):
        super().__init__()
        self.backbone = ResNetUpscaledStatic(channels)
        self.neck = FPN()
        self.rpn_head = RPNHead()
        self.bbox_head = SharedFCBBoxHead()
        if mask:
            self.mask_head = FCNMaskHead()
        self.with_mask = mask

    @torch.no_grad()
    def simple_test(self, x, meta):
        """(boxes (n, 4) in the original image, inclusive corners; scores (n,); labels (n,) 0..79;
        masks: a list of (H, W) uint8 arrays, or None)."""
        feats = self.neck(self.backbone(x))
        proposals = rpn_proposals(self.rpn_head, feats, meta["img_shape"])
        rois = torch.cat([proposals.new_zeros(len(proposals), 1), proposals], dim=1)
        cls_score, bbox_pred = self.bbox_head(roi_extract(feats[:4], rois, 7))
        scores = F.softmax(cls_score, dim=1)
        bboxes = delta2bbox(rois[:, 1:], bbox_pred, (0.1, 0.1, 0.2, 0.2), meta["img_shape"])
        bboxes = bboxes / meta["scale_factor"]
        det_bboxes, det_labels = multiclass_nms(bboxes, scores, 0.05, 0.5, 100)
        masks = None
        if self.with_mask and len(det_bboxes):
            _bboxes = det_bboxes[:, :4] * meta["scale_factor"]
            mask_rois = torch.cat([_bboxes.new_zeros(len(_bboxes), 1), _bboxes], dim=1)
            mask_pred = self.mask_head(roi_extract(feats[:4], mask_rois, 14))
            masks = get_seg_masks(mask_pred, _bboxes, det_labels, meta["ori_shape"], meta["scale_factor"])
        return det_bboxes[:, :4], det_bboxes[:, 4], det_labels, masks


# --- the box arithmetic -------------------------------------------------------------------


def base_anchors(base_size, scales, ratios):
    w = h = base_size
    x_ctr, y_ctr = 0.5 * (w - 1), 0.5 * (h - 1)
    h_ratios = torch.sqrt(torch.Tensor(ratios))
    w_ratios = 1 / h_ratios
    ws = (w * w_ratios[:, None] * torch.Tensor(scales)[None, :]).view(-1)
    hs = (h * h_ratios[:, None] * torch.Tensor(scales)[None, :]).view(-1)
    return torch.stack(
        [x_ctr - 0.5 * (ws - 1), y_ctr - 0.5 * (hs - 1), x_ctr + 0.5 * (ws - 1), y_ctr + 0.5 * (hs - 1)], dim=-1
    ).round()


def grid_anchors(base, featmap_size, stride):
    feat_h, feat_w = featmap_size
    shift_x = torch.arange(0, feat_w) * stride
    shift_y = torch.arange(0, feat_h) * stride
    shift_xx = shift_x.repeat(len(shift_y))
    shift_yy = shift_y.view(-1, 1).repeat(1, len(shift_x)).view(-1)
    shifts = torch.stack([shift_xx, shift_yy, shift_xx, shift_yy], dim=-1).type_as(base)
    return (base[None, :, :] + shifts[:, None, :]).view(-1, 4)


def delta2bbox(rois, deltas, stds, max_shape, wh_ratio_clip=16 / 1000):
    stds = deltas.new_tensor(stds).repeat(1, deltas.size(1) // 4)
    denorm = deltas * stds
    dx, dy, dw, dh = denorm[:, 0::4], denorm[:, 1::4], denorm[:, 2::4], denorm[:, 3::4]
    max_ratio = np.abs(np.log(wh_ratio_clip))
    dw, dh = dw.clamp(min=-max_ratio, max=max_ratio), dh.clamp(min=-max_ratio, max=max_ratio)
    px = ((rois[:, 0] + rois[:, 2]) * 0.5).unsqueeze(1).expand_as(dx)
    py = ((rois[:, 1] + rois[:, 3]) * 0.5).unsqueeze(1).expand_as(dy)
    pw = (rois[:, 2] - rois[:, 0] + 1.0).unsqueeze(1).expand_as(dw)
    ph = (rois[:, 3] - rois[:, 1] + 1.0).unsqueeze(1).expand_as(dh)
    gw, gh = pw * dw.exp(), ph * dh.exp()
    gx, gy = torch.addcmul(px, pw, dx), torch.addcmul(py, ph, dy)
    x1 = (gx - gw * 0.5 + 0.5).clamp(min=0, max=max_shape[1] - 1)
    y1 = (gy - gh * 0.5 + 0.5).clamp(min=0, max=max_shape[0] - 1)
    x2 = (gx + gw * 0.5 - 0.5).clamp(min=0, max=max_shape[1] - 1)
    y2 = (gy + gh * 0.5 - 0.5).clamp(min=0, max=max_shape[0] - 1)
    return torch.stack([x1, y1, x2, y2], dim=-1).view_as(deltas)


def nms(dets, thresh):
    """The CUDA kernel's NMS: by decreasing score, a box suppresses later ones whose IoU (widths
    ``x2 - x1 + 1``) is above ``thresh``. Returns the kept rows, in that order. Equal scores (flat
    image regions give them) are taken in index order, which the release leaves to its sort."""
    x1, y1, x2, y2, scores = dets.unbind(1)
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort(descending=True, stable=True)
    suppressed = torch.zeros(len(dets), dtype=torch.bool)
    keep = []
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        w = (torch.minimum(x2[i], x2) - torch.maximum(x1[i], x1) + 1).clamp(min=0)
        h = (torch.minimum(y2[i], y2) - torch.maximum(y1[i], y1) + 1).clamp(min=0)
        inter = w * h
        suppressed |= inter / (areas[i] + areas - inter) > thresh
    return dets[keep]


def rpn_proposals(head, feats, img_shape, nms_pre=1000, nms_post=1000, max_num=1000, nms_thr=0.7):
    mlvl = []
    for feat, stride in zip(feats, STRIDES):
        cls_score, bbox_pred = head(feat)
        anchors = grid_anchors(base_anchors(stride, [8], [0.5, 1.0, 2.0]), cls_score.shape[-2:], stride)
        scores = cls_score[0].permute(1, 2, 0).reshape(-1).sigmoid()
        bbox_pred = bbox_pred[0].permute(1, 2, 0).reshape(-1, 4)
        if scores.shape[0] > nms_pre:
            _, topk_inds = scores.topk(nms_pre)
            bbox_pred, anchors, scores = bbox_pred[topk_inds, :], anchors[topk_inds, :], scores[topk_inds]
        proposals = delta2bbox(anchors, bbox_pred, (1.0, 1.0, 1.0, 1.0), img_shape)
        proposals = nms(torch.cat([proposals, scores.unsqueeze(-1)], dim=-1), nms_thr)[:nms_post, :]
        mlvl.append(proposals)
    proposals = torch.cat(mlvl, 0)
    _, topk_inds = proposals[:, 4].topk(min(max_num, proposals.shape[0]))
    return proposals[topk_inds, :4]


def bilinear(feature, y, x):
    """The kernel's bilinear_interpolate at (y, x) points of a (C, H, W) feature -> (C, *y.shape)."""
    _, height, width = feature.shape
    outside = (y < -1.0) | (y > height) | (x < -1.0) | (x > width)
    y, x = y.clamp(min=0), x.clamp(min=0)
    y_low, x_low = y.long(), x.long()
    y_edge, x_edge = y_low >= height - 1, x_low >= width - 1
    y_low, x_low = torch.where(y_edge, height - 1, y_low), torch.where(x_edge, width - 1, x_low)
    y_high, x_high = torch.where(y_edge, height - 1, y_low + 1), torch.where(x_edge, width - 1, x_low + 1)
    y, x = torch.where(y_edge, y_low.to(y.dtype), y), torch.where(x_edge, x_low.to(x.dtype), x)
    ly, lx = y - y_low, x - x_low
    hy, hx = 1 - ly, 1 - lx
    value = (
        hy * hx * feature[:, y_low, x_low]
        + hy * lx * feature[:, y_low, x_high]
        + ly * hx * feature[:, y_high, x_low]
        + ly * lx * feature[:, y_high, x_high]
    )
    return torch.where(outside, torch.zeros_like(value), value)


def roi_align(feature, rois, out_size, spatial_scale, sample_num=2):
    """The kernel's RoIAlign of (K, 5) rois on a (1, C, H, W) feature -> (K, C, out, out)."""
    results = []
    for chunk in rois.split(64):
        start_w, start_h = chunk[:, 1] * spatial_scale, chunk[:, 2] * spatial_scale
        end_w, end_h = (chunk[:, 3] + 1) * spatial_scale, (chunk[:, 4] + 1) * spatial_scale
        bin_w = (end_w - start_w).clamp(min=0) / out_size
        bin_h = (end_h - start_h).clamp(min=0) / out_size
        bins = torch.arange(out_size, dtype=rois.dtype)
        samples = torch.arange(sample_num, dtype=rois.dtype) + 0.5
        # (K, out, samples): y = start + p * bin + (i + 0.5) * bin / sample_num
        ys = (
            start_h[:, None, None]
            + bins[None, :, None] * bin_h[:, None, None]
            + samples[None, None, :] * (bin_h[:, None, None] / sample_num)
        )
        xs = (
            start_w[:, None, None]
            + bins[None, :, None] * bin_w[:, None, None]
            + samples[None, None, :] * (bin_w[:, None, None] / sample_num)
        )
        y = ys[:, :, None, :, None].expand(-1, out_size, out_size, sample_num, sample_num)
        x = xs[:, None, :, None, :].expand(-1, out_size, out_size, sample_num, sample_num)
        values = bilinear(feature[0], y, x)  # (C, K, out, out, s, s)
        results.append(values.sum(dim=(-1, -2)).permute(1, 0, 2, 3) / (sample_num * sample_num))
    return torch.cat(results)


def roi_extract(feats, rois, out_size, finest_scale=56):
    scale = torch.sqrt((rois[:, 3] - rois[:, 1] + 1) * (rois[:, 4] - rois[:, 2] + 1))
    target_lvls = torch.floor(torch.log2(scale / finest_scale + 1e-6)).clamp(min=0, max=len(feats) - 1).long()
    roi_feats = feats[0].new_zeros(rois.size(0), 256, out_size, out_size)
    for i, (feat, stride) in enumerate(zip(feats, STRIDES)):
        inds = target_lvls == i
        if inds.any():
            roi_feats[inds] = roi_align(feat, rois[inds, :], out_size, 1.0 / stride)
    return roi_feats


def multiclass_nms(multi_bboxes, multi_scores, score_thr, iou_thr, max_num):
    bboxes, labels = [], []
    for i in range(1, multi_scores.shape[1]):
        cls_inds = multi_scores[:, i] > score_thr
        if not cls_inds.any():
            continue
        cls_dets = nms(
            torch.cat([multi_bboxes[cls_inds, i * 4 : (i + 1) * 4], multi_scores[cls_inds, i, None]], 1), iou_thr
        )
        bboxes.append(cls_dets)
        labels.append(torch.full((len(cls_dets),), i - 1, dtype=torch.long))
    if not bboxes:
        return multi_bboxes.new_zeros((0, 5)), torch.zeros(0, dtype=torch.long)
    bboxes, labels = torch.cat(bboxes), torch.cat(labels)
    if bboxes.shape[0] > max_num:
        _, inds = bboxes[:, -1].sort(descending=True, stable=True)  # equal scores in index order
        bboxes, labels = bboxes[inds[:max_num]], labels[inds[:max_num]]
    return bboxes, labels


def get_seg_masks(mask_pred, bboxes, det_labels, ori_shape, scale_factor, mask_thr_binary=0.5):
    mask_pred = mask_pred.sigmoid().cpu().numpy().astype(np.float32)
    bboxes = bboxes.cpu().numpy()[:, :4]
    labels = det_labels.cpu().numpy() + 1
    img_h, img_w = ori_shape[:2]
    masks = []
    for i in range(bboxes.shape[0]):
        bbox = (bboxes[i, :] / scale_factor).astype(np.int32)
        w, h = max(bbox[2] - bbox[0] + 1, 1), max(bbox[3] - bbox[1] + 1, 1)
        im_mask = np.zeros((img_h, img_w), dtype=np.uint8)
        bbox_mask = cv2.resize(mask_pred[i, labels[i], :, :], (w, h), interpolation=cv2.INTER_LINEAR)
        bbox_mask = (bbox_mask > mask_thr_binary).astype(np.uint8)
        # What fits in the image (a numpy slice stops at its edge).
        fit = im_mask[bbox[1] : bbox[1] + h, bbox[0] : bbox[0] + w]
        fit[...] = bbox_mask[: fit.shape[0], : fit.shape[1]]
        masks.append(im_mask)
    return masks


# --- the test pipeline --------------------------------------------------------------------


def table(channels):
    """The release's detection table (its configs/mean_std.py, copied as published) for a selection."""
    record = json.loads(TABLE.read_text())
    sub_y, sub_cb, sub_cr = SUBSETS[channels]
    subset = list(sub_y) + [64 + c for c in sub_cb] + [128 + c for c in sub_cr]
    mean, std = np.array(record["mean"], np.float32), np.array(record["std"], np.float32)
    return mean[subset], std[subset]


def test_input(path, channels, tmp_path, img_scale=(1333, 800)):
    """(normalized input (1, C, H/4, W/4), img_meta) of an image file, as the release's test
    pipeline (LoadImageFromFile, Resize keep_ratio, Pad 32, ToDCTUpscaledStatic, NormalizeDCT)."""
    from turbojpeg import TurboJPEG

    img = cv2.imread(str(path))
    h, w = img.shape[:2]
    scale_factor = min(max(img_scale) / max(h, w), min(img_scale) / min(h, w))
    new_size = int(w * float(scale_factor) + 0.5), int(h * float(scale_factor) + 0.5)
    img = cv2.resize(img, new_size, interpolation=cv2.INTER_LINEAR)
    img_shape = img.shape
    pad_h, pad_w = int(np.ceil(img.shape[0] / 32)) * 32, int(np.ceil(img.shape[1] / 32)) * 32
    padded = np.zeros((pad_h, pad_w, 3), dtype=img.dtype)
    padded[: img.shape[0], : img.shape[1], ...] = img
    encoder = TurboJPEG()
    img_4x = cv2.resize(padded, dsize=(pad_w * 2, pad_h * 2), interpolation=cv2.INTER_LINEAR)
    img_8x = cv2.resize(padded, dsize=(pad_w * 4, pad_h * 4), interpolation=cv2.INTER_LINEAR)
    dct_y = release_dct(img_4x, encoder, tmp_path, "4x.jpg")[0]
    _, dct_cb, dct_cr = release_dct(img_8x, encoder, tmp_path, "8x.jpg")
    sub_y, sub_cb, sub_cr = SUBSETS[channels]
    dct = np.concatenate((dct_y[:, :, sub_y], dct_cb[:, :, sub_cb], dct_cr[:, :, sub_cr]), axis=2)
    mean, std = table(channels)
    normalized = (dct.astype(np.float32) - mean) / std
    meta = {"ori_shape": (h, w, 3), "img_shape": img_shape, "scale_factor": scale_factor}
    return torch.from_numpy(normalized.transpose(2, 0, 1).copy())[None], meta


# --- stand-in weights in the release's layout ----------------------------------------------


@torch.no_grad()
def randomize(model: ReleaseDetector, seed: int, calibration: torch.Tensor) -> ReleaseDetector:
    """Random weights that give detections: convolutions and fcs scaled to their fan-in, the
    backbone's BatchNorm statistics those of ``calibration`` (so its features are of unit scale),
    random BatchNorm affine parameters, and heads scaled so that classes and masks vary."""
    generator = torch.Generator().manual_seed(seed)

    def fill(tensor, std):
        tensor.copy_(torch.randn(tensor.shape, generator=generator) * std)

    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            fan_in = module.weight[0].numel() if not isinstance(module, nn.ConvTranspose2d) else module.weight.shape[0]
            fill(module.weight, 1 / math.sqrt(fan_in))
            if module.bias is not None:
                fill(module.bias, 0.05)
        elif isinstance(module, nn.BatchNorm2d):
            module.weight.copy_(0.5 + torch.rand(module.num_features, generator=generator))
            fill(module.bias, 0.2)
    fill(model.rpn_head.rpn_cls.weight, 0.05)
    fill(model.rpn_head.rpn_reg.weight, 0.01)
    fill(model.bbox_head.fc_cls.weight, 0.01)
    fill(model.bbox_head.fc_reg.weight, 0.02)
    if model.with_mask:
        fill(model.mask_head.conv_logits.weight, 0.1)
    backbone = model.backbone
    for module in backbone.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a cumulative average: the calibration batch's statistics
    backbone.train()
    backbone(calibration)
    for module in backbone.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.num_batches_tracked.fill_(1234)
    return model.eval()


def save_release_checkpoint(model: ReleaseDetector, path) -> None:
    """mmdetection v1's ``latest.pth`` layout: ``meta`` and ``state_dict`` (and its optimizer)."""
    torch.save(
        {
            "meta": {"mmdet_version": "1.0rc0+stand-in", "config": "stand-in of the release's test", "epoch": 20},
            "state_dict": model.state_dict(),
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.00025, "params": [0]}]},
        },
        path,
    )
