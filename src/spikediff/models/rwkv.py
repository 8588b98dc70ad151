"""RWKV-4 time-mixing and channel-mixing: SDiT's replacements for self-attention and the MLP.

The WKV operator mixes a token sequence ``k, v [B, L, C]`` causally, per channel, with a learned
decay ``w > 0`` and a bonus ``u`` for the current token:

    y_t = (a_{t-1} + e^{u + k_t} v_t) / (b_{t-1} + e^{u + k_t})
    a_t = e^{-w} a_{t-1} + e^{k_t} v_t,   b_t = e^{-w} b_{t-1} + e^{k_t},   a_{-1} = b_{-1} = 0

that is, ``y_t = sum_i D[t, i] e^{k_i} v_i / sum_i D[t, i] e^{k_i}`` with, per channel, the decay
matrix ``D[t, i] = e^{-(t-1-i) w}`` for ``i < t``, ``e^u`` on the diagonal and 0 above it (the
two-way scan's backward direction is ``D`` transposed). The reference SDiT runs the recurrence with
a CUDA kernel only. Here both sums of every token are one batched matrix product per call,
``[C, L, L] @ [C, L, 2B]`` (the two directions stacked as rows), in float32 (float64 for float64
inputs) with ``e^k`` divided by its largest value over the sequence, per sample and channel (the
ratio is unchanged): at SDiT's sequence lengths (~100 tokens at patch 4) a few dozen operations
instead of a Python loop over the tokens. When a denominator would fall below float32's smallest
normal number (keys spread by more than ~80 within a sequence and channel), the call falls back to
the recurrence itself, run as linear scans in float64 with its backward pass written out (``_WKV``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def _scan(decay: torch.Tensor, inputs: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """Exclusive linear scan over dim 0: ``s_t = sum_{i<t} decay^(t-1-i) inputs_i`` (``s_0 = 0``), or from
    the end (``reverse``): ``r_t = sum_{s>t} decay^(s-1-t) inputs_s``.

    One fused multiply-add per token, written into the output in place: the scan is a Python loop over
    the tokens whose every operation costs a dispatch, and a multiply, an add, a final ``stack`` and (in
    reverse) two flips made the WKV about half of an ``fmnist-sdit-cpu-small`` training step.
    """
    out = torch.empty_like(inputs)
    order = range(len(inputs) - 1, -1, -1) if reverse else range(len(inputs))
    out[order[0]].zero_()
    for before, into in zip(order[:-1], order[1:], strict=True):
        torch.addcmul(inputs[before], decay, out[before], out=out[into])
    return out


class _WKV(torch.autograd.Function):
    """``wkv(w [C], u [C], k [L, B, C], v [L, B, C])`` as the recurrence, sequence-first; computed in
    float64 (the exponentials then cannot overflow for any ``k`` below ~700), with the inputs kept for
    the backward pass in their own dtype. The fallback of :func:`wkv` when float32 would underflow."""

    @staticmethod
    def _forward_terms(w, u, k, v):
        w, u, k, v = w.double(), u.double(), k.double(), v.double()
        decay = torch.exp(-w)
        ek, euk = torch.exp(k), torch.exp(u + k)
        prev = _scan(decay, torch.stack([ek * v, ek], dim=1))  # [L, 2, B, C]: a_{t-1}, b_{t-1}
        num, den = prev[:, 0] + euk * v, prev[:, 1] + euk
        return decay, ek, euk, prev, den, num / den

    @staticmethod
    def forward(ctx, w, u, k, v):
        ctx.save_for_backward(w, u, k, v)
        return _WKV._forward_terms(w, u, k, v)[-1].to(torch.promote_types(k.dtype, v.dtype))

    @staticmethod
    def backward(ctx, grad_y):
        w, u, k, v = ctx.saved_tensors
        decay, ek, euk, prev, den, y = _WKV._forward_terms(w, u, k, v)
        v64 = v.double()
        g_num = grad_y.double() / den  # dL/d(numerator_t)
        g_den = -g_num * y  # dL/d(denominator_t)
        later = _scan(decay, torch.stack([g_num, g_den], dim=1), reverse=True)  # what k_t, v_t feed into steps > t
        grad_v = g_num * euk + ek * later[:, 0]
        here = euk * (g_num * v64 + g_den)
        grad_k = here + ek * (v64 * later[:, 0] + later[:, 1])
        grad_u = here.sum(dim=(0, 1))
        # d a_{t-1} / dw = -sum_{i<t} (t-1-i) e^{-(t-1-i) w} e^{k_i} v_i: another exclusive scan
        weighted = _scan(decay, decay * prev)
        grad_w = -(g_num * weighted[:, 0] + g_den * weighted[:, 1]).sum(dim=(0, 1))
        return grad_w.to(w.dtype), grad_u.to(u.dtype), grad_k.to(k.dtype), grad_v.to(v.dtype)


def _wkv_as_scan(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The one-way WKV of ``k, v [B, L, C]`` as the float64 recurrence (:class:`_WKV`, sequence-first)."""
    return _WKV.apply(w, u, k.transpose(0, 1), v.transpose(0, 1)).transpose(0, 1)


