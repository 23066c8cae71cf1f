"""The YUV-planes route: a JPEG's own Y, Cb and Cr planes (libjpeg-turbo), transformed without
converting colours, against libjpeg's own upsampled YCbCr (Pillow decoding in mode "YCbCr")."""

import copy

import numpy as np
import pytest
import torch
from helpers import float_resize, small_cfg
from PIL import Image, ImageOps

from freqdet import DCTDatasetMapper, ImageDecodeError
from freqdet.dct import (
    Geometry,
    image_dct,
    kernel_routines,
    planes_dct,
    resolve_channels,
    split_by_component,
    upscaled_dct,
    ycbcr_to_rgb,
)
from freqdet.dct import separable as separable_module
from freqdet.dct.operators import axis_bounds
from freqdet.io import read_planes

turbojpeg = pytest.importorskip("turbojpeg")

SUBSAMPLINGS = {"444": (1, 1), "422": (1, 2), "420": (2, 2), "440": (2, 1)}
GEOMETRIES = [
    Geometry(),
    Geometry(resize=(530, 797), hflip=True),
    Geometry(resize=(180, 270), crop=(10, 21, 150, 237), pad=(160, 256), vflip=True),
]


@pytest.fixture(scope="module")
def odd_photo(photo_rgb) -> np.ndarray:
    """Grace Hopper's portrait cut to odd sizes: the last chroma sample of each axis covers one pixel."""
    return np.ascontiguousarray(photo_rgb[:301, :451])


def encode(pixels: np.ndarray, path, subsampling: str, quality: int = 90) -> None:
    codes = {"444": "TJSAMP_444", "422": "TJSAMP_422", "420": "TJSAMP_420", "440": "TJSAMP_440", "411": "TJSAMP_411"}
    jpeg = turbojpeg.TurboJPEG().encode(
        pixels[:, :, ::-1].copy(), quality=quality, jpeg_subsample=getattr(turbojpeg, codes[subsampling])
    )
    path.write_bytes(jpeg)


def libjpeg_ycbcr(image: Image.Image) -> np.ndarray:
    """libjpeg's own decode to YCbCr (its chroma upsampling, rounded to uint8; no colour conversion)."""
    if image.mode == "L":
        y = np.asarray(image, np.float32)
        return np.stack([y, np.full_like(y, 128), np.full_like(y, 128)], axis=-1)
    image.draft("YCbCr", image.size)
    assert image.mode == "YCbCr"
    return np.asarray(image, np.float32)


def rounding_bound(count: int) -> np.ndarray:
    """How far a coefficient may move when each chroma sample moves by at most 0.5 (libjpeg rounds
    its upsampled chroma, the transform does not): 0.5 * sum|row weights| * sum|column weights|,
    per channel of the square selection of ``count`` Y, Cb and Cr channels (Y: 0)."""
    bound = axis_bounds(True)
    per_k = 0.5 * np.outer(bound, bound).ravel()
    wanted = split_by_component(resolve_channels(count))
    return np.concatenate([np.zeros(len(ks)) if c == 0 else per_k[ks] for c, ks in enumerate(wanted) if ks])


