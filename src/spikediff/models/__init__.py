"""Backbones. Every one follows the one contract ``model(x [B, C, H, W], t [B]) -> prediction``."""

from __future__ import annotations

from torch import nn

from spikediff.config import ModelConfig
from spikediff.models.ann_unet import UNet
from spikediff.models.quant_unet import ConvertedSNN, QuantUNet
from spikediff.models.sdid import SpikingDiffusion
from spikediff.models.spiking_unet import SpikingUNet
from spikediff.models.vq_svae import VQSVAE

ARCHITECTURES: dict[str, type[nn.Module]] = {
    "spiking_unet": SpikingUNet,
    "ann_unet": UNet,
    "qann_unet": QuantUNet,
    "converted_snn": ConvertedSNN,
    "vq_svae": VQSVAE,
    "spiking_diffusion": SpikingDiffusion,
}


def build_model(config: ModelConfig, num_diffusion_steps: int = 1000) -> nn.Module:
    """The backbone that ``config.arch`` names, sized by ``config``."""
    if config.arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {config.arch!r}; expected one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[config.arch](config, num_diffusion_steps)


__all__ = ["ARCHITECTURES", "VQSVAE", "ConvertedSNN", "QuantUNet", "SpikingDiffusion", "SpikingUNet", "UNet",
           "build_model"]