def _decay_matrices(w: torch.Tensor, u: torch.Tensor, length: int, two_way: bool) -> torch.Tensor:
    """``[C, L, L]``: the causal decay matrix ``D`` of each channel (see the module docstring), with
    ``D`` transposed (the scan from the last token back) stacked under it when ``two_way``:
    ``[C, 2L, L]``. The masked entries are multiplied by 0, not given an infinite exponent, so that
    their gradient with respect to ``w`` is 0, not NaN; so are the entries that would be subnormal
    numbers, which x86 CPUs multiply many times slower (~7% of an ``fmnist-sdit-cpu-small`` step here)
    and which lie below the precision of any sum the fallback does not catch."""
    t = torch.arange(length, device=w.device)
    gap = (t[:, None] - t[None, :] - 1).to(w.dtype)  # t - 1 - i
    exponent = -w[:, None, None] * gap.clamp_min(0)
    kept = ((gap >= 0) & (exponent > math.log(torch.finfo(w.dtype).tiny))).to(w.dtype)
    causal = torch.exp(exponent) * kept + torch.diag_embed(torch.exp(u)[:, None].expand(-1, length))
    return torch.cat([causal, causal.transpose(1, 2)], dim=1) if two_way else causal


@torch.compiler.disable
def _underflows(den: torch.Tensor) -> bool:
    """Whether a denominator fell below the smallest normal number of its dtype. Outside any compiled
    graph: the answer decides which Python path runs, so a compiled model breaks its graph here, as it
    would at the comparison itself, but without torch's warning about reading a tensor's value."""
    return bool((den < torch.finfo(den.dtype).tiny).any())


def _wkv_as_matrix_product(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                           two_way: bool) -> torch.Tensor | None:
    """The WKV of ``k, v [B, L, C]`` as one batched matrix product (averaged over both directions when
    ``two_way``), or None when a denominator underflows and the recurrence must be used instead.

    Both operands are contiguous ``[C, rows, L] @ [C, L, 2B]``: given permuted views, ``bmm`` copied
    them slice by slice, which took as long as the product itself."""
    dtype = torch.promote_types(torch.promote_types(k.dtype, v.dtype), torch.float32)
    batch, length = k.shape[:2]
    with torch.autocast(k.device.type, enabled=False):  # autocast would run the product in bf16 (~3% off)
        k, v = k.to(dtype), v.to(dtype)
        ek = torch.exp(k - k.detach().amax(dim=1, keepdim=True))
        stacked = torch.cat([ek * v, ek]).permute(2, 1, 0).contiguous()  # [C, L, 2B]
        sums = _decay_matrices(w.to(dtype), u.to(dtype), length, two_way) @ stacked  # [C, (2)L, 2B]
        num, den = sums.split(batch, dim=2)
        if _underflows(den):
            return None
        mixed = num / den
        if two_way:
            mixed = mixed.view(mixed.shape[0], 2, length, batch).mean(1)
        return mixed.permute(2, 1, 0)


def wkv(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor, two_way: bool = False) -> torch.Tensor:
    """The WKV operator on ``k, v [B, L, C]`` with decay ``w [C] > 0`` and bonus ``u [C]``; with
    ``two_way``, the mean of the scan from the first token and the scan from the last."""
    out_dtype = torch.promote_types(k.dtype, v.dtype)
    product = _wkv_as_matrix_product(w, u, k, v, two_way)
    if product is not None:
        return product.to(out_dtype)
    mixed = _wkv_as_scan(w, u, k, v)
    if two_way:
        mixed = (mixed + _wkv_as_scan(w, u, k.flip(1), v.flip(1)).flip(1)) / 2
    return mixed


def _token_shift(x: torch.Tensor) -> torch.Tensor:
    """Each token's predecessor (zeros for the first): RWKV's ``time_shift``."""
    return F.pad(x, (0, 0, 1, -1))


# [B, rows, cols, C] pads that bring each cell its left, right, upper and lower neighbour (zeros at the border)
_NEIGHBOURS = ((0, 0, 1, -1), (0, 0, -1, 1), (0, 0, 0, 0, 1, -1), (0, 0, 0, 0, -1, 1))


