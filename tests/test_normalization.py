"""One normalization module for detector and classifier: arithmetic, and checkpoints of other
selections refused by any loader."""

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model
from helpers import small_cfg

from freqdet.dct import channel_indices
from freqdet.normalization import ChannelMismatchError, ChannelNormalization, selected_channels


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


def test_weights_without_a_selection_are_not_taken_for_this_one():
    norm = ChannelNormalization(channel_indices(24))
    state = norm.state_dict()
    assert selected_channels(state) == list(channel_indices(24))
    del state["selected"]
    assert selected_channels(state) is None
    with pytest.raises(RuntimeError, match='Missing key.*"selected"'):
        ChannelNormalization(channel_indices(24)).load_state_dict(state)


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
