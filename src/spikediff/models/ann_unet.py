"""The ANN twin: the DDPM U-Net (Ho et al., pytorch-ddpm layout) with GroupNorm, Swish and the
attention block of its first middle res block, for side-by-side comparison with the Spiking U-Net.

Normalisation and activation are constructor arguments, and every activation is a module of its own,
so the same skeleton is the quantised ANN of ANN-to-SNN conversion (BatchNorm, quantised ReLU) and
the converted SNN (signed IF neurons in place of the quantisers); see ``models/quant_unet.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from spikediff.config import ModelConfig
from spikediff.models.layers import TimeEmbedding, add_class, class_embedding, xavier_


class AttnBlock(nn.Module):
    """Single-head self-attention over pixels with a residual; output projection init gain 1e-5."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(32, ch)
        self.q = nn.Conv2d(ch, ch, 1)
        self.k = nn.Conv2d(ch, ch, 1)
        self.v = nn.Conv2d(ch, ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)
        for layer in (self.q, self.k, self.v):
            xavier_(layer)
        xavier_(self.proj, gain=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        h = self.norm(x)
        q = self.q(h).flatten(2).transpose(1, 2)  # [B, HW, C]
        k = self.k(h).flatten(2).transpose(1, 2)
        v = self.v(h).flatten(2).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj(out.transpose(1, 2).reshape(B, C, H, W))


def group_norm(ch: int) -> nn.Module:
    """The DDPM U-Net's normalisation: GroupNorm with 32 groups."""
    return nn.GroupNorm(32, ch)


class ResBlock(nn.Module):
    """GN -> Swish -> Conv, + time projection, GN -> Swish -> Dropout -> Conv (gain 1e-5), + shortcut."""

    def __init__(self, in_ch: int, out_ch: int, tdim: int, dropout: float, attn: bool,
                 norm: Callable[[int], nn.Module] = group_norm, act: Callable[[], nn.Module] = nn.SiLU,
                 shortcut_act: Callable[[], nn.Module] | None = None) -> None:
        super().__init__()
        self.norm1 = norm(in_ch)
        self.act1 = act()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.temb_act = act()
        self.temb_proj = nn.Linear(tdim, out_ch)
        self.norm2 = norm(out_ch)
        self.act2 = act()
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.shortcut = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        # an activation in front of a 1x1 shortcut conv: after ANN-to-SNN conversion it is fed by spikes
        self.shortcut_act = shortcut_act() if shortcut_act and in_ch != out_ch else nn.Identity()
        self.attn = AttnBlock(out_ch) if attn else nn.Identity()
        for layer in (self.conv1, self.temb_proj, self.shortcut):
            if not isinstance(layer, nn.Identity):
                xavier_(layer)
        xavier_(self.conv2, gain=1e-5)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.act1(self.norm1(x)))
        h = h + self.temb_proj(self.temb_act(temb))[:, :, None, None]
        h = self.conv2(self.dropout(self.act2(self.norm2(h))))
        return self.attn(h + self.shortcut(self.shortcut_act(x)))


class Downsample(nn.Module):
    """Conv3x3 stride 2, optionally after an activation (``act``: the conv is then fed by spikes once
    converted)."""

    def __init__(self, ch: int, act: Callable[[], nn.Module] | None = None) -> None:
        super().__init__()
        self.act = act() if act else nn.Identity()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=1)
        xavier_(self.conv)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        return self.conv(self.act(x))


class Upsample(nn.Module):
    """Nearest x2 then Conv3x3, optionally after an activation (as :class:`Downsample`)."""

    def __init__(self, ch: int, act: Callable[[], nn.Module] | None = None) -> None:
        super().__init__()
        self.act = act() if act else nn.Identity()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)
        xavier_(self.conv)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(self.act(x), scale_factor=2, mode="nearest"))


class UNet(nn.Module):
    """DDPM U-Net; ``model(x [B, C, H, W], t [B]) -> prediction [B, C, H, W]`` (``model(x, t, y)`` with
    class labels ``y [B]`` when ``num_classes`` > 0)."""

    def __init__(self, config: ModelConfig, num_diffusion_steps: int = 1000,
                 norm: Callable[[int], nn.Module] = group_norm, act: Callable[[], nn.Module] = nn.SiLU,
                 middle_attn: bool = True, residual_act: Callable[[], nn.Module] | None = None) -> None:
        """``residual_act``: an activation also in front of the convolutions that read the residual
        stream (the 1x1 shortcuts, down- and up-sampling; ``model.quant_all_convs``), so that every
        convolution but the stem follows one."""
        super().__init__()
        self.config = config
        ch, tdim, drop = config.ch, config.ch * 4, config.dropout
        self.time_embedding = TimeEmbedding(num_diffusion_steps, ch, tdim, act())
        self.class_embedding = class_embedding(config.num_classes, tdim)
        self.stem = nn.Conv2d(config.img_ch, ch, 3, padding=1)
        xavier_(self.stem)

        self.down = nn.ModuleList()
        skip_chs, now_ch = [ch], ch
        for level, mult in enumerate(config.ch_mult):
            for _ in range(config.num_res_blocks):
                attn = level in config.attn_levels
                self.down.append(ResBlock(now_ch, ch * mult, tdim, drop, attn, norm, act, residual_act))
                now_ch = ch * mult
                skip_chs.append(now_ch)
            if level != len(config.ch_mult) - 1:
                self.down.append(Downsample(now_ch, residual_act))
                skip_chs.append(now_ch)

        self.middle = nn.ModuleList([
            ResBlock(now_ch, now_ch, tdim, drop, middle_attn, norm, act, residual_act),
            ResBlock(now_ch, now_ch, tdim, drop, False, norm, act, residual_act),
        ])

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(config.ch_mult))):
            for _ in range(config.num_res_blocks + 1):
                attn = level in config.attn_levels
                self.up.append(ResBlock(skip_chs.pop() + now_ch, ch * mult, tdim, drop, attn, norm, act, residual_act))
                now_ch = ch * mult
            if level != 0:
                self.up.append(Upsample(now_ch, residual_act))

        self.tail_norm = norm(now_ch)
        self.tail_act = act()
        self.tail_conv = nn.Conv2d(now_ch, config.img_ch, 3, padding=1)
        xavier_(self.tail_conv, gain=1e-5)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        temb = add_class(self.time_embedding(t), self.class_embedding, y)
        return self.body(self.stem(x), temb)

    def body(self, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """Everything after the stem, on the stem's output ``h`` and the embedding ``temb``."""
        skips = [h]
        for layer in self.down:
            h = layer(h, temb)
            skips.append(h)
        for layer in self.middle:
            h = layer(h, temb)
        for layer in self.up:
            if isinstance(layer, ResBlock):
                h = torch.cat([h, skips.pop()], dim=1)
            h = layer(h, temb)
        return self.tail_conv(self.tail_act(self.tail_norm(h)))
