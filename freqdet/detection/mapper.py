"""DCTDatasetMapper: Detectron2's DatasetMapper, shipping DCT channels instead of pixels."""

import copy
import logging
import os
from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import DatasetMapper
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.modeling import META_ARCH_REGISTRY
from PIL import Image

from .. import stages
from ..dct import NUM_CHANNELS, Geometry, resolve_channels
from ..dct.wire import encode_image, encode_planes
from ..io import ImageDecodeError, read_image, read_jpeg_coefficients
from ..io.coefficients import check_available
from ..io.planes import read_planes
from ..release_pipeline import RELEASE_SCALE, detection_input, opencv
from . import inputs
from .bad_images import BadImageLog
from .config import dct_selection, dct_source, on_bad_image, preprocess, transform_on, wire_dtype
from .meta_arch import DCTInput

logger = logging.getLogger(__name__)


def _augmentations(*names: str) -> tuple:
    return tuple(getattr(T, name) for name in names if hasattr(T, name))


# Augmentations whose transforms depend only on the image's shape (or, for the category-area crop,
# on the label map) and which the frequency transform can absorb (a bilinear resize, a crop, a
# constant pad and flips are linear and separable).
_RESIZES = _augmentations("ResizeShortestEdge", "Resize", "ResizeScale")
_CROPS = _augmentations("FixedSizeCrop", "RandomCrop", "RandomCrop_CategoryAreaConstraint")
_FLIPS = _augmentations("RandomFlip")
_GEOMETRIC_AUGMENTATIONS = _RESIZES + _CROPS + _FLIPS
GREY = 128  # the pad value the transform absorbs: 0 once level-shifted (FixedSizeCrop's default)


def _flat(transforms: List[T.Transform]) -> List[T.Transform]:
    out = []
    for tfm in transforms:
        out += _flat(tfm.transforms) if isinstance(tfm, T.TransformList) else [tfm]
    return out


def _absorbable_order(augmentations: Sequence[T.Augmentation]) -> bool:
    """Whether the transform can absorb what ``augmentations`` draw: geometric ones only, and no
    resize after a crop. A :class:`~freqdet.dct.Geometry` crops the resized image; a crop of the
    original image resized afterwards (``INPUT.CROP.ENABLED`` puts ``RandomCrop`` before
    ``ResizeShortestEdge``) is no crop of a resized image (the resize's scale is the crop's, and
    the pixels at its edges are read from inside the crop), so that order stays on the pixels."""
    cropped = False
    for aug in augmentations:
        if not isinstance(aug, _GEOMETRIC_AUGMENTATIONS) or (cropped and isinstance(aug, _RESIZES)):
            return False
        cropped = cropped or isinstance(aug, _CROPS)
    return True


def absorbable(transforms: List[T.Transform]) -> Optional[Geometry]:
    """The :class:`~freqdet.dct.Geometry` of transforms that the frequency transform absorbs, in
    its order: at most one bilinear resize, a crop, a grey pad at the bottom and right, flips
    (ResizeShortestEdge, ResizeScale + FixedSizeCrop + RandomFlip, RandomCrop alone or after the
    resize, ...); else None (a crop before the resize among them)."""
    resize, crop, pad, hflip, vflip = None, None, None, False, False
    stage = 0  # 0: before anything, 1: resized, 2: cropped, 3: padded, 4: flipped
    for tfm in _flat(transforms):
        if isinstance(tfm, T.NoOpTransform):
            continue
        if isinstance(tfm, T.ResizeTransform) and stage == 0 and tfm.interp == Image.BILINEAR:
            resize, stage = (tfm.new_h, tfm.new_w), 1
        elif isinstance(tfm, T.CropTransform) and stage <= 1:
            crop, stage = (tfm.y0, tfm.x0, tfm.h, tfm.w), 2
        elif (
            isinstance(tfm, T.PadTransform)
            and stage <= 2
            and (tfm.x0, tfm.y0) == (0, 0)
            and tfm.pad_value == GREY
            and None not in (tfm.orig_h, tfm.orig_w)
        ):
            pad, stage = (tfm.orig_h + tfm.y1, tfm.orig_w + tfm.x1), 3
        elif isinstance(tfm, T.HFlipTransform):
            hflip, stage = not hflip, 4
        elif isinstance(tfm, T.VFlipTransform):
            vflip, stage = not vflip, 4
        else:
            return None
    return Geometry(resize, hflip, vflip, crop, pad)


