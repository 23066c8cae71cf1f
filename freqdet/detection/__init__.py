"""freqdet's Detectron2 plug-in: the only part of freqdet that imports Detectron2.

Importing it registers, into Detectron2's registries, the frequency-domain ResNet and
ResNet-FPN backbones (:mod:`.backbone`), the DCT twins of Detectron2's meta-architectures (:mod:`.meta_arch`),
the channel gates (:mod:`.gate`) and the built-in demo datasets (:mod:`.datasets`).

- :mod:`.config`: :func:`add_freqdet_config` (``MODEL.DCT``, ``INPUT.DCT``), validation;
  :mod:`.switch`: :func:`use_dct_input`, any supported config to DCT inputs;
  :mod:`.model_zoo`: the configs by name;
- :mod:`.inputs`: the model's input schema, shared by the mapper and the model;
- :mod:`.mapper`: :class:`DCTDatasetMapper`; :mod:`.bad_images`: the skip policy;
- :mod:`.checks`, :mod:`.dataset_stats`, :mod:`.trainer`, :mod:`.checkpoint`: a training run
  (the checks before it, the training set's statistics, :class:`DCTTrainer`, its checkpoints);
- :mod:`.channel_analysis`: what a trained gate selects;
- :mod:`.predictor`: :class:`DCTPredictor`; :mod:`.predictions`: pictures of predictions;
- :mod:`.cli`: what the command-line tools share (``--register-coco``);
- :mod:`.convert`: weights into the detector;
- :mod:`.release`: :class:`ReleaseDCTRCNN`, the official release's trained detectors' inference.
"""

from . import backbone, gate, meta_arch, model_zoo, release  # noqa: F401  (all but model_zoo register into Detectron2)
from .config import add_freqdet_config, load_config
from .datasets import register_demo_datasets
from .mapper import DCTDatasetMapper
from .meta_arch import DCTGeneralizedRCNN
from .predictor import DCTPredictor
from .switch import use_dct_input
from .trainer import DCTTrainer

register_demo_datasets()

__all__ = [
    "DCTDatasetMapper",
    "DCTGeneralizedRCNN",
    "DCTPredictor",
    "DCTTrainer",
    "add_freqdet_config",
    "load_config",
    "model_zoo",
    "register_demo_datasets",
    "use_dct_input",
]
