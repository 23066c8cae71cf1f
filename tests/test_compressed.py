"""The compressed-domain path: a JPEG's own coefficients, checked against jpeglib and the pixel path."""

import copy
import io

import jpeglib
import numpy as np
import pytest
import torch
from detectron2.data import DatasetMapper
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from helpers import small_cfg
from PIL import Image

from freqdet import DCTDatasetMapper, ImageDecodeError, read_image
from freqdet.dct import block_dct, channel_indices, rgb_to_ycbcr
from freqdet.dct.wire import decode_file_grid
from freqdet.io import read_jpeg_coefficients


@pytest.fixture
def photo(photo_rgb):
    return Image.fromarray(photo_rgb[:320, :256])  # multiples of 16: block grids are exact


@pytest.mark.parametrize(
    "options",
    [
        dict(quality=90),
        dict(quality=75, subsampling=0),
        dict(quality=80, subsampling=1),
        dict(quality=85, progressive=True),
    ],
)
def test_coefficients_are_the_files_as_jpeglib_reads_them(photo, tmp_path, options):
    path = tmp_path / "photo.jpg"
    photo.save(path, **options)
    ours = read_jpeg_coefficients(path)
    theirs = jpeglib.read_dct(str(path))
    assert (ours.height, ours.width) == (theirs.height, theirs.width) == (320, 256)
    for plane, stored, table in zip(ours.planes, (theirs.Y, theirs.Cb, theirs.Cr), (0, 1, 1)):
        quantizers = theirs.qt[theirs.quant_tbl_no[table]].reshape(64).astype(np.int32)
        expected = stored.reshape(stored.shape[0], stored.shape[1], 64).astype(np.int32) * quantizers
        assert plane.shape == expected.shape
        assert np.array_equal(plane, expected)


def test_quality_100_coefficients_are_freqdets_transform(photo, tmp_path):
    path = tmp_path / "q100.jpg"
    photo.save(path, quality=100, subsampling=0)
    ycbcr = np.round(rgb_to_ycbcr(np.asarray(photo)))
    for component, plane in enumerate(read_jpeg_coefficients(path).planes):
        assert np.abs(plane - np.round(block_dct(ycbcr[..., component]))).max() <= 2


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_the_rotated_pixels(photo, tmp_path, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "exif.jpg"
    photo.save(path, quality=100, subsampling=0, exif=exif.tobytes())
    coefficients = read_jpeg_coefficients(path)
    pixels = read_image(path, "RGB")  # Detectron2's orientation handling
    assert (coefficients.height, coefficients.width) == pixels.shape[:2]
    expected = block_dct(np.round(rgb_to_ycbcr(pixels)[..., 0]))
    assert np.abs(coefficients.planes[0] - expected).max() <= 3


@pytest.mark.parametrize("hflip, vflip", [(True, False), (False, True), (True, True)])
def test_flips_on_block_grids_match_flipped_pixels(photo, tmp_path, hflip, vflip):
    path = tmp_path / "q100.jpg"
    photo.save(path, quality=100, subsampling=0)
    flipped = read_jpeg_coefficients(path).flipped(hflip, vflip)
    pixels = read_image(path, "RGB")
    pixels = pixels[:, ::-1] if hflip else pixels
    pixels = pixels[::-1] if vflip else pixels
    assert np.abs(flipped.planes[1] - block_dct(np.round(rgb_to_ycbcr(pixels)[..., 1]))).max() <= 3


def test_grayscale_has_zero_chroma_and_selection_keeps_the_grids(photo, tmp_path):
    path = tmp_path / "gray.jpg"
    photo.convert("L").save(path, quality=90)
    luma, chroma = read_jpeg_coefficients(path).select(channel_indices(24))
    assert luma.shape == (16, 40, 32) and chroma.shape == (8, 40, 32) and not chroma.any()
    colour = tmp_path / "colour.jpg"
    photo.save(colour, quality=90, subsampling=2)
    luma, chroma = read_jpeg_coefficients(colour).select(channel_indices(24))
    assert luma.shape == (16, 40, 32) and chroma.shape == (8, 20, 16)


def test_resampling_to_the_training_grid_keeps_flat_values():
    luma = torch.full((2, 10, 8), 40, dtype=torch.int16)
    chroma = torch.full((3, 5, 4), -8, dtype=torch.int16)
    out = decode_file_grid(luma, chroma, (150, 121))
    assert out.shape == (5, 38, 31)
    assert torch.allclose(out[:2], torch.tensor(40.0)) and torch.allclose(out[2:], torch.tensor(-8.0))


def test_bad_files_raise_image_decode_error(photo, tmp_path):
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=90)
    cases = {"truncated.jpg": buffer.getvalue()[:5000], "text.jpg": b"not an image at all"}
    cmyk = io.BytesIO()
    photo.convert("CMYK").save(cmyk, format="JPEG")
    cases["cmyk.jpg"] = cmyk.getvalue()
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ImageDecodeError, match=name):
            read_jpeg_coefficients(tmp_path / name)


@pytest.mark.slow
def test_mapper_and_model_on_the_compressed_path(demo_dicts):
    cfg = small_cfg(
        "configs/demo/mask_rcnn_dct_demo.yaml", "INPUT.DCT.SOURCE", "jpeg", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0
    )
    mapper = DCTDatasetMapper(cfg, True)
    for seed, d in enumerate(demo_dicts[:6]):
        np.random.seed(seed)
        ours = mapper(copy.deepcopy(d))
        np.random.seed(seed)
        stock = DatasetMapper(cfg, True)(copy.deepcopy(d))
        assert torch.equal(ours["instances"].gt_boxes.tensor, stock["instances"].gt_boxes.tensor)
        assert tuple(ours["image_size"]) == tuple(stock["image"].shape[-2:])
        assert ours["dct_luma"].shape[1:] == (-(-d["height"] // 8), -(-d["width"] // 8))
        assert ours["dct_luma"].dtype == torch.int16 and "dct" not in ours
    model = build_model(cfg)
    with EventStorage(0):
        losses = model([mapper(copy.deepcopy(d)) for d in demo_dicts[:2]])
    assert all(torch.isfinite(v) for v in losses.values())
    model.eval()
    x = DCTDatasetMapper(cfg, False)(copy.deepcopy(demo_dicts[7]))
    with torch.no_grad():
        instances = model([x])[0]["instances"]
    assert instances.image_size == (demo_dicts[7]["height"], demo_dicts[7]["width"]) and len(instances)


def test_compressed_path_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match="WIRE_DTYPE 'int16'"):
        DCTDatasetMapper(
            small_cfg(
                "configs/demo/mask_rcnn_dct_demo.yaml", "INPUT.DCT.SOURCE", "jpeg", "INPUT.DCT.WIRE_DTYPE", "int8"
            ),
            True,
        )
    with pytest.raises(ValueError, match="only resize and flip"):
        DCTDatasetMapper(
            small_cfg("configs/demo/mask_rcnn_dct_demo.yaml", "INPUT.DCT.SOURCE", "jpeg", "INPUT.CROP.ENABLED", True),
            True,
        )
