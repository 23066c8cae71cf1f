"""What a trained channel gate selects: its decisions over a dataset (the paper's Fig. 5 heat
map), the K channels it selects most often, and a config that takes exactly those."""

import os
from typing import Dict, List, Sequence

import numpy as np
import torch
import yaml
from tqdm import tqdm

from ..dct import NUM_CHANNELS


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
