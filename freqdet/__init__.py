"""freqdet: Detectron2 models that learn in the frequency domain (Xu et al., CVPR 2020).

One rule: only :mod:`freqdet.detection` imports Detectron2. The rest works without it:
:mod:`freqdet.dct` (the frequency math), :mod:`freqdet.io` (reading images and JPEG
coefficients), :mod:`freqdet.stats` and :mod:`freqdet.normalization` (per-channel
statistics), :mod:`freqdet.gate` (the channel gate), :mod:`freqdet.demo` (demo data),
:mod:`freqdet.classification` (the companion classifier trainer) and :mod:`freqdet.deploy`
(serving an exported detector).

:func:`read_image` decodes JPEGs with libjpeg-turbo and raises :class:`ImageDecodeError`
for files it cannot decode. Where Detectron2 is installed, ``import freqdet`` also imports
:mod:`freqdet.detection`, which registers the plug-in, and exports
:func:`add_freqdet_config`, :class:`DCTDatasetMapper`, :class:`DCTTrainer`,
:class:`DCTPredictor`, :func:`use_dct_input` (any supported Detectron2 config to DCT inputs)
and ``freqdet.model_zoo`` (:mod:`freqdet.detection.model_zoo`).
"""

import importlib.util
import sys
import warnings

from .io import ImageDecodeError, read_image
from .known_warnings import quiet_known_warnings

__version__ = "0.1.0"

__all__ = ["ImageDecodeError", "read_image", "__version__"]

if importlib.util.find_spec("detectron2") is not None:
    with warnings.catch_warnings():  # Detectron2's dependencies' import-time notices, only during this import
        quiet_known_warnings()
        from .detection import DCTDatasetMapper, DCTPredictor, DCTTrainer, add_freqdet_config, model_zoo, use_dct_input

    # ``import freqdet.model_zoo`` and ``from freqdet.model_zoo import get_config`` too, as Detectron2's.
    sys.modules[__name__ + ".model_zoo"] = model_zoo
    __all__ += ["add_freqdet_config", "model_zoo", "use_dct_input", "DCTDatasetMapper", "DCTPredictor", "DCTTrainer"]