def grid_shift(x: torch.Tensor, grid: int, start: int = 1) -> torch.Tensor:
    """The token shift of an image's patch tokens taken from their 2D neighbours (Vision-RWKV's quad-
    directional shift): tokens ``start .. start + grid^2`` are a ``grid x grid`` raster, and each one's
    channels, in four quarters, come from its left, right, upper and lower neighbour. The tokens around
    them (SDiT's condition token in front, its reconstruction tokens after) keep :func:`_token_shift`.

    Why it was tried: in raster order a patch's predecessor is its left neighbour, or the last patch of
    the row above; the patch below it is ``grid`` tokens away, so the 1D shift shows a patch nothing of
    the patches above and below it. Measured on ``fmnist-sdit-cpu-small`` (benchmarks/RESULTS.md), it
    made the held-out error worse, 2.7x at the highest noise: a two-way WKV already lets every token
    see every other, and the shift took a quarter of the channels from each neighbour instead.
    """
    batch, _, dim = x.shape
    end = start + grid * grid
    cells = x[:, start:end].reshape(batch, grid, grid, dim)
    quarter = dim // 4
    parts = cells.split([quarter, quarter, quarter, dim - 3 * quarter], dim=-1)
    from_neighbours = torch.cat([F.pad(part, pad) for part, pad in zip(parts, _NEIGHBOURS, strict=True)], dim=-1)
    flat = _token_shift(x)
    return torch.cat([flat[:, :start], from_neighbours.reshape(batch, grid * grid, dim), flat[:, end:]], dim=1)


def _mix(x: torch.Tensor, previous: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """Per-channel interpolation between a token and its predecessor (promotes bf16 under autocast)."""
    return x * ratio + previous * (1 - ratio)


def _channel_ramp(dim: int) -> torch.Tensor:
    return torch.arange(dim, dtype=torch.float32) / dim


class TimeMix(nn.Module):
    """RWKV-4 time-mixing: ``Wo(sigmoid(r) * wkv(k, v))`` over token-shift-mixed inputs.

    The initial decays, bonuses and mixing ratios are RWKV-4's layer-dependent ones, as the reference
    keeps them (its linear layers are then re-initialised Xavier-uniform by the model).
    """

    def __init__(self, dim: int, layer_id: int, num_layers: int, two_way: bool = False,
                 shift: Callable[[torch.Tensor], torch.Tensor] = _token_shift) -> None:
        super().__init__()
        self.two_way = two_way  # also scan from the last token back, and average: every token sees every other
        self.shift = shift  # which tokens each token is interpolated with (its predecessor, or grid_shift's)
        early = layer_id / max(num_layers - 1, 1)  # 0 at the first layer, 1 at the last
        late = 1.0 - layer_id / num_layers  # 1 at the first layer, towards 0 at the last
        h = torch.arange(dim, dtype=torch.float32) / max(dim - 1, 1)
        self.time_decay = nn.Parameter(-5 + 8 * h ** (0.7 + 1.3 * early))
        zigzag = ((torch.arange(dim) + 1) % 3 - 1).float() * 0.5
        self.time_first = nn.Parameter(torch.full((dim,), math.log(0.3)) + zigzag)
        ramp = _channel_ramp(dim)
        self.time_mix_k = nn.Parameter(ramp**late)
        self.time_mix_v = nn.Parameter(ramp**late + 0.3 * early)
        self.time_mix_r = nn.Parameter(ramp ** (0.5 * late))
        self.key = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(dim, dim, bias=False)
        self.receptance = nn.Linear(dim, dim, bias=False)
        self.output = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xx = self.shift(x)
        k = self.key(_mix(x, xx, self.time_mix_k))
        v = self.value(_mix(x, xx, self.time_mix_v))
        r = self.receptance(_mix(x, xx, self.time_mix_r))
        decay = torch.exp(self.time_decay)
        mixed = wkv(decay, self.time_first, k, v, two_way=self.two_way)
        return self.output(torch.sigmoid(r) * mixed.to(r.dtype))


class ChannelMix(nn.Module):
    """RWKV-4 channel-mixing: ``sigmoid(Wr x_r) * Wv(relu(Wk x_k)^2)``, a 4x-wide squared-ReLU MLP."""

    def __init__(self, dim: int, layer_id: int, num_layers: int,
                 shift: Callable[[torch.Tensor], torch.Tensor] = _token_shift) -> None:
        super().__init__()
        self.shift = shift
        late = 1.0 - layer_id / num_layers
        ramp = _channel_ramp(dim)
        self.time_mix_k = nn.Parameter(ramp**late)
        self.time_mix_r = nn.Parameter(ramp**late)
        self.key = nn.Linear(dim, 4 * dim, bias=False)
        self.receptance = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(4 * dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xx = self.shift(x)
        k = torch.relu(self.key(_mix(x, xx, self.time_mix_k))).square()
        return torch.sigmoid(self.receptance(_mix(x, xx, self.time_mix_r))) * self.value(k)
