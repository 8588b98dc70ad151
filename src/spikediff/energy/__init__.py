"""Observers of energy: operation counts by forward hooks, firing rates, energy reports and plots."""

from spikediff.energy.counter import LayerCount, OpCounter, dense_macs
from spikediff.energy.report import ENERGY_MODELS, EnergyModel, EnergyReport, LayerEnergy, measure_energy

__all__ = [
    "ENERGY_MODELS",
    "EnergyModel",
    "EnergyReport",
    "LayerCount",
    "LayerEnergy",
    "OpCounter",
    "dense_macs",
    "measure_energy",
]
