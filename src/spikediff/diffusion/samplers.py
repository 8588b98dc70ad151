"""Samplers as stateless functions of (denoiser, schedule, noise, steps, generator).

The denoiser (:class:`~spikediff.diffusion.denoiser.Denoiser`) carries the network's prediction
type, variance output and clipping; a plain model function counts as an eps-predicting network,
clipped.

Every sampler accepts any number of steps: ``steps`` is a count (spread evenly over the schedule
from t = N-1, ending at t = 0 for two steps or more) or an explicit descending list of diffusion
steps. Random draws come from a CPU generator and are moved to the sample's device, so one seed
gives the same images on every device. DDPM on a subsequence
uses the *respaced* chain's coefficients (the betas of the jumps between the chosen steps), not the
single-step coefficients that the reference SDDPM code reuses when it strides.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import torch

from spikediff.diffusion.denoiser import Denoiser, ModelFn, as_denoiser
from spikediff.diffusion.learned_variance import interpolated_log_variance
from spikediff.diffusion.schedule import NoiseSchedule

Callback = Callable[[int, int, torch.Tensor], None]  # (index, t, x after the step)
VARIANCES = ("fixedlarge", "fixedsmall", "learned")


def sampling_timesteps(num_diffusion_steps: int, steps: int | Sequence[int]) -> list[int]:
    """The descending diffusion steps a sampler visits; ``K`` evenly spaced from ``N-1`` down to 0
    (``K = 1`` visits only ``N-1``)."""
    if isinstance(steps, int):
        if not 1 <= steps <= num_diffusion_steps:
            raise ValueError(f"number of sampling steps must be in 1..{num_diffusion_steps}, got {steps}")
        ts = torch.linspace(num_diffusion_steps - 1, 0, steps, dtype=torch.float64).round().long().tolist()
    else:
        ts = [int(t) for t in steps]
    if not ts or any(a <= b for a, b in zip(ts, ts[1:], strict=False)) or ts[-1] < 0:
        raise ValueError(f"sampling steps must be strictly descending and >= 0, got {ts}")
    if ts[0] >= num_diffusion_steps:
        raise ValueError(f"sampling step {ts[0]} is outside the schedule (0..{num_diffusion_steps - 1})")
    return ts


def respaced_coefficients(schedule: NoiseSchedule, timesteps: Sequence[int]) -> dict[str, torch.Tensor]:
    """float64 coefficients of the DDPM chain restricted to ``timesteps`` (descending).

    For the jump from ``t`` to the next visited step ``t'`` (``abar_prev = 1`` after the last):
    ``beta = 1 - abar_t / abar_t'``, the posterior ``q(x_t' | x_t, x0)`` mean coefficients and
    variance. With all N steps these are exactly DDPM's own.
    """
    abar_all = schedule.alphas_cumprod
    abar = abar_all[list(timesteps)]
    abar_prev = torch.cat([abar_all[list(timesteps[1:])], abar.new_ones(1)])
    beta = 1 - abar / abar_prev
    return {
        "abar": abar,
        "abar_prev": abar_prev,
        "beta": beta,
        "posterior_var": beta * (1 - abar_prev) / (1 - abar),
        "coef_x0": abar_prev.sqrt() * beta / (1 - abar),
        "coef_xt": (1 - beta).sqrt() * (1 - abar_prev) / (1 - abar),
    }


def _randn(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise shaped like ``x``, drawn on the CPU (where the generator lives)."""
    return torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)


def _ancestral(denoiser: Denoiser, schedule, noise, ts, var, generator, callback) -> torch.Tensor:
    """The DDPM reverse chain over ``ts``: posterior mean at the predicted x0, plus ``var[i]`` noise
    (``var=None``: the variance the network predicts, between the respaced beta and posterior variance)."""
    if var is None and not denoiser.learned_variance:
        raise ValueError("variance='learned' needs a network that predicts it (model.learn_sigma)")
    c = respaced_coefficients(schedule, ts)
    x = noise
    for i, t in enumerate(ts):
        x0, _, v = denoiser(x, t, c["abar"][i])
        x = float(c["coef_x0"][i]) * x0 + float(c["coef_xt"][i]) * x
        if i < len(ts) - 1:
            if var is None:
                log_var = interpolated_log_variance(v.float(), c["beta"][i].float(), c["posterior_var"][i].float())
                x = x + torch.exp(0.5 * log_var).to(x.dtype) * _randn(x, generator)
            else:
                x = x + float(var[i].sqrt()) * _randn(x, generator)
        if callback is not None:
            callback(i, t, x)
    return x


