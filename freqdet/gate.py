"""The paper's channel gate as a plain torch module (used by the detector and the classifier).

Squeeze every input channel to its mean, mix them with a 1x1 convolution + BatchNorm +
ReLU, and give each channel a pair of logits (off, on) (paper Fig. 4). In training the
decision is a hard Gumbel-softmax sample with straight-through gradients (forward:
exactly 0 or 1; backward: the softmax's gradient); at inference it is the larger logit,
so the same image always gets the same channels. The input is multiplied by the
decisions; a loss weighted by lambda counts the channels switched on. Averaged over a
dataset the decisions give the heat map of the paper's Fig. 5.
"""

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


class ChannelGate(nn.Module):
    """Per-image on/off switches for ``channels`` input channels.

    After each forward, ``last_decisions`` (N, C; 0/1, differentiable in training) and
    ``last_probabilities`` (N, C; detached; in eval mode only, None in training) hold the
    decisions and on-probabilities.
    """

    def __init__(self, channels: int, norm: str = "BN", tau: float = 1.0, init_off: float = 0.1, init_on: float = 2.0):
        """
        Args:
            channels: input channels, each of which gets a switch.
            norm: "BN" after the mixing convolution, as the paper (needs more than one
                image per device in training), or "" for none.
            tau: Gumbel-softmax temperature.
            init_off, init_on: initial biases of the off and on logits (logit weights start
                at N(0, 0.001)); the official initialization starts every channel on.
        """
        super().__init__()
        if norm not in ("BN", ""):
            raise ValueError(f"gate norm must be 'BN' or '', got {norm!r}")
        self.channels, self.tau = channels, tau
        self.mix = nn.Conv2d(channels, channels, kernel_size=1)
        self.norm = nn.BatchNorm2d(channels) if norm else nn.Identity()
        self.logits = nn.Conv2d(channels, 2 * channels, kernel_size=1, groups=channels)
        nn.init.normal_(self.logits.weight, std=0.001)
        with torch.no_grad():
            self.logits.bias.copy_(torch.tensor([init_off, init_on]).repeat(channels))
        self.last_decisions: Optional[torch.Tensor] = None
        self.last_probabilities: Optional[torch.Tensor] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = F.adaptive_avg_pool2d(x, 1)
        logits = self.logits(F.relu(self.norm(self.mix(squeezed)))).view(x.shape[0], self.channels, 2)
        if self.training:
            decisions = F.gumbel_softmax(logits, tau=self.tau, hard=True, dim=-1)[..., 1]
        else:
            decisions = (logits[..., 1] > logits[..., 0]).to(x.dtype)
        self.last_decisions = decisions
        # Read by the channel analysis, which runs in eval mode.
        self.last_probabilities = None if self.training else logits.softmax(dim=-1)[..., 1].detach()
        return x * decisions[:, :, None, None]

    def channels_on(self) -> torch.Tensor:
        """Channels switched on per image in the last forward, averaged over the batch (differentiable)."""
        return self.last_decisions.sum(dim=1).mean()

    def loss(self, weight: float) -> torch.Tensor:
        """The paper's gate loss for the last forward: ``weight`` (lambda) x channels on per image."""
        return weight * self.channels_on()
