"""The signed integrate-and-fire neuron of quantised ANN-to-SNN conversion (SDM, Cao et al. 2024; after
Fast-SNN): its spike count over T steps reproduces a b-bit quantised ReLU when T = 2^b - 1.

Why each rule: the membrane starts at half the threshold so that the count is the *rounded* (not the
floored) input, as the quantiser rounds; reset by subtraction keeps the residue, so no charge is lost;
and a neuron that has fired may send a negative spike (taking one back) when its membrane falls below
zero, which corrects early spikes caused by inputs that arrive unevenly over the steps. Spikes are -1,
0 or +1: the threshold is folded into the next layer's weights at conversion, so the next layer sees
spikes, as on neuromorphic hardware, and the energy counter can tell.
"""

from __future__ import annotations

import torch

from spikediff.snn.neurons import Neuron

# A membrane counts as below zero under this, as in the reference, so rounding noise of an exact zero
# does not trigger a negative spike.
NEGATIVE_SPIKE_MARGIN = 1e-3


@torch.no_grad()
def signed_if_sequence(x_seq: torch.Tensor, v_threshold: float) -> torch.Tensor:
    """Signed IF over ``x_seq [T, ...]``: ``v <- v + x_t`` from ``v = v_threshold / 2``; fire +1 and
    subtract the threshold where ``v >= v_threshold``; else, where ``v < 0`` and the running count is
    positive, fire -1 and add the threshold back."""
    v = torch.full_like(x_seq[0], 0.5 * v_threshold)
    count = torch.zeros_like(v)
    out = torch.empty_like(x_seq)
    for t, x in enumerate(x_seq):
        v = v + x
        pos = (v >= v_threshold).to(v.dtype)
        v = v - pos * v_threshold
        neg = ((v <= -NEGATIVE_SPIKE_MARGIN) & (count + pos > 0)).to(v.dtype)
        v = v + neg * v_threshold
        out[t] = pos - neg
        count = count + pos - neg
    return out


class SignedIFNeuron(Neuron):
    """Signed IF with a per-layer threshold (the quantiser's clip, kept in the checkpoint as ``alpha``).
    ``v_threshold`` is the scalable attribute threshold guidance uses.

    It takes the folded layout ``[T*B, ...]`` that the converted U-Net runs every layer in (the ANN
    skeleton, unchanged), and runs the T steps on its ``[T, B, ...]`` view.

    Its gradient is straight-through, for block-wise fine-tuning: each step's spike is treated as the
    clipped ReLU of its input in spike units, ``clamp(x_t, 0, alpha) / alpha``, whose average over T is
    what the spike count approximates.
    """

    def __init__(self, spike_steps: int, alpha: float = 1.0) -> None:
        super().__init__()
        self.spike_steps = spike_steps
        self.register_buffer("alpha", torch.tensor(float(alpha)))

    @property
    def v_threshold(self) -> float:
        return float(self.alpha)

    @v_threshold.setter
    def v_threshold(self, value: float) -> None:
        self.alpha.fill_(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_seq = x.float().view(self.spike_steps, x.shape[0] // self.spike_steps, *x.shape[1:])
        spikes = signed_if_sequence(x_seq, self.v_threshold)
        if torch.is_grad_enabled() and x.requires_grad:
            rate = x_seq.clamp(0.0, self.v_threshold) / self.v_threshold
            spikes = spikes + (rate - rate.detach())
        return spikes.view_as(x).to(x.dtype)

    def extra_repr(self) -> str:
        return f"T={self.spike_steps}, v_threshold={self.v_threshold:.4g}, signed, soft reset, v0=threshold/2"
