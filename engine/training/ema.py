"""Exponential moving average of a model's weights (the model that is kept and validated).

``ema = d * ema + (1 - d) * weights`` after every optimizer step, with the decay ramped as
``min(d, (1 + n) / (10 + n))`` over the first steps so the average does not remember the
random initialisation; buffers (BatchNorm statistics) are copied. With few labels a
single step's weights are noisy; their average over the last ~1/(1-d) steps is a model
that does not hinge on where training happened to stop.
"""

from __future__ import annotations

import copy

import torch


class EMA:
    """Args: model: the trained model; decay: ``d`` (0 = the EMA is the model itself)."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.updates = 0
        self.model = copy.deepcopy(model).eval() if self.decay > 0 else model
        for p in self.model.parameters():
            p.requires_grad_(False) if self.decay > 0 else None

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        if self.decay <= 0:
            return
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        src = model.state_dict()
        for k, v in self.model.state_dict().items():
            s = src[k].detach()
            if v.dtype.is_floating_point:
                v.mul_(d).add_(s.to(v.dtype), alpha=1 - d)
            else:
                v.copy_(s)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in self.model.state_dict().items()} | {"__updates__": torch.tensor(self.updates)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        state = dict(state)
        self.updates = int(state.pop("__updates__", torch.tensor(0)))
        if self.decay > 0:
            self.model.load_state_dict(state)
