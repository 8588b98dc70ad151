"""The training objective and the conversions between what a network predicts (eps, v or x0)."""

from __future__ import annotations

import torch

from spikediff.diffusion.denoiser import PREDICTIONS, ModelFn, split_variance, to_x0_eps
from spikediff.diffusion.learned_variance import variational_bound_bits
from spikediff.diffusion.schedule import NoiseSchedule, gather


def q_sample(schedule: NoiseSchedule, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise``."""
    abar = gather(schedule.alphas_cumprod, t, x0)
    return abar.sqrt() * x0 + (1 - abar).sqrt() * noise


def training_target(prediction: str, x0: torch.Tensor, noise: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """What the network should output: the noise, ``v = sqrt(abar) eps - sqrt(1-abar) x0``, or x0."""
    if prediction == "eps":
        return noise
    if prediction == "v":
        return abar.sqrt() * noise - (1 - abar).sqrt() * x0
    if prediction == "x0":
        return x0
    raise ValueError(f"unknown prediction {prediction!r}; expected one of {PREDICTIONS}")


def snr_weight(prediction: str, abar: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma loss weights (Hang et al., 2023): the x0-error weight ``min(snr, gamma)`` expressed
    for the target the network predicts (eps: divided by snr; v: by snr + 1). Low-noise steps, whose
    easy, high-SNR errors otherwise pull the shared weights their way, stop dominating the gradient."""
    snr = abar / (1 - abar)
    clipped = snr.clamp(max=gamma)
    if prediction == "eps":
        return clipped / snr
    if prediction == "v":
        return clipped / (snr + 1)
    if prediction == "x0":
        return clipped
    raise ValueError(f"unknown prediction {prediction!r}; expected one of {PREDICTIONS}")


def diffusion_loss(
    model: ModelFn,
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    prediction: str = "eps",
    generator: torch.Generator | None = None,
    t: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    learned_variance: bool = False,
    min_snr_gamma: float | None = None,
) -> torch.Tensor:
    """DDPM's simple loss: MSE between the network output and its target at a uniform random t.

    ``t`` and ``noise`` may be given (a distributed step draws them for the global batch and hands
    each rank its share, so that N ranks reproduce one process exactly). ``learned_variance``: the
    network also outputs its variance and the loss is IDDPM's hybrid (see ``learned_variance.py``).
    ``min_snr_gamma``: weight each image's error by ``snr_weight`` (Min-SNR-gamma) instead of uniformly."""
    if t is None:
        t = torch.randint(0, schedule.num_steps, (x0.shape[0],), device=x0.device, generator=generator)
    if noise is None:
        noise = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
    x_t = q_sample(schedule, x0, t, noise)
    abar = gather(schedule.alphas_cumprod, t, x0)
    target = training_target(prediction, x0, noise, abar)
    if not learned_variance:
        if min_snr_gamma is None:
            return torch.nn.functional.mse_loss(model(x_t, t), target)
        error = (model(x_t, t).float() - target).square().flatten(1).mean(1)
        return (snr_weight(prediction, abar.flatten(), min_snr_gamma) * error).mean()
    out, v = split_variance(model(x_t, t), x0.shape[1], learned_variance=True)
    x0_hat, _ = to_x0_eps(prediction, out.detach().float(), x_t, abar)
    bound = variational_bound_bits(schedule, x0, x_t, t, x0_hat, v.float())
    return torch.nn.functional.mse_loss(out, target) + bound.mean()
