"""SDM: TSM (equivalence at p = 1, plain -> TSM loading, reference import), threshold guidance and the
new samplers through the CLI, FSDDIM-style options."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

import spikediff
from spikediff.checkpoint import load_weights
from spikediff.cli import main
from spikediff.models import build_model
from tests.conftest import TINY_SNN, randomise_batchnorm, to_reference_layout

TINY_TSM = replace(TINY_SNN, tsm=True)


def test_tsm_with_unit_scales_equals_the_plain_model():
    torch.manual_seed(0)
    plain = build_model(TINY_SNN)
    randomise_batchnorm(plain)
    tsm = build_model(TINY_TSM)
    missing = tsm.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(k.endswith("tsm_p") for k in missing)
    assert all(torch.equal(p, torch.ones(TINY_SNN.spike_steps)) for n, p in tsm.named_parameters() if "tsm_p" in n)
    x, t = torch.randn(2, 1, 32, 32), torch.tensor([7, 800])
    for mode in ("train", "eval"):
        getattr(plain, mode)(), getattr(tsm, mode)()
        with torch.no_grad():
            assert torch.equal(plain(x, t), tsm(x, t))


def test_tsm_scales_are_learned_per_step():
    tsm = build_model(TINY_TSM).train()
    with torch.no_grad():
        tsm.stem.conv_out.tsm_p[1] = 0.5  # halve step 1's conv output: the output must change
    out = tsm(torch.randn(2, 1, 32, 32), torch.tensor([1, 2]))
    out.square().mean().backward()
    assert tsm.down[0].conv1.tsm_p.grad is not None and tsm.down[0].conv1.tsm_p.grad.abs().sum() > 0


def test_plain_checkpoint_loads_into_tsm_with_identical_outputs(tmp_path):
    cfg = replace(spikediff.get_preset("fmnist-snn-small"), model=TINY_SNN)
    plain = spikediff.build(cfg)
    randomise_batchnorm(plain)
    spikediff.save(plain.eval(), cfg, tmp_path / "plain")
    tsm = load_weights(spikediff.build(replace(cfg, model=TINY_TSM)), tmp_path / "plain" / "model.safetensors",
                       missing_ok=("tsm_p",)).eval()
    x, t = torch.randn(2, 1, 32, 32), torch.tensor([0, 999])
    with torch.no_grad():
        assert torch.equal(plain(x, t), tsm(x, t))
    with pytest.raises(spikediff.CheckpointError):  # without the allowance, a plain file is a mismatch
        load_weights(spikediff.build(replace(cfg, model=TINY_TSM)), tmp_path / "plain" / "model.safetensors")


def test_init_from_plain_run_starts_tsm_training(tmp_path):
    base = ["--set", "model.ch_mult=1,2", "--set", "model.spike_steps=2", "--set", "train.batch_size=4",
            "--set", "train.total_steps=1", "--set", "train.sample_every=0", "--no-progress"]
    assert main(["train", "--preset", "fmnist-snn-small", "--out", str(tmp_path / "plain"), *base]) == 0
    assert main(["train", "--preset", "fmnist-snn-small-tsm", "--out", str(tmp_path / "tsm"),
                 "--init-from", str(tmp_path / "plain"), *base]) == 0
    tsm, plain = spikediff.load(tmp_path / "tsm"), spikediff.load(tmp_path / "plain")
    assert any("tsm_p" in n for n, _ in tsm.named_parameters())
    # one fine-tuning step away from the plain weights (Adam moves each weight by about lr = 2e-4), not
    # from a fresh initialisation, which differs by the weights' own size
    moved = [(tsm.state_dict()[k] - v).abs().max().item() for k, v in plain.state_dict().items()
             if k.endswith("conv1.weight")]
    assert moved and max(moved) < 1e-3


def sdm_reference_layout(state: dict[str, torch.Tensor], spike_steps: int) -> dict[str, torch.Tensor]:
    """Our TSM state dict written with the reference SDM names (``x.tsmconv.weight``, ``x.tsmp``)."""
    tsm_convs = {k[: -len(".tsm_p")] for k in state if k.endswith(".tsm_p")}
    ref_names = to_reference_layout(dict.fromkeys(state, torch.zeros(1)))  # same order as ``state``
    out = {}
    for (ours, value), ref in zip(state.items(), ref_names, strict=True):
        if ours.endswith(".tsm_p"):
            out[ref[: -len("tsm_p")] + "tsmp"] = value.view(spike_steps, 1, 1, 1, 1).clone()
        elif ours.rsplit(".", 1)[0] in tsm_convs:
            stem, leaf = ref.rsplit(".", 1)
            out[f"{stem}.tsmconv.{leaf}"] = value.clone()
        else:
            out[ref] = value.clone()
    return out


def test_convert_sdm_reference_layout(tmp_path):
    cfg = replace(spikediff.get_preset("fmnist-snn-small-tsm"), model=replace(TINY_TSM, spike_steps=3))
    model = spikediff.build(cfg)
    randomise_batchnorm(model)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("tsm_p"):
                p.uniform_(0.5, 1.5)
    model.eval()
    ref = sdm_reference_layout(model.state_dict(), 3)
    assert "module.conv_identity.tsmconv.weight" in ref and ref["module.conv_identity.tsmp"].shape == (3, 1, 1, 1, 1)
    torch.save({"net_model": ref}, tmp_path / "sdm.pt")
    assert main(["convert", "sdm", str(tmp_path / "sdm.pt"), str(tmp_path / "out")]) == 0
    imported = spikediff.load(tmp_path / "out")
    assert imported.config.tsm and imported.config.spike_steps == 3
    x, t = torch.randn(2, 1, 32, 32), torch.tensor([5, 500])
    with torch.no_grad():
        assert torch.equal(imported(x, t), model(x, t))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("sdm") / "run"
    assert main(["train", "--preset", "fmnist-snn-small", "--out", str(run), "--set", "model.ch_mult=1,2",
                 "--set", "model.spike_steps=2", "--set", "train.batch_size=8", "--set", "train.total_steps=2",
                 "--set", "train.sample_every=0", "--no-progress"]) == 0
    return run


@pytest.mark.parametrize("sampler", ["dpm-solver++", "analytic-dpm"])
def test_sample_with_new_samplers_and_threshold(tiny_run, tmp_path, sampler):
    out = tmp_path / "s"
    assert main(["sample", str(tiny_run), "--out", str(out), "--num", "4", "--steps", "3", "--sampler", sampler,
                 "--threshold", "0.997", "--no-png", "--no-progress"]) == 0
    meta = json.loads((out / "sampling.json").read_text())
    assert meta["threshold"] == 0.997 and meta["sampler"] == sampler
    assert np.load(out / "samples.npz")["images"].shape == (4, 28, 28, 1)
    if sampler == "analytic-dpm":
        cache = json.loads((spikediff.checkpoint.resolve(tiny_run) / "analytic_gamma.json").read_text())
        assert len(next(iter(cache.values()))) == 3  # one gamma per sampling step, cached with the weights


def test_tg_sweep_prints_a_table(tiny_run, tmp_path, small_fmnist_dir, capsys):  # noqa: F811
    out = tmp_path / "tg.json"
    assert main(["tg-sweep", str(tiny_run), "--thresholds", "0.99:1.01:0.01", "--num", "8", "--steps", "2",
                 "--data-dir", str(small_fmnist_dir), "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["threshold"] for r in rows] == [0.99, 1.0, 1.01]
    fids = [r["FID (fmnist-classifier)"] for r in rows]
    assert all(np.isfinite(fids)) and len(set(fids)) == 3  # each threshold samples other images
    assert "change vs 1.0" in capsys.readouterr().out


def test_fsddim_preset_builds_its_options_and_predicts():
    cfg = spikediff.get_preset("fmnist-snn-small-fsddim")
    model = spikediff.build(replace(cfg, model=replace(cfg.model, ch_mult=(1, 2))))
    assert {type(n).__name__ for n in spikediff.snn.spiking_neurons(model)} == {"LIFNeuron"}
    assert type(model.head.readout).__name__ == "MeanOverTime"
    assert cfg.diffusion.prediction == "v" and cfg.diffusion.schedule == "cosine"
    x = torch.randn(2, 1, 32, 32)
    assert model(x, torch.tensor([3, 900])).shape == x.shape
