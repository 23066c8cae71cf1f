"""freqdet's config files, found by name in a checkout or an installed package.

Names are paths below the repository's ``configs/`` (a leading ``configs/`` is accepted),
e.g. ``"mask_rcnn_dct_R50_FPN.yaml"``, ``"demo/mask_rcnn_dct_demo.yaml"`` or the LazyConfig
``"new_baselines/mask_rcnn_dct_R_50_FPN_100ep_LSJ.py"``. In a checkout
``freqdet/configs`` is a link to that folder; an installed package carries a copy. This
module needs nothing of Detectron2: :mod:`freqdet.detection.model_zoo` builds the configs.
"""

import os
from typing import List

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def list_configs() -> List[str]:
    """The names of every config, sorted (``demo/...`` and the LazyConfigs, ``.py``, included)."""
    names = []
    for folder, _, files in os.walk(CONFIGS, followlinks=True):
        names += [os.path.relpath(os.path.join(folder, f), CONFIGS) for f in files if f.endswith((".yaml", ".py"))]
    return sorted(names)


def get_config_file(name: str) -> str:
    """The path of the config ``name``; FileNotFoundError listing the configs there are if it
    is not one of them."""
    relative = name[len("configs/") :] if name.startswith("configs/") else name
    path = os.path.join(CONFIGS, relative)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{name!r} is not one of freqdet's configs: {', '.join(list_configs())}")
    return path


def config_path(config_file: str) -> str:
    """The path of ``config_file``: itself if the file exists, else the freqdet config of that
    name; ValueError saying both if neither exists."""
    if os.path.isfile(config_file):
        return config_file
    try:
        return get_config_file(config_file)
    except FileNotFoundError as e:
        raise ValueError(f"config file {config_file!r} does not exist, and {e}") from None
