"""The two networks of SDM's ANN-to-SNN path (Cao et al. 2024), on the ANN twin's U-Net skeleton.

``QuantUNet`` is the quantised-activation ANN: every Swish of the DDPM U-Net becomes a b-bit uniform
quantiser of ReLU with a learnable clip (init ``model.quant_clip``: 6 as the reference; straight-through
gradients). Two changes from the reference's network, both because its layers must convert exactly:
- BatchNorm in place of GroupNorm. GroupNorm normalises each sample by statistics of its own input,
  which in the SNN would be computed on each spiking step's input rather than on the rate the ANN
  saw; the reference does that and its error does not vanish as T grows. BatchNorm at inference is a
  fixed per-channel affine map, so every layer between two neurons is linear and the SNN's rates
  approach the ANN's activations.
- No attention block (neither has the reference's quantised U-Net): softmax attention has no spiking
  counterpart here.

``ConvertedSNN`` is the same skeleton run over T spiking steps in the folded ``[T*B, ...]`` layout:
signed IF neurons in place of the quantisers, BatchNorm frozen to its running statistics, the output
averaged over T. ``spikediff.ann2snn.conversion`` fills it from a trained ``QuantUNet``.
"""

from __future__ import annotations

import torch
from torch import nn

from spikediff.config import ModelConfig
from spikediff.models.ann_unet import UNet
from spikediff.snn.signed_if import SignedIFNeuron


class QuantReLU(nn.Module):
    """``alpha * round(clamp(x / alpha, 0, 1) * L) / L`` with ``L = 2^bits - 1`` levels; the rounding
    passes gradients straight through, so both ``x`` (inside the clip) and ``alpha`` learn."""

    def __init__(self, bits: int, clip: float = 6.0) -> None:
        super().__init__()
        if bits < 1:
            raise ValueError(f"quant_bits must be >= 1, got {bits}")
        if not clip > 0:
            raise ValueError(f"quant_clip must be > 0, got {clip}")
        self.levels = 2**bits - 1
        self.alpha = nn.Parameter(torch.tensor(float(clip)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scaled = (x / self.alpha).clamp(0.0, 1.0) * self.levels
        return (scaled + (scaled.round() - scaled).detach()) * self.alpha / self.levels

    def extra_repr(self) -> str:
        return f"levels={self.levels}, alpha={float(self.alpha):.4g}"


def _no_attention(config: ModelConfig) -> None:
    if config.attn_levels:
        raise ValueError(f"{config.arch} has no attention (it could not be converted to spikes); "
                         f"set model.attn_levels to () (got {config.attn_levels})")


class QuantUNet(UNet):
    """The quantised ANN: ``model(x [B, C, H, W], t [B]) -> prediction``."""

    def __init__(self, config: ModelConfig, num_diffusion_steps: int = 1000) -> None:
        _no_attention(config)
        super().__init__(config, num_diffusion_steps, norm=nn.BatchNorm2d,
                         act=lambda: QuantReLU(config.quant_bits, config.quant_clip), middle_attn=False)


class ConvertedSNN(UNet):
    """The converted SNN: the input and the diffusion step repeated over ``config.spike_steps``, every
    layer run on the folded ``[T*B, ...]`` tensor, signed IF neurons, output averaged over T."""

    def __init__(self, config: ModelConfig, num_diffusion_steps: int = 1000) -> None:
        _no_attention(config)
        self.spike_steps = config.spike_steps
        super().__init__(config, num_diffusion_steps, norm=nn.BatchNorm2d,
                         act=lambda: SignedIFNeuron(config.spike_steps), middle_attn=False)

    def train(self, mode: bool = True) -> ConvertedSNN:
        """BatchNorm stays at its running statistics even in training (fine-tuning): with batch
        statistics it would stop being the fixed affine map the conversion relies on."""
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        T = self.spike_steps
        out = super().forward(x.repeat(T, *([1] * (x.dim() - 1))), t.repeat(T), None if y is None else y.repeat(T))
        return out.view(T, x.shape[0], *out.shape[1:]).mean(0)
