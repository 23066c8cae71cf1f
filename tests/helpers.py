"""Helpers shared by the Detectron2 tests."""

import os
import pathlib
import subprocess
import sys
import tarfile

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def small_cfg(config_file="configs/demo/mask_rcnn_dct_demo.yaml", *opts):
    """A config from the repo, shrunk for fast CPU tests (ResNet-18, small images)."""
    import os

    from detectron2.config import get_cfg

    from freqdet import add_freqdet_config

    cfg = get_cfg()
    add_freqdet_config(cfg)
    cfg.merge_from_file(os.path.join(os.path.dirname(__file__), "..", config_file))
    cfg.merge_from_list(
        [
            "MODEL.DEVICE",
            "cpu",
            "MODEL.RESNETS.DEPTH",
            18,
            "MODEL.RESNETS.RES2_OUT_CHANNELS",
            64,
            "INPUT.MIN_SIZE_TRAIN",
            (128, 160),
            "INPUT.MAX_SIZE_TRAIN",
            240,
            "INPUT.MIN_SIZE_TEST",
            144,
            "INPUT.MAX_SIZE_TEST",
            240,
        ]
        + list(opts)
    )
    return cfg


def detectron2_lazy_tool(tmp_path) -> pathlib.Path:
    """Detectron2's own tools/lazyconfig_train_net.py, unmodified: the installed Detectron2's where it is
    a source checkout (pip install -e), else from Detectron2 0.6's source, which tools/setup.sh keeps
    for any Detectron2 (the fallback's, or beside an existing one)."""
    import detectron2

    checkout = pathlib.Path(detectron2.__file__).resolve().parents[1] / "tools" / "lazyconfig_train_net.py"
    if checkout.is_file():
        return checkout
    cache = pathlib.Path(sys.prefix) / "cache"
    found = sorted(cache.glob("pb1-detectron2-0.6*.tar.gz"))
    if not found:
        pytest.fail(f"Detectron2's source is not in {cache}, where tools/setup.sh keeps it: run tools/setup.sh")
    with tarfile.open(found[0]) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("tools/lazyconfig_train_net.py"))
        path = tmp_path / "lazyconfig_train_net.py"
        path.write_bytes(tar.extractfile(member).read())
    return path


def run_lazy_tool(tool, *args, cwd, config="demo/mask_rcnn_dct_demo.py"):
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, str(tool), "--config-file", str(ROOT / "configs" / config), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def float_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pillow's bilinear resize without its uint8 rounding, written out with numpy."""
    from freqdet.dct.operators import pil_bilinear_weights

    out = image.astype(np.float64)
    for axis, n in ((1, width), (0, height)):
        start, weights = pil_bilinear_weights(out.shape[axis], n)
        index = np.minimum(start[:, None] + np.arange(weights.shape[1]), out.shape[axis] - 1)
        taps = np.take(out, index, axis=axis)
        out = np.einsum("hntc,nt->hnc", taps, weights) if axis == 1 else np.einsum("ntwc,nt->nwc", taps, weights)
    return out
