"""DCTDatasetMapper against Detectron2's stock DatasetMapper."""

import copy

import numpy as np
import pytest
import torch
from detectron2.data import DatasetMapper
from detectron2.data import transforms as T
from helpers import small_cfg

from freqdet import DCTDatasetMapper
from freqdet.dct import channel_indices, upscaled_dct


def paired(cfg, dataset_dict, seed):
    """Run both mappers from the same random state."""
    np.random.seed(seed)
    ours = DCTDatasetMapper(cfg, is_train=True)(copy.deepcopy(dataset_dict))
    np.random.seed(seed)
    stock = DatasetMapper(cfg, is_train=True)(copy.deepcopy(dataset_dict))
    return ours, stock


@pytest.mark.parametrize("crop, fuse", [(False, True), (False, False), (True, True)])
def test_instances_equal_the_stock_mappers(demo_dicts, crop, fuse):
    cfg = small_cfg(
        "configs/demo/mask_rcnn_dct_demo.yaml",
        "INPUT.CROP.ENABLED",
        crop,
        "INPUT.CROP.SIZE",
        [0.7, 0.7],
        "INPUT.DCT.FUSE_RESIZE",
        fuse,
        "INPUT.DCT.SOURCE",
        "pixels",  # the decoded pixels' coefficients; the planes' are held to libjpeg's YCbCr in test_planes
    )
    assert DCTDatasetMapper(cfg, is_train=True).fuse == (fuse and not crop)
    for seed, d in enumerate(demo_dicts[:12]):
        ours, stock = paired(cfg, d, seed)
        a, b = ours["instances"], stock["instances"]
        assert a.image_size == b.image_size == tuple(ours["image_size"])
        assert torch.equal(a.gt_classes, b.gt_classes)
        assert torch.equal(a.gt_boxes.tensor, b.gt_boxes.tensor)
        assert len(a.gt_masks.polygons) == len(b.gt_masks.polygons)
        for pa, pb in zip(a.gt_masks.polygons, b.gt_masks.polygons):
            assert all(np.array_equal(x, y) for x, y in zip(pa, pb))
        # The shipped channels are the augmented pixels' transform, rounded to int16;
        # absorbing the resize skips Pillow's rounding of the resized pixels to uint8.
        h, w = ours["image_size"]
        pixels = stock["image"].permute(1, 2, 0).numpy()
        assert pixels.shape[:2] == (h, w)
        expected = np.rint(upscaled_dct(pixels, channel_indices(24), "BGR"))
        assert ours["dct"].dtype == torch.int16
        assert ours["dct"].shape == (24, -(-h // 4), -(-w // 4))
        error = np.abs(ours["dct"].numpy() - expected)
        if fuse and not crop:
            assert error.mean() < 0.5 and error.max() <= 8
        else:
            assert error.max() <= 1
    assert "image" not in ours


def test_inference_mode_drops_annotations_and_keeps_the_output_size(demo_dicts):
    cfg = small_cfg()
    d = demo_dicts[3]
    out = DCTDatasetMapper(cfg, is_train=False)(copy.deepcopy(d))
    assert "annotations" not in out and "instances" not in out
    assert (out["height"], out["width"]) == (d["height"], d["width"])
    assert min(out["image_size"]) == 144


def test_wire_dtype_and_explicit_channels(demo_dicts):
    cfg = small_cfg(
        "configs/demo/mask_rcnn_dct_demo.yaml", "INPUT.DCT.WIRE_DTYPE", "float32", "MODEL.DCT.INDICES", [130, 0, 65]
    )
    out = DCTDatasetMapper(cfg, is_train=False)(copy.deepcopy(demo_dicts[0]))
    assert out["dct"].dtype == torch.float32 and out["dct"].shape[0] == 3
    cfg.INPUT.DCT.WIRE_DTYPE = "int4"
    with pytest.raises(ValueError, match="WIRE_DTYPE"):
        DCTDatasetMapper(cfg, is_train=False)


def test_refuses_a_pixel_format_without_colour():
    cfg = small_cfg("configs/demo/mask_rcnn_dct_demo.yaml", "INPUT.FORMAT", "L")
    with pytest.raises(ValueError, match="INPUT.FORMAT"):
        DCTDatasetMapper(cfg, is_train=True)


def test_lsj_crops_and_pads_inside_the_frequency_transform(demo_dicts):
    """Detectron2's large-scale jitter (ResizeScale, FixedSizeCrop padding with grey, RandomFlip):
    absorbed by the transform; instances and sizes are the stock mapper's, the coefficients those
    of the stock mapper's pixels, and cells of padding alone are 0."""
    import detectron2.data.transforms as T

    size = 192
    augmentations = [
        T.ResizeScale(min_scale=0.4, max_scale=2.0, target_height=size, target_width=size),
        T.FixedSizeCrop(crop_size=(size, size)),
        T.RandomFlip(horizontal=True),
    ]
    common = dict(
        is_train=True, augmentations=augmentations, image_format="BGR", use_instance_mask=True, recompute_boxes=True
    )
    ours_mapper = DCTDatasetMapper(channels=channel_indices(24), source="pixels", **common)
    stock_mapper = DatasetMapper(**common)
    assert ours_mapper.fuse
    padded_cells = 0
    for seed, d in enumerate(demo_dicts[:12]):
        np.random.seed(seed)
        ours = ours_mapper(copy.deepcopy(d))
        np.random.seed(seed)
        stock = stock_mapper(copy.deepcopy(d))
        assert tuple(ours["image_size"]) == (size, size) == tuple(stock["image"].shape[1:])
        assert torch.equal(ours["instances"].gt_boxes.tensor, stock["instances"].gt_boxes.tensor)
        assert torch.equal(ours["instances"].gt_classes, stock["instances"].gt_classes)
        pixels = stock["image"].permute(1, 2, 0).numpy()
        expected = np.rint(upscaled_dct(pixels, channel_indices(24), "BGR"))
        error = np.abs(ours["dct"].numpy() - expected)
        assert error.mean() < 0.5 and error.max() <= 8  # Pillow's uint8 rounding of the resized pixels
        grey = (pixels == 128).all(axis=2)
        n = size // 4
        # A cell reads pixels 4i - 1 .. 4i + 4 along each axis (the upscale's neighbours).
        cells = np.array(
            [
                [grey[max(4 * i - 1, 0) : 4 * i + 5, max(4 * j - 1, 0) : 4 * j + 5].all() for j in range(n)]
                for i in range(n)
            ]
        )
        padded_cells += int(cells.sum())
        assert (ours["dct"].numpy()[:, cells] == 0).all()
    assert padded_cells > 100


def test_the_first_augmentation_sees_the_decoded_pixels(demo_dicts):
    """With the resize absorbed, the transforms are drawn before any pixel moves; an augmentation
    that reads pixels (Detectron2's AugInput gives them) still gets the decoded image first, as
    Detectron2's mapper gives it, and the ones after it the shape they would see."""
    seen = []

    class Record(T.Augmentation):
        def get_transform(self, image):
            seen.append(np.array(image))
            return T.NoOpTransform()

    augmentations = [Record(), T.ResizeShortestEdge(96, 200), Record()]
    for mapper in (
        DCTDatasetMapper(True, channels=24, augmentations=augmentations, image_format="BGR"),
        DatasetMapper(True, augmentations=augmentations, image_format="BGR"),
    ):
        mapper(copy.deepcopy(demo_dicts[0]))
    ours, stock = seen[:2], seen[2:]
    assert np.array_equal(ours[0], stock[0]) and ours[0].any()
    assert ours[1].shape == stock[1].shape
