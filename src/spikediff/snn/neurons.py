"""Multi-step spiking neurons that hold no state between calls (docs/architecture.md, Rules).

Each neuron takes a whole sequence ``x_seq [T, B, ...]``, runs the T spiking steps inside one
forward and returns the spike sequence. The membrane starts at ``v_reset`` (hard reset) or 0 (soft
reset) on every call, so nothing leaks between batches — the reference SDDPM code's forgotten
``reset_net`` cannot happen here — and DDP, checkpointing and ``torch.compile`` see a plain function.
"""

from __future__ import annotations

import torch
from torch import nn

from spikediff.config import NeuronConfig
from spikediff.snn.surrogate import spike


def _fire_and_reset(v: torch.Tensor, p: NeuronConfig, v_threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Emit spikes where ``v >= v_threshold`` and reset those membranes; returns (spike, new v)."""
    s = spike(v - v_threshold, p.surrogate, p.alpha)
    s_reset = s.detach() if p.detach_reset else s
    if p.soft_reset:
        v = v - s_reset * v_threshold
    else:
        v = (1.0 - s_reset) * v + s_reset * p.v_reset
    return s, v


def if_sequence(x_seq: torch.Tensor, p: NeuronConfig, v_threshold: float | None = None) -> torch.Tensor:
    """Integrate-and-fire over ``x_seq [T, ...]``: ``v <- v + x_t``, fire, reset."""
    vth = p.v_threshold if v_threshold is None else v_threshold
    v = torch.full_like(x_seq[0], 0.0 if p.soft_reset else p.v_reset)
    out = []
    for x in x_seq:
        s, v = _fire_and_reset(v + x, p, vth)
        out.append(s)
    return torch.stack(out)


def lif_sequence(x_seq: torch.Tensor, p: NeuronConfig, v_threshold: float | None = None) -> torch.Tensor:
    """Leaky integrate-and-fire over ``x_seq [T, ...]`` with time constant ``tau``.

    ``decay_input=True``: ``v <- v + (x - (v - v_reset)) / tau``; otherwise
    ``v <- v - (v - v_reset) / tau + x`` (SpikingJelly's two forms).
    """
    vth = p.v_threshold if v_threshold is None else v_threshold
    v_rest = 0.0 if p.soft_reset else p.v_reset
    v = torch.full_like(x_seq[0], v_rest)
    out = []
    for x in x_seq:
        if p.decay_input:
            v = v + (x - (v - v_rest)) / p.tau
        else:
            v = v - (v - v_rest) / p.tau + x
        s, v = _fire_and_reset(v, p, vth)
        out.append(s)
    return torch.stack(out)


class Neuron(nn.Module):
    """What every spiking neuron offers the rest of the library: a ``v_threshold`` that can be read
    and set (threshold guidance scales it at sampling time) and ``[T, B, ...]`` spikes out."""

    v_threshold: float


class ClipThresholdNeuron(Neuron):
    """A converted network's neuron: its threshold is its quantiser's clip, a buffer ``alpha`` saved with
    the weights (so the checkpoint carries every layer's threshold), read and scaled as ``v_threshold``."""

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("alpha", torch.tensor(float(alpha)))

    @property
    def v_threshold(self) -> float:
        return float(self.alpha)

    @v_threshold.setter
    def v_threshold(self, value: float) -> None:
        self.alpha.fill_(value)


class SpikingNeuron(Neuron):
    """Base of the trained neurons (IF, LIF): holds the parameters and a plain, scalable
    ``v_threshold``; subclasses set ``dynamics``, the sequence function they run."""

    dynamics: staticmethod

    def __init__(self, params: NeuronConfig | None = None) -> None:
        super().__init__()
        self.params = params or NeuronConfig()
        self.v_threshold = float(self.params.v_threshold)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        # Membranes integrate in fp32 even under bf16 autocast: a bf16 membrane (8-bit mantissa)
        # would flip spikes near the threshold; the spikes themselves are exact in any dtype.
        if x_seq.dtype in (torch.float16, torch.bfloat16):
            return self.dynamics(x_seq.float(), self.params, self.v_threshold).to(x_seq.dtype)
        return self.dynamics(x_seq, self.params, self.v_threshold)

    def extra_repr(self) -> str:
        p = self.params
        reset = "soft" if p.soft_reset else f"hard(v_reset={p.v_reset})"
        return f"v_threshold={self.v_threshold}, reset={reset}, surrogate={p.surrogate}"


class IFNeuron(SpikingNeuron):
    """Integrate-and-fire (no leak), the SDDPM neuron."""

    dynamics = staticmethod(if_sequence)


class LIFNeuron(SpikingNeuron):
    """Leaky integrate-and-fire, the neuron of FSDDIM, Spiking-Diffusion and SDiT."""

    dynamics = staticmethod(lif_sequence)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, tau={self.params.tau}"


NEURONS: dict[str, type[SpikingNeuron]] = {"if": IFNeuron, "lif": LIFNeuron}


def make_neuron(config: NeuronConfig) -> SpikingNeuron:
    """Build the neuron module that ``config.kind`` names (``"if"`` or ``"lif"``)."""
    if config.kind not in NEURONS:
        raise ValueError(f"unknown neuron {config.kind!r}; expected one of {sorted(NEURONS)}")
    return NEURONS[config.kind](config)
