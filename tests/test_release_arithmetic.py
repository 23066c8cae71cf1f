"""mmdetection v1's box arithmetic, as the release runs it, against cases worked out by hand here: its
anchors, its box decoder and its RoI level mapping. Both freqdet's implementation
(freqdet.detection.release) and the test's re-implementation of the release
(dctnet_release_detector) are held to them, so that a misreading of mmdetection shared by the two
cannot pass. The cases are written from the rules, not from either implementation's code:

- anchors: an anchor of size S (= stride x 8) and aspect ratio r (height / width) has width S / sqrt(r)
  and height S x sqrt(r); mmdetection v1 centres it on ((stride - 1) / 2, (stride - 1) / 2), spans
  centre +- (side - 1) / 2 (inclusive pixel corners), and rounds the corners to integers; a cell at
  column i and row j moves it by (i, j) x stride; all anchors of a cell come before the next cell's,
  cells row by row.
- decoder: widths count both end pixels (x2 - x1 + 1); the centre moves by dx x width, the width
  scales by exp(dw), clamped so that |dw| <= log(1000 / 16); the corners are centre -+ (width - 1) / 2,
  clipped to the image's pixels [0, W - 1] x [0, H - 1]; deltas are multiplied by the stds first.
- levels: a box of side s = sqrt(w x h) (inclusive widths) goes to level k when 56 x 2^k <= s <
  56 x 2^(k+1), the levels 0 (stride 4) to 3 (stride 32) at most.
"""

import math

import dctnet_release_detector as reference
import pytest
import torch

from freqdet.detection import release

# Base anchors (one cell at the origin) for ratios 0.5, 1, 2, by hand:
# stride 4, S = 32, centre 1.5.  r = 0.5: w = 32 * 1.41421 = 45.255, h = 22.627:
#   x = 1.5 -+ 22.127 -> -20.63, 23.63 -> -21, 24;  y = 1.5 -+ 10.814 -> -9.31, 12.31 -> -9, 12.
#   r = 1: 1.5 -+ 15.5 -> -14, 17.  r = 2: the r = 0.5 box turned: (-9, -21, 12, 24).
# stride 16, S = 128, centre 7.5.  r = 0.5: w = 181.019, h = 90.510:
#   x = 7.5 -+ 90.010 -> -82.51, 97.51 -> -83, 98;  y = 7.5 -+ 44.755 -> -37.25, 52.25 -> -37, 52.
#   r = 1: 7.5 -+ 63.5 -> -56, 71.  r = 2: (-37, -83, 52, 98).
BASE = {
    4: [[-21, -9, 24, 12], [-14, -14, 17, 17], [-9, -21, 12, 24]],
    16: [[-83, -37, 98, 52], [-56, -56, 71, 71], [-37, -83, 52, 98]],
}


@pytest.mark.parametrize("stride", [4, 16])
def test_anchors_of_one_level_are_mmdetection_v1s(stride):
    base = torch.tensor(BASE[stride], dtype=torch.float32)
    ours = release.release_anchors(8 * stride, stride, (0.5, 1.0, 2.0), (2, 3))
    theirs = reference.grid_anchors(reference.base_anchors(stride, [8], [0.5, 1.0, 2.0]), (2, 3), stride)
    # cells (column, row) in the order (0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1); three anchors each
    expected = torch.cat([base + stride * torch.tensor([i, j, i, j]) for j in range(2) for i in range(3)])
    assert torch.equal(ours, expected)
    assert torch.equal(theirs, expected)


# One box, x 10..49 and y 20..59 (40 x 40 pixels, centre (29.5, 39.5)), in a 100 x 60 (H x W) image.
BOX = [10.0, 20.0, 49.0, 59.0]
DECODED = [
    # (deltas, stds, image (H, W), expected corners)
    # dx 0.1, dy -0.2, dw log 2: centre (29.5 + 4, 39.5 - 8) = (33.5, 31.5), 80 x 40:
    # x 33.5 -+ 39.5 = -6 (clipped to 0), 73 (clipped to W - 1 = 59); y 31.5 -+ 19.5 = 12, 51.
    ([0.1, -0.2, math.log(2), 0.0], [1.0, 1.0, 1.0, 1.0], (100, 60), [0.0, 12.0, 59.0, 51.0]),
    # the same deltas as the R-CNN head's stds (0.1, 0.1, 0.2, 0.2) divide them
    ([1.0, -2.0, 5 * math.log(2), 0.0], [0.1, 0.1, 0.2, 0.2], (100, 60), [0.0, 12.0, 59.0, 51.0]),
    # dw 10 is clamped to log(1000 / 16): width 40 * 62.5 = 2500, x 29.5 -+ 1249.5 = -1220 (0), 1279;
    # y unchanged: 39.5 -+ 19.5 = 20, 59.
    ([0.0, 0.0, 10.0, 0.0], [1.0, 1.0, 1.0, 1.0], (10000, 10000), [0.0, 20.0, 1279.0, 59.0]),
    # dh -1: height 40 / e = 14.715, y 39.5 -+ 6.858 = 32.642, 46.358; dx -0.5: x 9.5 -+ 19.5 = -10 (0), 29.
    ([-0.5, 0.0, 0.0, -1.0], [1.0, 1.0, 1.0, 1.0], (100, 60), [0.0, 32.6420, 29.0, 46.3580]),
]


@pytest.mark.parametrize("deltas, stds, image, expected", DECODED)
def test_the_box_decoder_is_mmdetection_v1s(deltas, stds, image, expected):
    boxes, d = torch.tensor([BOX]), torch.tensor([deltas])
    expected = torch.tensor([expected])
    torch.testing.assert_close(release.release_decode(boxes, d, stds, image), expected, atol=1e-3, rtol=0)
    torch.testing.assert_close(reference.delta2bbox(boxes, d, stds, image), expected, atol=1e-3, rtol=0)


# (width, height) in pixels and the level by the rule 56 * 2^k <= sqrt(w * h) < 56 * 2^(k+1), clamped to 0..3.
LEVELS = [(10, 10, 0), (56, 56, 0), (111, 111, 0), (112, 112, 1), (56, 224, 1), (223, 223, 1), (224, 224, 2)]
LEVELS += [(447, 447, 2), (448, 448, 3), (2000, 2000, 3), (896, 1000, 3)]


def test_roi_levels_are_mmdetection_v1s():
    boxes = torch.tensor([[0.0, 0.0, w - 1.0, h - 1.0] for w, h, _ in LEVELS])
    expected = torch.tensor([level for *_, level in LEVELS])
    assert torch.equal(release.release_levels(boxes, 4), expected)
    # The re-implementation maps levels inside its extractor: give level k a feature map filled with k
    # (each as large as its boxes need: 128, 256, 512 and 2048 pixels), so the pooled features say which
    # level each box read (a box read from another level would also sample outside it, as zeros).
    feats = [torch.full((1, 256, cells, cells), float(k)) for k, cells in enumerate((32, 32, 32, 64))]
    rois = torch.cat([torch.zeros(len(boxes), 1), boxes], dim=1)
    pooled = reference.roi_extract(feats, rois, 7)
    assert torch.equal(pooled.mean(dim=(1, 2, 3)).round().long(), expected)