@torch.no_grad()
def sample_ddpm(
    denoiser: Denoiser | ModelFn,
    schedule: NoiseSchedule,
    noise: torch.Tensor,
    steps: int | Sequence[int] = 1000,
    generator: torch.Generator | None = None,
    variance: str = "fixedlarge",
    callback: Callback | None = None,
) -> torch.Tensor:
    """Ancestral DDPM sampling from ``noise`` (``x_T``).

    ``variance="fixedlarge"`` uses the (respaced) beta, ``"fixedsmall"`` the posterior variance
    (DDPM's two choices; pytorch-ddpm and SDDPM sample with fixedlarge); ``"learned"`` the variance
    a network with ``learn_sigma`` predicts (IDDPM, SDiT's reference). No noise is added at the
    last step.
    """
    if variance not in VARIANCES:
        raise ValueError(f"unknown variance {variance!r}; expected one of {VARIANCES}")
    ts = sampling_timesteps(schedule.num_steps, steps)
    c = respaced_coefficients(schedule, ts)
    var = {"fixedlarge": c["beta"], "fixedsmall": c["posterior_var"], "learned": None}[variance]
    return _ancestral(as_denoiser(denoiser), schedule, noise, ts, var, generator, callback)


@torch.no_grad()
def sample_ddim(
    denoiser: Denoiser | ModelFn,
    schedule: NoiseSchedule,
    noise: torch.Tensor,
    steps: int | Sequence[int] = 50,
    generator: torch.Generator | None = None,
    eta: float = 0.0,
    callback: Callback | None = None,
) -> torch.Tensor:
    """DDIM (Song et al. 2021): deterministic for ``eta=0``; ``eta=1`` is DDPM-like ancestral noise."""
    denoiser = as_denoiser(denoiser)
    ts = sampling_timesteps(schedule.num_steps, steps)
    c = respaced_coefficients(schedule, ts)
    x = noise
    for i, t in enumerate(ts):
        abar, abar_prev = c["abar"][i], c["abar_prev"][i]
        x0, eps, _ = denoiser(x, t, abar)
        sigma = eta * ((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)).sqrt()
        x = float(abar_prev.sqrt()) * x0 + float((1 - abar_prev - sigma**2).clamp(min=0).sqrt()) * eps
        if eta > 0 and i < len(ts) - 1:
            x = x + float(sigma) * _randn(x, generator)
        if callback is not None:
            callback(i, t, x)
    return x



