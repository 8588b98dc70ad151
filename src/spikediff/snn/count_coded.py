"""Integrate-then-fire neurons: a converted SNN whose spike counts are its quantised ANN's levels exactly.

The signed IF neuron of SDM's conversion (``signed_if.py``) fires while its input is still arriving,
so a neuron whose input comes late (a sum of spike-driven layers' outputs) misses spikes it cannot
recover: in a converted U-Net that is most of the conversion's error (``benchmarks/conversion_error.py``
measures it per layer). The neurons here integrate the whole spike train their layer receives over the
T steps first, then send the quantiser's level of it: the count (or its binary digits) is a function
of the summed input only, so the SNN computes its quantised ANN exactly, at one evaluation's latency
of T steps per layer (a pipeline: layer l fires while layer l+1 integrates).

Two codes for the level ``c`` (``-L..L``, or ``0..L`` for a ReLU quantiser, ``L = 2^b - 1``):

- ``count``: T = L steps, ``|c|`` spikes of sign ``c`` on the first ``|c|`` steps (rate coding: a
  spike is worth one level, as in the signed IF's code);
- ``phase``: T = b steps, the binary digits of ``|c|``, most significant first, each a spike of sign
  ``c`` (phase coding, Kim et al., "Deep neural networks with weighted spikes", Neurocomputing 2018).
  The receiving neuron doubles its membrane before each step's input (``v <- 2 v + x_t``), so a
  spike on step t is worth ``2^(b-1-t)`` levels: a level costs as many spikes as it has set bits.

Either way a layer fed by these spikes does one accumulate per spike and fan-out (the energy report's
ACs), and everything between two neurons (convolutions, frozen BatchNorm, sums, upsampling) is affine
with the same map on every step. So the neuron's weighted time-mean input ``sum_t w_t x_t / sum_t w_t``
is the quantised ANN's pre-activation, and the whole T-step simulation equals one pass of the network
on the levels (``ConvertedSNN``'s shortcut): principle 12 of docs/architecture.md applied to a network
in which time changes nothing once the counts are known.
"""

from __future__ import annotations

import torch

from spikediff.config import SPIKE_CODINGS
from spikediff.snn.neurons import ClipThresholdNeuron

INTEGRATE_THEN_FIRE = ("count", "phase")  # the codes of this module; SPIKE_CODINGS adds SDM's signed IF


def quantised_level(ratio: torch.Tensor, levels: int, low: float = 0.0) -> torch.Tensor:
    """``round(clamp(ratio, low, 1) * levels)`` in ``ratio``'s own storage: the quantiser's level of an
    input in units of its clip (``low`` -1 for the symmetric quantiser)."""
    return ratio.clamp_(low, 1.0).mul_(levels).round_()


def coding_steps(coding: str, levels: int) -> int:
    """T of a code for ``levels`` (= 2^b - 1) levels: L steps for ``count``, b for ``phase``."""
    if coding == "phase":
        return levels.bit_length()
    if coding in SPIKE_CODINGS:
        return levels
    raise ValueError(f"unknown spike coding {coding!r}; expected one of {SPIKE_CODINGS}")


def step_weights(coding: str, levels: int) -> torch.Tensor:
    """What a spike on each step is worth to the receiving neuron, in levels: 1 for rate codes, ``2^(b-1-t)``
    for ``phase``. They sum to ``levels``."""
    steps = coding_steps(coding, levels)
    if coding == "phase":
        return 2.0 ** torch.arange(steps - 1, -1, -1, dtype=torch.float32)
    return torch.ones(steps)


def encode(level: torch.Tensor, coding: str, levels: int) -> torch.Tensor:
    """The spike train ``[T, ...]`` (values -1, 0, 1 in ``level``'s dtype) that sends the whole-number
    ``level`` in ``coding``."""
    magnitude, sign = level.abs(), level.sign()
    steps = coding_steps(coding, levels)
    shape = (steps,) + (1,) * level.dim()
    t = torch.arange(steps, device=level.device, dtype=level.dtype).view(shape)
    if coding == "phase":  # the digit of weight 2^(b-1-t)
        digit = torch.floor(magnitude / 2.0 ** (steps - 1 - t)).remainder_(2)
        return digit * sign
    return (t < magnitude).to(level.dtype) * sign


def weighted_mean(x_seq: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum_t w_t x_t / sum_t w_t`` over the leading (time) axis, in at least fp32 (element-wise, so that
    no autocast lowers it to bf16): what a membrane that integrates ``v <- (w_{t-1} / w_t) v + x_t``
    holds after the last step, divided by the levels."""
    dtype = torch.promote_types(x_seq.dtype, torch.float32)
    w = weights.to(device=x_seq.device, dtype=dtype).view(-1, *[1] * (x_seq.dim() - 1))
    return (x_seq.to(dtype) * w).sum(0) / w.sum()


class CountCodedNeuron(ClipThresholdNeuron):
    """An integrate-then-fire neuron with a per-layer threshold ``alpha`` (the quantiser's clip, folded
    into the next layer's weight at conversion, as for the signed IF neuron).

    Folded layout ``[T*B, ...]`` in and out, as every layer of the converted U-Net. With ``on_levels``
    set (the network's shortcut) it takes one ``[B, ...]`` tensor, the time-mean of what its input would
    have been, and returns the mean of the spikes it would have sent: ``level / L``.
    """

    on_levels = False  # set while the network runs its one-pass shortcut

    def __init__(self, levels: int, coding: str = "count", symmetric: bool = False, alpha: float = 1.0) -> None:
        super().__init__(alpha)
        if coding not in INTEGRATE_THEN_FIRE:
            raise ValueError(f"an integrate-then-fire neuron codes 'count' or 'phase', not {coding!r}")
        self.levels = levels
        self.coding = coding
        self.symmetric = symmetric
        self.spike_steps = coding_steps(coding, levels)
        self.register_buffer("weights", step_weights(coding, levels), persistent=False)

    def level(self, mean_input: torch.Tensor) -> torch.Tensor:
        """The whole-number level (a float tensor) of a time-mean input."""
        ratio = mean_input.to(torch.promote_types(mean_input.dtype, torch.float32)) / self.alpha
        return quantised_level(ratio, self.levels, -1.0 if self.symmetric else 0.0)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.on_levels:
            return (self.level(x) / self.levels).to(x.dtype)
        T = self.spike_steps
        x_seq = x.view(T, x.shape[0] // T, *x.shape[1:])
        level = self.level(weighted_mean(x_seq, self.weights))
        return encode(level, self.coding, self.levels).to(x.dtype).view_as(x)

    def extra_repr(self) -> str:
        kind = "symmetric" if self.symmetric else "ReLU"
        return (f"{self.coding} code, T={self.spike_steps}, levels={self.levels}, "
                f"v_threshold={self.v_threshold:.4g}, {kind}")
