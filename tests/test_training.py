"""A few optimisation steps on real Fashion-MNIST lower the diffusion loss, for SNN and ANN."""

from __future__ import annotations

import json

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
    # every trainable tensor gets a gradient: a detached branch or a neuron without a surrogate would leave
    # the layers before it at exactly zero
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert not missing, missing


def test_cosine_decay_warms_up_then_falls_to_zero_at_the_last_step():
    from spikediff.train.trainer import lr_factor

    factors = [lr_factor(s, 10, "cosine", 110) for s in range(111)]
    assert factors[:10] == [pytest.approx((s + 1) / 10) for s in range(10)]
    assert factors[10] == 1.0 and factors[60] == pytest.approx(0.5) and factors[110] == 0.0
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False))
    assert lr_factor(500, 10) == 1.0  # no decay unless asked


def test_a_decaying_learning_rate_is_fitted_to_the_time_budget(monkeypatch):
    """Steps 2..11 are timed and the schedule ends where the remaining time runs out (less a margin)."""
    from spikediff.train import trainer
    from spikediff.train.distributed import Dist

    monkeypatch.setattr(trainer.time, "monotonic", lambda: 105.0)
    local, cpu = Dist(0, 1, 0), torch.device("cpu")
    # 10 steps in 5 s: 0.5 s per step, 100 s left
    assert trainer._fitted_end(11, 5.0, 205.0, 10_000, local, cpu) == 11 + int(trainer.FIT_MARGIN * 100 / 0.5)
    assert trainer._fitted_end(11, 10.0, 1e9, 50, local, cpu) == 50  # never beyond train.total_steps


def test_a_cosine_run_under_max_minutes_ends_its_schedule_and_resumes_with_it(tmp_path, small_fmnist_dir):
    from spikediff.checkpoint import load_trainer_state, resolve
    from spikediff.config import Config, DataConfig, TrainConfig
    from spikediff.train import train

    config = Config(model=TINY_SNN, data=DataConfig(dataset="fmnist", random_flip=False),
                    train=TrainConfig(total_steps=100_000, batch_size=4, lr_decay="cosine", warmup_steps=0,
                                      save_every=100_000, sample_every=0, precision="fp32", compile="off", log_every=1))
    result = train(config, tmp_path / "run", data_dir=small_fmnist_dir, max_minutes=0.25, progress=False)
    end = load_trainer_state(resolve(tmp_path / "run"))["end"]
    assert 12 <= end < 100_000 and result.step <= end
    lrs = [json.loads(line)["lr"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert lrs[0] == pytest.approx(2e-4) and all(a >= b for a, b in zip(lrs, lrs[1:], strict=False)) and lrs[-1] < 2e-4
    resumed = train(config, tmp_path / "run", resume=True, data_dir=small_fmnist_dir, max_minutes=5, progress=False)
    assert load_trainer_state(resolve(tmp_path / "run"))["end"] == end and resumed.step == end
