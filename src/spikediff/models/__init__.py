"""Backbones. Every one follows the one contract ``model(x [B, C, H, W], t [B]) -> prediction``."""

from __future__ import annotations

from torch import nn

from spikediff.config import ModelConfig
from spikediff.models.ann_unet import UNet
from spikediff.models.quant_unet import ConvertedSNN, QuantUNet
from spikediff.models.sdit import ANNSDiT, SDiT
from spikediff.models.spiking_diffusion import SpikingDiffusion
from spikediff.models.spiking_unet import SpikingUNet
from spikediff.models.vq_svae import VQSVAE

ARCHITECTURES: dict[str, type[nn.Module]] = {
    "spiking_unet": SpikingUNet,
    "ann_unet": UNet,
    "qann_unet": QuantUNet,
    "converted_snn": ConvertedSNN,
    "vq_svae": VQSVAE,
    "spiking_diffusion": SpikingDiffusion,
    "sdit": SDiT,
    "ann_sdit": ANNSDiT,
}
UNCONDITIONAL_ONLY = ("vq_svae", "spiking_diffusion")


def build_model(config: ModelConfig, num_diffusion_steps: int = 1000) -> nn.Module:
    """The backbone that ``config.arch`` names, sized by ``config``."""
    if config.arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {config.arch!r}; expected one of {sorted(ARCHITECTURES)}")
    if config.learn_sigma and config.arch not in ("sdit", "ann_sdit"):
        raise ValueError(f"model.learn_sigma is an SDiT option; {config.arch} predicts without a variance")
    if config.num_classes and config.arch in UNCONDITIONAL_ONLY:
        raise ValueError(f"{config.arch} has no class conditioning; set model.num_classes=0")
    return ARCHITECTURES[config.arch](config, num_diffusion_steps)


__all__ = ["ARCHITECTURES", "ANNSDiT", "VQSVAE", "ConvertedSNN", "QuantUNet", "SDiT", "SpikingDiffusion", "SpikingUNet",
           "UNet", "build_model"]
