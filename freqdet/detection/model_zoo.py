"""freqdet's configs by name, wherever freqdet is installed, as ``detectron2.model_zoo`` gives Detectron2's.

    from freqdet import model_zoo
    cfg = model_zoo.get_config("mask_rcnn_dct_R50_FPN_scratch.yaml")
    path = model_zoo.get_config_file("demo/mask_rcnn_dct_demo.yaml")
    lazy = model_zoo.get_config("new_baselines/mask_rcnn_dct_R_50_FPN_100ep_LSJ.py")

``import freqdet`` makes this module ``freqdet.model_zoo`` too. Names are paths below the
repository's ``configs/`` (:mod:`freqdet.config_files` finds them).
"""

from typing import Sequence, Union

from detectron2.config import CfgNode
from omegaconf import DictConfig

from ..config_files import get_config_file, list_configs
from .config import load_config

__all__ = ["get_config", "get_config_file", "list_configs"]


def get_config(name: str, opts: Sequence = ()) -> Union[CfgNode, DictConfig]:
    """The config ``name``: a yacs ``CfgNode`` with freqdet's keys, merged with KEY VALUE ``opts``;
    for a ``.py`` name the LazyConfig, with ``opts`` as ``key=value`` overrides."""
    path = get_config_file(name)
    if path.endswith(".py"):
        from .lazy import load_lazy_config  # the LazyConfig tools, only for LazyConfigs

        return load_lazy_config(path, opts)
    return load_config(path, opts)
