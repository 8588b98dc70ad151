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

from spikediff.snn.neurons import ClipThresholdNeuron

# A membrane counts as below zero under this, as in the reference, so rounding noise of an exact zero
# does not trigger a negative spike.
NEGATIVE_SPIKE_MARGIN = 1e-3


@torch.compiler.disable
@torch.no_grad()
def signed_if_sequence(x_seq: torch.Tensor, v_threshold: float | torch.Tensor, symmetric: bool = False,
                       max_count: int | None = None) -> torch.Tensor:
    """Signed IF over ``x_seq [T, ...]``: ``v <- v + x_t`` from ``v = v_threshold / 2``; fire +1 and
    subtract the threshold where ``v >= v_threshold``; else, where ``v < 0`` and the running count is
    positive, fire -1 and add the threshold back. Spikes come in ``x_seq``'s dtype (-1, 0 and 1 are
    exact in bf16), the membrane is kept in at least fp32.

    ``symmetric`` drops the condition on the count (and fires -1 from the first step): the count then
    rounds a negative input as a positive one, ``round(x / v_threshold * T)`` within ``[-T, T]`` for a
    constant input, the symmetric quantiser's levels.

    ``max_count`` (L < T) caps the count at L (at -L too, symmetric): a +1 that would pass it is not
    fired, nor a -1 below -L. With the threshold scaled by T / L, a constant input then counts the
    L-level quantiser's ``round(x / alpha * L)``, and a neuron at the top level has T - L steps in which
    its input may fall short (arrive late) without losing a level.

    Written for speed, since a converted SNN samples mostly in here (its convolutions took under a
    third of a forward pass with the straightforward version): every update is in place, the input is
    cast inside the addition rather than copied, and the -1 test reads the count before this step's
    +1, which cannot matter: a neuron that has just fired holds ``v >= 0``. The arithmetic on ``v`` is
    the rule's own, so the spikes are the same bits.

    Always run eagerly, also inside a compiled network: traced by torch.compile (torch 2.14) inside a
    converted U-Net whose layers have different thresholds, it fired with the wrong thresholds (a tiny
    network: relative output error 1.5; a trained 2-bit ``fmnist-qann-small`` converted at T=3: 7-12%, and
    FID 612 on 2,000 samples, 261 with the neuron eager; ``tests/test_ann2snn.py``). Eager inside the
    compiled graph, the compiled network matches the eager one. A tensor threshold is read here, in
    eager code, so that a compiled caller does not break its graph on ``Tensor.item()`` too.
    """
    v_threshold = float(v_threshold)
    v, count = _start(x_seq[0], v_threshold, symmetric, max_count)
    out = torch.empty_like(x_seq)
    for t in range(len(x_seq)):
        if t:
            v.add_(x_seq[t])
        _fire(v, count, out[t], t == 0, v_threshold, symmetric, max_count)
    return out


