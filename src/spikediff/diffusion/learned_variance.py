"""Learned reverse-process variance (Nichol & Dhariwal 2021), the option SDiT's reference trains with.

A network with a learned variance outputs ``2C`` channels: the usual prediction, then ``v`` in
about [-1, 1] that interpolates the log-variance of each reverse step between the two DDPM bounds,
``log var = f log(beta_t) + (1 - f) log(posterior variance_t)``, ``f = (v + 1) / 2``. It is trained
by the "hybrid" loss: the simple MSE plus the variational bound term of step ``t`` in bits, with
the predicted mean held fixed so that the bound trains only ``v`` (IDDPM's ``L_hybrid``, with the
bound term unscaled, as DiT and SDiT use it).
"""

from __future__ import annotations

import math

import torch

from spikediff.diffusion.schedule import NoiseSchedule, gather


def interpolated_log_variance(v: torch.Tensor, beta: torch.Tensor, posterior_var: torch.Tensor) -> torch.Tensor:
    """``f log beta + (1 - f) log posterior_var`` with ``f = (v + 1) / 2`` (bounds broadcast against v)."""
    frac = (v + 1) / 2
    return frac * beta.log() + (1 - frac) * posterior_var.log()


def _posterior(schedule: NoiseSchedule) -> dict[str, torch.Tensor]:
    """float64 DDPM posterior coefficients per step; the log-variance of step 0 (variance 0) is
    clipped to step 1's, as IDDPM does."""
    betas, abar = schedule.betas, schedule.alphas_cumprod
    abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])
    var = betas * (1 - abar_prev) / (1 - abar)
    return {"var_clipped": torch.cat([var[1:2], var[1:]]), "coef_x0": abar_prev.sqrt() * betas / (1 - abar),
            "coef_xt": (1 - betas).sqrt() * (1 - abar_prev) / (1 - abar)}


def _normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """KL divergence between two diagonal Gaussians given by means and log-variances."""
    spread = torch.exp(logvar1 - logvar2) + (mean1 - mean2).square() * torch.exp(-logvar2)
    return 0.5 * (logvar2 - logvar1 - 1.0 + spread)


def _approx_std_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """The tanh approximation of the standard normal CDF that IDDPM's decoder likelihood uses."""
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def _discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """Log-probability of 8-bit images ``x`` in [-1, 1] under a Gaussian integrated over each pixel's bin."""
    centered, inv_std = x - mean, torch.exp(-log_scale)
    cdf_plus = _approx_std_normal_cdf(inv_std * (centered + 1 / 255))
    cdf_min = _approx_std_normal_cdf(inv_std * (centered - 1 / 255))
    log_cdf_plus = cdf_plus.clamp(min=1e-12).log()
    log_one_minus_cdf_min = (1 - cdf_min).clamp(min=1e-12).log()
    log_delta = (cdf_plus - cdf_min).clamp(min=1e-12).log()
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_delta))


def variational_bound_bits(schedule: NoiseSchedule, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor,
                           x0_hat: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Per-image bound term ``L_t`` in bits: ``KL(q(x_{t-1} | x_t, x0) || p(x_{t-1} | x_t))`` for
    t > 0, the decoder's negative log-likelihood of ``x0`` for t = 0. The model mean comes from the
    predicted ``x0_hat`` (detach it to train only ``v``)."""
    post = _posterior(schedule)
    coef_x0, coef_xt = gather(post["coef_x0"], t, x_t), gather(post["coef_xt"], t, x_t)
    true_mean, model_mean = coef_x0 * x0 + coef_xt * x_t, coef_x0 * x0_hat + coef_xt * x_t
    true_logvar = gather(post["var_clipped"], t, x_t).log()
    model_logvar = interpolated_log_variance(v, gather(schedule.betas, t, x_t), gather(post["var_clipped"], t, x_t))
    dims = list(range(1, x0.dim()))
    kl = _normal_kl(true_mean, true_logvar, model_mean, model_logvar).mean(dims) / math.log(2.0)
    nll = -_discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * model_logvar).mean(dims) / math.log(2.0)
    return torch.where(t == 0, nll, kl)
