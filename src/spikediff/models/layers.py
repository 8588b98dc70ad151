"""Pieces shared by the backbones: the DDPM time embedding, initialisers, the T <-> batch fold that
lets 2-D layers run on spike sequences, and the decayed-membrane readout."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def sinusoidal_table(num_steps: int, dim: int) -> torch.Tensor:
    """The DDPM sinusoidal table ``[num_steps, dim]``, sin and cos interleaved per frequency.

    The interleaving (not the concatenation of many other codebases) is the pytorch-ddpm layout
    that the SDDPM checkpoints were trained with.
    """
    if dim % 2:
        raise ValueError(f"time-embedding width must be even, got {dim}")
    freqs = torch.exp(-torch.arange(0, dim, 2, dtype=torch.float32) / dim * math.log(10000))
    angles = torch.arange(num_steps, dtype=torch.float32)[:, None] * freqs[None, :]
    return torch.stack([angles.sin(), angles.cos()], dim=-1).view(num_steps, dim)


class TimeEmbedding(nn.Module):
    """Diffusion step ``t [B]`` -> ``temb [B, 4ch]``: frozen table, Linear, Swish (or ``act``), Linear.

    The table is a frozen ``nn.Parameter`` (as ``nn.Embedding.from_pretrained`` makes it) so that
    parameter counts include it, as the papers' 63.61 M / 64.47 M do.
    """

    def __init__(self, num_steps: int, ch: int, dim: int, act: nn.Module | None = None) -> None:
        super().__init__()
        self.table = nn.Parameter(sinusoidal_table(num_steps, ch), requires_grad=False)
        self.linear1 = nn.Linear(ch, dim)
        self.act = act if act is not None else nn.SiLU()  # a module, so that ANN-to-SNN can swap it
        self.linear2 = nn.Linear(dim, dim)
        xavier_(self.linear1)
        xavier_(self.linear2)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.act(self.linear1(F.embedding(t, self.table))))


def xavier_(layer: nn.Conv2d | nn.Conv3d | nn.Linear, gain: float = 1.0) -> None:
    """Xavier-uniform weight, zero bias: the DDPM / SDDPM initialisation."""
    nn.init.xavier_uniform_(layer.weight, gain=gain)
    nn.init.zeros_(layer.bias)


def fold(x_seq: torch.Tensor) -> torch.Tensor:
    """``[T, B, ...] -> [T*B, ...]``: run a 2-D layer on all spiking steps at once.

    BatchNorm applied to the folded tensor shares its statistics over T and B, as in SDDPM.
    """
    return x_seq.flatten(0, 1)


def unfold(x: torch.Tensor, spike_steps: int) -> torch.Tensor:
    """``[T*B, ...] -> [T, B, ...]``, the inverse of :func:`fold`."""
    return x.view(spike_steps, x.shape[0] // spike_steps, *x.shape[1:])


def over_steps(x_seq: torch.Tensor, *layers: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Run 2-D ``layers`` in order on every spiking step of ``x_seq [T, B, ...]`` at once (fold, run, unfold)."""
    h = fold(x_seq)
    for layer in layers:
        h = layer(h)
    return unfold(h, x_seq.shape[0])


def decayed_sum(h_seq: torch.Tensor, decay: float) -> torch.Tensor:
    """``sum_t decay^(T-1-t) h_t`` over ``h_seq [T, ...]``: the membrane of a non-firing leaky neuron
    read after the last step (SDDPM's membrane output layer, Spiking-Diffusion's readouts)."""
    T = h_seq.shape[0]
    exponents = torch.arange(T - 1, -1, -1, device=h_seq.device, dtype=h_seq.dtype)
    weights = torch.pow(torch.tensor(decay, dtype=h_seq.dtype, device=h_seq.device), exponents)
    return (h_seq * weights.view(T, *([1] * (h_seq.dim() - 1)))).sum(0)


class ClassEmbedding(nn.Module):
    """Class label ``y [B]`` -> a vector added to the step embedding.

    Row ``num_classes`` is the learned "no class" that label dropout trains and classifier-free
    guidance asks for; ``y=None`` means it for the whole batch (so energy counts and other
    label-free callers run a conditional model unconditionally). Initialised N(0, 0.02) as DiT's.
    """

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.null_class = num_classes
        self.table = nn.Embedding(num_classes + 1, dim)
        nn.init.normal_(self.table.weight, std=0.02)

    def forward(self, y: torch.Tensor | None, batch: int) -> torch.Tensor:
        if y is None:
            y = torch.full((batch,), self.null_class, dtype=torch.long, device=self.table.weight.device)
        elif not (self.training or torch.compiler.is_compiling()) and bool(((y < 0) | (y > self.null_class)).any()):
            # checked outside training only: the trainer checks the dataset's labels once, and a check per
            # step would synchronise a GPU
            raise ValueError(f"class labels must lie in 0..{self.null_class - 1} ({self.null_class} = no class), "
                             f"got {y.tolist()}")
        return self.table(y)


def class_embedding(num_classes: int, dim: int) -> ClassEmbedding | None:
    """The class embedding of a backbone with ``num_classes`` classes; None if unconditional (0)."""
    return ClassEmbedding(num_classes, dim) if num_classes else None


def add_class(temb: torch.Tensor, embedding: ClassEmbedding | None, y: torch.Tensor | None) -> torch.Tensor:
    """``temb`` plus the class embedding of ``y``; an unconditional model refuses labels."""
    if embedding is None:
        if y is not None:
            raise ValueError("this model is unconditional (model.num_classes = 0): it takes no class labels")
        return temb
    return temb + embedding(y, temb.shape[0])
