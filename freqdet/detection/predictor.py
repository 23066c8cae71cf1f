"""DCTPredictor: Detectron2's DefaultPredictor for freqdet's models, on image files or arrays."""

import logging
import os
from typing import Dict, List, Sequence, Union

import numpy as np
import torch
from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T
from detectron2.engine import DefaultPredictor
from detectron2.modeling import build_model
from detectron2.utils.logger import setup_logger

from ..io import read_image
from .checkpoint import FreqdetCheckpointer
from .config import check_device
from .mapper import build_mapper, is_dct_model

Image = Union[str, os.PathLike, np.ndarray]


class DCTPredictor(DefaultPredictor):
    """``DefaultPredictor`` that takes a file path or an array, and a list of them at once.

    Files are read as the test loader reads them (``INPUT.DCT.SOURCE``: a JPEG's own Y, Cb and
    Cr planes, :func:`freqdet.io.read_planes`, or pixels decoded by :func:`freqdet.read_image`;
    EXIF orientation applied as Detectron2 applies it), arrays are (H, W, 3) uint8 in BGR order, as
    ``DefaultPredictor`` takes them. Each image is resized as at test time
    (``INPUT.MIN_SIZE_TEST`` / ``MAX_SIZE_TEST``) by the frequency transform itself, and the
    result is the model's, as Detectron2 gives it (``{"instances": Instances}``, with
    ``"sem_seg"`` and ``"panoptic_seg"`` for Panoptic FPN, ``"sem_seg"`` alone for the semantic
    FPN, ``"proposals"`` for an RPN) in the pixels of the original (oriented) image. The
    weights are ``cfg.MODEL.WEIGHTS``, read without running code from the file; their statistics
    and channel selection come with them (weights of another selection are refused).

        predictor = DCTPredictor(cfg)
        instances = predictor("photo.jpg")["instances"]
        outputs = predictor.predict_batch(["a.jpg", "b.jpg", array])  # one forward pass

    RGB baselines (``GeneralizedRCNN`` configs) are predicted as ``DefaultPredictor`` does,
    one image at a time.
    """

    def __init__(self, cfg, trust_checkpoint: bool = False):
        """``trust_checkpoint`` allows weights files that need pickled Python objects (which
        can run code when loaded; see :func:`freqdet.safe_load.load_checkpoint`)."""
        if not logging.getLogger("freqdet").isEnabledFor(logging.INFO):
            setup_logger(name="freqdet")
        check_device(cfg)
        self.cfg = cfg.clone()
        self.model = build_model(self.cfg).eval()
        names = list(self.cfg.DATASETS.TEST) or list(self.cfg.DATASETS.TRAIN)
        self.metadata = MetadataCatalog.get(names[0]) if names else None
        FreqdetCheckpointer(self.model, trust=trust_checkpoint).load(self.cfg.MODEL.WEIGHTS)
        self.input_format = self.cfg.INPUT.FORMAT
        self.aug = T.ResizeShortestEdge([self.cfg.INPUT.MIN_SIZE_TEST] * 2, self.cfg.INPUT.MAX_SIZE_TEST)
        self.dct = is_dct_model(self.cfg)
        self.mapper = build_mapper(self.cfg, is_train=False)

    def _input(self, image: Image) -> Dict:
        if isinstance(image, np.ndarray):
            return self.mapper.map_image(image if self.input_format == "BGR" else image[:, :, ::-1])
        return self.mapper({"file_name": os.fspath(image)})

    def __call__(self, image: Image) -> Dict:
        """Predictions for one image file or array (``{"instances": Instances}`` for an R-CNN)."""
        return self.predict_batch([image])[0]

    @torch.no_grad()
    def predict_batch(self, images: Sequence[Image]) -> List[Dict]:
        """Predictions for several image files or arrays, in one forward pass (RGB models: one by one)."""
        if not self.dct:
            arrays = [i if isinstance(i, np.ndarray) else read_image(i, format="BGR") for i in images]
            return [super(DCTPredictor, self).__call__(a) for a in arrays]
        return self.model([self._input(image) for image in images])
