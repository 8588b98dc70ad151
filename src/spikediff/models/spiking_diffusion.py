"""Spiking-Diffusion's denoiser over latent tokens (SDID) and the two-stage model that samples images.

The denoiser follows the reference's layers (five Conv3x3 -> BN -> LIF blocks of 64, 128, 256, 512,
256 channels by default, a Conv3x3 on the last block's spikes joined with the first's, logits averaged
over T), with one deliberate change: the reference feeds token indices as a float channel (so the
mask, index K, sits next to code K - 1 as if codes were ordered) and the diffusion step as a raw
constant channel. Here tokens go through an embedding (K codes + the mask) and the step through a
sinusoidal embedding and a linear map added to it, as in other discrete diffusion models.
"""

from __future__ import annotations

import torch
from torch import nn

from spikediff.config import ModelConfig
from spikediff.models.layers import sinusoidal_table
from spikediff.models.vq_svae import VQSVAE, SeqLayer
from spikediff.snn import make_neuron


class SpikingTokenDenoiser(nn.Module):
    """``denoiser(tokens [B, h, w] with mask = K, t [B] in 1..N) -> logits [B, K, h, w]``."""

    def __init__(self, config: ModelConfig, num_diffusion_steps: int) -> None:
        super().__init__()
        self.spike_steps = config.spike_steps
        k, width = config.codebook_size, config.ch
        self.mask_id = k
        self.token_embedding = nn.Embedding(k + 1, width)
        self.register_buffer("step_table", sinusoidal_table(num_diffusion_steps + 1, width), persistent=False)
        self.step_proj = nn.Linear(width, width)
        chs = [width, *(config.ch * m for m in config.ch_mult)]
        self.blocks = nn.ModuleList(
            nn.Sequential(SeqLayer(nn.Conv2d(a, b, 3, 1, 1), b), make_neuron(config.neuron))
            for a, b in zip(chs[:-1], chs[1:], strict=True)
        )
        self.head = SeqLayer(nn.Conv2d(chs[-1] + chs[1], k, 3, 1, 1))

    def forward(self, tokens: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = self.token_embedding(tokens).permute(0, 3, 1, 2) + self.step_proj(self.step_table[t])[:, :, None, None]
        h = h.unsqueeze(0).expand(self.spike_steps, *h.shape)
        first = h = self.blocks[0](h)
        for block in self.blocks[1:]:
            h = block(h)
        return self.head(torch.cat([h, first], dim=2)).mean(0)


class SpikingDiffusion(nn.Module):
    """The second stage: a trained VQ-SVAE (frozen) and the token denoiser trained over its codes."""

    def __init__(self, config: ModelConfig, num_diffusion_steps: int) -> None:
        super().__init__()
        self.vq = VQSVAE(config)
        self.vq.requires_grad_(False)
        self.denoiser = SpikingTokenDenoiser(config, num_diffusion_steps)
        latent = config.image_size // 4
        self.latent_shape = (latent, latent)
        if num_diffusion_steps != latent * latent:
            raise ValueError(f"absorbing diffusion masks one token per step: diffusion.num_steps must be "
                             f"{latent * latent} for {config.image_size}x{config.image_size} images, "
                             f"got {num_diffusion_steps}")

    def train(self, mode: bool = True) -> SpikingDiffusion:
        """The VQ-SVAE stays in eval mode (BatchNorm at its trained statistics) while the denoiser trains."""
        super().train(mode)
        self.vq.eval()
        return self

    def forward(self, tokens: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.denoiser(tokens, t)
