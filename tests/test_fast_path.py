"""The fast paths agree with the eager reference: gradient checkpointing, BN folding, bf16 membranes."""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import replace

import pytest
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


def test_stem_computed_once_equals_the_image_repeated_over_t(fmnist_batch):
    """The stem's first Conv+BN runs once per image; outputs and gradients are those of T copies."""
    from spikediff.models.layers import fold, unfold

    torch.manual_seed(0)
    stem = build_model(replace(TINY_SNN, spike_steps=4)).stem.train()
    x = fmnist_batch[:8].clone().requires_grad_(True)
    fast = stem(x, 4)
    grad_fast = torch.autograd.grad(fast.square().mean(), [x, stem.conv_in.weight, stem.bn_in.weight])

    def repeated(x):  # the reference's way: the image repeated T times through every layer
        h = unfold(stem.bn_in(stem.conv_in(fold(x.unsqueeze(0).repeat(4, 1, 1, 1, 1)))), 4)
        return unfold(stem.bn_out(stem.conv_out(fold(stem.neuron(h)))), 4)

    slow = repeated(x)
    grad_slow = torch.autograd.grad(slow.square().mean(), [x, stem.conv_in.weight, stem.bn_in.weight])
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    for a, b in zip(grad_fast, grad_slow, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_tsm_stem_scales_each_step_of_the_repeated_image():
    torch.manual_seed(0)
    model = build_model(replace(TINY_SNN, tsm=True)).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        base = model.stem(x, 2)
        model.stem.conv_in.tsm_p.copy_(torch.tensor([1.0, 0.0]))
        scaled = model.stem(x, 2)
    torch.testing.assert_close(scaled[0], base[0])
    assert not torch.allclose(scaled[1], base[1])  # step 1's conv output was zeroed before BN


def test_auto_precision_and_compile_choose_the_fast_path_only_where_it_helps(monkeypatch):
    from spikediff import precision as prec

    monkeypatch.setattr(prec, "_cpu_has_native_bf16", lambda: True)
    assert prec.resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(prec, "_cpu_has_native_bf16", lambda: False)
    assert prec.resolve_precision("auto", "cpu") == "fp32"
    assert prec.resolve_precision("bf16", "cpu") == "bf16"
    assert isinstance(prec.precision_context("auto", "cpu"), contextlib.nullcontext)
    assert not prec.resolve_compile("auto", 10, "cpu")  # too short to repay the compile time
    assert prec.resolve_compile("auto", 5000, "cpu") == bool(shutil.which("cc") or shutil.which("gcc")
                                                             or shutil.which("clang"))
    assert prec.resolve_compile("on", 1, "cpu") and not prec.resolve_compile("off", 10**6, "cpu")
    assert not prec.resolve_compile("auto", 10**6, "cpu", arch="sdit")  # eager under auto, compiled on request
    assert prec.resolve_compile("on", 1, "cpu", arch="sdit")
    with pytest.raises(ValueError, match="precision"):
        prec.resolve_precision("fp16", "cpu")


def test_configs_saved_with_a_boolean_compile_still_load():
    cfg = spikediff.get_preset("fmnist-snn-small").to_dict()
    cfg["train"]["compile"] = True
    assert spikediff.Config.from_dict(cfg).train.compile == "on"
    cfg["train"]["compile"] = False
    assert spikediff.Config.from_dict(cfg).train.compile == "off"


def test_compiled_sampling_gives_the_same_images():
    """The sampling fast path (folded BatchNorm + torch.compile) against the eager model."""
    from spikediff.sample import generate

    cfg = replace(spikediff.get_preset("fmnist-snn-small"), model=replace(TINY_SNN, ch_mult=(1,)))
    model = spikediff.build(cfg)
    randomise_batchnorm(model)
    eager = generate(model, cfg, 2, "ddim", 2, seed=1, batch_size=2)
    fast = generate(model, cfg, 2, "ddim", 2, seed=1, batch_size=2, fold_bn=True, compile="on")
    assert (eager.int() - fast.int()).abs().float().mean() < 0.5