@torch.no_grad()
def sample_dpm_solver_pp(
    denoiser: Denoiser | ModelFn,
    schedule: NoiseSchedule,
    noise: torch.Tensor,
    steps: int | Sequence[int] = 20,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022): the multistep second-order solver of the diffusion ODE in
    data prediction, one network evaluation per step.

    The first and the last update are first order (they equal DDIM's): with evenly spaced steps the
    last jump in log-SNR is by far the largest, and extrapolating over it overshoots (diffusers'
    ``lower_order_final``; measured on Gaussian data in the tests). The last evaluation's x0
    prediction is returned, as DDIM does, so K steps cost exactly K evaluations. ``generator`` is unused (the solver is
    deterministic) and accepted for a uniform signature.
    """
    denoiser = as_denoiser(denoiser)
    ts = sampling_timesteps(schedule.num_steps, steps)
    abar = schedule.alphas_cumprod[ts]
    alpha, sigma = abar.sqrt(), (1 - abar).sqrt()
    lam = torch.log(alpha / sigma)
    x, x0_prev = noise, None
    for i, t in enumerate(ts):
        x0, _, _ = denoiser(x, t, abar[i])
        if i == len(ts) - 1:
            x = x0
        else:
            h = lam[i + 1] - lam[i]
            d = x0
            if x0_prev is not None and i < len(ts) - 2:
                r = (lam[i] - lam[i - 1]) / h
                d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev
            x = float(sigma[i + 1] / sigma[i]) * x - float(alpha[i + 1] * torch.expm1(-h)) * d
        x0_prev = x0
        if callback is not None:
            callback(i, t, x)
    return x


def analytic_variances(schedule: NoiseSchedule, timesteps: Sequence[int], gamma: Sequence[float]) -> torch.Tensor:
    """Analytic-DPM's optimal reverse variances (Bao et al. 2022, Thm. 1, on the respaced chain).

    ``gamma[i] = E ||eps_theta(x_t, t)||^2 / d`` at ``timesteps[i]``. For the jump t -> s:
    ``sigma^2 = lambda^2 + (sqrt(beta_bar_t / alpha) - sqrt(beta_bar_s - lambda^2))^2 (1 - gamma)``,
    with ``lambda^2`` the posterior variance, ``alpha = abar_t / abar_s`` and ``beta_bar = 1 - abar``.
    ``1 - gamma`` is clipped to [0, 1], which keeps the variance between Analytic-DPM's own bounds:
    the posterior variance (gamma = 1) and ``lambda^2 + (...)^2`` (gamma = 0).
    """
    c = respaced_coefficients(schedule, timesteps)
    lam2 = c["posterior_var"]
    bbar_t, bbar_s = 1 - c["abar"], 1 - c["abar_prev"]
    alpha = c["abar"] / c["abar_prev"]
    g = torch.as_tensor(list(gamma), dtype=torch.float64)
    gap = ((bbar_t / alpha).sqrt() - (bbar_s - lam2).clamp(min=0).sqrt()) ** 2
    return lam2 + gap * (1 - g).clamp(0, 1)


@torch.no_grad()
def estimate_gamma(
    denoiser: Denoiser | ModelFn,
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    timesteps: Sequence[int],
    generator: torch.Generator | None = None,
) -> list[float]:
    """Monte-Carlo ``E ||eps_theta(x_t, t)||^2 / d`` over data ``x0`` at each of ``timesteps``: the one
    statistic of the noise network that Analytic-DPM needs."""
    from spikediff.diffusion.objectives import q_sample

    denoiser = replace(as_denoiser(denoiser), clip=False)  # the network's own eps, unclipped
    out = []
    for t in timesteps:
        t_batch = torch.full((x0.shape[0],), int(t), device=x0.device, dtype=torch.long)
        x_t = q_sample(schedule, x0, t_batch, _randn(x0, generator))
        _, eps, _ = denoiser(x_t, t, schedule.alphas_cumprod[int(t)])
        out.append(eps.double().square().mean().item())
    return out


@torch.no_grad()
def sample_analytic_dpm(
    denoiser: Denoiser | ModelFn,
    schedule: NoiseSchedule,
    noise: torch.Tensor,
    steps: int | Sequence[int] = 50,
    generator: torch.Generator | None = None,
    gamma: Sequence[float] | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Ancestral sampling with Analytic-DPM's variances (``gamma`` from :func:`estimate_gamma` at the
    same steps); the mean is DDPM's posterior mean at the predicted x0."""
    ts = sampling_timesteps(schedule.num_steps, steps)
    if gamma is None or len(gamma) != len(ts):
        raise ValueError(f"Analytic-DPM needs gamma at each of the {len(ts)} sampling steps (see estimate_gamma)")
    var = analytic_variances(schedule, ts, gamma)
    return _ancestral(as_denoiser(denoiser), schedule, noise, ts, var, generator, callback)


SAMPLERS = {
    "ddpm": sample_ddpm,
    "ddim": sample_ddim,
    "dpm-solver++": sample_dpm_solver_pp,
    "analytic-dpm": sample_analytic_dpm,
}
