"""Quantised ANN -> SNN (SDM, Cao et al. 2024): same weights, signed IF neurons in place of the quantisers.

Each quantiser ``alpha * round(clamp(x / alpha, 0, 1) * L) / L`` becomes a signed IF neuron with
threshold ``alpha`` whose spikes (-1, 0, +1) count, over T = L steps, the same ``round(x / alpha * L)``
for a constant input. The factor ``alpha`` (and the ``1 / T`` of the rate) moves into the layer that
consumes the neuron's output: its weight is multiplied by ``alpha`` and the network averages its output
over T, so the SNN computes ``W (alpha * count / T) + b`` where the ANN computed ``W q(x) + b``.

``coding`` picks the neuron (``model.spike_coding``): SDM's signed IF fires while its input arrives,
so its counts drift from the levels where inputs arrive unevenly; the integrate-then-fire codes
(``count``: T = L, ``phase``: T = b) send the levels exactly (``spikediff.snn.count_coded``).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from spikediff.config import SPIKE_CODINGS, Config
from spikediff.models.ann_unet import Downsample, ResBlock, UNet, Upsample
from spikediff.models.quant_unet import ConvertedSNN, QuantReLU, QuantUNet
from spikediff.snn.count_coded import coding_steps


def activation_consumers(model: UNet) -> list[tuple[str, str]]:
    """``(activation, the layer fed by it)`` module names for every activation of the U-Net skeleton."""
    pairs = [("time_embedding.act", "time_embedding.linear2")]
    for name, module in model.named_modules():
        if isinstance(module, ResBlock):
            pairs += [(f"{name}.act1", f"{name}.conv1"), (f"{name}.temb_act", f"{name}.temb_proj"),
                      (f"{name}.act2", f"{name}.conv2")]
            if not isinstance(module.shortcut_act, nn.Identity):  # model.quant_all_convs
                pairs.append((f"{name}.shortcut_act", f"{name}.shortcut"))
        elif isinstance(module, Downsample | Upsample) and not isinstance(module.act, nn.Identity):
            pairs.append((f"{name}.act", f"{name}.conv"))
    return [*pairs, ("tail_act", "tail_conv")]


def default_spike_steps(quant_bits: int) -> int:
    """T = 2^b - 1: as many steps as the quantiser has levels above zero."""
    return 2**quant_bits - 1


def convert(qann: nn.Module, config: Config, spike_steps: int | None = None, slack_steps: int = 0,
            coding: str = "signed-if") -> tuple[ConvertedSNN, Config]:
    """The SNN of a trained quantised ANN (``arch="qann_unet"``), and its config, ready to save.

    ``slack_steps`` S runs T = L + S steps for the L = 2^b - 1 levels (``spike_steps`` defaults to that):
    each neuron's threshold is ``alpha * T / L`` and its count capped at L, so that a constant input counts
    the quantiser's level and the next layer (whose weight takes the threshold) sees ``alpha * count / L``
    as in the ANN; the S extra steps let a neuron at the top level miss spikes while its input arrives.
    The integrate-then-fire codings run their own T and need no slack."""
    if not isinstance(qann, QuantUNet):
        raise ValueError(f"ann2snn converts a quantised ANN (arch 'qann_unet', e.g. preset fmnist-qann-small); "
                         f"this checkpoint is {config.model.arch!r}")
    if coding not in SPIKE_CODINGS:
        raise ValueError(f"unknown spike coding {coding!r}; expected one of {SPIKE_CODINGS}")
    levels = default_spike_steps(config.model.quant_bits)
    if coding != "signed-if":
        own = coding_steps(coding, levels)
        if slack_steps or (spike_steps and spike_steps != own):
            raise ValueError(f"the {coding!r} code sends {config.model.quant_bits}-bit levels exactly in T = {own} "
                             f"steps: it takes neither another T nor slack steps")
        spike_steps = own
    steps = spike_steps or levels + slack_steps
    if steps < 1:
        raise ValueError(f"spike_steps must be >= 1, got {steps}")
    if slack_steps and steps != levels + slack_steps:
        raise ValueError(f"with slack_steps={slack_steps}, T is the {levels} levels of {config.model.quant_bits}-bit "
                         f"quantisers plus the slack: {levels + slack_steps}, not {steps}")
    suffix = (f"-slack{slack_steps}" if slack_steps else "") + ("" if coding == "signed-if" else f"-{coding}")
    snn_config = replace(config, name=f"{config.name}-snn-t{steps}{suffix}",
                         model=replace(config.model, arch="converted_snn", spike_steps=steps, slack_steps=slack_steps,
                                       spike_coding=coding))
    scale = steps / levels if slack_steps else 1.0
    modules = dict(qann.named_modules())
    state = {k: v.detach().clone() for k, v in qann.state_dict().items()}
    for act, consumer in activation_consumers(qann):
        if not isinstance(modules[act], QuantReLU):
            raise ValueError(f"{act} is {type(modules[act]).__name__}, not a quantiser: not a quantised ANN")
        state[f"{act}.alpha"] = state[f"{act}.alpha"] * scale
        state[f"{consumer}.weight"] = state[f"{consumer}.weight"] * state[f"{act}.alpha"]
    reference = next(qann.parameters())
    snn = ConvertedSNN(snn_config.model, config.diffusion.num_steps).to(reference.dtype)
    snn.load_state_dict(state)
    return snn.to(reference.device).eval(), snn_config


def quantised_ann_of(snn: ConvertedSNN, config: Config) -> QuantUNet:
    """The quantised ANN a converted SNN computes, with its trained weights: :func:`convert` undone (each
    consumer's weight divided by its neuron's threshold, the threshold back at its quantiser's clip). The
    energy report compares the SNN with it, so that counts which depend on the activations (NeuroBench's
    effective operations skip zeros) are of the trained network, not of random weights."""
    model = config.model
    scale = model.spike_steps / (model.spike_steps - model.slack_steps) if model.slack_steps else 1.0
    state = {k: v.detach().clone() for k, v in snn.state_dict().items()}
    for act, consumer in activation_consumers(snn):
        state[f"{consumer}.weight"] = state[f"{consumer}.weight"] / state[f"{act}.alpha"]
        state[f"{act}.alpha"] = state[f"{act}.alpha"] / scale
    reference = next(snn.parameters())
    qann = QuantUNet(replace(model, arch="qann_unet"), config.diffusion.num_steps).to(reference.dtype)
    qann.load_state_dict(state)
    return qann.to(reference.device).eval()


@torch.no_grad()
def output_error(snn: ConvertedSNN, qann: nn.Module, x: torch.Tensor, t: torch.Tensor) -> float:
    """Mean squared difference between the SNN's and the quantised ANN's predictions on ``(x, t)``, the
    SNN's spikes simulated (not an integrate-then-fire network's one-pass shortcut, which would agree
    with the quantised ANN by construction)."""
    simulates, snn.simulate_spikes = snn.simulate_spikes, True
    try:
        return float((snn.eval()(x, t) - qann.eval()(x, t)).square().mean())
    finally:
        snn.simulate_spikes = simulates