class _Drawing:
    """Detectron2's ``AugInput`` for augmentations drawn without moving the pixels: ``image`` is the
    decoded image (or zeros of its shape) for the first augmentation, then zeros of the shape the
    transforms before make, and ``sem_seg`` the label map through those transforms, as
    ``AugInput.transform`` makes it (what ``RandomCrop_CategoryAreaConstraint`` draws from, and
    what the dict gets)."""

    boxes = None

    def __init__(self, image: np.ndarray, sem_seg: Optional[np.ndarray]):
        self.image, self.sem_seg = image, sem_seg

    def transform(self, tfm: T.Transform) -> None:
        shape = self.image.shape
        for step in _flat([tfm]):
            if isinstance(step, T.ResizeTransform):
                shape = (step.new_h, step.new_w) + tuple(shape[2:])
            elif isinstance(step, T.CropTransform):
                shape = (min(step.h, shape[0] - step.y0), min(step.w, shape[1] - step.x0)) + tuple(shape[2:])
            elif isinstance(step, T.PadTransform):
                shape = (shape[0] + step.y0 + step.y1, shape[1] + step.x0 + step.x1) + tuple(shape[2:])
        self.image = np.broadcast_to(np.zeros((), self.image.dtype), shape)
        if self.sem_seg is not None:
            self.sem_seg = tfm.apply_segmentation(self.sem_seg)


class _Mapped(NamedTuple):
    """What each route of the mapper gives :meth:`DCTDatasetMapper._finish`."""

    payload: dict  # the model's input keys (freqdet.detection.inputs), image_size among them
    transforms: T.TransformList  # what the annotations and proposals go through
    image_size: Tuple[int, int]  # (H, W) in pixels after the transforms
    sem_seg: Optional[np.ndarray]  # the label map through the transforms, or None


