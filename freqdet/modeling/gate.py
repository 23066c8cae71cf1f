"""Learned channel selection: gates that switch frequency channels on or off per image.

The paper's gate (Fig. 4): squeeze every input channel to its mean, mix them with a 1x1
convolution + BatchNorm + ReLU, and give each channel a pair of logits (off, on). In
training the decision is a hard Gumbel-softmax sample with straight-through gradients
(forward: exactly 0 or 1; backward: the softmax's gradient), at inference it is the
larger logit, so the same image always gets the same channels. The input is multiplied
by the decisions, and a loss weighted by lambda counts the channels switched on.
Averaged over a dataset the decisions give the heat map of the paper's Fig. 5.
"""
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import get_norm
from detectron2.utils.events import get_event_storage
from detectron2.utils.registry import Registry
from torch import nn

from ..dct import COMPONENTS, PER_COMPONENT

GATE_REGISTRY = Registry("DCT_GATE")
GATE_REGISTRY.__doc__ = """
Channel gates for frequency-domain inputs, chosen by ``cfg.MODEL.DCT.GATE.NAME``.
A gate is built as ``GATE(cfg, channels)``; its forward takes the normalized (N, C, h, w)
input and returns it gated, keeping the decisions (N, C) and on-probabilities of the
last call in ``last_decisions`` and ``last_probabilities``.
"""


def build_gate(cfg, channels: int) -> Optional[nn.Module]:
    """The gate named by ``cfg.MODEL.DCT.GATE.NAME``, or None if the name is empty."""
    name = cfg.MODEL.DCT.GATE.NAME
    return GATE_REGISTRY.get(name)(cfg, channels) if name else None


@GATE_REGISTRY.register()
class GumbelChannelGate(nn.Module):
    """The paper's gate: squeeze, 1x1 conv + norm + ReLU, per-channel (off, on) logits, Gumbel-softmax."""

    @configurable
    def __init__(self, channels: int, *, norm: str = "BN", tau: float = 1.0, init_off: float = 0.1, init_on: float = 2.0):
        """
        Args:
            channels: input channels, each of which gets a switch.
            norm: normalization after the mixing convolution (Detectron2's ``get_norm``
                names; "BN" as the paper, which needs more than one image per device).
            tau: Gumbel-softmax temperature.
            init_off, init_on: initial biases of the off and on logits; the official
                initialization starts every channel on.
        """
        super().__init__()
        self.channels, self.tau = channels, tau
        self.mix = nn.Conv2d(channels, channels, kernel_size=1, bias=not norm)
        self.norm = get_norm(norm, channels) if norm else nn.Identity()
        self.logits = nn.Conv2d(channels, 2 * channels, kernel_size=1, groups=channels)
        nn.init.normal_(self.logits.weight, std=0.001)
        with torch.no_grad():
            self.logits.bias.copy_(torch.tensor([init_off, init_on]).repeat(channels))
        self.last_decisions: Optional[torch.Tensor] = None
        self.last_probabilities: Optional[torch.Tensor] = None

    @classmethod
    def from_config(cls, cfg, channels: int):
        gate = cfg.MODEL.DCT.GATE
        return {"channels": channels, "norm": gate.NORM, "tau": gate.TAU, "init_off": gate.INIT_OFF, "init_on": gate.INIT_ON}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = F.adaptive_avg_pool2d(x, 1)
        logits = self.logits(F.relu(self.norm(self.mix(squeezed)))).view(x.shape[0], self.channels, 2)
        if self.training:
            decisions = F.gumbel_softmax(logits, tau=self.tau, hard=True, dim=-1)[..., 1]
        else:
            decisions = (logits[..., 1] > logits[..., 0]).to(x.dtype)
        self.last_decisions = decisions
        self.last_probabilities = logits.softmax(dim=-1)[..., 1].detach()
        return x * decisions[:, :, None, None]


def gate_losses_and_metrics(gate: nn.Module, channels, weight: float) -> Dict[str, torch.Tensor]:
    """``loss_gate`` (weight x channels on per image) for the last forward, and its metrics.

    Puts the channels on per image and the selection rate of each component (Y, Cb, Cr)
    into the current EventStorage, so they show in the log and in TensorBoard.
    """
    decisions = gate.last_decisions
    on_per_image = decisions.sum(dim=1).mean()
    storage = get_event_storage()
    storage.put_scalar("gate/channels_on", on_per_image.item())
    component = torch.as_tensor(channels, device=decisions.device) // PER_COMPONENT
    for index, name in enumerate(COMPONENTS):
        mask = component == index
        if mask.any():
            storage.put_scalar(f"gate/rate_{name}", decisions[:, mask].mean().item())
    return {"loss_gate": weight * on_per_image}