def _start(x: torch.Tensor, v_threshold: float, symmetric: bool, max_count: int | None
           ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The membrane after the first step's input (from half the threshold, in at least fp32) and the
    running count (None where the rule needs none: an uncapped symmetric neuron)."""
    v = x.to(torch.promote_types(x.dtype, torch.float32)) + 0.5 * v_threshold
    return v, None if symmetric and max_count is None else torch.zeros_like(v)


def _fire(v: torch.Tensor, count: torch.Tensor | None, out: torch.Tensor, first: bool, v_threshold: float,
          symmetric: bool, max_count: int | None = None) -> None:
    """One step of the rule on a membrane ``v`` that has integrated this step's input: spikes into ``out``,
    ``v`` and the running ``count`` (None for an uncapped symmetric neuron, which needs none) updated in
    place.

    Every mask is written as 0.0 / 1.0 in a float tensor by the comparison itself: a boolean mask would
    be converted to float again by each in-place update that reads it, and those conversions took more
    time than the convolutions of a converted U-Net sampled step by step (``benchmarks/snn_stepwise.py``).
    Adding or subtracting a 0/1 multiple of the threshold is exact, so the spikes and membranes are the
    same bits as with boolean masks. A condition on the whole-number count is folded into a minimum:
    ``minimum(below_zero, count)`` is 1 exactly where the membrane is below zero and the count positive,
    ``minimum(above, max_count - count)`` where it is above threshold and the count under the cap."""
    torch.ge(v, v_threshold, out=out)
    if max_count is not None:
        torch.minimum(out, max_count - count, out=out)
    v.sub_(out, alpha=v_threshold)
    if symmetric or not first:  # the asymmetric neuron has fired nothing before the first step: no -1 there
        neg = torch.le(v, -NEGATIVE_SPIKE_MARGIN, out=torch.empty_like(v))
        if not symmetric:
            torch.minimum(neg, count, out=neg)
        elif max_count is not None:
            torch.minimum(neg, count + max_count, out=neg)
        v.add_(neg, alpha=v_threshold)
        out.sub_(neg)
    if count is not None:
        count.add_(out)


@torch.compiler.disable
@torch.no_grad()
def signed_if_step(x: torch.Tensor, state: dict, v_threshold: float | torch.Tensor, symmetric: bool = False,
                   max_count: int | None = None) -> torch.Tensor:
    """One spiking step of :func:`signed_if_sequence` for a network simulated step by step: ``state``
    (empty before the first step) carries the membrane and count between calls. The same arithmetic in
    the same order, so T calls give the sequence's spikes bit for bit."""
    v_threshold = float(v_threshold)
    first = "v" not in state
    if first:
        state["v"], state["count"] = _start(x, v_threshold, symmetric, max_count)
    else:
        state["v"].add_(x)
    out = torch.empty_like(x)
    _fire(state["v"], state["count"], out, first, v_threshold, symmetric, max_count)
    return out


class SignedIFNeuron(ClipThresholdNeuron):
    """Signed IF with a per-layer threshold (the quantiser's clip, kept in the checkpoint as ``alpha``).
    ``v_threshold`` is the scalable attribute threshold guidance uses.

    It takes the folded layout ``[T*B, ...]`` that the converted U-Net runs every layer in (the ANN
    skeleton, unchanged), and runs the T steps on its ``[T, B, ...]`` view.

    Its gradient is straight-through, for block-wise fine-tuning: each step's spike is treated as the
    clipped ReLU of its input in spike units, ``clamp(x_t, 0, alpha) / alpha``, whose average over T is
    what the spike count approximates.
    """

    def __init__(self, spike_steps: int, alpha: float = 1.0, symmetric: bool = False,
                 max_count: int | None = None) -> None:
        super().__init__(alpha)
        if max_count is not None and not 1 <= max_count <= spike_steps:
            raise ValueError(f"max_count must be in [1, spike_steps={spike_steps}], got {max_count}")
        self.spike_steps = spike_steps
        self.symmetric = symmetric  # the symmetric quantiser's neuron (``signed_if_sequence``)
        self.max_count = None if max_count == spike_steps else max_count  # a cap at T caps nothing

    state: dict | None = None  # set (to {}) while a network runs step by step: one step per call, membrane kept

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.state is not None:
            return signed_if_step(x, self.state, self.alpha, self.symmetric, self.max_count)
        x_seq = x.view(self.spike_steps, x.shape[0] // self.spike_steps, *x.shape[1:])
        spikes = signed_if_sequence(x_seq, self.alpha, self.symmetric, self.max_count)
        if torch.is_grad_enabled() and x.requires_grad:
            top = self.v_threshold * (self.max_count or self.spike_steps) / self.spike_steps  # the capped rate's
            low = -top if self.symmetric else 0.0
            rate = x_seq.clamp(low, top) / self.v_threshold
            spikes = spikes + (rate - rate.detach())
        return spikes.view_as(x)

    def extra_repr(self) -> str:
        kind = "symmetric" if self.symmetric else "signed"
        cap = "" if self.max_count is None else f", count capped at {self.max_count}"
        return f"T={self.spike_steps}, v_threshold={self.v_threshold:.4g}, {kind}{cap}, soft reset, v0=threshold/2"
