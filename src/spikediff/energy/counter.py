"""Operation counting by observation (docs/architecture.md, Rules): forward hooks on every Conv/Linear layer
record its dense MACs and whether its input was spikes, and how many of them fired; hooks on every
spiking neuron record how often it fired.

Whether an input is "spikes" is measured, not declared: a layer whose input holds only 0 and 1 (or
-1, 0 and 1: the signed spikes of ANN-to-SNN conversion, an add or a subtract) on every call
receives spikes and costs accumulates (AC = firing rate x dense MACs, the field's
convention: an AC where a spike arrives); any other layer costs multiply-accumulates. The same code therefore measures
the Spiking U-Net, its ANN twin and any future backbone. An input that is exactly zero on every
observed call is indistinguishable from a silent spike train and is counted as one (0 ACs); only
untrained networks (BatchNorm at its initial statistics) produce such inputs.

Beside that convention (the ptflops / syops count papers use, zero-padding taps included), each layer
also gets the counts that the fair baselines of ``spikediff.energy.baselines`` need:
- NeuroBench's synaptic operations: the layer run with its nonzero weights set to 1 and no bias on
  the input's nonzero pattern (effective operations: zero inputs, zero weights and padding taps cost
  nothing) and on all ones (its ``Dense``: padding taps excluded, sparsity not exploited);
- the spiking steps it ran over (T, or 1 for a layer that runs once per evaluation);
- for spike inputs, the set bits of each input's spike count over T (:attr:`OpCounter.count_bits`):
  the work of the same network with ceil(log2(L+1))-bit activations computed bit-serially (L the
  largest count, T without slack steps or phase coding). A network
  whose spikes are worth different levels on different steps (phase coding: ``spike_step_weights``)
  has its counts weighted so.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from spikediff.snn.firing import FiringRecorder, NeuronCount

COUNTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear)


@dataclass
class LayerCount:
    """What one layer did over the observed forward passes (summed over calls and images)."""

    name: str
    kind: str
    dense_macs: int = 0
    input_elements: int = 0
    input_nonzeros: int = 0
    binary_input: bool = True
    negative_spikes: bool = False
    calls: int = 0
    weights: int = 0  # parameters of the weight tensor (read once per spiking step it runs)
    steps: float = 0.0  # spiking steps run, summed over calls (T for a layer on [T*B, ...], else 1)
    output_elements: int = 0
    neurobench_effective: float = 0.0
    neurobench_dense: float = 0.0

    @property
    def spike_input(self) -> bool:
        return self.calls > 0 and self.binary_input

    @property
    def firing_rate(self) -> float:
        """Share of input elements that are spikes (1), over all spiking steps; 1.0 for real inputs."""
        if not self.spike_input:
            return 1.0
        return self.input_nonzeros / max(self.input_elements, 1)

    @property
    def input_sparsity(self) -> float:
        """Share of input elements that are exactly zero (spike or not)."""
        return 1.0 - self.input_nonzeros / max(self.input_elements, 1)


def dense_macs(layer: nn.Module, x: torch.Tensor, output: torch.Tensor) -> int:
    """Multiply-accumulates of a dense evaluation: every output element costs one MAC per weight
    that feeds it (``in_channels / groups x kernel`` for convs, ``in_features`` for linears); a
    transposed conv scatters instead, one MAC per input element and weight it feeds
    (``out_channels / groups x kernel``: its weight is laid out ``[in, out / groups, kh, kw]``)."""
    per_row = layer.weight.numel() // layer.weight.shape[0]
    return (x if isinstance(layer, nn.ConvTranspose2d) else output).numel() * per_row


def neurobench_ops(layer: nn.Module, x: torch.Tensor, dense: bool = False) -> float:
    """Synaptic operations by NeuroBench's rule: the layer with every nonzero weight set to 1 and its
    bias to 0, summed over its outputs, on ``x != 0`` (effective); with ``dense``, every weight 1 on
    all-ones input. Padding taps read zeros, so neither count includes them (transposed convs too,
    which NeuroBench does not count)."""
    weight = torch.ones_like(layer.weight, dtype=torch.float32) if dense else (layer.weight != 0).float()
    pattern = torch.ones_like(x, dtype=torch.float32) if dense else (x != 0).float()
    if isinstance(layer, nn.Linear):
        out = F.linear(pattern, weight)
    elif isinstance(layer, nn.ConvTranspose2d):
        out = F.conv_transpose2d(pattern, weight, None, layer.stride, layer.padding, layer.output_padding,
                                 layer.groups, layer.dilation)
    else:  # the module's own call would run this hook again
        out = layer._conv_forward(pattern, weight, None)
    return float(out.sum(dtype=torch.float64))


def count_set_bits(levels: torch.Tensor) -> torch.Tensor:
    """Set bits of each non-negative integer in ``levels`` (a spike count: at most T <= 2^16)."""
    levels = levels.to(torch.int32)
    bits = torch.zeros_like(levels)
    while bool(levels.any()):
        bits += levels & 1
        levels = levels >> 1
    return bits


class OpCounter:
    """Context manager: ``with OpCounter(model, batch) as c: model(x, t)``; then ``c.layers``, ``c.neurons``.

    ``batch`` (the images of each call) tells how many spiking steps a layer runs over: its input's
    leading dimension over ``batch``; ``spike_steps`` (default: the model's own, 1 for an ANN) is the
    T of the ``[T*B, ...]`` layout in which spike counts are read.
    """

    def __init__(self, model: nn.Module, batch: int | None = None, spike_steps: int | None = None) -> None:
        self.model = model
        self.batch = batch
        self.spike_steps = spike_steps or getattr(model, "spike_steps", 1)
        self.layers: dict[str, LayerCount] = {}
        self._firing = FiringRecorder(model)
        self.neurons: dict[str, NeuronCount] = self._firing.neurons
        self._handles: list = []
        self._dense: dict[tuple, float] = {}  # NeuroBench's Dense depends only on the layer and the input's shape
        self._counts: dict[str, torch.Tensor] = {}  # spike counts per input element, summed over steps
        self._step_weights = getattr(model, "spike_step_weights", None)  # levels a spike is worth, per step
        self._fan_out: dict[str, float] = {}

    def _hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            x = inputs[0]
            rec = self.layers.setdefault(name, LayerCount(name, type(module).__name__, weights=module.weight.numel()))
            rec.calls += 1
            macs = dense_macs(module, x, output)
            rec.dense_macs += macs
            rec.input_elements += x.numel()
            rec.output_elements += output.numel()
            nonzero = int(torch.count_nonzero(x))
            ones = int(torch.count_nonzero(x.abs() == 1))  # signed spikes (ANN-to-SNN) are ACs too
            rec.binary_input &= nonzero == ones
            rec.negative_spikes |= bool((x < 0).any())
            rec.input_nonzeros += nonzero
            steps = self._steps(x)
            rec.steps += steps
            rec.neurobench_effective += neurobench_ops(module, x)
            key = (name, tuple(x.shape))
            if key not in self._dense:
                self._dense[key] = neurobench_ops(module, x, dense=True)
            rec.neurobench_dense += self._dense[key]
            if nonzero == ones:  # spikes: add them up per input element over the steps (in this call or over calls)
                per_step = x.reshape(steps, -1).float()
                if self._step_weights is not None and steps == len(self._step_weights) > 1:
                    per_step = per_step * self._step_weights.to(per_step.device).view(steps, 1)
                counts = per_step.sum(0)
                running = self._counts.get(name)
                self._counts[name] = counts if running is None or running.shape != counts.shape else running + counts
                self._fan_out[name] = macs / x.numel()

        return hook

    @property
    def count_bits(self) -> dict[str, float]:
        """Per layer fed by spikes: the set bits of each input's spike count over the spiking steps (a
        network run folded, ``[T*B, ...]``, or step by step), times each input's fan-out: the adds of the
        same network with ceil(log2(T+1))-bit activations computed bit-serially."""
        return {name: float(count_set_bits(counts.abs()).sum()) * self._fan_out[name]
                for name, counts in self._counts.items()}

    def _steps(self, x: torch.Tensor) -> int:
        """Spiking steps in ``x``: ``[T*B, ...]`` or ``[T, B, ...]`` hold T, ``[B, ...]`` one."""
        lead = x.shape[0]
        if self.batch and x.dim() > 1 and lead % self.batch == 0:
            return lead // self.batch
        if self.batch and x.dim() > 2 and lead == self.spike_steps and x.shape[1] == self.batch:
            return self.spike_steps
        return 1

    def __enter__(self) -> OpCounter:
        # a network that can skip simulating its spikes (integrate-then-fire neurons: a one-pass shortcut on
        # the levels computes the same outputs) simulates them while counted: the counts are of spikes sent
        self._simulated = [(m, m.simulate_spikes) for m in self.model.modules() if hasattr(m, "simulate_spikes")]
        for module, _ in self._simulated:
            module.simulate_spikes = True
        for name, module in self.model.named_modules():
            if isinstance(module, COUNTED):
                self._handles.append(module.register_forward_hook(self._hook(name)))
        self._firing.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._firing.__exit__(*exc)
        for module, simulated in self._simulated:
            module.simulate_spikes = simulated
