"""Classifier-free guidance (Ho & Salimans 2022): one network trained with and without its class
label gives both predictions, and sampling extrapolates from the unconditional to the conditional."""

from __future__ import annotations

import torch
from torch import nn


class ClassGuided(nn.Module):
    """``model(x, t)`` for the samplers, from a class-conditional ``net(x, t, y)`` at fixed labels.

    ``out = uncond + scale * (cond - uncond)``. ``scale`` 1 is the conditional prediction and costs
    one evaluation; any other scale evaluates the conditional and the unconditional ("no class",
    label ``null_class``) halves as one doubled batch. The combination is linear, so it applies to
    eps-, v- and x0-predictions alike. A learned variance (the channels after the image's) is not
    extrapolated: the conditional one is kept, as DiT does.
    """

    def __init__(self, net: nn.Module, labels: torch.Tensor, scale: float, null_class: int) -> None:
        super().__init__()
        self.net, self.scale, self.null_class = net, float(scale), null_class
        self.register_buffer("labels", labels, persistent=False)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.scale == 1.0:
            return self.net(x, t, self.labels)
        null = torch.full_like(self.labels, self.null_class)
        both = self.net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([self.labels, null]))
        cond, uncond = both.chunk(2)
        c = x.shape[1]
        guided = uncond[:, :c] + self.scale * (cond[:, :c] - uncond[:, :c])
        return torch.cat([guided, cond[:, c:]], dim=1)  # any variance channels: the conditional ones
