"""What every spiking neuron layer of a network emits while it runs: the energy report's firing rates
and the training log's (one recorder, so both read the same neurons the same way)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from spikediff.snn.neurons import Neuron


@dataclass
class NeuronCount:
    """What one spiking neuron layer emitted: its output elements over all steps and how many fired
    (a -1 spike of a signed neuron counts as a spike)."""

    name: str
    kind: str
    elements: int = 0
    spikes: int = 0

    @property
    def firing_rate(self) -> float:
        return self.spikes / max(self.elements, 1)


class FiringRecorder:
    """Context manager: ``with FiringRecorder(model) as r: model(x, t)``; then ``r.neurons`` (per layer
    name, counts accumulated over every call inside the context) and ``r.rates()``.

    Forward hooks on every :class:`~spikediff.snn.neurons.Neuron` module; a network without neurons
    records nothing. Hooks on a ``torch.compile``-d network's modules would make it recompile, so callers
    record eager networks only."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.neurons: dict[str, NeuronCount] = {}
        self._handles: list = []

    def _hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            rec = self.neurons.setdefault(name, NeuronCount(name, type(module).__name__))
            rec.elements += output.numel()
            rec.spikes += int(torch.count_nonzero(output.detach()))

        return hook

    def rates(self, digits: int = 4) -> dict[str, float]:
        """Firing rate per neuron layer, in the order the layers first fired."""
        return {name: round(rec.firing_rate, digits) for name, rec in self.neurons.items()}

    def __enter__(self) -> FiringRecorder:
        for name, module in self.model.named_modules():
            if isinstance(module, Neuron):
                self._handles.append(module.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


def has_neurons(model: nn.Module) -> bool:
    """Whether ``model`` holds any spiking neuron layer."""
    return any(isinstance(m, Neuron) for m in model.modules())
