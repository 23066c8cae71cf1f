"""One normalization module for detector and classifier: arithmetic, checkpoints of other
selections refused by any loader, and weights written before the move still load."""

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model
from helpers import small_cfg

from freqdet.classification.models import build_classifier
from freqdet.dct import channel_indices
from freqdet.normalization import ChannelMismatchError, ChannelNormalization


def test_normalizes_each_channel_in_float32():
    norm = ChannelNormalization([0, 9, 64], mean=[1.0, 2.0, 3.0], std=[2.0, 4.0, 8.0])
    x = torch.tensor([[[3]], [[10]], [[-5]]], dtype=torch.int16)
    assert torch.equal(norm(x), torch.tensor([[[1.0]], [[2.0]], [[-1.0]]]))
    assert norm.channels == (0, 9, 64) and norm.selected.nonzero().flatten().tolist() == [0, 9, 64]
    with pytest.raises(ValueError, match="need 3 DCT means"):
        norm.set_stats([1.0], [1.0])


def test_load_state_dict_refuses_another_selection():
    theirs = ChannelNormalization(channel_indices(24)).state_dict()
    ours = ChannelNormalization(channel_indices(24, "triangle"))
    with pytest.raises(ChannelMismatchError, match=r"trained on DCT channels .* \(24\), but the model takes"):
        ours.load_state_dict(theirs)
    ChannelNormalization(channel_indices(24)).load_state_dict(theirs)


def legacy_detector_state(model):
    """A detector's state dict as freqdet wrote it before ChannelNormalization: top-level
    dct_channels (the list of indices), dct_mean and dct_std."""
    state = model.state_dict()
    state["dct_channels"] = state.pop("normalization.selected").nonzero().flatten()
    state["dct_mean"], state["dct_std"] = state.pop("normalization.mean"), state.pop("normalization.std")
    return state


def test_legacy_detector_checkpoints_load_and_are_checked(tmp_path):
    cfg = small_cfg("configs/demo/mask_rcnn_dct_demo.yaml", "MODEL.DCT.MEAN", [5.0] * 192, "MODEL.DCT.STD", [3.0] * 192)
    path = str(tmp_path / "old.pth")
    torch.save({"model": legacy_detector_state(build_model(cfg))}, path)
    fresh = build_model(small_cfg("configs/demo/mask_rcnn_dct_demo.yaml"))
    DetectionCheckpointer(fresh).load(path)
    assert torch.equal(fresh.normalization.mean.flatten(), torch.full((24,), 5.0))
    other = build_model(small_cfg("configs/demo/mask_rcnn_dct_demo.yaml", "MODEL.DCT.CHANNELS", 64))
    with pytest.raises(ChannelMismatchError, match=r"\(24\), but the model takes .* \(64\)"):
        DetectionCheckpointer(other).load(path)


def test_detectron2s_own_checkpointer_refuses_another_selection(tmp_path):
    DetectionCheckpointer(build_model(small_cfg()), str(tmp_path)).save("model_24")
    other = build_model(small_cfg("configs/demo/mask_rcnn_dct_demo.yaml", "MODEL.DCT.CHANNELS", 64))
    with pytest.raises(ChannelMismatchError):
        DetectionCheckpointer(other).load(str(tmp_path / "model_24.pth"))


def test_every_predictor_refuses_another_selection(tmp_path):
    from detectron2.engine import DefaultPredictor

    from freqdet import DCTPredictor

    DetectionCheckpointer(build_model(small_cfg()), str(tmp_path)).save("model_24")
    other = small_cfg(
        "configs/demo/mask_rcnn_dct_demo.yaml",
        "MODEL.DCT.CHANNELS",
        64,
        "MODEL.WEIGHTS",
        str(tmp_path / "model_24.pth"),
    )
    for predictor in (DefaultPredictor, DCTPredictor):
        with pytest.raises(ChannelMismatchError, match=r"\(24\), but the model takes .* \(64\)"):
            predictor(other)


def test_legacy_classifier_checkpoints_load():
    old = build_classifier("resnet50", 10, 24)
    old.input.set_stats(torch.arange(24.0), torch.full((24,), 2.0))
    state = {
        k.replace("input.normalization.", "input.dct_"): v
        for k, v in old.state_dict().items()
        if k != "input.normalization.selected"
    }
    assert "input.dct_mean" in state
    new = build_classifier("resnet50", 10, 24)
    new.load_state_dict(state)
    assert torch.equal(new.input.normalization.mean.flatten(), torch.arange(24.0))
