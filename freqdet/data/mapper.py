"""DCTDatasetMapper: Detectron2's DatasetMapper, shipping DCT channels instead of pixels."""
import copy
import logging
from typing import Sequence

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import DatasetMapper
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from ..config import dct_selection, wire_dtype
from ..dct import batched, resolve_channels
from ..dct.wire import to_wire
from ..image_io import read_image

logger = logging.getLogger(__name__)


def encode_dct(image: np.ndarray, selection: Sequence[int], image_format: str, dtype: str) -> torch.Tensor:
    """(H, W, 3) uint8 image -> (C, ceil(H/4), ceil(W/4)) coefficients in the wire dtype.

    The paper's upscaled pipeline (:func:`freqdet.dct.upscaled_dct`), computed with the
    torch implementation on the CPU, which the tests hold equal to the numpy reference.
    """
    pixels = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]
    coeffs = batched.upscaled_dct(pixels, selection, image_format)[0].numpy()
    return torch.from_numpy(to_wire(coeffs, dtype))


class DCTDatasetMapper(DatasetMapper):
    """Detectron2's ``DatasetMapper`` for frequency-domain models.

    Reading (libjpeg-turbo, see :func:`freqdet.read_image`), augmentations and annotation
    handling are Detectron2's own, so for the same random state the ``instances`` are
    identical to the stock mapper's. Instead of the augmented pixels it ships:

    - ``"dct"``: the selected channels of the augmented image, a ``(C, ceil(H/4),
      ceil(W/4))`` tensor in the wire dtype (``cfg.INPUT.DCT.WIRE_DTYPE``);
    - ``"image_size"``: ``(H, W)``, the augmented image's size in pixels, in which the
      ``instances`` and everything the model predicts before post-processing are given.
    """

    @configurable
    def __init__(self, is_train: bool, *, channels: Sequence[int], wire_dtype: str = "int16", **kwargs):
        """
        Args:
            channels: global DCT channel indices to ship (see :mod:`freqdet.dct.channels`).
            wire_dtype: "int16" or "float32".
            kwargs: the arguments of Detectron2's ``DatasetMapper``.
        """
        super().__init__(is_train, **kwargs)
        if self.image_format not in ("BGR", "RGB"):
            raise ValueError(f"DCTDatasetMapper needs INPUT.FORMAT 'BGR' or 'RGB', got {self.image_format!r}")
        self.channels = resolve_channels(list(channels))
        self.wire_dtype = wire_dtype
        logger.info(f"[DCTDatasetMapper] {len(self.channels)} DCT channels shipped as {wire_dtype}")

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        ret = super().from_config(cfg, is_train)
        ret["channels"] = dct_selection(cfg)
        ret["wire_dtype"] = wire_dtype(cfg)
        return ret

    def __call__(self, dataset_dict):
        dataset_dict = copy.deepcopy(dataset_dict)
        image = read_image(dataset_dict["file_name"], format=self.image_format)
        utils.check_image_size(dataset_dict, image)
        dataset_dict.pop("sem_seg_file_name", None)

        aug_input = T.AugInput(image)
        transforms = self.augmentations(aug_input)
        image = aug_input.image
        image_shape = image.shape[:2]
        dataset_dict["dct"] = encode_dct(image, self.channels, self.image_format, self.wire_dtype)
        dataset_dict["image_size"] = image_shape

        if self.proposal_topk is not None:
            utils.transform_proposals(dataset_dict, image_shape, transforms, proposal_topk=self.proposal_topk)
        if not self.is_train:
            dataset_dict.pop("annotations", None)
            return dataset_dict
        if "annotations" in dataset_dict:
            self._transform_annotations(dataset_dict, transforms, image_shape)
        return dataset_dict
