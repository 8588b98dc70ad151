"""The EMA keeps BatchNorm statistics of its own weights, not the live model's."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from spikediff.checkpoint import EMA_FILE, WEIGHTS_FILE, load, resolve, uses_ema
from spikediff.cli import main
from spikediff.models import build_model
from spikediff.train.ema import EMA
from tests.conftest import TINY_ANN


def test_ema_warmup():
    ema = EMA(torch.nn.Linear(2, 2), 0.9999, warmup=True)
    assert ema.decay_at(0) == pytest.approx(0.1) and ema.decay_at(10**7) == 0.9999
    assert EMA(torch.nn.Linear(2, 2), 0.99).decay_at(0) == 0.99


def bn_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                               torch.nn.Conv2d(8, 4, 3), torch.nn.BatchNorm2d(4))


def test_recomputed_statistics_are_those_of_the_averaged_weights(fmnist_batch):
    live = bn_net().train()
    ema = EMA(live, 0.5)
    x = fmnist_batch[:16]
    for _ in range(5):  # the live weights move far from the average, and their statistics with them
        with torch.no_grad():
            for p in live.parameters():
                p.mul_(1.5).add_(0.2)
        live(x)
        ema.update(live)
    with torch.no_grad():
        batch_stats = ema.shadow.train()(x)  # the averaged weights with their own batch statistics
        ema.shadow.load_state_dict({**ema.shadow.state_dict(), **dict(live.named_buffers())})
        copied = ema.shadow.eval()(x)
        ema.recompute_statistics([lambda net: net(x)])
        own = ema.shadow(x)
    assert not ema.shadow.training
    error_own = (own - batch_stats).norm() / batch_stats.norm()
    error_copied = (copied - batch_stats).norm() / batch_stats.norm()
    assert error_own < 0.02 < error_copied
    assert [m.momentum for m in ema.shadow.modules() if isinstance(m, torch.nn.BatchNorm2d)] == [0.1, 0.1]


class PartlyFrozen(torch.nn.Module):
    """A trained part kept in eval mode (as Spiking-Diffusion's VQ-SVAE) beside a part that trains."""

    def __init__(self):
        super().__init__()
        self.frozen, self.trained = bn_net(), bn_net()

    def train(self, mode: bool = True):
        super().train(mode)
        self.frozen.eval()
        return self


def test_recomputing_leaves_frozen_statistics_alone(fmnist_batch):
    model = PartlyFrozen()
    with torch.no_grad():
        model.frozen[1].running_mean.fill_(3.0)
    ema = EMA(model, 0.9)
    ema.recompute_statistics([lambda net: net.trained(fmnist_batch[:8])])
    assert torch.all(ema.shadow.frozen[1].running_mean == 3.0)  # frozen: kept
    assert ema.shadow.trained[1].num_batches_tracked.item() == 1  # recomputed on the one batch
    with pytest.raises(ValueError, match="no batches"):
        ema.recompute_statistics([])
    assert ema.shadow.trained[1].num_batches_tracked.item() == 1 and not ema.shadow.training


def test_averaged_statistics_follow_the_weights_decay():
    live = bn_net()
    ema = EMA(live, 0.75, batchnorm="average")
    before = ema.shadow[1].running_mean.clone()
    live[1].running_mean.fill_(4.0)
    live[1].num_batches_tracked.fill_(7)
    ema.update(live)
    torch.testing.assert_close(ema.shadow[1].running_mean, 0.75 * before + 0.25 * 4.0)
    assert ema.shadow[1].num_batches_tracked.item() == 7
    assert not ema.needs_statistics()
    with pytest.raises(ValueError, match="BatchNorm mode"):
        EMA(live, 0.9, batchnorm="copy")


def test_a_training_run_saves_ema_statistics_of_its_own(small_fmnist_dir, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--preset", "fmnist-snn-small", "--out", str(run), "--data-dir", str(small_fmnist_dir),
                 "--set", "model.ch_mult=1,2", "--set", "model.spike_steps=2", "--set", "train.batch_size=8",
                 "--set", "train.total_steps=4", "--set", "train.save_every=4", "--set", "train.sample_every=0",
                 "--set", "train.ema_decay=0.9", "--set", "train.ema_bn_batches=3", "--set", "train.precision=fp32",
                 "--set", "train.compile=off", "--no-progress"]) == 0
    ckpt = resolve(run)
    live, ema = load_file(str(ckpt / WEIGHTS_FILE)), load_file(str(ckpt / EMA_FILE))
    means = [k for k in live if k.endswith("running_mean")]
    assert means and any(not torch.equal(live[k], ema[k]) for k in means)
    counts = {ema[k.replace("running_mean", "num_batches_tracked")].item() for k in means}
    assert counts == {3}  # a plain average over the last three batches


def test_ema_of_a_groupnorm_model_needs_no_statistics():
    assert not EMA(build_model(TINY_ANN), 0.9).needs_statistics()


def test_sampling_takes_the_ema_weights_where_the_run_kept_them(small_fmnist_dir, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--preset", "fmnist-snn-small", "--out", str(run), "--data-dir", str(small_fmnist_dir),
                 "--set", "model.ch_mult=1,2", "--set", "model.spike_steps=2", "--set", "train.batch_size=8",
                 "--set", "train.total_steps=3", "--set", "train.sample_every=0", "--set", "train.ema_decay=0.5",
                 "--set", "train.precision=fp32", "--set", "train.compile=off", "--no-progress"]) == 0
    assert uses_ema(run) and not uses_ema(run, False)
    ema, raw = load(run), load(run, use_ema=False)
    assert any(not torch.equal(a, b) for a, b in zip(ema.state_dict().values(), raw.state_dict().values(), strict=True))
    common = ["--num", "2", "--batch-size", "2", "--sampler", "ddim", "--steps", "2", "--no-png",
              "--precision", "fp32", "--compile", "off"]
    assert main(["sample", str(run), "--out", str(tmp_path / "ema"), *common]) == 0
    assert main(["sample", str(run), "--out", str(tmp_path / "raw"), "--no-ema", *common]) == 0
    assert json.loads((tmp_path / "ema" / "sampling.json").read_text())["ema"] is True
    assert json.loads((tmp_path / "raw" / "sampling.json").read_text())["ema"] is False
    no_ema = tmp_path / "plain"
    assert main(["train", "--preset", "fmnist-snn-small", "--out", str(no_ema), "--data-dir", str(small_fmnist_dir),
                 "--set", "model.ch_mult=1,2", "--set", "model.spike_steps=2", "--set", "train.batch_size=8",
                 "--set", "train.total_steps=1", "--set", "train.sample_every=0", "--set", "train.ema_decay=none",
                 "--set", "train.precision=fp32", "--set", "train.compile=off", "--no-progress"]) == 0
    assert not uses_ema(no_ema)
