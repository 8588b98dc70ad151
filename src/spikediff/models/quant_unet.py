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
spiking neurons in place of the quantisers (SDM's signed IF, or the integrate-then-fire neurons of
``spikediff.snn.count_coded``: docs/ann2snn.md), BatchNorm frozen to its running statistics, the output
averaged over T. ``spikediff.ann2snn.conversion`` fills it from a trained ``QuantUNet``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import FunctionCtx

from spikediff.config import ModelConfig
from spikediff.models.ann_unet import UNet
from spikediff.models.layers import add_class
from spikediff.snn.count_coded import CountCodedNeuron, coding_steps, quantised_level, step_weights, weighted_mean
from spikediff.snn.signed_if import SignedIFNeuron


def _levels_of(ratio: torch.Tensor, alpha: torch.Tensor, levels: int, low: float = 0.0) -> torch.Tensor:
    """``alpha * round(clamp(ratio, low, 1) * levels) / levels``, computed in ``ratio``'s own storage."""
    return quantised_level(ratio, levels, low).mul_(alpha / levels)


class _QuantiseWithStraightThrough(torch.autograd.Function):
    """The quantiser and its straight-through gradients in few passes each way.

    Written out, ``alpha * round(clamp(x / alpha, 0, 1) * L) / L`` with a detached rounding costs ~25
    elementwise passes per call in autograd (the division by ``alpha`` alone differentiates into
    four); they took about a quarter of an ``fmnist-qann-small`` training step (profiled: batch 32,
    one thread). The gradients are the same rule, with ``r = x / alpha`` and ``y`` the output:
    ``d/dx = 1`` where ``low < r < 1`` (clamp's gradient is 0 at its bounds), else 0; ``d/dalpha =
    y / alpha - r`` inside the clip, ``y / alpha`` (1 above it, 0 below) outside, so ``grad_alpha =
    (<g, y> - <g_x, x>) / alpha`` with ``g_x`` the gradient passed to ``x``. The symmetric quantiser
    (``low = -1``) follows the same rule with ``-1 < r < 1`` inside.

    The clip mask is kept as 0 / 1 in ``x``'s dtype, not as booleans: CPU kernels that read or write
    booleans (comparisons, ``where``, ``masked_fill``) ran 4-12x slower than a multiplication of the
    same bf16 tensor (2M elements, 2-core Xeon: ``where`` 3.3 ms, multiply 0.27 ms), and made up
    most of the quantisers' ~45% of an ``fmnist-qann-signed-small`` bf16 training step. ``(r - low) *
    (1 - r)`` is positive exactly inside the clip (both factors' signs survive rounding), so its
    sign clamped at 0 is the mask. Backward keeps ``x``, ``y`` (which the next convolution keeps
    anyway) and the mask.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, x: torch.Tensor, alpha: torch.Tensor, levels: int, low: float) -> torch.Tensor:
        ratio = x / alpha
        inside = (ratio - low).mul_(1.0 - ratio).sign_().clamp_min_(0.0)
        y = _levels_of(ratio, alpha, levels, low)
        ctx.save_for_backward(x, alpha, y, inside)
        return y

    @staticmethod
    def backward(ctx: FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None, None]:
        x, alpha, y, inside = ctx.saved_tensors
        grad_x = grad * inside
        # sums over the whole batch: accumulated and returned in fp32 under bf16 autocast too
        along_y = (grad * y).sum(dtype=torch.float32)
        along_x = (grad_x * x).sum(dtype=torch.float32)
        return grad_x, (along_y - along_x) / alpha, None, None


class QuantReLU(nn.Module):
    """``alpha * round(clamp(x / alpha, 0, 1) * L) / L`` with ``L = 2^bits - 1`` levels; the rounding
    passes gradients straight through, so both ``x`` (inside the clip) and ``alpha`` learn.

    ``symmetric`` clamps to ``[-1, 1]`` instead (levels ``-L..L``): for the residual stream, whose
    negative half carries as much as its positive one; it converts to a symmetric signed IF neuron.
    """

    def __init__(self, bits: int, clip: float = 6.0, symmetric: bool = False) -> None:
        super().__init__()
        if bits < 1:
            raise ValueError(f"quant_bits must be >= 1, got {bits}")
        if not clip > 0:
            raise ValueError(f"quant_clip must be > 0, got {clip}")
        self.levels = 2**bits - 1
        self.symmetric = symmetric
        self.alpha = nn.Parameter(torch.tensor(float(clip)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = -1.0 if self.symmetric else 0.0
        if torch.is_grad_enabled() and (x.requires_grad or self.alpha.requires_grad):
            return _QuantiseWithStraightThrough.apply(x, self.alpha, self.levels, low)
        return _levels_of(x / self.alpha, self.alpha, self.levels, low)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, alpha={float(self.alpha):.4g}" + (", symmetric" if self.symmetric else "")


def _check_config(config: ModelConfig) -> None:
    if config.attn_levels:
        raise ValueError(f"{config.arch} has no attention (it could not be converted to spikes); "
                         f"set model.attn_levels to () (got {config.attn_levels})")
    if config.quant_signed_residual and not config.quant_all_convs:
        raise ValueError("model.quant_signed_residual shapes the quantisers that model.quant_all_convs adds; "
                         "set model.quant_all_convs=true too")


def _residual(config: ModelConfig, make: Callable[[bool], nn.Module]) -> Callable[[], nn.Module] | None:
    """The activation in front of the residual stream's convolutions (``model.quant_all_convs``), or None;
    ``make(symmetric)`` builds one."""
    if not config.quant_all_convs:
        return None
    return lambda: make(config.quant_signed_residual)


class QuantUNet(UNet):
    """The quantised ANN: ``model(x [B, C, H, W], t [B]) -> prediction``."""

    def __init__(self, config: ModelConfig, num_diffusion_steps: int = 1000) -> None:
        _check_config(config)
        super().__init__(config, num_diffusion_steps, norm=nn.BatchNorm2d,
                         act=lambda: QuantReLU(config.quant_bits, config.quant_clip), middle_attn=False,
                         residual_act=_residual(config, lambda s: QuantReLU(config.quant_bits, config.quant_clip, s)))


class ConvertedSNN(UNet):
    """The converted SNN: the input and the diffusion step repeated over ``config.spike_steps``, every
    layer run on the folded ``[T*B, ...]`` tensor, spiking neurons in place of the quantisers, output
    averaged over T (weighted by what a spike on each step is worth).

    ``config.spike_coding`` picks the neuron: ``"signed-if"`` (SDM's signed IF, firing as its input
    arrives; with ``config.slack_steps``, every count capped at ``spike_steps - slack_steps`` levels) or
    the integrate-then-fire codes ``"count"`` / ``"phase"`` of :mod:`spikediff.snn.count_coded`, which
    send the quantised ANN's levels exactly."""

    run_stepwise = True  # without gradients, simulate the spiking steps one after another (see forward)
    simulate_spikes = False  # integrate-then-fire codes: run the T-step simulation even where the shortcut is exact

    def __init__(self, config: ModelConfig, num_diffusion_steps: int = 1000) -> None:
        _check_config(config)
        self.spike_coding = config.spike_coding  # one of SPIKE_CODINGS (checked by the config)
        levels = 2**config.quant_bits - 1
        if self.spike_coding != "signed-if":
            steps = coding_steps(self.spike_coding, levels)
            if config.spike_steps != steps or config.slack_steps:
                raise ValueError(f"the {self.spike_coding!r} code of {config.quant_bits}-bit levels runs "
                                 f"model.spike_steps={steps} and no slack steps (got {config.spike_steps}, "
                                 f"{config.slack_steps})")
            self.count_levels = levels
            act, residual = (lambda: CountCodedNeuron(levels, self.spike_coding),
                             lambda s: CountCodedNeuron(levels, self.spike_coding, symmetric=s))
        else:
            if not 0 <= config.slack_steps < config.spike_steps:
                raise ValueError(f"model.slack_steps ({config.slack_steps}) must be below model.spike_steps "
                                 f"({config.spike_steps}): the neurons need at least one level")
            self.count_levels = levels = config.spike_steps - config.slack_steps  # the largest count a neuron sends
            act, residual = (lambda: SignedIFNeuron(config.spike_steps, max_count=levels),
                             lambda s: SignedIFNeuron(config.spike_steps, symmetric=s, max_count=levels))
        self.spike_steps = config.spike_steps
        super().__init__(config, num_diffusion_steps, norm=nn.BatchNorm2d, act=act, middle_attn=False,
                         residual_act=_residual(config, residual))
        self.register_buffer("spike_step_weights", step_weights("phase", self.count_levels)
                             if self.spike_coding == "phase" else torch.ones(self.spike_steps), persistent=False)

    def train(self, mode: bool = True) -> ConvertedSNN:
        """BatchNorm stays at its running statistics even in training (fine-tuning): with batch
        statistics it would stop being the fixed affine map the conversion relies on."""
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """What is the same on every spiking step runs once (docs/architecture.md: work only where time
        changes something): the stem, whose input is the image, and the time embedding's first layer,
        whose input is the sinusoid of t. The output convolution still runs on every step's spikes (it
        is 0.1% of a small U-Net's operations).

        Integrate-then-fire codes without gradients run one pass on the levels (:meth:`_on_levels`),
        the T-step simulation's exact equal, unless ``simulate_spikes`` asks for the spikes (the
        energy counter does). Otherwise, without gradients (sampling, energy) the signed IF network's
        T steps run one after another, each through the whole network on ``[B, ...]``, the neurons
        keeping their membranes between steps: every layer between two neurons works on one step at a
        time, so this is the folded computation reordered, at the memory footprint of one ANN
        evaluation instead of T. With gradients (block-wise fine-tuning) the network runs folded,
        ``[T*B, ...]``, which autograd needs; so does a network whose ``run_stepwise`` is off
        (block-wise fine-tuning reads a block's folded inputs), and an integrate-then-fire network
        simulated (its neurons wait for their whole input)."""
        T = self.spike_steps
        embedding = self.time_embedding
        first = embedding.linear1(F.embedding(t, embedding.table))
        stem = self.stem(x)
        exact = self.spike_coding != "signed-if"
        if exact and not torch.is_grad_enabled() and not self.simulate_spikes:
            return self._on_levels(stem, first, y)
        if torch.is_grad_enabled() or not self.run_stepwise or exact:
            temb = embedding.linear2(embedding.act(first.repeat(T, 1)))
            temb = add_class(temb, self.class_embedding, None if y is None else y.repeat(T))
            out = self.body(stem.repeat(T, 1, 1, 1), temb)
            out = out.view(T, x.shape[0], *out.shape[1:])
            return weighted_mean(out, self.spike_step_weights).to(out.dtype) if exact else out.mean(0)
        neurons = [m for m in self.modules() if isinstance(m, SignedIFNeuron)]
        for neuron in neurons:
            neuron.state = {}
        try:
            total = None
            for _ in range(T):
                out = self.body(stem, add_class(embedding.linear2(embedding.act(first)), self.class_embedding, y))
                total = out.float() if total is None else total.add_(out)  # the mean in fp32, as the folded one
        finally:
            for neuron in neurons:
                neuron.state = None
        return (total / T).to(out.dtype)

    def _on_levels(self, stem: torch.Tensor, first: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """The integrate-then-fire network in one pass: every neuron takes the time-mean of its input
        and returns the mean of its spikes (``level / L``). Every layer between two neurons is affine
        with the same map on every step, so the time-means pass through them unchanged and this is the
        T-step simulation's output, up to float summation order (``tests/test_count_coded.py``), at the
        cost of one quantised-ANN evaluation."""
        neurons = [m for m in self.modules() if isinstance(m, CountCodedNeuron)]
        for neuron in neurons:
            neuron.on_levels = True
        try:
            embedding = self.time_embedding
            return self.body(stem, add_class(embedding.linear2(embedding.act(first)), self.class_embedding, y))
        finally:
            for neuron in neurons:
                neuron.on_levels = False
