"""The channel gate in the detector: a registry chosen by ``cfg.MODEL.DCT.GATE.NAME``, the
paper's gate (:mod:`freqdet.gate`) built from the config, its loss and metrics, and the
analysis of what a trained gate selects (rates per channel over a dataset, the top K, a
config that takes them)."""

import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import yaml
from detectron2.config import configurable
from detectron2.utils.events import get_event_storage
from detectron2.utils.registry import Registry
from torch import nn
from tqdm import tqdm

from ..dct import COMPONENTS, NUM_CHANNELS, PER_COMPONENT
from ..gate import ChannelGate

GATE_REGISTRY = Registry("DCT_GATE")
GATE_REGISTRY.__doc__ = """
Channel gates for frequency-domain inputs, chosen by ``cfg.MODEL.DCT.GATE.NAME``.
A gate is built as ``GATE(cfg, channels)``; its forward takes the normalized (N, C, h, w)
input and returns it gated, keeping the decisions (N, C) and on-probabilities of the
last call in ``last_decisions`` and (in eval mode) ``last_probabilities``.
"""


def build_gate(cfg, channels: int) -> Optional[nn.Module]:
    """The gate named by ``cfg.MODEL.DCT.GATE.NAME``, or None if the name is empty."""
    name = cfg.MODEL.DCT.GATE.NAME
    return GATE_REGISTRY.get(name)(cfg, channels) if name else None


@GATE_REGISTRY.register()
class GumbelChannelGate(ChannelGate):
    """The paper's gate (:class:`freqdet.gate.ChannelGate`), built from ``cfg.MODEL.DCT.GATE``."""

    @configurable
    def __init__(self, channels: int, **kwargs):
        super().__init__(channels, **kwargs)

    @classmethod
    def from_config(cls, cfg, channels: int):
        gate = cfg.MODEL.DCT.GATE
        return {
            "channels": channels,
            "norm": gate.NORM,
            "tau": gate.TAU,
            "init_off": gate.INIT_OFF,
            "init_on": gate.INIT_ON,
        }


def gate_losses_and_metrics(gate: nn.Module, channels, weight: float) -> Dict[str, torch.Tensor]:
    """``loss_gate`` (weight x channels on per image) for the last forward, and its metrics.

    Puts the channels on per image and the selection rate of each component (Y, Cb, Cr)
    into the current EventStorage, so they show in the log and in TensorBoard.
    """
    decisions = gate.last_decisions
    on_per_image = gate.channels_on()
    component = torch.as_tensor(channels) // PER_COMPONENT
    names = [name for index, name in enumerate(COMPONENTS) if (component == index).any()]
    with torch.no_grad():  # every metric in one transfer from the device
        rates = [decisions[:, (component == COMPONENTS.index(n)).to(decisions.device)].mean() for n in names]
        values = torch.stack([on_per_image.detach(), *rates]).tolist()
    storage = get_event_storage()
    storage.put_scalar("gate/channels_on", values[0])
    for name, value in zip(names, values[1:]):
        storage.put_scalar(f"gate/rate_{name}", value)
    return {"loss_gate": weight * on_per_image}


@torch.no_grad()
def gate_statistics(model, mapper, dataset_dicts: Sequence[Dict]) -> Dict:
    """Run the model's gate (in inference mode) over a dataset.

    Returns, per global channel index (192 entries, NaN for channels the model does not
    take), the selection rate (fraction of images where the channel is on, the paper's
    Fig. 5) and the mean on-probability, plus the mean number of channels on per image.
    """
    if model.gate is None:
        raise ValueError("the model has no channel gate (cfg.MODEL.DCT.GATE.NAME is empty)")
    was_training = model.training
    model.eval()
    on = torch.zeros(len(model.channels), dtype=torch.float64)
    probability = torch.zeros_like(on)
    for d in tqdm(dataset_dicts, desc="gate decisions", unit="img", mininterval=2.0):
        images = model.preprocess_image([mapper(d)])
        model.gate(images.tensor)
        on += model.gate.last_decisions[0].double().cpu()
        probability += model.gate.last_probabilities[0].double().cpu()
    model.train(was_training)
    n = len(dataset_dicts)
    rate, mean_probability = np.full(NUM_CHANNELS, np.nan), np.full(NUM_CHANNELS, np.nan)
    rate[list(model.channels)] = (on / n).numpy()
    mean_probability[list(model.channels)] = (probability / n).numpy()
    return {
        "num_images": n,
        "channels_on_per_image": float(on.sum() / n),
        "selection_rate": rate,
        "probability": mean_probability,
    }


def top_k(rate: np.ndarray, probability: np.ndarray, k: int) -> List[int]:
    """The k channels selected most often (ties: higher probability, then lower index), sorted."""
    candidates = [i for i in range(NUM_CHANNELS) if np.isfinite(rate[i])]
    if not 0 < k <= len(candidates):
        raise ValueError(f"top-k needs 0 < k <= {len(candidates)} (the channels the model takes), got {k}")
    ranked = sorted(candidates, key=lambda i: (-rate[i], -probability[i], i))
    return sorted(ranked[:k])


def write_selection_config(indices: Sequence[int], base_config: str, path: str, output_dir: str = "") -> str:
    """A config file that inherits ``base_config`` and takes exactly ``indices`` (MODEL.DCT.INDICES),
    without a gate (the selection is static, even when ``base_config`` is the gated config)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    config = {
        "_BASE_": os.path.relpath(os.path.abspath(base_config), directory),
        "MODEL": {"DCT": {"INDICES": [int(i) for i in indices], "GATE": {"NAME": ""}}},
    }
    if output_dir:
        config["OUTPUT_DIR"] = output_dir
    with open(path, "w") as f:
        f.write(f"# The {len(indices)} channels a trained gate selected most often (tools/analyze_channels.py).\n")
        yaml.safe_dump(config, f, default_flow_style=None, sort_keys=False)
    return path
