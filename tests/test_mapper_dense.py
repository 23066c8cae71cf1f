"""DCTDatasetMapper's dense targets (``sem_seg``), crops and keypoints against Detectron2's stock
DatasetMapper, on real photos with label maps made for them."""

import copy
import os

import numpy as np
import pytest
import torch
from detectron2.data import DatasetMapper, MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import BoxMode
from helpers import small_cfg
from PIL import Image

from freqdet import DCTDatasetMapper
from freqdet.dct import channel_indices, upscaled_dct
from freqdet.detection import mapper as mapper_module

SEEDS = range(6)


def photo_paths():
    import matplotlib.cbook
    import sklearn

    images = os.path.join(os.path.dirname(sklearn.__file__), "datasets", "images")
    return [
        os.path.join(images, "china.jpg"),
        os.path.join(images, "flower.jpg"),
        str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)),
    ]


def label_map(height: int, width: int) -> np.ndarray:
    """Vertical bands of labels 0..5, every fifth band of rows shifted by 3, and a block of 255 (ignore)
    in the top-left corner (which tells a flipped map from the other)."""
    y, x = np.mgrid[:height, :width]
    labels = (x * 6 // width).astype(np.uint8)
    shifted = (y // 29) % 5 == 0
    labels[shifted] = (labels[shifted] + 3) % 6
    labels[: height // 5, : width // 6] = 255
    return labels


@pytest.fixture(scope="module")
def dense_dicts(module_tmp):
    """A dataset dict per photo: its label map as a PNG, and one box with a polygon."""
    folder = module_tmp("sem_seg")
    dicts = []
    for i, path in enumerate(photo_paths()):
        width, height = Image.open(path).size
        labels = folder / f"{i}.png"
        Image.fromarray(label_map(height, width), mode="L").save(labels)
        x0, y0, w, h = 0.3 * width, 0.25 * height, 0.35 * width, 0.4 * height
        annotation = {
            "bbox": [x0, y0, w, h],
            "bbox_mode": BoxMode.XYWH_ABS,
            "category_id": 0,
            "iscrowd": 0,
            "segmentation": [[x0, y0, x0 + w, y0, x0 + w, y0 + h, x0, y0 + h]],
        }
        dicts.append(
            {
                "file_name": path,
                "height": height,
                "width": width,
                "image_id": i,
                "sem_seg_file_name": str(labels),
                "annotations": [annotation],
            }
        )
    return dicts


@pytest.fixture
def routes(monkeypatch):
    """The routes the DCT mapper takes, one (route, geometry, shape of what is transformed) per image;
    on the planes route no pixels may be decoded."""
    taken = []

    def spy(route, function):
        def wrapper(source, *args):
            taken.append((route, args[-1], tuple(getattr(source, "shape", ()))))
            return function(source, *args)

        return wrapper

    monkeypatch.setattr(mapper_module, "encode_planes", spy("planes", mapper_module.encode_planes))
    monkeypatch.setattr(mapper_module, "encode_image", spy("pixels", mapper_module.encode_image))
    read_image = mapper_module.read_image

    def read_pixels(*args, **kwargs):
        taken.append(("decode", None, None))
        return read_image(*args, **kwargs)

    monkeypatch.setattr(mapper_module, "read_image", read_pixels)
    return taken


def paired(ours_mapper, stock_mapper, dataset_dict, seed):
    """Both mappers from the same random state."""
    np.random.seed(seed)
    ours = ours_mapper(copy.deepcopy(dataset_dict))
    np.random.seed(seed)
    stock = stock_mapper(copy.deepcopy(dataset_dict))
    return ours, stock


def assert_same_targets(ours, stock):
    """``sem_seg`` equal to the stock mapper's (dtype, shape, values), at the image's size; instances too."""
    a, b = ours["sem_seg"], stock["sem_seg"]
    assert a.dtype == b.dtype == torch.long
    assert a.shape == b.shape == tuple(ours["image_size"]) == tuple(stock["image"].shape[1:])
    assert torch.equal(a, b)
    assert "sem_seg_file_name" not in ours
    if "instances" in stock:
        x, y = ours["instances"], stock["instances"]
        assert x.image_size == y.image_size
        assert torch.equal(x.gt_classes, y.gt_classes)
        assert torch.equal(x.gt_boxes.tensor, y.gt_boxes.tensor)


def flipped(sem_seg: torch.Tensor) -> bool:
    """Whether the label map's block of 255 is at the top right (flipped) rather than the top left."""
    return bool(sem_seg[0, -1] == 255)


def explicit(augmentations, shared=None, **ours):
    """The DCT mapper (with ``ours``) and the stock one, with the same explicit augmentations and ``shared``."""
    common = dict(is_train=True, augmentations=augmentations, image_format="BGR", **(shared or {}))
    return DCTDatasetMapper(channels=channel_indices(24), **common, **ours), DatasetMapper(**common)


def fused_error(ours, stock) -> np.ndarray:
    """|our coefficients - the paper's pipeline on the stock mapper's pixels (rounded to int16)|."""
    pixels = stock["image"].permute(1, 2, 0).numpy()
    expected = np.rint(upscaled_dct(pixels, channel_indices(24), "BGR"))
    assert ours["dct"].shape == expected.shape
    return np.abs(ours["dct"].numpy() - expected)


@pytest.mark.parametrize("source", ["planes", "pixels"])
def test_default_training_augmentation_keeps_the_stock_sem_seg(dense_dicts, routes, source):
    """ResizeShortestEdge + RandomFlip, absorbed by the transform: no pixel is resized, and with
    SOURCE "planes" none is decoded."""
    cfg = small_cfg("configs/demo/mask_rcnn_dct_demo.yaml", "INPUT.DCT.SOURCE", source)
    ours_mapper, stock_mapper = DCTDatasetMapper(cfg, is_train=True), DatasetMapper(cfg, is_train=True)
    flips = set()
    for d in dense_dicts:
        for seed in SEEDS[:3]:
            routes.clear()
            ours, stock = paired(ours_mapper, stock_mapper, d, seed)
            assert_same_targets(ours, stock)
            flips.add(flipped(stock["sem_seg"]))
            route, geometry, shape = routes[0] if source == "planes" else routes[1]
            assert route == source and geometry.resize == tuple(ours["image_size"])
            assert shape == (d["height"], d["width"]) + (() if source == "planes" else (3,))
            assert [r[0] for r in routes] == ([route] if source == "planes" else ["decode", route])
            assert "dct" in ours and "image" not in ours
    assert flips == {True, False}


def test_large_scale_jitter_pads_the_labels_with_the_seg_pad_value(dense_dicts, routes):
    size = 192
    crop = T.FixedSizeCrop(crop_size=(size, size))
    ours_mapper, stock_mapper = explicit(
        [T.ResizeScale(min_scale=0.4, max_scale=2.0, target_height=size, target_width=size), crop, T.RandomFlip()]
    )
    padded = 0
    for d in dense_dicts:
        for seed in SEEDS:
            routes.clear()
            ours, stock = paired(ours_mapper, stock_mapper, d, seed)
            assert_same_targets(ours, stock)
            assert [r[0] for r in routes] == ["planes"] and routes[0][1].crop is not None
            grey_rows = (stock["image"] == 128).all(dim=0).all(dim=1)
            if grey_rows[-1]:  # the image was padded at the bottom
                padded += 1
                assert (ours["sem_seg"][grey_rows] == getattr(crop, "seg_pad_value", 0)).all()
    assert padded >= 2


def test_input_crop_enabled_crops_before_the_resize_on_the_pixels(dense_dicts, routes):
    """INPUT.CROP.ENABLED: Detectron2 puts RandomCrop before ResizeShortestEdge; a crop then a
    resize is no Geometry, so the pixels are cropped and resized as the stock mapper does."""
    cfg = small_cfg("configs/demo/mask_rcnn_dct_demo.yaml", "INPUT.CROP.ENABLED", True, "INPUT.CROP.SIZE", [0.6, 0.6])
    ours_mapper, stock_mapper = DCTDatasetMapper(cfg, is_train=True), DatasetMapper(cfg, is_train=True)
    assert isinstance(stock_mapper.augmentations.augs[0], T.RandomCrop) and not ours_mapper.fuse
    for d in dense_dicts:
        for seed in SEEDS[:3]:
            routes.clear()
            ours, stock = paired(ours_mapper, stock_mapper, d, seed)
            assert_same_targets(ours, stock)
            assert [r[0] for r in routes] == ["decode", "pixels"] and routes[1][2] == tuple(
                stock["image"].shape[1:]
            ) + (3,)
            assert fused_error(ours, stock).max() <= 1  # the stock pixels themselves


@pytest.mark.parametrize("resize", [True, False], ids=["resize-then-crop", "crop-alone"])
def test_random_crop_after_the_resize_is_absorbed(dense_dicts, routes, resize):
    """RandomCrop after ResizeShortestEdge (the semantic segmentation recipes' order), or alone: the
    planes route takes it with no pixel decoded; the pixels route's coefficients are those of the
    stock mapper's cropped image (within what Pillow's uint8 rounding of a resize moves)."""
    augmentations = [T.RandomCrop("relative_range", (0.5, 0.6)), T.RandomFlip()]
    if resize:
        augmentations.insert(0, T.ResizeShortestEdge((160, 200), 320))
    for source in ("planes", "pixels"):
        ours_mapper, stock_mapper = explicit(augmentations, source=source)
        assert ours_mapper.fuse
        for d in dense_dicts:
            for seed in SEEDS[:3]:
                routes.clear()
                ours, stock = paired(ours_mapper, stock_mapper, d, seed)
                assert_same_targets(ours, stock)
                route, geometry, shape = routes[-1]
                assert route == source and geometry.crop is not None and (geometry.resize is not None) == resize
                assert shape[:2] == (d["height"], d["width"])
                if source == "pixels":
                    error = fused_error(ours, stock)
                    if resize:
                        assert error.mean() < 0.5 and error.max() <= 8
                    else:
                        assert error.max() <= 1
                else:
                    assert [r[0] for r in routes] == ["planes"]


def test_category_area_crop_draws_from_the_transformed_labels(dense_dicts, routes):
    """RandomCrop_CategoryAreaConstraint reads sem_seg when drawn: drawn without moving the pixels, it
    gets the label map through the resize before it, and crops where the stock mapper crops."""
    crop = dict(crop_type="absolute", crop_size=(96, 96))
    resize = T.ResizeShortestEdge((128, 160), 240)
    area = T.RandomCrop_CategoryAreaConstraint(**crop, single_category_max_area=0.3, ignored_category=255)
    plain = DatasetMapper(True, augmentations=[resize, T.RandomCrop(**crop), T.RandomFlip()], image_format="BGR")
    retried = 0
    for source in ("planes", "pixels"):
        ours_mapper, stock_mapper = explicit([resize, area, T.RandomFlip()], source=source)
        assert ours_mapper.fuse
        for d in dense_dicts:
            for seed in SEEDS:
                routes.clear()
                ours, stock = paired(ours_mapper, stock_mapper, d, seed)
                assert_same_targets(ours, stock)
                assert routes[-1][0] == source and routes[-1][1].crop is not None
                np.random.seed(seed)
                retried += not torch.equal(plain(copy.deepcopy(d))["sem_seg"], stock["sem_seg"])
    assert retried >= 4  # the labels moved the crop in some draws


def test_inference_keeps_sem_seg_and_drops_annotations(dense_dicts, routes):
    cfg = small_cfg("configs/demo/mask_rcnn_dct_demo.yaml")
    ours_mapper, stock_mapper = DCTDatasetMapper(cfg, is_train=False), DatasetMapper(cfg, is_train=False)
    for d in dense_dicts:
        routes.clear()
        ours, stock = paired(ours_mapper, stock_mapper, d, 0)
        assert_same_targets(ours, stock)
        assert min(ours["image_size"]) == 144 and "annotations" not in ours and "instances" not in ours
        assert [r[0] for r in routes] == ["planes"]


def test_the_release_pipeline_resizes_the_labels_to_its_image_size(dense_dicts, monkeypatch):
    """PREPROCESS "release" (inference): the labels at the size the release resizes the image to,
    as the stock mapper resizes them to that size (its coefficients, from OpenCV, are faked here)."""
    from freqdet.release_pipeline import DetectionInput, keep_ratio_size

    def fake_release(image, channels, scale):
        (h, w), factor = keep_ratio_size(*image.shape[:2], scale)
        return DetectionInput(
            torch.zeros((len(channels), -(-h // 8) * 2, -(-w // 8) * 2), dtype=torch.int16), (h, w), factor
        )

    monkeypatch.setattr(mapper_module, "opencv", lambda: None)
    monkeypatch.setattr(mapper_module, "detection_input", fake_release)
    ours_mapper = DCTDatasetMapper(
        False, channels=24, preprocess="release", release_scale=(240, 144), augmentations=[], image_format="BGR"
    )
    for d in dense_dicts:
        ours = ours_mapper(copy.deepcopy(d))
        size = tuple(ours["image_size"])
        assert ours["dct_padded"] and max(size) <= 240 and min(size) <= 144 and size != (d["height"], d["width"])
        stock = DatasetMapper(False, augmentations=[T.Resize(size)], image_format="BGR")(copy.deepcopy(d))
        assert_same_targets(ours, stock)


@pytest.mark.parametrize("augmentation", ["default", "resize-then-crop"])
def test_transform_on_the_device_keeps_the_stock_sem_seg(dense_dicts, routes, augmentation):
    """The decoded pixels travel with the geometry for the model to apply; the labels are transformed here."""
    if augmentation == "default":
        cfg = small_cfg("configs/demo/mask_rcnn_dct_demo.yaml", "MODEL.DCT.TRANSFORM_ON", "device")
        ours_mapper, stock_mapper = DCTDatasetMapper(cfg, is_train=True), DatasetMapper(cfg, is_train=True)
    else:
        augmentations = [T.ResizeShortestEdge((160, 200), 320), T.RandomCrop("absolute", (150, 170)), T.RandomFlip()]
        ours_mapper, stock_mapper = explicit(augmentations, transform_on="device")
    for d in dense_dicts:
        for seed in SEEDS[:3]:
            ours, stock = paired(ours_mapper, stock_mapper, d, seed)
            assert_same_targets(ours, stock)
            assert "dct" not in ours and tuple(ours["image"].shape) == (3, d["height"], d["width"])
            assert ours["resize"] is not None and (ours["crop"] is not None) == (augmentation != "default")
            assert ours["hflip"] == flipped(stock["sem_seg"])
    assert not [r for r in routes if r[0] != "decode"]


@pytest.mark.filterwarnings(
    "ignore:Creating a tensor from a list of numpy.ndarrays:UserWarning"
)  # Detectron2's Keypoints
def test_keypoints_and_their_flip_map_are_the_stock_mappers(dense_dicts):
    name = "freqdet_test_dense_keypoints"
    if not MetadataCatalog.get(name).get("keypoint_names"):
        MetadataCatalog.get(name).set(
            keypoint_names=["left_eye", "right_eye"], keypoint_flip_map=[("left_eye", "right_eye")]
        )
    hflip_indices = utils.create_keypoint_hflip_indices([name])
    assert list(hflip_indices) == [1, 0]
    shared = dict(use_keypoint=True, keypoint_hflip_indices=hflip_indices)
    ours_mapper, stock_mapper = explicit([T.ResizeShortestEdge((128, 160), 240), T.RandomFlip()], shared)
    flips = set()
    for d in dense_dicts:
        d = copy.deepcopy(d)
        x0, y0, w, h = d["annotations"][0]["bbox"]
        d["annotations"][0]["keypoints"] = [x0 + 0.3 * w, y0 + 0.4 * h, 2, x0 + 0.7 * w, y0 + 0.45 * h, 2]
        for seed in SEEDS[:4]:
            ours, stock = paired(ours_mapper, stock_mapper, d, seed)
            assert_same_targets(ours, stock)
            a, b = ours["instances"].gt_keypoints.tensor, stock["instances"].gt_keypoints.tensor
            assert a.shape == (1, 2, 3) and torch.equal(a, b)
            flips.add(flipped(stock["sem_seg"]))
            assert a[0, 0, 0] < a[0, 1, 0]  # mirrored, the left eye is on the left again: the flip map
    assert flips == {True, False}
