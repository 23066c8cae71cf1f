"""A corpus of bad and unusual inputs, each with its exact outcome.

Supported inputs decode to Pillow's pixels and go through the same coefficient path as
any image; unsupported ones raise ImageDecodeError naming the file, before decoding.
"""

import concurrent.futures
import contextlib
import copy
import io
import shutil
import struct
import subprocess
import warnings
import zlib

import numpy as np
import pytest
import torch
import turbojpeg
from detectron2.data import detection_utils
from helpers import small_cfg
from PIL import Image

from freqdet import DCTDatasetMapper, ImageDecodeError, read_image
from freqdet.dct import upscaled_dct
from freqdet.io import read_jpeg_coefficients


@pytest.fixture(scope="module")
def pixels(photo_rgb):
    return np.ascontiguousarray(photo_rgb[100:196, 120:200])  # 96 x 80


def jpeg(image, **options) -> bytes:
    buffer = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(buffer, format="JPEG", **options)
    return buffer.getvalue()


def turbo(image: np.ndarray, **options) -> bytes:
    return turbojpeg.TurboJPEG().encode(image, **options)


def sof_offset(data: bytes) -> int:
    """Offset of the SOF0/SOF2 segment's marker in a JPEG."""
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        at = data.find(marker)
        if at > 0:
            return at
    raise AssertionError("no SOF marker")


def with_size(data: bytes, height: int, width: int) -> bytes:
    """The same JPEG with other dimensions written in its frame header."""
    at = sof_offset(data) + 5
    return data[:at] + struct.pack(">HH", height, width) + data[at + 4 :]


def twelve_bit(data: bytes) -> bytes:
    """The same JPEG claiming 12-bit samples (an extended SOF1 frame)."""
    at = sof_offset(data)
    return data[:at] + b"\xff\xc1" + data[at + 2 : at + 4] + b"\x0c" + data[at + 5 :]


def write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def assert_decodes_like_pillow(path, tolerance=0):
    ours = read_image(path, "RGB")
    theirs = np.asarray(detection_utils._apply_exif_orientation(Image.open(path)).convert("RGB"))
    assert ours.shape == theirs.shape
    assert np.abs(ours.astype(int) - theirs).max() <= tolerance
    # ... and the same frequency path as any other image.
    coeffs = upscaled_dct(ours, 24, "RGB")
    assert coeffs.shape == (24, -(-ours.shape[0] // 4), -(-ours.shape[1] // 4)) and np.isfinite(coeffs).all()


def assert_refused(path, reason):
    with pytest.raises(ImageDecodeError, match=reason) as info:
        read_image(path)
    assert info.value.path == str(path)


# Supported: decode exactly as Pillow does.
SUPPORTED = {
    "baseline.jpg": lambda p: jpeg(p, quality=90),
    "progressive.jpg": lambda p: jpeg(p, quality=90, progressive=True),
    "grayscale.jpg": lambda p: jpeg(np.asarray(Image.fromarray(p).convert("L")), quality=90),
    "cmyk.jpg": lambda p: jpeg(Image.fromarray(p).convert("CMYK"), quality=90),
    "ycck.jpg": lambda p: turbo(
        np.concatenate([255 - p, np.full(p.shape[:2] + (1,), 30, np.uint8)], axis=2),
        quality=90,
        pixel_format=turbojpeg.TJPF_CMYK,
    ),
    "sub444.jpg": lambda p: turbo(p, quality=90, pixel_format=turbojpeg.TJPF_RGB, jpeg_subsample=turbojpeg.TJSAMP_444),
    "sub422.jpg": lambda p: turbo(p, quality=90, pixel_format=turbojpeg.TJPF_RGB, jpeg_subsample=turbojpeg.TJSAMP_422),
    "sub440.jpg": lambda p: turbo(p, quality=90, pixel_format=turbojpeg.TJPF_RGB, jpeg_subsample=turbojpeg.TJSAMP_440),
    "sub411.jpg": lambda p: turbo(p, quality=90, pixel_format=turbojpeg.TJPF_RGB, jpeg_subsample=turbojpeg.TJSAMP_411),
    "one_pixel.jpg": lambda p: jpeg(p[:1, :1], quality=90),
    "seven_by_nine.jpg": lambda p: jpeg(p[:7, :9], quality=90),
}


@pytest.mark.parametrize("name", sorted(SUPPORTED))
def test_supported_jpegs_decode_like_pillow(pixels, tmp_path, name):
    assert_decodes_like_pillow(write(tmp_path, name, SUPPORTED[name](pixels)))


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "WEBP"])
def test_other_formats_named_jpg_decode_like_pillow(pixels, tmp_path, fmt):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    with _quiet():
        assert_decodes_like_pillow(write(tmp_path, f"{fmt.lower()}_named.jpg", buffer.getvalue()))


