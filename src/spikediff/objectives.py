"""What a training step minimises, per model family. Every random draw of a step is made for the
whole global batch from the step's seeded generator (``draws``), then each rank and micro-batch takes
its slice: so results do not depend on how the batch is split, and resuming replays the same draws.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from spikediff.config import Config
from spikediff.diffusion import NoiseSchedule, absorbing_loss, diffusion_loss

Draws = dict[str, torch.Tensor]


@dataclass
class Objective:
    """``draws(batch_shape, generator)`` then ``loss(step_model, x0, draws)`` for a slice of the batch."""

    draws: Callable[[torch.Size, torch.Generator], Draws]
    loss: Callable[[nn.Module, torch.Tensor, Draws], torch.Tensor]
    notes: dict = field(default_factory=dict)


def gaussian_objective(config: Config) -> Objective:
    """The Gaussian diffusion loss (eps / v / x0 prediction) at uniformly drawn diffusion steps.

    A class-conditional model (``num_classes`` > 0) gets the batch's labels (``draws["y"]``, set by
    the trainer), each replaced by the "no class" label with probability ``class_dropout``: the
    unconditional prediction that classifier-free guidance needs is learned by the same network.
    """
    schedule = NoiseSchedule.from_config(config.diffusion)
    num_classes, dropout = config.model.num_classes, config.model.class_dropout

    def draws(shape: torch.Size, gen: torch.Generator) -> Draws:
        d = {"t": torch.randint(0, schedule.num_steps, (shape[0],), generator=gen),
             "noise": torch.randn(shape, generator=gen)}
        if num_classes:
            d["drop"] = torch.rand(shape[0], generator=gen) < dropout
        return d

    def loss(step_model: nn.Module, x0: torch.Tensor, d: Draws) -> torch.Tensor:
        model = step_model
        if num_classes:
            y = torch.where(d["drop"], num_classes, d["y"])
            model = partial(step_model, y=y)
        return diffusion_loss(model, schedule, x0, config.diffusion.prediction, t=d["t"], noise=d["noise"],
                              learned_variance=config.model.learn_sigma, min_snr_gamma=config.diffusion.min_snr_gamma)

    return Objective(draws, loss)


def vq_objective(data_variance: float) -> Objective:
    """VQ-SVAE: reconstruction MSE over the data variance (the reference's scale) + both VQ losses."""

    def loss(step_model: nn.Module, x0: torch.Tensor, d: Draws) -> torch.Tensor:
        recon, terms = step_model(x0)
        return F.mse_loss(recon.float(), x0) / data_variance + terms["vq"] + terms["spike_vq"]

    return Objective(lambda shape, gen: {}, loss, {"data_variance": data_variance})


def absorbing_objective(config: Config, model: nn.Module) -> Objective:
    """Absorbing diffusion over the frozen VQ-SVAE's tokens of each batch."""
    latent = config.model.image_size // 4
    num_tokens = latent * latent

    def draws(shape: torch.Size, gen: torch.Generator) -> Draws:
        return {"t": torch.randint(1, num_tokens + 1, (shape[0],), generator=gen),
                "u": torch.rand(shape[0], latent, latent, generator=gen)}

    def loss(step_model: nn.Module, x0: torch.Tensor, d: Draws) -> torch.Tensor:
        tokens = model.vq.encode(x0)
        return absorbing_loss(step_model, tokens, d["t"], d["u"], model.denoiser.mask_id,
                              config.diffusion.absorbing_loss)

    return Objective(draws, loss)


def dataset_variance(dataset: torch.utils.data.Dataset, config: Config, limit: int = 10_000) -> float:
    """Pixel variance of (the first ``limit``) training images in the model's range."""
    from spikediff.data import batch_transform

    images = torch.stack([dataset[i] for i in range(min(limit, len(dataset)))])
    return float(batch_transform(images, config.model.image_size, False).var())
