"""Threshold control for threshold guidance (SDDPM §4.3, SDM): change every neuron's threshold at
inference only, and always put it back."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from spikediff.snn.neurons import Neuron


def spiking_neurons(model: nn.Module) -> list[Neuron]:
    """All spiking neurons of ``model``, in module order."""
    return [m for m in model.modules() if isinstance(m, Neuron)]


@contextmanager
def threshold_scale(model: nn.Module, scale: float) -> Iterator[nn.Module]:
    """Multiply every neuron's threshold by ``scale`` inside the block, restore it on exit.

    With the papers' trained threshold of 1.0, ``scale=0.997`` is the SDDPM paper's best
    "inhibitory guidance" setting. Restoring happens even if the block raises.
    """
    if scale <= 0:
        raise ValueError(f"threshold scale must be positive, got {scale}")
    neurons = spiking_neurons(model)
    saved = [n.v_threshold for n in neurons]
    try:
        for n, v in zip(neurons, saved, strict=True):
            n.v_threshold = v * scale
        yield model
    finally:
        for n, v in zip(neurons, saved, strict=True):
            n.v_threshold = v
