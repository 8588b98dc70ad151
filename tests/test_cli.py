"""The ``spikediff`` command end to end on real Fashion-MNIST, and its errors on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import spikediff
from spikediff.cli import main

TINY = ["--set", "model.ch_mult=1,2", "--set", "model.spike_steps=2", "--set", "train.batch_size=8",
        "--set", "train.sample_every=0", "--set", "train.log_every=1", "--set", "train.save_every=2",
        "--set", "train.warmup_steps=2", "--set", "train.lr_decay=constant", "--no-progress"]  # runs resumed with
# a larger total_steps: a decaying lr would end at each segment's end


def train(out, *extra) -> int:
    return main(["train", "--preset", "fmnist-snn-small", "--out", str(out), *TINY, *extra])


def losses(run) -> list[float]:
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]  # a resume with other settings logs them on a line of its own


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny run trained 2 steps, then resumed to 4."""
    run = tmp_path_factory.mktemp("cli") / "run"
    assert train(run, "--set", "train.total_steps=2") == 0
    assert main(["train", "--out", str(run), "--resume", "--set", "train.total_steps=4", "--no-progress"]) == 0
    return run


def test_train_resume_matches_an_uninterrupted_run(trained_run, tmp_path):
    assert train(tmp_path / "straight", "--set", "train.total_steps=4") == 0
    resumed = losses(trained_run)
    assert len(resumed) == 4
    assert resumed == losses(tmp_path / "straight")  # same data, noise and optimizer state, step for step
    state = torch.load(spikediff.checkpoint.resolve(trained_run) / "trainer_state.pt", weights_only=True)
    assert state["step"] == 4


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_sample_writes_images(trained_run, tmp_path, sampler):
    out = tmp_path / sampler
    assert main(["sample", str(trained_run), "--out", str(out), "--num", "3", "--steps", "2",
                 "--sampler", sampler, "--seed", "1", "--no-progress"]) == 0
    images = np.load(out / "samples.npz")["images"]
    assert images.shape == (3, 28, 28, 1) and images.dtype == np.uint8  # the preset's 28x28
    assert images.max() > images.min()  # not a blank image
    assert (out / "grid.png").is_file() and len(list(out.glob("0000?.png"))) == 3
    assert json.loads((out / "sampling.json").read_text())["sampler"] == sampler
    drawn = {}
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        folder = tmp_path / f"{sampler}-{name}"
        assert main(["sample", str(trained_run), "--out", str(folder), "--num", "3", "--steps", "2",
                     "--sampler", sampler, "--seed", seed, "--no-progress", "--precision", "fp32"]) == 0
        drawn[name] = np.load(folder / "samples.npz")["images"]
    assert np.array_equal(drawn["a"], drawn["b"]) and not np.array_equal(drawn["a"], drawn["c"])  # the seed decides


def test_load_rebuilds_the_run_with_its_ema_weights_in_eval_mode(trained_run):
    from safetensors.torch import load_file

    model = spikediff.load(trained_run)
    cfg = spikediff.load_config(trained_run)
    assert cfg.model.ch_mult == (1, 2) and cfg.train.total_steps == 4 and not model.training
    newest = spikediff.checkpoint.resolve(trained_run)
    ema, raw = load_file(str(newest / "ema.safetensors")), load_file(str(newest / "model.safetensors"))
    state = model.state_dict()
    assert all(torch.equal(state[k], ema[k]) for k in ema)  # the EMA, which sampling uses by default
    assert any(not torch.equal(ema[k], raw[k]) for k in ema)
    x, t = torch.randn(2, 1, 32, 32), torch.tensor([10, 990])
    with torch.no_grad():  # eval mode: each image's prediction is its own, whatever else is in the batch
        assert torch.allclose(model(x, t)[:1], model(x[:1], t[:1]), rtol=1e-4, atol=1e-4)


def error_of(capsys, argv) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["train", "--preset", "nope", "--out", "{tmp}/a"], "unknown preset 'nope'"),
        (["train", "--preset", "fmnist-snn-small", "--out", "{tmp}/b", "--set", "train.lrr=1"], "unknown key 'lrr'"),
        (["train", "--preset", "fmnist-snn-small", "--out", "{tmp}/c", "--set", "train.lr=fast"], "expected a value"),
        (["train", "--preset", "fmnist-snn-small", "--out", "{tmp}/d", "--set", "data.dataset=cifar10",
          "--data-dir", "{tmp}/missing"], "--data-dir {tmp}/missing is not a directory"),
        (["sample", "{tmp}/missing", "--out", "{tmp}/e"], "config.json is missing"),
        (["train", "--out", "{tmp}/f", "--resume"], "cannot resume"),
    ],
)
def test_bad_input_is_one_clear_line(capsys, tmp_path, monkeypatch, argv, expected):
    monkeypatch.setenv("HOME", str(tmp_path))  # no torchvision cache to fall back on
    monkeypatch.delenv("SPIKEDIFF_DATA", raising=False)
    code, err = error_of(capsys, [a.format(tmp=tmp_path) for a in argv])
    assert code != 0
    assert err.startswith("spikediff: error:") and expected.format(tmp=tmp_path) in err and "\n" not in err