@pytest.mark.parametrize("subsampling", list(SUBSAMPLINGS))
def test_planes_are_libjpegs_own_and_their_coefficients_those_of_its_ycbcr(tmp_path, odd_photo, subsampling):
    path = tmp_path / f"{subsampling}.jpg"
    encode(odd_photo, path, subsampling)
    planes = read_planes(path)
    sub_h, sub_w = SUBSAMPLINGS[subsampling]
    assert planes.shape == (301, 451) and planes.subsampling == (sub_h, sub_w)
    assert planes.cb.shape == planes.cr.shape == (-(-301 // sub_h), -(-451 // sub_w))
    ycbcr = libjpeg_ycbcr(Image.open(path))
    np.testing.assert_array_equal(planes.y, ycbcr[..., 0])
    if subsampling == "444":
        np.testing.assert_array_equal(planes.cb, ycbcr[..., 1])
        np.testing.assert_array_equal(planes.cr, ycbcr[..., 2])
    pixels = ycbcr_to_rgb(ycbcr)  # float, unclipped: the reference converts it back exactly
    tolerance = rounding_bound(192)[:, None, None] + 1e-2
    ours = planes_dct(planes, 192).numpy()
    reference = upscaled_dct(pixels, 192, "RGB")
    assert ours.shape == reference.shape
    assert (np.abs(ours - reference) <= tolerance).all()
    assert np.abs(ours[:64] - reference[:64]).max() < 1e-2
    for geometry in GEOMETRIES[1:]:
        ours, theirs = planes_dct(planes, 192, geometry).numpy(), image_dct(pixels, 192, "RGB", geometry).numpy()
        assert ours.shape == theirs.shape
        assert (np.abs(ours - theirs) <= tolerance).all()


def test_a_greyscale_jpeg_has_zero_chroma(tmp_path, odd_photo):
    path = tmp_path / "grey.jpg"
    Image.fromarray(odd_photo).convert("L").save(path, quality=90)
    planes = read_planes(path)
    assert planes.cb is None and planes.cr is None
    np.testing.assert_array_equal(planes.y, np.asarray(Image.open(path)))
    ours = planes_dct(planes, 64, GEOMETRIES[1]).numpy()
    theirs = image_dct(np.repeat(planes.y[:, :, None], 3, axis=2), 64, "BGR", GEOMETRIES[1]).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-2)
    luma = len(split_by_component(resolve_channels(64))[0])
    assert (ours[luma:] == 0).all() and np.abs(ours[:luma]).max() > 100


@pytest.mark.parametrize("orientation", range(2, 9))
def test_exif_orientation_turns_the_planes_as_pillow_turns_the_picture(tmp_path, photo_rgb, orientation):
    path = tmp_path / f"exif{orientation}.jpg"
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(photo_rgb[:300, :400]).save(path, quality=90, subsampling=2, exif=exif.tobytes())
    planes = read_planes(path)
    expected = (300, 400) if orientation <= 4 else (400, 300)
    assert planes.shape == expected
    assert planes.subsampling == (2, 2)
    image = Image.open(path)
    image.draft("YCbCr", image.size)
    turned = ImageOps.exif_transpose(image)
    assert turned.mode == "YCbCr"
    reference = np.asarray(turned, np.float32)
    np.testing.assert_array_equal(planes.y, reference[..., 0])
    ours, theirs = planes_dct(planes, 192).numpy(), upscaled_dct(ycbcr_to_rgb(reference), 192, "RGB")
    assert (np.abs(ours - theirs) <= rounding_bound(192)[:, None, None] + 1e-2).all()


def test_what_the_planes_cannot_carry_is_left_to_the_pixels(tmp_path, photo_rgb):
    """None (read the pixels instead) for 4:1:1, CMYK, non-JPEG files, and a mirrored odd-sized
    subsampled axis (its last chroma sample would cover the first pixel, not the last)."""
    encode(np.ascontiguousarray(photo_rgb[:300, :400]), tmp_path / "411.jpg", "411")
    Image.fromarray(photo_rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=90)
    Image.fromarray(photo_rgb).save(tmp_path / "photo.png")
    exif = Image.Exif()
    exif[0x0112] = 2  # mirrored left-right
    Image.fromarray(photo_rgb[:300, :401]).save(tmp_path / "odd.jpg", quality=90, subsampling=2, exif=exif.tobytes())
    Image.fromarray(photo_rgb[:300, :401]).save(tmp_path / "odd444.jpg", quality=90, subsampling=0, exif=exif.tobytes())
    for name in ("411.jpg", "cmyk.jpg", "photo.png", "odd.jpg"):
        assert read_planes(tmp_path / name) is None, name
    assert read_planes(tmp_path / "odd444.jpg").shape == (300, 401)


def test_bad_files_raise_as_read_image_does(tmp_path, photo_rgb):
    path = tmp_path / "photo.jpg"
    Image.fromarray(photo_rgb).save(path, quality=90)
    data = path.read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageDecodeError, match="truncated.jpg"):
        read_planes(tmp_path / "truncated.jpg")
    with pytest.raises(ImageDecodeError, match="max_pixels"):
        read_planes(path, max_pixels=1000)
    with pytest.raises(ImageDecodeError, match="missing.jpg"):
        read_planes(tmp_path / "missing.jpg")


