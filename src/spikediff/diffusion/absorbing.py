"""Absorbing-state ("masking") discrete diffusion over latent tokens (Austin et al. 2021; as used by
Spiking-Diffusion, Liu et al. 2023, after Bond et al.'s "unleashing transformers").

With N = the number of tokens as the number of diffusion steps, step t in 1..N masks each token with
probability t / N (the mask is token K, absorbing: it never turns back). The denoiser predicts the
original token at every position; the loss is the cross-entropy summed over the masked positions,
weighted per sample by ``1 - t/N`` ("reweighted ELBO", the reference's default) or ``1 / t`` (the
ELBO's own weight), in bits per token (divided by ``N ln 2``). Sampling starts fully masked and, over
any number of steps, unmasks each still-masked token with probability 1 / (steps left), drawing it
from the softmax of the logits divided by a temperature.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

LOSS_WEIGHTS = ("reweighted_elbo", "elbo")


def mask_tokens(
    tokens: torch.Tensor, t: torch.Tensor, u: torch.Tensor, mask_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward process: ``(x_t, masked)`` where ``masked = u < t / N`` per token (``u`` uniform in
    [0, 1), drawn by the caller so that training is seeded per step)."""
    num_tokens = tokens[0].numel()
    masked = u < (t.float() / num_tokens).view(-1, *([1] * (tokens.dim() - 1)))
    return tokens.masked_fill(masked, mask_id), masked


def loss_weight(t: torch.Tensor, num_tokens: int, kind: str) -> torch.Tensor:
    if kind == "reweighted_elbo":
        return 1.0 - t.float() / num_tokens
    if kind == "elbo":
        return 1.0 / t.float()
    raise ValueError(f"unknown absorbing loss {kind!r}; expected one of {LOSS_WEIGHTS}")


def absorbing_loss(
    denoiser: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    tokens: torch.Tensor,
    t: torch.Tensor,
    u: torch.Tensor,
    mask_id: int,
    kind: str = "reweighted_elbo",
) -> torch.Tensor:
    """The training loss of one batch: ``tokens [B, h, w]`` (clean codes), ``t [B]`` in 1..N."""
    x_t, masked = mask_tokens(tokens, t, u, mask_id)
    logits = denoiser(x_t, t)
    ce = F.cross_entropy(logits.float(), tokens, reduction="none") * masked
    num_tokens = tokens[0].numel()
    per_sample = ce.flatten(1).sum(1) * loss_weight(t, num_tokens, kind)
    return per_sample.mean() / (num_tokens * math.log(2))


@torch.no_grad()
def sample_absorbing(
    denoiser: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    shape: tuple[int, ...],
    mask_id: int,
    steps: int | None = None,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Tokens ``[B, h, w]`` with no mask left. ``steps`` (default N, one token per step on average)
    network evaluations; at the step with ``i`` steps left the denoiser sees ``t = ceil(i N / steps)``."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    num_tokens = math.prod(shape[1:])
    steps = steps or num_tokens
    x = torch.full(shape, mask_id, dtype=torch.long, device=device)
    for left in range(steps, 0, -1):
        still = x == mask_id
        pick = still & (torch.rand(shape, generator=generator).to(device) < 1.0 / left)
        t = torch.full((shape[0],), math.ceil(left * num_tokens / steps), dtype=torch.long, device=device)
        logits = denoiser(x, t).float() / temperature
        probs = logits.softmax(1).permute(0, 2, 3, 1).reshape(-1, logits.shape[1])
        drawn = torch.multinomial(probs.cpu(), 1, generator=generator).view(shape).to(device)
        x = torch.where(pick, drawn, x)
        if callback:
            callback(steps - left, t, x)
    return x
