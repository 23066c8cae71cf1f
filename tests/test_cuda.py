"""On a GPU: the device paths give the CPU path's numbers, and a training step runs there.

Skipped without CUDA (CI has none); run where a GPU is, e.g. ``pytest tests/test_cuda.py``.
"""

import copy

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from helpers import small_cfg

from freqdet import DCTDatasetMapper

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CONFIG = "configs/demo/mask_rcnn_dct_demo.yaml"
STATS = ["MODEL.DCT.MEAN", [5.0] * 24, "MODEL.DCT.STD", [50.0] * 24]


@pytest.mark.parametrize("wire", ["int16", "float32"])
def test_transform_on_the_gpu_gives_the_cpu_paths_numbers(demo_dicts, wire):
    # The GPU transforms decoded pixels: the CPU path from pixels, not the file's own planes.
    opts = ["INPUT.DCT.WIRE_DTYPE", wire, "INPUT.DCT.SOURCE", "pixels", *STATS]
    cpu_model = build_model(small_cfg(CONFIG, *opts)).eval()
    gpu_cfg = small_cfg(CONFIG, *opts, "MODEL.DEVICE", "cuda", "MODEL.DCT.TRANSFORM_ON", "device")
    gpu_model = build_model(gpu_cfg).eval()
    for seed, d in enumerate(demo_dicts[:4]):
        np.random.seed(seed)
        shipped = DCTDatasetMapper(small_cfg(CONFIG, *opts), True)(copy.deepcopy(d))
        np.random.seed(seed)
        pixels = DCTDatasetMapper(gpu_cfg, True)(copy.deepcopy(d))
        assert "resize" in pixels  # the GPU resizes the decoded pixels itself
        a = cpu_model.preprocess_image([shipped])
        b = gpu_model.preprocess_image([pixels])
        assert b.tensor.is_cuda and a.image_sizes == b.image_sizes
        # The same operators in float32 on both sides (the CPU's C kernel, the GPU's batched
        # products): only the summation order differs, which can tip a rounding tie by one unit.
        difference = (a.tensor - b.tensor.cpu()).abs() * 50.0  # back in coefficient units
        assert difference.mean() < 1e-3 and difference.max() <= 1 + 1e-2


def test_shipped_coefficients_train_on_the_gpu(demo_dicts):
    torch.manual_seed(0)
    np.random.seed(0)
    cfg = small_cfg(CONFIG, *STATS, "MODEL.DEVICE", "cuda")
    model = build_model(cfg).train()
    mapper = DCTDatasetMapper(cfg, True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.005, momentum=0.9)
    before = [p.detach().clone() for p in model.parameters()]
    with EventStorage(0):
        for step in range(2):
            batch = [mapper(copy.deepcopy(d)) for d in demo_dicts[2 * step : 2 * step + 2]]
            losses = model(batch)
            assert all(v.is_cuda and torch.isfinite(v) for v in losses.values())
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    model.eval()
    with torch.no_grad():
        outputs = model([DCTDatasetMapper(cfg, False)(copy.deepcopy(demo_dicts[10]))])
    assert outputs[0]["instances"].image_size == (demo_dicts[10]["height"], demo_dicts[10]["width"])


def test_mapper_runs_in_workers_forked_from_a_cuda_process(demo_dicts):
    """Detectron2's loaders fork their workers after the model is on the GPU; the CPU
    transform must not touch CUDA there (sparse tensors did: 'CUDA error: initialization
    error' in every worker)."""
    from torch.utils.data import DataLoader

    torch.zeros(1, device="cuda")
    for wire in ("int16", "int8"):
        mapper = DCTDatasetMapper(small_cfg(CONFIG, "INPUT.DCT.WIRE_DTYPE", wire, *STATS), True)
        loader = DataLoader(
            demo_dicts[:4],
            batch_size=None,
            num_workers=2,
            multiprocessing_context="fork",
            collate_fn=lambda d, mapper=mapper: mapper(copy.deepcopy(d)),
        )
        mapped = list(loader)
        assert len(mapped) == 4 and all(m["dct"].dtype == getattr(torch, wire) for m in mapped)
