"""The SDDPM Spiking U-Net (Cao et al., WACV 2024), exactly as the paper and its reference code
(AndyCao1125/SDDPM) build it.

Data flow: the image is repeated over the T spiking steps (direct coding), every 2-D layer runs on
the folded ``[T*B, C, H, W]`` tensor (BatchNorm statistics shared over T), spikes pass between
blocks only after a neuron, residual sums stay real-valued ("pre-spike"), and the output head
decodes the sequence with a membrane output layer ``sum_t decay^(T-1-t) h_t``.

Initialisation follows the reference code where the paper's one-line summary is coarser: the stem's
second conv and the head's Conv3d keep PyTorch's default init there, everything else is Xavier.

Options beyond SDDPM: ``tsm`` (SDM's Temporal-wise Spiking Mechanism: every Conv2d scales its
output at spiking step t by a learnable ``tsm_p[t]``, initialised to 1, so a plain checkpoint loads
into it unchanged) and ``readout="mean"`` (average over T instead of the membrane output layer).
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from spikediff.config import ModelConfig
from spikediff.models.layers import (
    TimeEmbedding,
    add_class,
    class_embedding,
    decayed_sum,
    fold,
    over_steps,
    unfold,
    xavier_,
)
from spikediff.snn import make_neuron


class TSMConv2d(nn.Conv2d):
    """A Conv2d on folded ``[T*B, ...]`` input whose output at spiking step t is scaled by
    ``tsm_p[t]`` before BatchNorm (SDM's TSM). Its weights keep the plain Conv2d names."""

    def __init__(self, *args, spike_steps: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.tsm_p = nn.Parameter(torch.ones(spike_steps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = unfold(super().forward(x), self.tsm_p.shape[0])
        return fold(y * self.tsm_p.view(-1, 1, 1, 1, 1))


def conv_factory(config: ModelConfig):
    """``nn.Conv2d``, or ``TSMConv2d`` when ``config.tsm`` is set, with the same arguments."""
    if config.tsm:
        return partial(TSMConv2d, spike_steps=config.spike_steps)
    return nn.Conv2d


class SpikingStem(nn.Module):
    """Conv3x3 -> BN -> neuron -> Conv3x3 -> BN on the image repeated T times; its output is the first skip.

    The first Conv+BN sees the same image at every spiking step, so it is computed once and expanded
    over T: the same outputs and gradients as T copies (the batch statistics of T copies are those of
    one), T times fewer of its MACs, and the energy counter sees what is computed. Only BN's running
    variance differs, by its unbiased factor n/(n-1) over B*H*W instead of T*B*H*W values (a relative
    1e-5 at batch 32). With TSM the per-step scales make the T inputs of BN differ, so that path
    repeats the image as the reference does.
    """

    conv_bn_pairs = (("conv_in", "bn_in"), ("conv_out", "bn_out"))

    def __init__(self, img_ch: int, ch: int, neuron: nn.Module, conv=nn.Conv2d) -> None:
        super().__init__()
        self.conv_in = conv(img_ch, ch, 3, padding=1)
        self.bn_in = nn.BatchNorm2d(ch)
        self.neuron = neuron
        self.conv_out = conv(ch, ch, 3, padding=1)
        self.bn_out = nn.BatchNorm2d(ch)
        xavier_(self.conv_in)

    def forward(self, x: torch.Tensor, spike_steps: int) -> torch.Tensor:
        T = spike_steps
        if isinstance(self.conv_in, TSMConv2d):
            h = over_steps(x.unsqueeze(0).expand(T, *x.shape), self.conv_in, self.bn_in)
        else:
            once = self.bn_in(self.conv_in(x))
            h = once.unsqueeze(0).expand(T, *once.shape)
        return over_steps(self.neuron(h), self.conv_out, self.bn_out)


class PreSpikeResBlock(nn.Module):
    """``h = BN1(Conv1(IF1(x))) + Linear(Swish(temb))``; ``out = BN2(Conv2(IF2(h))) + shortcut(x)``.

    The shortcut (1x1 conv when the width changes) sees the real-valued input, so the residual
    sum is exact before the next block spikes it. Dropout is accepted for config compatibility but,
    as in the reference, not applied.
    """

    conv_bn_pairs = (("conv1", "bn1"), ("conv2", "bn2"))

    def __init__(self, in_ch: int, out_ch: int, tdim: int, neuron_factory, conv=nn.Conv2d) -> None:
        super().__init__()
        self.neuron1 = neuron_factory()
        self.conv1 = conv(in_ch, out_ch, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.temb_proj = nn.Linear(tdim, out_ch)
        self.neuron2 = neuron_factory()
        self.conv2 = conv(out_ch, out_ch, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut = conv(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        for layer in (self.conv1, self.conv2, self.temb_proj, self.shortcut):
            if not isinstance(layer, nn.Identity):
                xavier_(layer)

    def forward(self, x_seq: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = over_steps(self.neuron1(x_seq), self.conv1, self.bn1)
        h = h + self.temb_proj(F.silu(temb))[None, :, :, None, None]
        return over_steps(self.neuron2(h), self.conv2, self.bn2) + over_steps(x_seq, self.shortcut)


class SpikingDownsample(nn.Module):
    """neuron -> Conv3x3 stride 2 -> BN."""

    conv_bn_pairs = (("conv", "bn"),)

    def __init__(self, ch: int, neuron: nn.Module, conv=nn.Conv2d) -> None:
        super().__init__()
        self.neuron = neuron
        self.conv = conv(ch, ch, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(ch)
        xavier_(self.conv)

    def forward(self, x_seq: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        return over_steps(self.neuron(x_seq), self.conv, self.bn)


class SpikingUpsample(nn.Module):
    """neuron -> nearest x2 -> Conv3x3 -> BN."""

    conv_bn_pairs = (("conv", "bn"),)

    def __init__(self, ch: int, neuron: nn.Module, conv=nn.Conv2d) -> None:
        super().__init__()
        self.neuron = neuron
        self.conv = conv(ch, ch, 3, padding=1)
        self.bn = nn.BatchNorm2d(ch)
        xavier_(self.conv)

    def forward(self, x_seq: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        return over_steps(self.neuron(x_seq), partial(F.interpolate, scale_factor=2, mode="nearest"), self.conv,
                          self.bn)


class MembraneOutputLayer(nn.Module):
    """``sum_t decay^(T-1-t) h_t``: the membrane of a non-firing leaky neuron after the last step."""

    def __init__(self, decay: float = 0.8) -> None:
        super().__init__()
        self.decay = decay

    def forward(self, h_seq: torch.Tensor) -> torch.Tensor:
        return decayed_sum(h_seq, self.decay)

    def extra_repr(self) -> str:
        return f"decay={self.decay}"


class MeanOverTime(nn.Module):
    """``mean_t h_t``: the rate-style readout of FSDDIM-like models."""

    def forward(self, h_seq: torch.Tensor) -> torch.Tensor:
        return h_seq.mean(0)


class MembraneOutputHead(nn.Module):
    """Per step BN -> Swish -> Conv3x3 (gain 1e-5); then ``h + Swish(BN(Conv3d_(3,3,1)(h)))`` with
    the Conv3d over ``[B, C, H, W, T]`` (spatial only, as in the reference); then the membrane
    output layer (or the mean over T with ``readout="mean"``)."""

    def __init__(self, ch: int, img_ch: int, decay: float, readout: str = "membrane", conv=nn.Conv2d) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(ch)
        self.conv = conv(ch, img_ch, 3, padding=1)
        self.temporal_conv = nn.Conv3d(img_ch, img_ch, kernel_size=(3, 3, 1), padding=(1, 1, 0))
        self.temporal_bn = nn.BatchNorm2d(img_ch)
        readouts = {"membrane": lambda: MembraneOutputLayer(decay), "mean": MeanOverTime}
        if readout not in readouts:
            raise ValueError(f"unknown readout {readout!r}; expected one of {sorted(readouts)}")
        self.readout = readouts[readout]()
        xavier_(self.conv, gain=1e-5)

    def forward(self, h_seq: torch.Tensor) -> torch.Tensor:
        h = over_steps(h_seq, self.bn, F.silu, self.conv)
        r = self.temporal_conv(h.permute(1, 2, 3, 4, 0)).permute(4, 0, 1, 2, 3)
        h = h + over_steps(r, self.temporal_bn, F.silu)
        return self.readout(h)


class SpikingUNet(nn.Module):
    """The SDDPM Spiking U-Net; ``model(x [B, C, H, W], t [B]) -> eps-prediction [B, C, H, W]``
    (``model(x, t, y)`` with class labels ``y [B]`` when ``num_classes`` > 0)."""

    def __init__(self, config: ModelConfig, num_diffusion_steps: int = 1000) -> None:
        super().__init__()
        self.config = config
        ch, tdim = config.ch, config.ch * 4

        def neuron() -> nn.Module:
            return make_neuron(config.neuron)

        conv = conv_factory(config)
        self.grad_checkpointing = False  # set by the trainer (TrainConfig.grad_checkpointing)
        self.spike_steps = config.spike_steps
        self.time_embedding = TimeEmbedding(num_diffusion_steps, ch, tdim)
        self.class_embedding = class_embedding(config.num_classes, tdim)
        self.stem = SpikingStem(config.img_ch, ch, neuron(), conv)

        self.down = nn.ModuleList()
        skip_chs, now_ch = [ch], ch
        for level, mult in enumerate(config.ch_mult):
            for _ in range(config.num_res_blocks):
                self.down.append(PreSpikeResBlock(now_ch, ch * mult, tdim, neuron, conv))
                now_ch = ch * mult
                skip_chs.append(now_ch)
            if level != len(config.ch_mult) - 1:
                self.down.append(SpikingDownsample(now_ch, neuron(), conv))
                skip_chs.append(now_ch)

        self.middle = nn.ModuleList([PreSpikeResBlock(now_ch, now_ch, tdim, neuron, conv) for _ in range(2)])

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(config.ch_mult))):
            for _ in range(config.num_res_blocks + 1):
                self.up.append(PreSpikeResBlock(skip_chs.pop() + now_ch, ch * mult, tdim, neuron, conv))
                now_ch = ch * mult
            if level != 0:
                self.up.append(SpikingUpsample(now_ch, neuron(), conv))

        self.head = MembraneOutputHead(now_ch, config.img_ch, config.membrane_decay, config.readout, conv)

    def _block(self, layer: nn.Module, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """Run one block, recomputing its activations in backward if ``grad_checkpointing`` is set.

        Activation memory grows with T; checkpointing keeps only block inputs. The recomputation runs
        BatchNorm a second time on the same batch, so in training its running statistics take two
        momentum steps towards the same batch statistics instead of one.
        """
        if self.grad_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(layer, h, temb, use_reentrant=False)
        return layer(h, temb)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        temb = add_class(self.time_embedding(t), self.class_embedding, y)
        h = self.stem(x, self.spike_steps)
        skips = [h]
        for layer in self.down:
            h = self._block(layer, h, temb)
            skips.append(h)
        for layer in self.middle:
            h = self._block(layer, h, temb)
        for layer in self.up:
            if isinstance(layer, PreSpikeResBlock):
                h = torch.cat([h, skips.pop()], dim=2)
            h = self._block(layer, h, temb)
        return self.head(h)
