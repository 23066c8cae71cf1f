"""Per-channel normalization of DCT inputs on the device, shared by the detector and the classifier.

Like Detectron2's ``pixel_mean`` / ``pixel_std``, the statistics live in the model, so the
data loader ships raw coefficients in a compact dtype and the device normalizes them.
Unlike them, they are persistent buffers, together with the channels they describe: a
checkpoint carries its model's normalization and selection, and loading it into a model
that takes other channels is refused (:class:`ChannelMismatchError`), by whatever loads it
(``load_state_dict``, Detectron2's checkpointers, ``DefaultPredictor``).
"""

from typing import List, Optional, Sequence

import torch
from torch import nn

from .dct import NUM_CHANNELS, resolve_channels


class ChannelMismatchError(ValueError):
    """Weights of one channel selection loaded into a model of another."""

    def __init__(self, theirs: Sequence[int], ours: Sequence[int], source: str = "the state dict"):
        self.theirs, self.ours, self.source = list(theirs), list(ours), source
        super().__init__(
            f"the weights in {source} were trained on DCT channels {self.theirs} ({len(self.theirs)}), but the "
            f"model takes {self.ours} ({len(self.ours)}): select the weights' channels (a detector's "
            "MODEL.DCT.CHANNELS/PATTERN or MODEL.DCT.INDICES, a LazyConfig's model.channels/pattern, a "
            "classifier's --channels/--indices), or use "
            "weights trained for these"
        )


def selection_mask(selection: Sequence[int]) -> torch.Tensor:
    """The 192-entry bool mask of a selection of global channel indices."""
    mask = torch.zeros(NUM_CHANNELS, dtype=torch.bool)
    mask[list(selection)] = True
    return mask


class ChannelNormalization(nn.Module):
    """``(x - mean) / std`` per channel, in float32, for inputs of the channels ``selection``.

    Buffers (saved in checkpoints): ``selected``, a 192-entry mask of the global channels
    the model takes (its fixed shape lets a loader see a mismatch instead of dropping a
    tensor of another shape), and ``mean`` / ``std`` of shape (C, 1, 1). Until
    :meth:`set_stats` is called they are 0 and 1.
    """

    def __init__(
        self, selection: Sequence[int], mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None
    ):
        super().__init__()
        self.channels = resolve_channels(list(selection))
        n = len(self.channels)
        self.register_buffer("selected", selection_mask(self.channels))
        self.register_buffer("mean", torch.zeros(n, 1, 1))
        self.register_buffer("std", torch.ones(n, 1, 1))
        if mean is not None or std is not None:
            self.set_stats(mean, std)

    def set_stats(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Set the statistics of the selected channels, in the selection's order."""
        mean = torch.as_tensor(mean, dtype=torch.float32).flatten()
        std = torch.as_tensor(std, dtype=torch.float32).flatten()
        n = len(self.channels)
        if len(mean) != n or len(std) != n:
            raise ValueError(f"need {n} DCT means and stds, got {len(mean)} and {len(std)}")
        self.mean.copy_(mean.view(-1, 1, 1))
        self.std.copy_(std.view(-1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) / self.std

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "selected"
        if key in state_dict:  # a missing one is reported as a missing key by load_state_dict
            theirs = torch.as_tensor(state_dict[key]).to(torch.bool).flatten()
            if theirs.shape != self.selected.shape or not torch.equal(theirs.cpu(), self.selected.cpu()):
                raise ChannelMismatchError(torch.nonzero(theirs).flatten().tolist(), self.channels)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def selected_channels(state_dict, prefix: str = "") -> Optional[List[int]]:
    """The channels a state dict's :class:`ChannelNormalization` at ``prefix`` (e.g.
    ``"normalization."``) records as taken, or None if it holds none."""
    key = prefix + "selected"
    return torch.as_tensor(state_dict[key]).nonzero().flatten().tolist() if key in state_dict else None
