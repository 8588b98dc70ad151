"""Spiking-Diffusion's VQ-SVAE (Liu et al. 2023): a spiking autoencoder with a discrete
latent of ``(H/4) x (W/4)`` tokens (7 x 7 for 28 x 28 images) from a codebook of ``K`` vectors.

Layers follow the reference (Arktis2022/Spiking-Diffusion): LIF neurons (tau 2, hard reset, ATan), T
steps of the same analog image, BatchNorm over T and batch together.
- encoder: Conv3x3/2 -> BN -> LIF, Conv3x3/2 -> BN -> LIF, Conv1x1 -> BN -> LIF: latent spike trains;
- readout: ``(1 - a) * sum_t 0.8^(T-1-t) s_t + a * mean_t s_t`` (a decayed membrane and the firing
  rate, mixed by a learnable ``a``, init 0.5) turns them into continuous vectors to quantise;
- codebook: nearest code, straight-through gradients, codebook + 0.25 x commitment loss;
- adaptive spike generator: the code vector repeated over T -> Conv1x1 -> BN -> LIF, back to spikes,
  with the reference's second VQ loss between the two spike trains seen through a PSP filter;
- decoder: ConvT/2 -> BN -> LIF, ConvT/2 -> BN -> LIF, ConvT3x3 -> ``tanh`` of the decayed sum over T.
Images are in [-1, 1] here (the reference shifts [0, 1] to [-0.5, 0.5]); ``tanh`` covers either.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spikediff.config import ModelConfig
from spikediff.models.layers import decayed_sum, over_steps
from spikediff.snn import make_neuron

MEMBRANE_DECAY = 0.8  # the reference's readout decay
COMMITMENT = 0.25  # beta of the VQ commitment loss
PSP_TAU = 2.0  # synaptic filter of the spike-train VQ loss


class SeqLayer(nn.Module):
    """A 2-D layer (and optional BatchNorm) applied to every step of a ``[T, B, ...]`` sequence at once."""

    def __init__(self, layer: nn.Module, bn: int | None = None) -> None:
        super().__init__()
        self.layer = layer
        self.bn = nn.BatchNorm2d(bn) if bn else nn.Identity()

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        return over_steps(x_seq, self.layer, self.bn)


def psp(s_seq: torch.Tensor, tau: float = PSP_TAU) -> torch.Tensor:
    """Post-synaptic potential of a spike train: ``p <- p + (s_t - p) / tau``, every step kept."""
    p = torch.zeros_like(s_seq[0])
    out = []
    for s in s_seq:
        p = p + (s - p) / tau
        out.append(p)
    return torch.stack(out)


class VQSVAE(nn.Module):
    """``model(x) -> (reconstruction, losses)``; ``encode(x) -> tokens [B, h, w]``; ``decode(tokens)``."""

    def __init__(self, config: ModelConfig, num_diffusion_steps: int = 0) -> None:
        super().__init__()
        self.config = config
        self.spike_steps = config.spike_steps
        c, d = config.img_ch, config.latent_ch

        def lif() -> nn.Module:
            return make_neuron(config.neuron)

        self.encoder = nn.Sequential(
            SeqLayer(nn.Conv2d(c, 32, 3, 2, 1), 32), lif(),
            SeqLayer(nn.Conv2d(32, 64, 3, 2, 1), 64), lif(),
            SeqLayer(nn.Conv2d(64, d, 1), d), lif(),
        )
        self.mix = nn.Parameter(torch.tensor(0.5))  # weight of the firing rate in the readout
        self.codebook = nn.Embedding(config.codebook_size, d)
        self.spike_generator = nn.Sequential(SeqLayer(nn.Conv2d(d, d, 1), d), lif())
        self.decoder = nn.Sequential(
            SeqLayer(nn.ConvTranspose2d(d, 64, 3, 2, 1, output_padding=1), 64), lif(),
            SeqLayer(nn.ConvTranspose2d(64, 32, 3, 2, 1, output_padding=1), 32), lif(),
            SeqLayer(nn.ConvTranspose2d(32, c, 3, 1, 1)),
        )

    def _repeat(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(0).expand(self.spike_steps, *x.shape)

    def _features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        spikes = self.encoder(self._repeat(x))
        return spikes, (1 - self.mix) * decayed_sum(spikes, MEMBRANE_DECAY) + self.mix * spikes.mean(0)

    def _nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code for every vector of ``z [B, d, h, w]``."""
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        dist = flat.square().sum(1, keepdim=True) - 2 * flat @ self.codebook.weight.T \
            + self.codebook.weight.square().sum(1)
        return dist.argmin(1).view(z.shape[0], *z.shape[2:])

    def lookup(self, tokens: torch.Tensor) -> torch.Tensor:
        """Code vectors ``[B, d, h, w]`` of ``tokens [B, h, w]``."""
        return self.codebook(tokens).permute(0, 3, 1, 2)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self._nearest(self._features(x)[1])

    def _decode_codes(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        spikes = self.spike_generator(self._repeat(q))
        return spikes, torch.tanh(decayed_sum(self.decoder(spikes), MEMBRANE_DECAY))

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] from tokens."""
        return self._decode_codes(self.lookup(tokens))[1]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        enc_spikes, z = self._features(x)
        q = self.lookup(self._nearest(z.detach()))
        vq = F.mse_loss(q, z.detach()) + COMMITMENT * F.mse_loss(z, q.detach())
        q = z + (q - z).detach()  # straight-through
        gen_spikes, recon = self._decode_codes(q)
        p_gen, p_enc = psp(gen_spikes), psp(enc_spikes)
        spike_vq = F.mse_loss(p_gen, p_enc.detach()) + COMMITMENT * F.mse_loss(p_enc, p_gen.detach())
        return recon, {"vq": vq, "spike_vq": spike_vq}
