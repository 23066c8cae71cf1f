"""freqdet's Detectron2 plug-in: the only part of freqdet that imports Detectron2.

Importing it registers, into Detectron2's registries, the frequency-domain ResNet and
ResNet-FPN backbones (:mod:`.backbone`), :class:`DCTGeneralizedRCNN` (:mod:`.meta_arch`),
the channel gates (:mod:`.gate`) and the built-in demo datasets (:mod:`.datasets`).

- :mod:`.config`: :func:`add_freqdet_config` (``MODEL.DCT``, ``INPUT.DCT``), validation;
- :mod:`.inputs`: the model's input schema, shared by the mapper and the model;
- :mod:`.mapper`: :class:`DCTDatasetMapper`; :mod:`.bad_images`: the skip policy's record;
- :mod:`.engine`, :mod:`.checkpoint`: :class:`DCTTrainer` and its checkpointer;
- :mod:`.predictor`: :class:`DCTPredictor`; :mod:`.predictions`: pictures of predictions;
- :mod:`.cli`: what the command-line tools share (``--register-coco``);
- :mod:`.convert`: classifier weights to detector keys.
"""

from . import backbone, gate, meta_arch  # noqa: F401  (they register into Detectron2's registries)
from .config import add_freqdet_config, load_config
from .datasets import register_demo_datasets
from .engine import DCTTrainer
from .mapper import DCTDatasetMapper
from .meta_arch import DCTGeneralizedRCNN
from .predictor import DCTPredictor

register_demo_datasets()

__all__ = [
    "DCTDatasetMapper",
    "DCTGeneralizedRCNN",
    "DCTPredictor",
    "DCTTrainer",
    "add_freqdet_config",
    "load_config",
    "register_demo_datasets",
]
