"""SDiT (Wang et al. 2024): a diffusion transformer whose attention and MLP are RWKV time-mixing
and channel-mixing, with LIF neurons on their outputs.

``model(x [B, C, H, W], t [B], y [B] | None) -> prediction [B, C, H, W]``. The layout follows the
reference (foolLain/SDiT): a non-spiking patch embedding (patch 2), a condition token ``c = step
embedding + class embedding`` in front of the patch tokens, learned position embeddings (zero at
start), ``depth // 2`` input blocks, a middle block and ``depth // 2`` output blocks joined to the
input ones by U-ViT long skips, a LayerNorm + linear head, unpatchify, and a 3x3 conv.

In each block, learnable "reconstruction" tokens are appended to the sequence; both mixers run over
the joined sequence, and the reconstruction tokens, mixed across tokens by two linear layers,
rescale the patch tokens (``x + x * r``). A mixer's output is repeated over the ``spike_steps``
(the paper's T = 4), fed to a LIF neuron and averaged over T before the residual add: the spikes
never reach a weight layer, so by the field's energy convention (an AC where a spike arrives, a MAC
elsewhere) every layer of SDiT is a MAC layer — the energy report measures exactly that.

Differences from the reference, all numerics-neutral: the neurons hold no state between calls (the
reference resets its SpikingJelly neurons after every network call, to the same effect); the step
embedding is the project's ``TimeEmbedding`` (a frozen sinusoid table, not counted as trainable: the
same frequencies and MLP as DiT's, interleaved instead of concatenated);
the output is the prediction only by default, as for the project's other models (``learn_sigma``
adds the reference's learned variance: 2C output channels, IDDPM's hybrid loss, DDPM sampling
with the predicted variance). Sampling differs in one default: the reference's DDPM does not clip
the predicted x0, the project's samplers clip it to [-1, 1].
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from spikediff.config import ModelConfig
from spikediff.models.layers import TimeEmbedding, add_class, class_embedding
from spikediff.models.rwkv import ChannelMix, TimeMix, grid_shift
from spikediff.snn import make_neuron

FREQUENCY_DIM = 256  # DiT's width of the sinusoidal step features


def sincos_positions(dim: int, grid: int) -> torch.Tensor:
    """``[grid^2, dim]``: DiT's 2D sine-cosine position code of a raster of patches, half the channels
    for the row and half for the column, each half sines then cosines of the index at ``dim / 4``
    frequencies from 1 down to 1/10000. ``model.sincos_positions`` starts the learned position
    embeddings here instead of at zero, so that from the first step a patch token says where it is
    (measured on ``fmnist-sdit-cpu-small``: no change in the held-out error, benchmarks/RESULTS.md)."""
    quarter = dim // 4
    frequencies = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    angles = [axis.reshape(-1, 1).double() * frequencies for axis in (rows, cols)]
    return torch.cat([f(a) for a in angles for f in (torch.sin, torch.cos)], dim=1).float()


class SDiTBlock(nn.Module):
    """One block: [skip fusion], [condition], reconstruction tokens, spiking time-mix, spiking
    channel-mix, rescale. ``spiking=False`` is the ANN twin's block: the mixers' real outputs in place
    of the LIF neurons' rates."""

    def __init__(self, config: ModelConfig, num_tokens: int, layer_id: int, skip: bool, spiking: bool = True) -> None:
        super().__init__()
        dim = config.ch
        self.spike_steps = config.spike_steps
        self.skip_linear = nn.Linear(2 * dim, dim) if skip else None
        self.condition = nn.Linear(dim, dim) if config.condition_every_block else None
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        # model.grid_shift: the patch tokens' token shift from their four neighbours in the image
        shift = {"shift": partial(grid_shift, grid=config.image_size // config.patch_size)} if config.grid_shift else {}
        self.time_mix = TimeMix(dim, layer_id, config.depth, two_way=config.two_way_scan, **shift)
        self.channel_mix = ChannelMix(dim, layer_id, config.depth, **shift)
        self.neuron1 = make_neuron(config.neuron) if spiking else None
        self.neuron2 = make_neuron(config.neuron) if spiking else None
        self.recon_tokens = nn.Parameter(torch.ones(1, num_tokens, dim))
        self.recon_token_mix = nn.Linear(dim, num_tokens)
        self.recon_out = nn.Linear(num_tokens, dim)

    def _spiking(self, neuron: nn.Module | None, h: torch.Tensor) -> torch.Tensor:
        """The firing rate of ``neuron`` driven by ``h`` for ``spike_steps`` steps (``h`` itself in the ANN twin)."""
        if neuron is None:
            return h
        return neuron(h.unsqueeze(0).expand(self.spike_steps, *h.shape)).mean(0)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if self.skip_linear is not None:
            x = self.skip_linear(torch.cat([x, skip], dim=-1))
        if self.condition is not None:
            x = x + self.condition(cond).unsqueeze(1).to(x.dtype)
        n = x.shape[1]
        x = torch.cat([x, self.recon_tokens.expand(x.shape[0], -1, -1).to(x.dtype)], dim=1)
        x = x + self._spiking(self.neuron1, self.time_mix(self.norm1(x)))
        x = x + self._spiking(self.neuron2, self.channel_mix(self.norm2(x)))
        x, recon = x[:, :n], x[:, n:]
        scale = self.recon_out(self.recon_token_mix(recon).transpose(1, 2))
        return x + x * scale


class SDiT(nn.Module):
    """The spiking diffusion transformer (see the module docstring)."""

    spiking = True

    def __init__(self, config: ModelConfig, num_diffusion_steps: int = 1000) -> None:
        super().__init__()
        if config.image_size % config.patch_size:
            raise ValueError(f"model.image_size {config.image_size} must divide by model.patch_size "
                             f"{config.patch_size}")
        if config.sincos_positions and config.ch % 4:
            raise ValueError(f"model.sincos_positions needs model.ch divisible by 4 (a sine and a cosine per "
                             f"image axis), got {config.ch}")
        if config.depth < 2 or config.depth % 2:
            raise ValueError(f"model.depth must be even and >= 2 (in + out blocks around a middle one), "
                             f"got {config.depth}")
        self.config = config
        dim, p, c = config.ch, config.patch_size, config.img_ch
        self.grid = config.image_size // p
        num_tokens = self.grid**2 + 1  # the condition token in front of the patches
        self.patch_embed = nn.Conv2d(c, dim, p, stride=p)
        self.time_embedding = TimeEmbedding(num_diffusion_steps, FREQUENCY_DIM, dim)
        self.class_embedding = class_embedding(config.num_classes, dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, dim))
        half = config.depth // 2
        s = self.spiking
        self.in_blocks = nn.ModuleList(SDiTBlock(config, num_tokens, i, skip=False, spiking=s) for i in range(half))
        self.mid_block = SDiTBlock(config, num_tokens, half, skip=False, spiking=s)
        self.out_blocks = nn.ModuleList(SDiTBlock(config, num_tokens, i, skip=True, spiking=s) for i in range(half))
        self.final_norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.out_ch = 2 * c if config.learn_sigma else c
        self.final_linear = nn.Linear(dim, p * p * self.out_ch)
        # model.input_skip: the output conv also reads the noisy input, so a prediction close to a multiple of
        # it (the noise at large t) need not pass through every block's per-token LayerNorms (measured: a
        # third less error at the highest noise, 3% less on average; benchmarks/RESULTS.md)
        self.conv = nn.Conv2d(self.out_ch + (c if config.input_skip else 0), self.out_ch, 3, padding=1)
        self._init_weights()

    def _init_weights(self) -> None:
        """The reference's: Xavier-uniform linears with zero bias, the patch embedding like a linear,
        N(0, 0.02) step-MLP weights, a zero head (the first prediction is the conv's bias)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.xavier_uniform_(self.patch_embed.weight.view(self.patch_embed.weight.shape[0], -1))
        nn.init.zeros_(self.patch_embed.bias)
        nn.init.normal_(self.time_embedding.linear1.weight, std=0.02)
        nn.init.normal_(self.time_embedding.linear2.weight, std=0.02)
        nn.init.zeros_(self.final_linear.weight)
        nn.init.zeros_(self.final_linear.bias)
        if self.config.input_skip:  # the input's weights start at 0: the network starts as without the skip
            nn.init.zeros_(self.conv.weight[:, self.out_ch:])
        if self.config.sincos_positions:  # the patch tokens'; the condition token's stays 0
            with torch.no_grad():
                self.pos_embed[0, 1:] = sincos_positions(self.config.ch, self.grid)
        for block in self.blocks():
            if self.config.zero_gate:  # scale 0: x + x * 0, the block's gate starts as the identity
                nn.init.zeros_(block.recon_out.weight)
                nn.init.zeros_(block.recon_out.bias)
            if block.condition is not None:
                nn.init.zeros_(block.condition.weight)
                nn.init.zeros_(block.condition.bias)

    def blocks(self) -> list[SDiTBlock]:
        """Every block, input to output."""
        return [*self.in_blocks, self.mid_block, *self.out_blocks]

    def unpatchify(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[B, grid^2, p*p*C] -> [B, C, H, W]``."""
        b, p, c = tokens.shape[0], self.config.patch_size, self.out_ch
        x = tokens.reshape(b, self.grid, self.grid, p, p, c)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(b, c, self.grid * p, self.grid * p)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.patch_embed(x).flatten(2).transpose(1, 2)
        cond = add_class(self.time_embedding(t), self.class_embedding, y)
        h = torch.cat([cond.unsqueeze(1).to(h.dtype), h], dim=1) + self.pos_embed
        skips = []
        for block in self.in_blocks:
            h = block(h, cond)
            skips.append(h)
        h = self.mid_block(h, cond)
        for block in self.out_blocks:
            h = block(h, cond, skips.pop())
        h = self.unpatchify(self.final_linear(self.final_norm(h))[:, 1:])
        return self.conv(torch.cat([h, x.to(h.dtype)], dim=1) if self.config.input_skip else h)


class ANNSDiT(SDiT):
    """SDiT's ANN twin: the same transformer with the mixers' real-valued outputs where SDiT has LIF rates,
    so that a comparison separates what the spiking parts cost from what the recipe does."""

    spiking = False
