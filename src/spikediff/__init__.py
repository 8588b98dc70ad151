"""spikediff: spiking neural network diffusion models (SDDPM, SDM, Spiking-Diffusion, SDiT)."""

from spikediff.checkpoint import CheckpointError, build, load, load_config, save
from spikediff.config import Config, DataConfig, DiffusionConfig, ModelConfig, NeuronConfig, TrainConfig
from spikediff.presets import PRESETS, get_preset

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "CheckpointError",
    "Config",
    "DataConfig",
    "DiffusionConfig",
    "ModelConfig",
    "NeuronConfig",
    "TrainConfig",
    "build",
    "get_preset",
    "load",
    "load_config",
    "save",
]
