"""Noise schedules as data: a ``NoiseSchedule`` is its float64 ``betas`` and what follows from them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from spikediff.config import DiffusionConfig


@dataclass(frozen=True)
class NoiseSchedule:
    """``betas [N]`` in float64 (as DDPM computes them, so respaced coefficients stay exact)."""

    betas: torch.Tensor

    def __post_init__(self) -> None:
        b = self.betas
        if b.dim() != 1 or b.dtype != torch.float64:
            raise ValueError("betas must be a 1-D float64 tensor")
        if not bool(((b > 0) & (b < 1)).all()):
            raise ValueError("betas must lie in (0, 1)")

    @property
    def num_steps(self) -> int:
        return self.betas.shape[0]

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """``alpha_bar_t = prod_{s <= t} (1 - beta_s)``."""
        return torch.cumprod(1.0 - self.betas, dim=0)

    @classmethod
    def linear(cls, num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> NoiseSchedule:
        """DDPM's linear betas (1e-4 .. 0.02 over 1000 steps in every paper here)."""
        return cls(torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64))

    @classmethod
    def cosine(cls, num_steps: int = 1000, offset: float = 0.008, max_beta: float = 0.999) -> NoiseSchedule:
        """Nichol & Dhariwal's cosine schedule (used by FSDDIM), betas clipped at ``max_beta``."""
        s = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
        f = torch.cos((s + offset) / (1 + offset) * math.pi / 2) ** 2
        betas = (1 - f[1:] / f[:-1]).clamp(max=max_beta)
        return cls(betas)

    @classmethod
    def from_config(cls, config: DiffusionConfig) -> NoiseSchedule:
        if config.schedule == "linear":
            return cls.linear(config.num_steps, config.beta_start, config.beta_end)
        if config.schedule == "cosine":
            return cls.cosine(config.num_steps)
        raise ValueError(f"unknown schedule {config.schedule!r}; expected 'linear' or 'cosine'")


def gather(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``values[t]`` shaped ``[B, 1, 1, ...]`` to broadcast against ``like``, in ``like``'s dtype."""
    out = values.to(like.device)[t].to(like.dtype)
    return out.view(t.shape[0], *([1] * (like.dim() - 1)))
