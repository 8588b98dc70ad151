"""A few optimisation steps on real Fashion-MNIST lower the diffusion loss, for SNN and ANN."""

from __future__ import annotations

import pytest
import torch

from spikediff.diffusion import NoiseSchedule, diffusion_loss
from spikediff.models import build_model
from tests.conftest import TINY_ANN, TINY_SNN


def fixed_loss(model, schedule, x0) -> float:
    """The loss on fixed (t, noise) draws, so before/after numbers compare like with like."""
    with torch.no_grad():
        return diffusion_loss(model, schedule, x0, generator=torch.Generator().manual_seed(99)).item()


@pytest.mark.parametrize("config", [TINY_SNN, TINY_ANN], ids=["snn", "ann"])
def test_training_steps_lower_the_loss(config, fmnist_batch):
    torch.manual_seed(0)
    model = build_model(config).train()
    schedule = NoiseSchedule.linear()
    x0 = fmnist_batch[:16]
    before = fixed_loss(model, schedule, x0)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(15):
        loss = diffusion_loss(model, schedule, x0, generator=gen)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    after = fixed_loss(model, schedule, x0)
    assert after < 0.7 * before, (before, after)


def test_snn_gradients_reach_the_first_layer(fmnist_batch):
    """Surrogate gradients cross every spiking layer down to the stem."""
    model = build_model(TINY_SNN).train()
    loss = diffusion_loss(model, NoiseSchedule.linear(), fmnist_batch[:4])
    loss.backward()
    assert model.stem.conv_in.weight.grad.abs().sum() > 0
    assert model.time_embedding.linear1.weight.grad.abs().sum() > 0


def test_cosine_decay_warms_up_then_falls_to_zero_at_the_last_step():
    from spikediff.train.trainer import lr_factor

    factors = [lr_factor(s, 10, "cosine", 110) for s in range(111)]
    assert factors[:10] == [pytest.approx((s + 1) / 10) for s in range(10)]
    assert factors[10] == 1.0 and factors[60] == pytest.approx(0.5) and factors[110] == 0.0
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False))
    assert lr_factor(500, 10) == 1.0  # no decay unless asked
