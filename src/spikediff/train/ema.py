"""Exponential moving average of a model's weights, with BatchNorm statistics that belong to it.

A BatchNorm network's running statistics are those of the weights that produced them. Copying the
live model's statistics into the average (what EMA code written for GroupNorm networks does) runs
the averaged weights with another network's statistics; a spiking network, whose thresholds turn
small shifts into different spike trains, suffers most. So the average keeps statistics of its own:
``"recompute"`` (default) recomputes them with the averaged weights on recent training batches
before they are used (a checkpoint, a sample grid); ``"average"`` averages the running statistics
like the weights, which costs nothing and is approximate.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

import torch
from torch import nn

EMA_BATCHNORM = ("recompute", "average")


class EMA:
    """``shadow = decay * shadow + (1 - decay) * weights`` after every optimiser step."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool = False, batchnorm: str = "recompute") -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        if batchnorm not in EMA_BATCHNORM:
            raise ValueError(f"unknown EMA BatchNorm mode {batchnorm!r}; expected one of {', '.join(EMA_BATCHNORM)}")
        self.decay, self.warmup, self.batchnorm = decay, warmup, batchnorm
        self.shadow = copy.deepcopy(model).eval().requires_grad_(False)

    def decay_at(self, step: int) -> float:
        """The decay used after optimiser step ``step``; with warmup ``min(decay, (1+s)/(10+s))``, so
        early averages are not dominated by the random initialisation and the averaging window grows
        with the run."""
        return min(self.decay, (1 + step) / (10 + step)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module, step: int = 0) -> None:
        decay = self.decay_at(step)
        for s, p in zip(self.shadow.parameters(), model.parameters(), strict=True):
            s.lerp_(p.detach(), 1.0 - decay)
        if self.batchnorm == "average":
            for s, b in zip(self.shadow.buffers(), model.buffers(), strict=True):
                if s.is_floating_point():
                    s.lerp_(b, 1.0 - decay)
                else:
                    s.copy_(b)

    def needs_statistics(self) -> bool:
        """Whether :meth:`recompute_statistics` must run before the shadow is used."""
        return self.batchnorm == "recompute" and any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                                                     for m in self.shadow.modules())

    @torch.no_grad()
    def recompute_statistics(self, forwards: Iterable[Callable[[nn.Module], object]]) -> None:
        """Recompute the running statistics of the shadow's BatchNorms that train (a frozen part, such
        as Spiking-Diffusion's VQ-SVAE, keeps its own) as the plain average over the forward passes
        ``forward(shadow)`` in training mode, then return to eval mode. A BatchNorm that no pass
        reached keeps its previous statistics; so do all of them if a pass fails."""
        self.shadow.train()
        norms = [m for m in self.shadow.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
        saved = [(m.momentum, m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
                 for m in norms]
        try:
            for m in norms:
                m.reset_running_stats()
                m.momentum = None  # cumulative average over the batches
            reached = False
            for forward in forwards:
                forward(self.shadow)
                reached = True
            if not reached:
                raise ValueError("no batches to recompute BatchNorm statistics on")
        except BaseException:
            for m, (momentum, mean, var, count) in zip(norms, saved, strict=True):
                m.momentum = momentum
                m.running_mean.copy_(mean), m.running_var.copy_(var), m.num_batches_tracked.copy_(count)
            self.shadow.eval()
            raise
        for m, (momentum, mean, var, count) in zip(norms, saved, strict=True):
            m.momentum = momentum
            if m.num_batches_tracked.item() == 0:  # not on any pass's path
                m.running_mean.copy_(mean), m.running_var.copy_(var), m.num_batches_tracked.copy_(count)
        self.shadow.eval()