@pytest.mark.parametrize("routines", ["avx512", "avx2", "portable", "torch"])
def test_every_engine_computes_the_planes_of_libjpegs_resized_ycbcr(tmp_path, odd_photo, routines, monkeypatch):
    """Each engine against the numpy reference: libjpeg's own YCbCr decode of a 4:2:0 file, converted
    back to RGB, resized by Pillow's bilinear filter written out in numpy, flipped, transformed; within
    what libjpeg's rounding of its upsampled chroma moves (and 0.5 more for the int16 wire)."""
    path = tmp_path / "420.jpg"
    encode(odd_photo, path, "420")
    planes = read_planes(path)
    geometry = GEOMETRIES[1]
    resized = float_resize(ycbcr_to_rgb(libjpeg_ycbcr(Image.open(path))), *geometry.resize)[:, ::-1]
    reference = upscaled_dct(resized, 64, "RGB")
    tolerance = rounding_bound(64)[:, None, None] + 1e-2
    if routines == "torch":
        monkeypatch.setattr(separable_module, "_banded", None)
    elif separable_module._banded is None:
        pytest.skip("the C kernel is not built")
    else:
        previous = kernel_routines()
        if separable_module._banded.use_routines(routines) != routines:
            separable_module._banded.use_routines(previous)
            pytest.skip(f"this CPU lacks the instructions of the {routines} routines")
    try:
        floats = planes_dct(planes, 64, geometry).numpy()
        wire = planes_dct(planes, 64, geometry, dtype=torch.int16).numpy()
    finally:
        if routines != "torch":
            separable_module._banded.use_routines(previous)
    assert floats.shape == wire.shape == reference.shape
    assert (np.abs(floats - reference) <= tolerance).all()
    assert (np.abs(wire - reference) <= tolerance + 0.5).all()


def test_the_mapper_reads_planes_and_keeps_the_stock_instances(demo_dicts):
    """SOURCE "planes" (the default) against "pixels": the same instances and sizes, coefficients
    that differ only by what the BGR pixels' rounding and clipping moved."""
    planes_cfg = small_cfg("configs/demo/mask_rcnn_dct_demo.yaml")
    assert planes_cfg.INPUT.DCT.SOURCE == "planes"
    pixels_cfg = small_cfg("configs/demo/mask_rcnn_dct_demo.yaml", "INPUT.DCT.SOURCE", "pixels")
    errors = []
    for seed, d in enumerate(demo_dicts[:12]):
        outputs = []
        for cfg in (planes_cfg, pixels_cfg):
            np.random.seed(seed)
            outputs.append(DCTDatasetMapper(cfg, is_train=True)(copy.deepcopy(d)))
        ours, theirs = outputs
        assert tuple(ours["image_size"]) == tuple(theirs["image_size"])
        assert torch.equal(ours["instances"].gt_boxes.tensor, theirs["instances"].gt_boxes.tensor)
        assert ours["dct"].shape == theirs["dct"].shape and ours["dct"].dtype == torch.int16
        errors.append((ours["dct"].float() - theirs["dct"].float()).abs().flatten())
    error = torch.cat(errors)
    assert 0 < error.mean() < 0.5 and torch.quantile(error[::7], 0.99) <= 3


def test_the_mapper_falls_back_to_pixels_where_planes_cannot_serve(tmp_path, photo_rgb):
    """A 4:1:1 JPEG, and a resize the transform cannot absorb: exactly the pixel route's output."""
    from detectron2.data import transforms as T

    encode(np.ascontiguousarray(photo_rgb[:300, :400]), tmp_path / "411.jpg", "411")
    Image.fromarray(photo_rgb[:300, :400]).save(tmp_path / "420.jpg", quality=90, subsampling=2)
    cases = [
        ("411.jpg", [T.ResizeShortestEdge(200, 400)]),
        ("420.jpg", [T.ResizeShortestEdge(200, 400, interp=Image.NEAREST)]),
    ]
    for name, augmentations in cases:
        d = {"file_name": str(tmp_path / name), "height": 300, "width": 400, "image_id": 0}
        outputs = []
        for source in ("planes", "pixels"):
            mapper = DCTDatasetMapper(True, channels=24, source=source, augmentations=augmentations, image_format="BGR")
            outputs.append(mapper(copy.deepcopy(d))["dct"])
        assert torch.equal(outputs[0], outputs[1]), name
