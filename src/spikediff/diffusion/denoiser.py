"""The one interface between a backbone and everything that uses its predictions.

A backbone outputs what it was trained to predict (the noise, v or x0; with a learned variance,
also its interpolation channels). :class:`Denoiser` turns that output, once, into what samplers and
guidance need: the denoised image ``x0`` (optionally clipped to [-1, 1], with the noise made
consistent with it), the noise ``eps`` and the variance channels ``v``. Whether a network learns its
variance is said by its config (``model.learn_sigma``), never guessed from its output's shape.
(As EDM's ``EDMPrecond`` and k-diffusion's ``external.py`` put one wrapper between networks and samplers.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
PREDICTIONS = ("eps", "v", "x0")


def split_variance(
    out: torch.Tensor, channels: int, learned_variance: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(prediction, v)`` of a network output: ``v`` is the second half of a network that learns its
    variance, None otherwise; an output of the wrong width is refused with both widths named."""
    expected = 2 * channels if learned_variance else channels
    if out.shape[1] != expected:
        kind = "learns its variance (model.learn_sigma)" if learned_variance else "predicts without a variance"
        raise ValueError(f"network output has {out.shape[1]} channels; a network that {kind} has {expected} "
                         f"for {channels}-channel images")
    return (out[:, :channels], out[:, channels:]) if learned_variance else (out, None)


def to_x0_eps(prediction: str, output: torch.Tensor, x_t: torch.Tensor, abar: torch.Tensor):
    """Turn a network output into ``(x0_hat, eps_hat)`` at noise level ``abar``."""
    a, s = abar.sqrt(), (1 - abar).sqrt()
    if prediction == "eps":
        return (x_t - s * output) / a, output
    if prediction == "v":
        return a * x_t - s * output, s * x_t + a * output
    if prediction == "x0":
        return output, (x_t - a * output) / s
    raise ValueError(f"unknown prediction {prediction!r}; expected one of {PREDICTIONS}")


@dataclass
class Denoiser:
    """``model`` with its prediction type, variance output and clipping: ``denoiser(x, t, abar)`` is
    ``(x0, eps, v)`` at diffusion step ``t`` (one step for the whole batch, noise level ``abar``)."""

    model: ModelFn
    prediction: str = "eps"
    learned_variance: bool = False
    clip: bool = True

    def output(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The network's prediction and variance channels at steps ``t [B]``."""
        return split_variance(self.model(x, t), x.shape[1], self.learned_variance)

    def __call__(self, x: torch.Tensor, t: int, abar) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        t_batch = torch.full((x.shape[0],), int(t), device=x.device, dtype=torch.long)
        abar_x = torch.as_tensor(abar, dtype=x.dtype, device=x.device)
        out, v = self.output(x, t_batch)
        x0, eps = to_x0_eps(self.prediction, out, x, abar_x)
        if self.clip:
            x0 = x0.clamp(-1, 1)
            eps = (x - abar_x.sqrt() * x0) / (1 - abar_x).sqrt()
        return x0, eps, v


def as_denoiser(model: Denoiser | ModelFn) -> Denoiser:
    """A plain model function is an eps-predicting network without a variance, clipped as DDPM does."""
    return model if isinstance(model, Denoiser) else Denoiser(model)