class DCTDatasetMapper(DatasetMapper):
    """Detectron2's ``DatasetMapper`` for frequency-domain models.

    Reading (libjpeg-turbo: a JPEG's own Y, Cb and Cr planes where the transform absorbs the
    augmentations, :func:`freqdet.io.read_planes`, else pixels, :func:`freqdet.read_image`),
    augmentations and the handling of annotations and of ``sem_seg_file_name`` are Detectron2's
    own, so for the same random state the ``instances`` and ``"sem_seg"`` (the label map read as
    "L", through the same transforms: nearest resizes, crops, the transform's seg pad value,
    flips; a long tensor, kept at test time too) are identical to the stock mapper's. Instead of
    the augmented pixels it ships (the keys are those of :mod:`freqdet.detection.inputs`):

    - ``"dct"``: the selected channels of the augmented image, a ``(C, ceil(H/4),
      ceil(W/4))`` tensor in the wire dtype (``cfg.INPUT.DCT.WIRE_DTYPE``);
    - ``"image_size"``: ``(H, W)``, the augmented image's size in pixels, in which the
      ``instances``, ``"sem_seg"`` and everything the model predicts before post-processing are
      given.

    When the augmentations are resizes and flips (Detectron2's defaults), large-scale jitter
    (``ResizeScale``, ``FixedSizeCrop`` padding with grey, ``RandomFlip``) or a resize followed by
    ``RandomCrop`` or ``RandomCrop_CategoryAreaConstraint`` (the semantic segmentation recipes'
    order; a crop alone too), the resize, crop and pad are not applied to the pixels: the
    frequency transform absorbs them (``INPUT.DCT.FUSE_RESIZE``), computing the same coefficients
    from the decoded image directly, except that Pillow would have rounded the resized pixels to
    uint8 (a difference of about one unit). Cells of padding alone are 0. The transforms are then
    drawn without moving the pixels: the first augmentation sees the decoded image, the others
    zeros of the shape they would see, and those that read ``sem_seg`` the label map as
    transformed so far. A crop before a resize (``INPUT.CROP.ENABLED``: Detectron2 inserts
    ``RandomCrop`` first) is no :class:`~freqdet.dct.Geometry`, so it goes through the pixels, as
    do augmentations of colour and any others. Then, with ``INPUT.DCT.SOURCE "planes"`` (the
    default), a JPEG is not decoded to pixels at all: the transform reads its own Y, Cb and Cr
    planes, whose coefficients are those of the file's YCbCr before libjpeg rounds and clips it to
    BGR (:mod:`freqdet.io.planes`).

    With ``cfg.MODEL.DCT.TRANSFORM_ON = "device"`` it ships uint8 pixels as ``"image"``
    instead of ``"dct"``, and the model transforms them on its device into the numbers of
    ``SOURCE "pixels"`` on the CPU: the augmented pixels, or, when the geometry is absorbed, the
    decoded pixels with ``"resize"``, ``"crop"``, ``"pad"``, ``"hflip"`` and ``"vflip"`` saying
    what the model must apply.
    """

    @configurable
    def __init__(
        self,
        is_train: bool,
        *,
        channels: Union[int, Sequence[int]],
        pattern: str = "square",
        wire_dtype: str = "int16",
        transform_on: str = "cpu",
        fuse_resize: bool = True,
        source: str = "planes",
        preprocess: str = "freqdet",
        release_scale: Tuple[int, int] = RELEASE_SCALE,
        max_pixels: int = None,
        bad_image_log: str = None,
        **kwargs,
    ):
        """
        Args:
            channels: the DCT channels to ship: a count with ``pattern``, or the global indices
                (see :mod:`freqdet.dct.channels`).
            wire_dtype: "int16", "int8" or "float32" (see :mod:`freqdet.dct.wire`).
            transform_on: "cpu" to ship coefficients, "device" to ship pixels.
            fuse_resize: let the frequency transform absorb resizes, crops with grey padding and flips.
            source: "planes" (a JPEG's own Y, Cb and Cr planes where the transform absorbs the
                augmentations and runs on the CPU, :mod:`freqdet.io.planes`; else its pixels),
                "pixels" (the pixels decoded to ``image_format``), or "jpeg" for the file's own
                coefficients (:mod:`freqdet.io.coefficients`; resizes and flips only, as the
                device resamples the file's grids whole).
            preprocess: "freqdet", or "release" for the official release's detection pipeline
                (:func:`freqdet.release_pipeline.detection_input`; inference only), which
                resizes to ``release_scale`` (long side, short side) keeping the ratio.
            max_pixels: images with more pixels are refused before decoding (None: no limit).
            bad_image_log: a file to list unusable images in and skip them (returning None;
                in training :class:`freqdet.detection.bad_images.SkipBadImages` then maps the
                next image in order); None raises. ``from_config`` sets it in training under
                ``INPUT.DCT.ON_BAD_IMAGE "skip"``; evaluation raises.
            kwargs: the arguments of Detectron2's ``DatasetMapper``.
        """
        super().__init__(is_train, **kwargs)
        if self.image_format not in ("BGR", "RGB"):
            raise ValueError(f"DCTDatasetMapper needs INPUT.FORMAT 'BGR' or 'RGB', got {self.image_format!r}")
        self.channels = resolve_channels(channels, pattern)
        self.wire_dtype = wire_dtype
        self.transform_on = transform_on
        self.max_pixels = max_pixels
        self.bad_images = BadImageLog(bad_image_log) if bad_image_log else None
        self.fuse_resize = fuse_resize
        self.fuse = fuse_resize and _absorbable_order(self.augmentations.augs)
        self.source = source
        self.preprocess, self.release_scale = preprocess, tuple(release_scale)
        self.planes = source == "planes" and self.fuse and transform_on == "cpu" and preprocess == "freqdet"
        if preprocess == "release":
            if is_train:
                raise ValueError(
                    "INPUT.DCT.PREPROCESS 'release' is the official release's test pipeline; train with 'freqdet'"
                )
            opencv()
        if source == "jpeg":
            check_available()
            if not all(isinstance(a, _RESIZES + _FLIPS) for a in self.augmentations.augs):
                raise ValueError(
                    "INPUT.DCT.SOURCE 'jpeg' takes only resize and flip augmentations, got "
                    f"{self.augmentations}; use SOURCE 'pixels' for the others"
                )
        shipped = f"as {wire_dtype}" if transform_on == "cpu" else "as pixels, transformed on the device"
        if source == "jpeg":
            shipped = "from the JPEG files' own coefficients, on their grids"
        elif self.planes:
            shipped += ", computed from the JPEG files' own Y, Cb and Cr planes"
        fused = ", resizes and flips absorbed by the transform" if self.fuse else ""
        if preprocess == "release":
            shipped, fused = "as int16, computed by the official release's detection pipeline", ""
        logger.info(f"[DCTDatasetMapper] {len(self.channels)} DCT channels shipped {shipped}{fused}")

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        ret = super().from_config(cfg, is_train)
        ret["channels"] = dct_selection(cfg)
        ret["wire_dtype"] = wire_dtype(cfg)
        ret["transform_on"] = transform_on(cfg)
        ret["fuse_resize"] = cfg.INPUT.DCT.FUSE_RESIZE
        ret["source"] = dct_source(cfg)
        ret["preprocess"] = preprocess(cfg)
        ret["release_scale"] = (cfg.INPUT.MAX_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST)
        ret["max_pixels"] = cfg.INPUT.DCT.MAX_IMAGE_PIXELS or None
        if on_bad_image(cfg) == "skip" and is_train:
            ret["bad_image_log"] = os.path.join(cfg.OUTPUT_DIR, "skipped_images.tsv")
        return ret

    def for_statistics(self, bad_image_log: Optional[str] = None) -> "DCTDatasetMapper":
        """A mapper of all 192 channels, in inference mode and on the CPU, with this one's
        augmentations, format and source: what the training set's statistics are measured with
        (float32 coefficients from pixels; a JPEG's own are int16)."""
        return DCTDatasetMapper(
            False,
            channels=list(range(NUM_CHANNELS)),
            wire_dtype="int16" if self.source == "jpeg" else "float32",
            transform_on="cpu",
            fuse_resize=self.fuse_resize,
            source=self.source,
            preprocess=self.preprocess,
            release_scale=self.release_scale,
            max_pixels=self.max_pixels,
            bad_image_log=bad_image_log,
            augmentations=self.augmentations.augs,
            image_format=self.image_format,
        )

    def _augmentation_transforms(
        self, image: np.ndarray, sem_seg: Optional[np.ndarray] = None
    ) -> Tuple[List[T.Transform], Optional[np.ndarray]]:
        """Draw the augmentations' transforms from the image's shape, as AugmentationList would
        (which applies each to the image before drawing the next): the first sees the image, the
        others an image of zeros of the shape the transforms before them make; those that read
        ``sem_seg`` get the label map through the transforms before them (:class:`_Drawing`).
        Returns the transforms and the label map through all of them."""
        drawing = _Drawing(image, sem_seg)
        transforms = [aug(drawing) for aug in self.augmentations.augs]
        return transforms, drawing.sem_seg

    def _map_jpeg(self, dataset_dict, sem_seg) -> _Mapped:
        """The compressed-domain path: the file's coefficients, geometry applied on its block grids."""
        with stages.stage(stages.JPEG_COEFFICIENTS):
            coefficients = read_jpeg_coefficients(dataset_dict["file_name"], self.max_pixels)
        shape = np.broadcast_to(np.zeros((), np.uint8), (coefficients.height, coefficients.width, 3))
        utils.check_image_size(dataset_dict, shape)
        transforms, sem_seg = self._augmentation_transforms(shape, sem_seg)
        geometry = absorbable(transforms)
        if geometry is None:
            raise ValueError(f"INPUT.DCT.SOURCE 'jpeg' cannot apply the transforms {transforms}")
        luma, chroma = coefficients.flipped(geometry.hflip, geometry.vflip).select(self.channels)
        image_size = geometry.output_size(*shape.shape[:2])
        payload = {}
        inputs.put_file_grid(payload, luma, chroma, image_size)
        return _Mapped(payload, T.TransformList(transforms), image_size, sem_seg)

    def __call__(self, dataset_dict):
        """The mapped dict; None for an unusable training image under the "skip" policy."""
        try:
            return self._map(copy.deepcopy(dataset_dict))
        except (ImageDecodeError, utils.SizeMismatchError) as e:
            if self.bad_images is None:
                raise
            self.bad_images.record(dataset_dict["file_name"], getattr(e, "reason", str(e)))
            return None

    def map_image(self, image: np.ndarray, dataset_dict: Optional[dict] = None) -> dict:
        """Map an image already decoded, (H, W, 3) uint8 in ``INPUT.FORMAT`` order, as if read from
        ``dataset_dict``'s file (default: a dict of its size alone): what a predictor needs."""
        if self.source == "jpeg":
            raise ValueError("INPUT.DCT.SOURCE 'jpeg' reads the coefficients of files: give a file, not pixels")
        dataset_dict = copy.deepcopy(dataset_dict) if dataset_dict is not None else {}
        dataset_dict.setdefault("height", image.shape[0])
        dataset_dict.setdefault("width", image.shape[1])
        sem_seg = self._read_sem_seg(dataset_dict)
        return self._finish(dataset_dict, self._map_pixels(dataset_dict, image, sem_seg))

    def _map(self, dataset_dict):
        sem_seg = self._read_sem_seg(dataset_dict)
        mapped = None
        if self.source == "jpeg":
            mapped = self._map_jpeg(dataset_dict, sem_seg)
        elif self.planes:
            with stages.stage(stages.DECODE):
                planes = read_planes(dataset_dict["file_name"], self.max_pixels)
            if planes is not None:
                mapped = self._map_planes(dataset_dict, planes, sem_seg)
        if mapped is None:
            mapped = self._map_pixels(dataset_dict, self._read_pixels(dataset_dict), sem_seg)
        return self._finish(dataset_dict, mapped)

    def _read_pixels(self, dataset_dict) -> np.ndarray:
        with stages.stage(stages.DECODE):
            return read_image(dataset_dict["file_name"], format=self.image_format, max_pixels=self.max_pixels)

    @staticmethod
    def _read_sem_seg(dataset_dict) -> Optional[np.ndarray]:
        """The label map of ``sem_seg_file_name`` (popped), read as Detectron2's DatasetMapper reads it."""
        if "sem_seg_file_name" not in dataset_dict:
            return None
        with stages.stage(stages.DECODE):
            return utils.read_image(dataset_dict.pop("sem_seg_file_name"), "L").squeeze(2)

    def _map_planes(self, dataset_dict, planes, sem_seg) -> _Mapped:
        """The coefficients of a JPEG's own planes (:func:`freqdet.dct.wire.encode_planes`), the
        augmentations absorbed; where they cannot be, the pixels are read and the transforms
        already drawn applied to them."""
        shape = np.broadcast_to(np.zeros((), np.uint8), (*planes.shape, 3))
        utils.check_image_size(dataset_dict, shape)
        with stages.stage(stages.AUGMENTATION):
            transforms, sem_seg = self._augmentation_transforms(shape, sem_seg)
            geometry = absorbable(transforms)
        if geometry is None:
            return self._map_pixels(dataset_dict, self._read_pixels(dataset_dict), drawn=(transforms, sem_seg))
        image_shape = geometry.output_size(*planes.shape)
        payload = {}
        inputs.put_coefficients(payload, encode_planes(planes, self.channels, self.wire_dtype, geometry), image_shape)
        return _Mapped(payload, T.TransformList(transforms), image_shape, sem_seg)

    def _map_pixels(self, dataset_dict, image, sem_seg=None, drawn=None) -> _Mapped:
        """``drawn``: the transforms drawn already for the image's shape (fused augmentations only)
        and the label map through them, which then replaces ``sem_seg``."""
        utils.check_image_size(dataset_dict, image)
        if self.preprocess == "release":
            return self._map_release(image, sem_seg)

        geometry = None
        with stages.stage(stages.AUGMENTATION):
            if self.fuse:
                transforms, sem_seg = drawn if drawn is not None else self._augmentation_transforms(image, sem_seg)
                geometry = absorbable(transforms)
                transforms = T.TransformList(transforms)
                if geometry is None:
                    image = transforms.apply_image(image)
            else:
                aug_input = T.AugInput(image, sem_seg=sem_seg)
                transforms = self.augmentations(aug_input)
                image, sem_seg = aug_input.image, aug_input.sem_seg

        geometry = geometry or Geometry()
        image_shape = geometry.output_size(*image.shape[:2])
        payload = {}
        if self.transform_on == "cpu":
            wire = encode_image(image, self.channels, self.image_format, self.wire_dtype, geometry)
            inputs.put_coefficients(payload, wire, image_shape)
        else:  # the model applies the same (absorbed) geometry on its device
            inputs.put_pixels(payload, image, geometry)
        return _Mapped(payload, transforms, image_shape, sem_seg)

    def _map_release(self, image, sem_seg) -> _Mapped:
        """The official release's detection input (it resizes and pads the pixels itself); the
        label map is resized (nearest) to the resized image's size."""
        bgr = image if self.image_format == "BGR" else image[:, :, ::-1]
        release = detection_input(bgr, self.channels, self.release_scale)
        payload = {}
        inputs.put_padded_coefficients(payload, release.coefficients, release.image_size, release.scale_factor)
        transforms = T.TransformList([T.ResizeTransform(*image.shape[:2], *release.image_size)])
        if sem_seg is not None:
            sem_seg = transforms.apply_segmentation(sem_seg)
        return _Mapped(payload, transforms, release.image_size, sem_seg)

    def _finish(self, dataset_dict, mapped: _Mapped):
        """The route's payload, then the label map, proposals and annotations, exactly as
        Detectron2's DatasetMapper handles them."""
        dataset_dict.update(mapped.payload)
        transforms, image_shape = mapped.transforms, mapped.image_size
        if mapped.sem_seg is not None:
            dataset_dict["sem_seg"] = torch.as_tensor(mapped.sem_seg.astype("long"))
        if self.proposal_topk is not None:
            utils.transform_proposals(dataset_dict, image_shape, transforms, proposal_topk=self.proposal_topk)
        if not self.is_train:
            dataset_dict.pop("annotations", None)
            return dataset_dict
        if "annotations" in dataset_dict:
            with stages.stage(stages.ANNOTATIONS):
                self._transform_annotations(dataset_dict, transforms, image_shape)
        return dataset_dict


def is_dct_model(cfg) -> bool:
    """Whether the config's meta-architecture takes DCT inputs (a :class:`~.meta_arch.DCTInput` twin)."""
    return issubclass(META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE), DCTInput)


def build_mapper(cfg, is_train: bool):
    """The DCT mapper for frequency-domain models, Detectron2's own for RGB baselines."""
    return DCTDatasetMapper(cfg, is_train) if is_dct_model(cfg) else DatasetMapper(cfg, is_train)
