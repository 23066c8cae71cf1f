"""freqdet's configs by name, wherever freqdet is installed, as ``detectron2.model_zoo`` gives Detectron2's.

    from freqdet import model_zoo
    cfg = model_zoo.get_config("mask_rcnn_dct_R50_FPN_scratch.yaml")
    path = model_zoo.get_config_file("demo/mask_rcnn_dct_demo.yaml")

Names are paths below the repository's ``configs/`` (a leading ``configs/`` is accepted).
In a checkout ``configs`` here is a link to that folder; an installed package carries a copy.
"""

import os
from typing import List, Sequence

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def list_configs() -> List[str]:
    """The names of every config, sorted (``demo/...`` included)."""
    names = []
    for folder, _, files in os.walk(CONFIGS, followlinks=True):
        names += [os.path.relpath(os.path.join(folder, f), CONFIGS) for f in files if f.endswith(".yaml")]
    return sorted(names)


def get_config_file(name: str) -> str:
    """The path of the config ``name`` (e.g. ``"mask_rcnn_dct_R50_FPN.yaml"``); FileNotFoundError
    listing the configs there are if it is not one of them."""
    relative = name[len("configs/") :] if name.startswith("configs/") else name
    path = os.path.join(CONFIGS, relative)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{name!r} is not one of freqdet's configs: {', '.join(list_configs())}")
    return path


def get_config(name: str, opts: Sequence = ()):
    """The Detectron2 config ``name`` with freqdet's keys (needs Detectron2), merged with KEY VALUE ``opts``."""
    from ..detection.config import load_config

    return load_config(get_config_file(name), opts)
