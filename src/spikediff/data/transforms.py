"""Image batches to the models' range: float in [-1, 1] at the configured size."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def to_model_range(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``[B, C, H, W]`` (or ``[B, H, W]``) -> float ``[B, C, size, size]`` in [-1, 1].

    Resizing is bilinear as torchvision's ``Resize`` (the papers' 28 -> 32 for (Fashion-)MNIST).
    """
    x = images.float() / 127.5 - 1.0
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.clamp(-1.0, 1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Model range [-1, 1] -> uint8 [0, 255], rounded: how generated and reference images are stored."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def match_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Grey ``[B, 1, H, W]`` repeated to ``channels`` (SDiT's reference feeds (Fashion-)MNIST as RGB);
    a batch that already has ``channels`` is returned as is."""
    if x.shape[1] == channels:
        return x
    if x.shape[1] != 1:
        raise ValueError(f"images have {x.shape[1]} channels; the model takes {channels} (model.img_ch)")
    return x.expand(-1, channels, -1, -1)
