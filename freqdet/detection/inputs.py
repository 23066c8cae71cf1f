"""The model's input: what :class:`DCTDatasetMapper` puts in a dict and :class:`DCTGeneralizedRCNN` reads.

Besides Detectron2's own keys (``instances``, ``height``, ``width``, ``file_name``, ...), an
input holds one of three payloads, and always ``image_size``:

- ``dct``: the selected channels, ``(C, ceil(H/4), ceil(W/4))`` in a wire dtype
  (:mod:`freqdet.dct.wire`), computed in the data loader;
- ``dct_luma`` and ``dct_chroma``: a JPEG's own selected channels, int16 on the file's
  block grids (``INPUT.DCT.SOURCE "jpeg"``), resampled to the training grid on the device;
- ``image``: ``(3, H0, W0)`` uint8 pixels for the model to transform on its device, with
  the :class:`~freqdet.dct.Geometry` to apply as ``resize`` / ``crop`` / ``pad`` / ``hflip`` / ``vflip``
  (``MODEL.DCT.TRANSFORM_ON "device"``, and Detectron2's ``DefaultPredictor``, which
  gives an ``image`` alone);

``image_size`` is ``(H, W)``, the augmented image's size in pixels, in which the
``instances`` and everything the model predicts before post-processing are given. A ``dct``
computed from an image padded in pixels first (the official release's detection input) covers
the padded image: it says so with ``dct_padded``, and carries the resize's ``scale_factor``.
"""

from typing import Dict, Sequence, Tuple

import numpy as np
import torch

from ..dct import Geometry, grid_size
from ..dct.wire import decode, decode_file_grid, encode

DCT = "dct"
DCT_LUMA, DCT_CHROMA = "dct_luma", "dct_chroma"
IMAGE = "image"
IMAGE_SIZE = "image_size"
PADDED = "dct_padded"
SCALE_FACTOR = "scale_factor"
RESIZE, HFLIP, VFLIP, CROP, PAD = "resize", "hflip", "vflip", "crop", "pad"
PAYLOADS = {DCT: (DCT,), DCT_LUMA: (DCT_LUMA, DCT_CHROMA), IMAGE: (IMAGE,)}


def put_coefficients(x: Dict, coefficients: torch.Tensor, image_size: Tuple[int, int]) -> None:
    """Coefficients in a wire dtype, computed in the data loader."""
    x[DCT], x[IMAGE_SIZE] = coefficients, tuple(image_size)


def put_padded_coefficients(x: Dict, coefficients: torch.Tensor, image_size: Tuple[int, int], scale: float) -> None:
    """Coefficients of the image padded in pixels before the transform (a grid at least as large
    as ``image_size``'s), and the one factor the image was resized by."""
    put_coefficients(x, coefficients, image_size)
    x[PADDED], x[SCALE_FACTOR] = True, float(scale)


def put_file_grid(x: Dict, luma: torch.Tensor, chroma: torch.Tensor, image_size: Tuple[int, int]) -> None:
    """A JPEG's own channels on its block grids, for the device to resample."""
    x[DCT_LUMA], x[DCT_CHROMA], x[IMAGE_SIZE] = luma, chroma, tuple(image_size)


def put_pixels(x: Dict, image: np.ndarray, geometry: Geometry = Geometry()) -> None:
    """(H0, W0, 3) uint8 pixels and the geometry the device applies before its transform."""
    x[IMAGE] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
    if geometry != Geometry():
        x.update(
            {
                RESIZE: geometry.resize,
                HFLIP: geometry.hflip,
                VFLIP: geometry.vflip,
                CROP: geometry.crop,
                PAD: geometry.pad,
            }
        )
    x[IMAGE_SIZE] = geometry.output_size(*image.shape[:2])


def pixels_geometry(x: Dict) -> Geometry:
    """The geometry an ``image`` input asks the device to apply."""
    return Geometry(x.get(RESIZE), bool(x.get(HFLIP, False)), bool(x.get(VFLIP, False)), x.get(CROP), x.get(PAD))


def payload(x: Dict) -> Tuple[str, ...]:
    """The keys of the tensors an input ships to the model."""
    for first, keys in PAYLOADS.items():
        if first in x:
            return keys
    raise KeyError(
        "DCTGeneralizedRCNN inputs need 'dct' and 'image_size' (map dataset dicts with "
        "freqdet.DCTDatasetMapper) or an 'image' of uint8 pixels"
    )


def shipped_bytes(x: Dict) -> int:
    """Bytes of the tensors an input ships to the model."""
    return sum(x[k].numel() * x[k].element_size() for k in payload(x))


def pixel_size(x: Dict) -> Tuple[int, int]:
    """(H, W) in pixels of the image the input describes, after its geometry.

    While ``torch.jit.trace`` records an exported graph (:mod:`freqdet.detection.export`),
    ``image_size`` is a tensor input of the graph and its elements stay tensors, so the graph
    computes with the size it is given, not the sample's."""
    size = x.get(IMAGE_SIZE)
    if isinstance(size, torch.Tensor) and torch.jit.is_tracing():
        return size[0], size[1]
    if size is not None:
        return tuple(int(s) for s in size)
    if IMAGE in x:
        return pixels_geometry(x).output_size(*x[IMAGE].shape[-2:])
    raise KeyError("an input with 'dct' also needs 'image_size', its (H, W) in pixels")


def coefficients(x: Dict, channels: Sequence[int], device, input_format: str, wire_dtype: str) -> torch.Tensor:
    """The float32 (C, ceil(H/4), ceil(W/4)) channels of one input, on ``device``.

    Shipped coefficients are decoded, file-grid ones resampled, and pixels transformed with
    the rounding of ``wire_dtype`` (so the device gives the numbers of the loader's path).
    """
    keys = payload(x)
    tensors = [x[k].to(device) for k in keys]
    if keys[0] == DCT:
        return decode(tensors[0], channels)
    if keys[0] == DCT_LUMA:
        return decode_file_grid(*tensors, pixel_size(x))
    wire = encode(tensors[0][None], channels, input_format, wire_dtype, pixels_geometry(x))[0]
    return decode(wire, channels)


def check_grid(x: Dict, cells: Tuple[int, int]) -> None:
    """ValueError if an input's ``image_size`` does not match its grid of ``cells`` (or, for a
    padded input, does not fit in it). Not checked while tracing: the exported graph's caller
    (:mod:`freqdet.deploy`) checks its inputs."""
    if torch.jit.is_tracing():
        return
    h, w = pixel_size(x)
    needed = grid_size(h, w)
    fits = all(n <= c for n, c in zip(needed, cells)) if x.get(PADDED) else needed == tuple(cells)
    if not fits:
        raise ValueError(f"input 'image_size' {(h, w)} does not match its {cells[0]}x{cells[1]} DCT grid")