@contextlib.contextmanager
def _quiet():
    """Silence the one-time "not a JPEG" warning, which test_image_io checks."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


@pytest.mark.skipif(shutil.which("jpegtran") is None, reason="jpegtran (libjpeg-turbo-progs) writes restart markers")
def test_restart_markers_decode_like_pillow(pixels, tmp_path):
    source = write(tmp_path, "plain.jpg", jpeg(pixels, quality=90))
    data = subprocess.run(["jpegtran", "-restart", "1", str(source)], capture_output=True, check=True).stdout
    assert data.count(b"\xff\xdd") == 1 and any(bytes([0xFF, 0xD0 + i]) in data for i in range(8))
    assert_decodes_like_pillow(write(tmp_path, "restarts.jpg", data))


# Unsupported or broken: ImageDecodeError with the file and the reason.
REFUSED = {
    "empty.jpg": (lambda p: b"", "empty"),
    "text.jpg": (lambda p: b"name,value\n1,2\n" * 20, "not a readable image"),
    "truncated_header.jpg": (lambda p: jpeg(p, quality=90)[:60], "corrupt"),
    "truncated_scan.jpg": (lambda p: (lambda d: d[: len(d) * 2 // 3])(jpeg(p, quality=90)), "corrupt JPEG data"),
    "missing_eoi.jpg": (lambda p: jpeg(p, quality=90)[:-2], "corrupt JPEG data"),
    "corrupt_huffman.jpg": (
        lambda p: (lambda d: d[: len(d) // 2] + bytes(range(200, 256)) * 4 + d[len(d) // 2 + 224 :])(
            jpeg(p, quality=90)
        ),
        "corrupt",
    ),
    "twelve_bit.jpg": (lambda p: twelve_bit(jpeg(p, quality=90)), "(?i)precision"),
    "bomb.jpg": (lambda p: with_size(jpeg(p, quality=90), 60000, 60000), "60000x60000 pixels exceed the limit"),
    "bomb_below_pillows_limit.jpg": (
        lambda p: with_size(jpeg(p, quality=90), 10000, 10000),
        "10000x10000 pixels exceed the limit",
    ),
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("name", sorted(REFUSED))
def test_broken_and_unsupported_files_are_refused(pixels, tmp_path, name):
    make, reason = REFUSED[name]
    with _quiet():
        assert_refused(write(tmp_path, name, make(pixels)), reason)


def test_only_libjpegs_own_warnings_reject_a_jpeg(photo_path, pixels, tmp_path, monkeypatch):
    """A dependency's Python warning during a decode passes through; libjpeg's corrupt-data
    warning still refuses, from any thread, with no process-wide warning state to race on."""
    from freqdet.io import read_planes

    expected_pixels, expected_planes = read_image(photo_path), read_planes(photo_path)
    truncated = write(tmp_path, "truncated.jpg", jpeg(pixels, quality=90)[:-2])

    def deprecated(method):
        def decode(self, *args, **kwargs):
            warnings.warn("this keyword is deprecated", DeprecationWarning, stacklevel=2)
            return method(self, *args, **kwargs)

        return decode

    for name in ("decode", "decode_to_yuv_planes"):
        monkeypatch.setattr(turbojpeg.TurboJPEG, name, deprecated(getattr(turbojpeg.TurboJPEG, name)))
    with pytest.warns(DeprecationWarning, match="this keyword is deprecated"):
        assert np.array_equal(read_image(photo_path), expected_pixels)
    with pytest.warns(DeprecationWarning):
        planes = read_planes(photo_path)
    assert all(np.array_equal(a, b) for a, b in zip(planes[:3], expected_planes[:3]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert_refused(truncated, "corrupt JPEG data")

        def read(index):
            if index % 2:
                with pytest.raises(ImageDecodeError, match="corrupt JPEG data"):
                    read_image(truncated)
                return True
            return np.array_equal(read_image(photo_path), expected_pixels)

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            assert all(pool.map(read, range(40)))


@pytest.mark.timeout(30)
def test_png_bomb_is_refused_before_decoding(tmp_path):
    # A real 1x1 PNG whose header claims 50000 x 50000: refused from the header alone.
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", 50000, 50000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    with _quiet():
        assert_refused(write(tmp_path, "bomb.png", bytes(data)), "too large")


def test_compressed_path_refuses_bombs_and_12_bit(pixels, tmp_path):
    with pytest.raises(ImageDecodeError, match="60000x60000 pixels exceed the limit"):
        read_jpeg_coefficients(write(tmp_path, "bomb.jpg", with_size(jpeg(pixels), 60000, 60000)))
    with pytest.raises(ImageDecodeError, match="exceed the limit"):
        read_jpeg_coefficients(write(tmp_path, "bomb2.jpg", with_size(jpeg(pixels), 10000, 10000)))
    with pytest.raises(ImageDecodeError, match="twelve.jpg.*not a readable image"):
        read_jpeg_coefficients(write(tmp_path, "twelve.jpg", twelve_bit(jpeg(pixels))))


def test_a_jpeg_past_pillows_own_limit_is_read_when_max_pixels_allows_it(pixels, tmp_path, monkeypatch):
    # Pillow's limit, lowered so that this 96 x 80 JPEG is past twice it (Pillow refuses such
    # images whatever freqdet's max_pixels says, and warns past once it).
    path = write(tmp_path, "large.jpg", jpeg(pixels, quality=90))
    expected = np.asarray(Image.open(path).convert("RGB"))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 96 * 80 // 3)
    with pytest.raises(Image.DecompressionBombError):
        Image.open(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for max_pixels in (None, 96 * 80):
            assert np.array_equal(read_image(path, "RGB", max_pixels=max_pixels), expected)
            coefficients = read_jpeg_coefficients(path, max_pixels=max_pixels)
            assert (coefficients.height, coefficients.width) == (96, 80)
    with pytest.raises(ImageDecodeError, match="80x96 pixels exceed the limit of 7679"):
        read_image(path, max_pixels=96 * 80 - 1)


def test_the_size_limit_is_a_config_key(pixels, tmp_path, demo_dicts):
    cfg = small_cfg("configs/demo/mask_rcnn_dct_demo.yaml", "INPUT.DCT.MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageDecodeError, match="exceed the limit of 1000"):
        DCTDatasetMapper(cfg, False)(copy.deepcopy(demo_dicts[0]))


# Annotations that do not fit their image.
def annotated(tmp_path, pixels, annotations, height=None, width=None):
    path = write(tmp_path, "annotated.jpg", jpeg(pixels, quality=95))
    return {
        "file_name": str(path),
        "height": height or pixels.shape[0],
        "width": width or pixels.shape[1],
        "image_id": 1,
        "annotations": annotations,
    }


def box(x0, y0, x1, y1, category=0, polygon=None):
    polygon = polygon or [x0, y0, x1, y0, x1, y1, x0, y1]
    return {"bbox": [x0, y0, x1, y1], "bbox_mode": 0, "category_id": category, "segmentation": [polygon], "iscrowd": 0}


def no_augmentation():
    return small_cfg(
        "configs/demo/mask_rcnn_dct_demo.yaml",
        "INPUT.MIN_SIZE_TRAIN",
        (80,),
        "INPUT.MAX_SIZE_TRAIN",
        1000,
        "INPUT.RANDOM_FLIP",
        "none",
    )


def test_size_mismatch_between_annotation_and_image_raises_with_the_file(pixels, tmp_path):
    d = annotated(tmp_path, pixels, [box(10, 10, 40, 40)], height=100, width=80)
    with pytest.raises(detection_utils.SizeMismatchError, match="annotated.jpg"):
        DCTDatasetMapper(no_augmentation(), True)(d)


def test_empty_degenerate_and_outside_annotations(pixels, tmp_path):
    annotations = [
        box(10, 10, 40, 50, category=1),  # kept as it is
        box(20, 20, 20, 60, category=2),  # zero width: dropped
        box(200, 200, 260, 260, category=3),  # wholly outside: clipped to nothing, dropped
        box(60, 70, 120, 130, category=4),  # partly outside: clipped to the image
    ]
    out = DCTDatasetMapper(no_augmentation(), True)(annotated(tmp_path, pixels, annotations))
    instances = out["instances"]
    assert instances.gt_classes.tolist() == [1, 4]
    assert torch.equal(instances.gt_boxes.tensor, torch.tensor([[10.0, 10, 40, 50], [60, 70, 80, 96]]))
    empty = DCTDatasetMapper(no_augmentation(), True)(annotated(tmp_path, pixels, []))
    assert len(empty["instances"]) == 0 and empty["dct"].shape[0] == 24