@pytest.mark.parametrize(
    "argv,option",
    [
        (["train", "--preset", "fmnist-snn-small", "--out", "{tmp}/a", "--max-minutes", "0"], "--max-minutes"),
        (["train", "--preset", "fmnist-snn-small", "--out", "{tmp}/a", "--max-minutes", "-1"], "--max-minutes"),
        (["sample", "{tmp}/run", "--out", "{tmp}/s", "--steps", "0"], "--steps"),
        (["sample", "{tmp}/run", "--out", "{tmp}/s", "--num", "-4"], "--num"),
        (["sample", "{tmp}/run", "--out", "{tmp}/s", "--num", "0"], "--num"),
        (["sample", "{tmp}/run", "--out", "{tmp}/s", "--batch-size", "0"], "--batch-size"),
        (["evaluate", "{tmp}/x.npz", "--dataset", "fmnist", "--num", "0"], "--num"),
        (["energy", "--preset", "fmnist-snn-small", "--steps", "abc"], "--steps"),
    ],
)
def test_counts_and_durations_must_be_positive(capsys, tmp_path, argv, option):
    """0 is never a hidden default ("50 steps", "unlimited", "all images"): it is refused by name."""
    with pytest.raises(SystemExit) as exit_info:
        main([a.format(tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_info.value.code == 2 and f"argument {option}" in err and "expected" in err
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("setting", ["train.batch_size=0", "train.total_steps=0", "train.lr=0", "train.ema_decay=1"])
def test_config_values_out_of_range_are_one_line(capsys, tmp_path, setting):
    code, err = error_of(capsys, ["train", "--preset", "fmnist-snn-small", "--out", str(tmp_path / "r"),
                                  "--set", setting])
    assert code != 0 and err.startswith("spikediff: error:") and setting.split("=")[0] in err and "\n" not in err
    assert not (tmp_path / "r").exists()


def test_corrupt_checkpoint_and_existing_outputs_are_refused(capsys, trained_run, tmp_path):
    broken = tmp_path / "broken"
    spikediff.save(spikediff.load(trained_run), spikediff.load_config(trained_run), broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    code, err = error_of(capsys, ["sample", str(broken), "--out", str(tmp_path / "s"), "--no-progress"])
    assert code != 0 and "corrupt or truncated" in err

    before = (spikediff.checkpoint.resolve(trained_run) / "model.safetensors").read_bytes()
    code, err = error_of(capsys, ["train", "--preset", "fmnist-snn-small", "--out", str(trained_run)])
    assert code != 0 and "already holds a run" in err
    assert (spikediff.checkpoint.resolve(trained_run) / "model.safetensors").read_bytes() == before

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    code, err = error_of(capsys, ["sample", str(trained_run), "--out", str(taken), "--no-progress"])
    assert code != 0 and "not empty" in err and (taken / "keep.txt").read_text() == "mine"


def test_module_entry_point_lists_presets():
    out = subprocess.run([sys.executable, "-m", "spikediff", "presets"], capture_output=True, text=True, check=True)
    assert "sddpm-cifar10" in out.stdout and "fmnist-snn-small" in out.stdout


def test_convert_command(tmp_path):
    from tests.conftest import to_reference_layout

    model = spikediff.build("fmnist-snn-small").eval()
    torch.save({"net_model": to_reference_layout(model.state_dict())}, tmp_path / "ref.pt")
    argv = ["convert", "sddpm", str(tmp_path / "ref.pt"), str(tmp_path / "out"), "--spike-steps", "2"]  # the preset's T
    assert main(argv) == 0
    imported = spikediff.load(tmp_path / "out")
    assert imported.config.ch_mult == (1, 2, 2) and imported.config.img_ch == 1
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(imported(x, torch.tensor([3, 4])), model(x, torch.tensor([3, 4])))
    assert main(argv) != 0  # the output exists now: refused without --overwrite
