"""Gaussian diffusion: schedules, the training objective, and samplers."""

from spikediff.diffusion.absorbing import absorbing_loss, mask_tokens, sample_absorbing
from spikediff.diffusion.denoiser import PREDICTIONS, Denoiser, to_x0_eps
from spikediff.diffusion.guidance import ClassGuided
from spikediff.diffusion.objectives import diffusion_loss, q_sample, snr_weight, training_target
from spikediff.diffusion.samplers import (
    SAMPLERS,
    analytic_variances,
    estimate_gamma,
    respaced_coefficients,
    sample_analytic_dpm,
    sample_ddim,
    sample_ddpm,
    sample_dpm_solver_pp,
    sampling_timesteps,
)
from spikediff.diffusion.schedule import NoiseSchedule

__all__ = [
    "ClassGuided",
    "Denoiser",
    "absorbing_loss",
    "mask_tokens",
    "sample_absorbing",
    "PREDICTIONS",
    "SAMPLERS",
    "analytic_variances",
    "estimate_gamma",
    "sample_analytic_dpm",
    "sample_dpm_solver_pp",
    "NoiseSchedule",
    "diffusion_loss",
    "q_sample",
    "respaced_coefficients",
    "sample_ddim",
    "sample_ddpm",
    "sampling_timesteps",
    "snr_weight",
    "to_x0_eps",
    "training_target",
]
