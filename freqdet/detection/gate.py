"""The channel gate in the detector: a registry chosen by ``cfg.MODEL.DCT.GATE.NAME``, the
paper's gate (:mod:`freqdet.gate`) built from the config, and its loss and metrics. What a
trained gate selects is :mod:`.channel_analysis`'s."""

from typing import Dict, List, Optional

import torch
from detectron2.config import configurable
from detectron2.utils.events import get_event_storage
from detectron2.utils.registry import Registry
from torch import nn

from ..dct import COMPONENTS, PER_COMPONENT
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


def gate_losses_and_metrics(gate: ChannelGate, channels, weight: float) -> Dict[str, torch.Tensor]:
    """``loss_gate`` (:meth:`ChannelGate.loss`) for the last forward, and its metrics.

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
    return {"loss_gate": gate.loss(weight)}


def gate_lr_groups(groups: List[Dict], model: nn.Module, factor: float, base_lr: Optional[float] = None) -> List[Dict]:
    """Optimizer parameter groups with the channel gate's parameters split off at ``factor`` x
    the learning rate (short schedules need the gate to learn faster than the rest).

    ``groups``: an optimizer's ``param_groups`` or Detectron2's ``get_default_optimizer_params``;
    a group without ``"lr"`` has the optimizer's, which ``base_lr`` must then give. ``model``: a
    :class:`~freqdet.detection.meta_arch.DCTGeneralizedRCNN` (or any model whose ``gate`` is its
    gate, or that has none), before it is wrapped in DistributedDataParallel.
    """
    gate_module = getattr(model, "gate", None)
    gate = {id(p) for p in gate_module.parameters()} if gate_module is not None else set()
    if factor == 1.0 or not gate:
        return list(groups)
    out = []
    for group in groups:
        for is_gate in (False, True):
            params = [p for p in group["params"] if (id(p) in gate) == is_gate]
            if not params:
                continue
            if not is_gate:
                out.append(dict(group, params=params))
                continue
            lr = group.get("lr", base_lr)
            if lr is None:
                raise ValueError(
                    f"the gate's learning rate factor {factor} needs the base learning rate: give base_lr "
                    "(in a LazyConfig, optimizer.params.base_lr = '${..lr}')"
                )
            out.append(dict(group, params=params, lr=lr * factor))
    return out
