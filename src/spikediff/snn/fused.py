"""Fused multi-step IF/LIF neurons: one autograd node for the whole T loop, with a hand-written
backward through time.

The eager neurons in ``neurons.py`` build ~8 autograd nodes per spiking step and keep their
intermediates alive; this function saves only the pre-spike membrane ``h_t`` of each step and
replays the recurrence backwards, which is faster and lighter on memory, and gives the same numbers
(the tests compare both). It implements exactly the dynamics of ``neurons.py``:

    h_t = v_{t-1} + x_t                              (IF)
    h_t = v_{t-1} + (x_t - (v_{t-1} - v_rest)) / tau (LIF, decay_input)   or  v - (v - v_rest)/tau + x
    s_t = H(h_t - v_th)
    v_t = (1 - s_t) h_t + s_t v_reset  (hard)   or   h_t - s_t v_th  (soft)

Backward, with g = surrogate'(h_t - v_th) and reset gradients kept unless detached:
    dL/dh_t = dL/ds_t g + dL/dv_t dv_t/dh_t,  dv_t/dh_t = (1 - s_t) + (v_reset - h_t) g  (hard)
                                                       = 1 - v_th g                     (soft)
    dL/dx_t = dL/dh_t dh_t/dx_t,  dL/dv_{t-1} = dL/dh_t dh_t/dv_{t-1}
"""

from __future__ import annotations

import math

import torch

from spikediff.config import NeuronConfig
from spikediff.snn.surrogate import DEFAULT_ALPHA


def _surrogate_grad(u: torch.Tensor, surrogate: str, alpha: float) -> torch.Tensor:
    if surrogate == "atan":
        return alpha / 2 / (1 + (math.pi / 2 * alpha * u).square())
    s = torch.sigmoid(alpha * u)
    return alpha * s * (1 - s)


def _leak(p: NeuronConfig, kind: str) -> tuple[float, float, float]:
    """``h = a v + b x + c`` for this neuron: returns (a, b, c)."""
    v_rest = 0.0 if p.soft_reset else p.v_reset
    if kind == "if":
        return 1.0, 1.0, 0.0
    k = 1.0 / p.tau
    return (1.0 - k, k, k * v_rest) if p.decay_input else (1.0 - k, 1.0, k * v_rest)


class _FusedNeuron(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_seq: torch.Tensor, p: NeuronConfig, kind: str, v_th: float) -> torch.Tensor:
        a, b, c = _leak(p, kind)
        v = torch.full_like(x_seq[0], 0.0 if p.soft_reset else p.v_reset)
        spikes = torch.empty_like(x_seq)
        hs = torch.empty_like(x_seq) if ctx.needs_input_grad[0] else None
        for t in range(x_seq.shape[0]):
            h = v * a + x_seq[t] * b + c if kind != "if" else v + x_seq[t]
            s = (h >= v_th).to(x_seq.dtype)
            spikes[t] = s
            if hs is not None:
                hs[t] = h
            v = h - s * v_th if p.soft_reset else torch.where(s.bool(), p.v_reset, h)
        if hs is not None:
            ctx.save_for_backward(hs)
        ctx.p, ctx.kind, ctx.v_th = p, kind, v_th
        return spikes

    @staticmethod
    def backward(ctx, grad_spikes: torch.Tensor):
        (hs,) = ctx.saved_tensors
        p, v_th = ctx.p, ctx.v_th
        a, b, _ = _leak(p, ctx.kind)
        alpha = DEFAULT_ALPHA[p.surrogate] if p.alpha is None else p.alpha
        grad_x = torch.empty_like(hs)
        grad_v = torch.zeros_like(hs[0])
        for t in range(hs.shape[0] - 1, -1, -1):
            h = hs[t]
            g = _surrogate_grad(h - v_th, p.surrogate, alpha)
            s = (h >= v_th).to(h.dtype)
            if p.soft_reset:
                dv_dh = 1.0 if p.detach_reset else 1.0 - v_th * g
            else:
                dv_dh = (1.0 - s) if p.detach_reset else (1.0 - s) + (p.v_reset - h) * g
            grad_h = grad_spikes[t] * g + grad_v * dv_dh
            grad_x[t] = grad_h * b if b != 1.0 else grad_h
            grad_v = grad_h * a if a != 1.0 else grad_h
        return grad_x, None, None, None


def fused_sequence(x_seq: torch.Tensor, p: NeuronConfig, kind: str, v_threshold: float) -> torch.Tensor:
    """Spikes of neuron ``kind`` ("if" | "lif") over ``x_seq [T, ...]``, in one autograd node."""
    return _FusedNeuron.apply(x_seq, p, kind, float(v_threshold))
