"""The fast paths agree with the eager reference: gradient checkpointing, BN folding, bf16 membranes."""

from __future__ import annotations

import json
from dataclasses import replace

import torch

import spikediff
from spikediff.cli import main
from spikediff.diffusion import NoiseSchedule, diffusion_loss
from spikediff.models import build_model
from spikediff.models.folding import fold_batchnorm
from spikediff.train.trainer import prepare_for_training
from tests.conftest import TINY_SNN
from tests.test_checkpoint import randomise_batchnorm


def loss_and_grads(model, x0):
    loss = diffusion_loss(model, NoiseSchedule.linear(), x0, generator=torch.Generator().manual_seed(3))
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(fmnist_batch):
    torch.manual_seed(0)
    eager = build_model(TINY_SNN).train()
    ckpt = build_model(TINY_SNN).train()
    ckpt.load_state_dict(eager.state_dict())
    cfg = replace(spikediff.get_preset("fmnist-snn-small"), model=TINY_SNN)
    step_model = prepare_for_training(ckpt, replace(cfg, train=replace(cfg.train, grad_checkpointing=True)))
    assert ckpt.grad_checkpointing
    loss_a, grads_a = loss_and_grads(eager, fmnist_batch[:8])
    loss_b, grads_b = loss_and_grads(step_model, fmnist_batch[:8])
    assert loss_a == loss_b
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-5, atol=1e-7, msg=name)


def test_folded_batchnorm_matches_eval_outputs():
    torch.manual_seed(0)
    model = build_model(TINY_SNN)
    randomise_batchnorm(model)
    model.eval()
    folded = fold_batchnorm(model)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules()) < n_bn / 3  # only the head's remain
    x, t = torch.randn(4, 1, 32, 32), torch.tensor([0, 250, 500, 999])
    with torch.no_grad():
        torch.testing.assert_close(folded(x, t), model(x, t), rtol=1e-4, atol=1e-4)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.stem.modules())  # the original is untouched


def test_bf16_autocast_keeps_membranes_in_fp32():
    from spikediff.snn import IFNeuron

    seen = []
    neuron = IFNeuron()
    neuron.dynamics = staticmethod(lambda x, p, v: seen.append(x.dtype) or (x >= v).to(x.dtype))
    out = neuron(torch.full((2, 3), 0.999, dtype=torch.bfloat16))
    assert seen == [torch.float32] and out.dtype == torch.bfloat16


def test_bench_command_reports_throughput(capsys):
    assert main(["bench", "train", "--preset", "fmnist-snn-small", "--batch", "2", "--repeats", "1", "--warmup", "0",
                 "--set", "model.ch_mult=1,2", "--grad-checkpointing", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["kind"] == "train" and row["grad_checkpointing"] and row["images_per_s"] > 0
    assert row["peak_memory_mb"] > 0


def test_sampling_with_folded_batchnorm_gives_the_same_images():
    from spikediff.sample import generate

    cfg = replace(spikediff.get_preset("fmnist-snn-small"), model=TINY_SNN)
    model = spikediff.build(cfg)
    randomise_batchnorm(model)
    plain = generate(model, cfg, 4, "ddim", 3, seed=1, batch_size=4)
    folded = generate(model, cfg, 4, "ddim", 3, seed=1, batch_size=4, fold_bn=True)
    assert plain.shape == folded.shape == (4, 1, 32, 32)
    assert (plain.int() - folded.int()).abs().float().mean() < 0.5  # uint8 rounding at most
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.stem.modules())  # the model itself is untouched
