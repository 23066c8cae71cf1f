"""freqdet's configs by name, wherever freqdet is installed, as ``detectron2.model_zoo`` gives Detectron2's.

    from freqdet import model_zoo
    cfg = model_zoo.get_config("mask_rcnn_dct_R50_FPN_scratch.yaml")
    path = model_zoo.get_config_file("demo/mask_rcnn_dct_demo.yaml")

``import freqdet`` makes this module ``freqdet.model_zoo`` too. Names are paths below the
repository's ``configs/`` (:mod:`freqdet.config_files` finds them).
"""

from typing import Sequence

from detectron2.config import CfgNode

from ..config_files import get_config_file, list_configs
from .config import load_config

__all__ = ["get_config", "get_config_file", "list_configs"]


def get_config(name: str, opts: Sequence = ()) -> CfgNode:
    """The Detectron2 config ``name`` with freqdet's keys, merged with KEY VALUE ``opts``."""
    return load_config(get_config_file(name), opts)
