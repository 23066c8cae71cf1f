"""read_image: libjpeg-turbo decoding equal to Pillow / Detectron2, and ImageDecodeError for bad files."""

import contextlib
import io
import sys
import warnings

import numpy as np
import pytest
from PIL import Image

import freqdet
from freqdet import ImageDecodeError, read_image
from freqdet.io import pixels as image_io


@pytest.fixture
def photo(photo_rgb):
    """A non-square crop, so a wrong rotation changes the shape."""
    return Image.fromarray(photo_rgb[40:440, 60:360])


@pytest.fixture
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(image_io, "_warned", set())


def pillow_bgr(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))[:, :, ::-1]


@pytest.mark.parametrize(
    "name, options",
    [
        ("baseline", dict(quality=90)),
        ("progressive", dict(quality=85, progressive=True)),
        ("sub420", dict(quality=75, subsampling=2)),
        ("sub422", dict(quality=75, subsampling=1)),
        ("sub444", dict(quality=95, subsampling=0)),
    ],
)
def test_colour_jpegs_decode_like_pillow(photo, tmp_path, name, options):
    path = tmp_path / f"{name}.jpg"
    photo.save(path, **options)
    image = read_image(path)
    assert image.dtype == np.uint8 and image.flags.c_contiguous
    np.testing.assert_array_equal(image, pillow_bgr(path))
    np.testing.assert_array_equal(read_image(path, "RGB"), pillow_bgr(path)[:, :, ::-1])


def test_grayscale_jpeg(photo, tmp_path):
    path = tmp_path / "gray.jpg"
    photo.convert("L").save(path, quality=90)
    np.testing.assert_array_equal(read_image(path), pillow_bgr(path))
    gray = read_image(path, "L")
    assert gray.shape == (400, 300, 1)
    np.testing.assert_array_equal(gray[:, :, 0], np.asarray(Image.open(path).convert("L")))


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["BGR", "RGB", "L"])
def test_exif_orientation_as_detectron2(photo, tmp_path, orientation, fmt):
    from detectron2.data.detection_utils import read_image as d2_read_image

    path = tmp_path / f"exif{orientation}.jpg"
    exif = Image.Exif()
    exif[0x0112] = orientation
    photo.save(path, quality=90, exif=exif.tobytes())
    ours, theirs = read_image(path, fmt), d2_read_image(str(path), format=fmt)
    assert ours.shape == theirs.shape
    assert ours.shape[:2] == ((400, 300) if orientation <= 4 else (300, 400))
    np.testing.assert_array_equal(ours, theirs)


def test_cmyk_jpeg_goes_through_pillow(photo, tmp_path):
    path = tmp_path / "cmyk.jpg"
    photo.convert("CMYK").save(path, quality=90)
    np.testing.assert_array_equal(read_image(path), pillow_bgr(path))


@pytest.mark.parametrize("fmt", ["PNG", "BMP"])
def test_other_formats_fall_back_to_pillow_with_one_warning(photo, tmp_path, fresh_warnings, fmt):
    path = tmp_path / "named_like_a.jpg"  # the bytes decide, not the name
    photo.save(path, format=fmt)
    with pytest.warns(RuntimeWarning, match="not a JPEG"):
        image = read_image(path)
    np.testing.assert_array_equal(image, pillow_bgr(path))
    with no_runtime_warning():
        read_image(path)


@contextlib.contextmanager
def no_runtime_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]


def test_missing_turbojpeg_falls_back_to_pillow_once(photo, tmp_path, fresh_warnings, monkeypatch):
    path = tmp_path / "photo.jpg"
    photo.save(path, quality=90)
    monkeypatch.setitem(sys.modules, "turbojpeg", None)  # import turbojpeg now fails
    monkeypatch.setattr(image_io, "_TURBO", None)
    monkeypatch.setattr(image_io, "_TURBO_LOADED", False)
    with pytest.warns(RuntimeWarning, match="libturbojpeg0"):
        image = read_image(path)
    np.testing.assert_array_equal(image, pillow_bgr(path))
    with no_runtime_warning():
        read_image(path)


def _jpeg_bytes(photo) -> bytes:
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _corrupt_scan(data: bytes) -> bytes:
    bad = bytearray(data)
    middle = len(data) // 2
    bad[middle : middle + 300] = np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes()
    return bytes(bad)


BAD_FILES = {
    "truncated": lambda jpeg: jpeg[: len(jpeg) // 2],
    "missing_eoi": lambda jpeg: jpeg[:-2],
    "corrupt_scan": _corrupt_scan,
    "corrupt_header": lambda jpeg: jpeg[:2] + bytes(40) + jpeg[42:],
    "only_soi": lambda jpeg: jpeg[:2],
    "soi_then_noise": lambda jpeg: jpeg[:2] + np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes(),
    "empty": lambda jpeg: b"",
    "text": lambda jpeg: b"this is not an image, just text\n" * 10,
    "truncated_png": None,
}


@pytest.mark.timeout(30)
@pytest.mark.filterwarnings("ignore:.*is not a JPEG")
@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_bad_files_raise_image_decode_error(photo, tmp_path, kind):
    path = tmp_path / f"{kind}.jpg"
    if kind == "truncated_png":
        photo.save(tmp_path / "full.png")
        data = (tmp_path / "full.png").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(BAD_FILES[kind](_jpeg_bytes(photo)))
    with pytest.raises(ImageDecodeError) as info:
        read_image(path)
    assert isinstance(info.value, ValueError)
    assert str(path) in str(info.value) and info.value.path == str(path)
    assert info.value.reason


def test_missing_file_and_directory(tmp_path):
    for path in (tmp_path / "absent.jpg", tmp_path):
        with pytest.raises(ImageDecodeError, match="cannot read the file"):
            read_image(path)


def test_unknown_format_is_refused(photo_path):
    with pytest.raises(ValueError, match="BGR"):
        read_image(photo_path, "YUV")


def test_exported_at_top_level():
    assert freqdet.ImageDecodeError is ImageDecodeError and issubclass(ImageDecodeError, ValueError)
