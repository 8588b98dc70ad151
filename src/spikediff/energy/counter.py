"""Operation counting by observation (docs/architecture.md, Rules): forward hooks on every Conv/Linear layer
record its dense MACs and whether its input was spikes, and how many of them fired.

Whether an input is "spikes" is measured, not declared: a layer whose input holds only 0 and 1 (or
-1, 0 and 1: the signed spikes of ANN-to-SNN conversion, an add or a subtract) on every call
receives spikes and costs accumulates (AC = firing rate x dense MACs, the field's
convention: an AC where a spike arrives); any other layer costs multiply-accumulates. The same code therefore measures
the Spiking U-Net, its ANN twin and any future backbone. An input that is exactly zero on every
observed call is indistinguishable from a silent spike train and is counted as one (0 ACs); only
untrained networks (BatchNorm at its initial statistics) produce such inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

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
    calls: int = 0

    @property
    def spike_input(self) -> bool:
        return self.calls > 0 and self.binary_input

    @property
    def firing_rate(self) -> float:
        """Share of input elements that are spikes (1), over all spiking steps; 1.0 for real inputs."""
        if not self.spike_input:
            return 1.0
        return self.input_nonzeros / max(self.input_elements, 1)


def dense_macs(layer: nn.Module, x: torch.Tensor, output: torch.Tensor) -> int:
    """Multiply-accumulates of a dense evaluation: every output element costs one MAC per weight
    that feeds it (``in_channels / groups x kernel`` for convs, ``in_features`` for linears); a
    transposed conv scatters instead, one MAC per input element and weight it feeds
    (``out_channels / groups x kernel``: its weight is laid out ``[in, out / groups, kh, kw]``)."""
    per_row = layer.weight.numel() // layer.weight.shape[0]
    return (x if isinstance(layer, nn.ConvTranspose2d) else output).numel() * per_row


class OpCounter:
    """Context manager: ``with OpCounter(model) as c: model(x, t)``; then ``c.layers``."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.layers: dict[str, LayerCount] = {}
        self._handles: list = []

    def _hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            x = inputs[0]
            rec = self.layers.setdefault(name, LayerCount(name, type(module).__name__))
            rec.calls += 1
            rec.dense_macs += dense_macs(module, x, output)
            rec.input_elements += x.numel()
            nonzero = int(torch.count_nonzero(x))
            ones = int(torch.count_nonzero(x.abs() == 1))  # signed spikes (ANN-to-SNN) are ACs too
            rec.binary_input &= nonzero == ones
            rec.input_nonzeros += nonzero

        return hook

    def __enter__(self) -> OpCounter:
        for name, module in self.model.named_modules():
            if isinstance(module, COUNTED):
                self._handles.append(module.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
