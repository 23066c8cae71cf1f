"""The installed environment: the Detectron2 fallback's _C stand-in, and freqdet.dct standing alone."""

import os
import subprocess
import sys

import detectron2
import pytest


def _is_fallback() -> bool:
    standin = os.path.join(os.path.dirname(detectron2.__file__), "_C.py")
    return os.path.exists(standin) and "FREQDET_STANDIN" in open(standin).read()


fallback_only = pytest.mark.skipif(not _is_fallback(), reason="a real Detectron2 with compiled ops is installed")


@fallback_only
@pytest.mark.parametrize(
    "op", ["deform_conv_forward", "box_iou_rotated", "roi_align_rotated_forward", "COCOevalAccumulate"]
)
def test_standin_ops_raise_naming_the_op(op):
    from detectron2 import _C

    with pytest.raises(RuntimeError, match=rf"detectron2\._C\.{op} is a compiled Detectron2 op.*from source"):
        getattr(_C, op)()


@fallback_only
def test_fallback_runs_what_freqdet_needs():
    import torch
    from detectron2.layers import ROIAlign, batched_nms
    from detectron2.utils.collect_env import collect_env_info

    assert "freqdet stand-in" in collect_env_info()
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]])
    keep = batched_nms(boxes, torch.tensor([0.9, 0.8, 0.7]), torch.zeros(3, dtype=torch.long), 0.5)
    assert keep.tolist() == [0, 2]
    pooled = ROIAlign((2, 2), 1.0, 0, aligned=True)(torch.ones(1, 1, 8, 8), torch.tensor([[0.0, 0, 0, 4, 4]]))
    assert torch.allclose(pooled, torch.ones(1, 1, 2, 2))


@pytest.mark.slow
def test_frequency_math_works_without_detectron2():
    # Block detectron2 entirely: freqdet.dct and read_image must still import and run.
    code = (
        "import sys\n"
        "sys.modules['detectron2'] = None\n"
        "import numpy as np, freqdet, freqdet.dct as dct\n"
        "assert not hasattr(freqdet, 'add_freqdet_config')\n"
        "x = dct.upscaled_dct(np.zeros((16, 16, 3), np.uint8), 24)\n"
        "assert x.shape == (24, 4, 4)\n"
        "bad = sorted(m for m in sys.modules if m.startswith('detectron2') and sys.modules[m] is not None)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_frequency_math_sources_never_import_detectron2():
    import pathlib

    import freqdet.dct

    for source in pathlib.Path(freqdet.dct.__file__).parent.glob("*.py"):
        assert "detectron2" not in source.read_text(), f"{source} mentions detectron2"
