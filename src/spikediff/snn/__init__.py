"""Spiking building blocks: stateless multi-step neurons, surrogate gradients, threshold control."""

from spikediff.snn.neurons import (
    NEURONS,
    IFNeuron,
    LIFNeuron,
    Neuron,
    SpikingNeuron,
    if_sequence,
    lif_sequence,
    make_neuron,
)
from spikediff.snn.signed_if import SignedIFNeuron, signed_if_sequence
from spikediff.snn.surrogate import spike
from spikediff.snn.threshold import spiking_neurons, threshold_scale

__all__ = [
    "NEURONS",
    "IFNeuron",
    "LIFNeuron",
    "Neuron",
    "SignedIFNeuron",
    "SpikingNeuron",
    "if_sequence",
    "lif_sequence",
    "make_neuron",
    "signed_if_sequence",
    "spike",
    "spiking_neurons",
    "threshold_scale",
]
