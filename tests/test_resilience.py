"""Never lose a run: exact resume after SIGKILL, a kill during a checkpoint write, corrupt
checkpoints, NaN losses, keep-last-K; and multi-process training (torchrun, gloo, 2 ranks)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import spikediff
from spikediff.checkpoint import run_checkpoints
from spikediff.cli import main

# fp32 eager, fixed: runs compared loss for loss must not depend on which path "auto" times faster
TINY = ["--set", "model.ch_mult=1,2", "--set", "model.spike_steps=2", "--set", "train.batch_size=8",
        "--set", "train.sample_every=0", "--set", "train.log_every=1", "--set", "train.precision=fp32",
        "--set", "train.compile=off", "--no-progress"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def losses(run: Path) -> list[float]:
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "spikediff", *argv]


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory) -> Path:
    """8 uninterrupted steps: what every interrupted run must reproduce (in a subprocess with the same
    thread count as the interrupted ones, so that float reductions run in the same order)."""
    run = tmp_path_factory.mktemp("straight") / "run"
    args = ["train", "--preset", "fmnist-snn-small", "--out", str(run), *TINY, "--set", "train.total_steps=8",
            "--set", "train.save_every=3"]
    subprocess.run(cli(*args), env=ENV, check=True, capture_output=True)
    return run


def wait_for(predicate, timeout: float = 240.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise TimeoutError("the training process did not get there in time")
        time.sleep(0.05)


def test_sigkill_then_resume_is_exact(straight_run, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--preset", "fmnist-snn-small", "--out", str(run), *TINY,
            "--set", "train.total_steps=8", "--set", "train.save_every=3"]
    proc = subprocess.Popen(cli(*args), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = run / "log.jsonl"
    wait_for(lambda: log.is_file() and len(log.read_text().splitlines()) >= 5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert [d.name for d in run_checkpoints(run)] == ["step_0000003"]
    assert subprocess.run(cli("train", "--out", str(run), "--resume", "--no-progress"), env=ENV).returncode == 0
    assert losses(run) == losses(straight_run)  # step for step, the killed steps replayed identically


DYING_SAVE = """
import os, signal, sys
import spikediff.checkpoint as c
orig, calls = c.save_file, []
def dying(tensors, path, *args, **kwargs):
    orig(tensors, path, *args, **kwargs)
    if path.endswith(c.WEIGHTS_FILE):
        calls.append(1)
    if len(calls) == 2:  # the second checkpoint: its weights are written, the rest is not
        os.kill(os.getpid(), signal.SIGKILL)
c.save_file = dying
from spikediff.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_kill_during_checkpoint_write_leaves_the_last_good_one(straight_run, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--preset", "fmnist-snn-small", "--out", str(run), *TINY,
            "--set", "train.total_steps=8", "--set", "train.save_every=3"]
    proc = subprocess.run([sys.executable, "-c", DYING_SAVE, *args], env=ENV, capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    assert [d.name for d in run_checkpoints(run)] == ["step_0000003"]  # the half-written one is not listed
    assert any(p.name.startswith(".step_0000006") for p in (run / "checkpoints").iterdir())
    assert spikediff.checkpoint.resolve(run).name == "step_0000003"
    assert subprocess.run(cli("train", "--out", str(run), "--resume", "--no-progress"), env=ENV).returncode == 0
    assert losses(run) == losses(straight_run)


def test_corrupt_newest_checkpoint_is_reported_not_replaced(straight_run, tmp_path, capsys):
    run = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(straight_run), str(run)], check=True)
    newest = run_checkpoints(run)[-1]
    weights = newest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-64] + bytes(64))  # same size, damaged content
    before = sorted(p.name for p in run.rglob("*"))
    assert main(["train", "--out", str(run), "--resume", "--set", "train.total_steps=10", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "corrupt or truncated" in err and "step_0000006" in err and "older checkpoints" in err
    assert sorted(p.name for p in run.rglob("*")) == before  # nothing deleted, nothing started afresh


def test_resume_refuses_a_model_change_and_logs_a_schedule_change(straight_run, tmp_path, capsys):
    run = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(straight_run), str(run)], check=True)
    before = sorted(p.name for p in run.rglob("*"))
    for setting in ("model.spike_steps=8", "diffusion.num_steps=500", "data.dataset=mnist", "train.optimizer=adamw",
                    "train.ema_decay=none"):
        assert main(["train", "--out", str(run), "--resume", "--set", setting, "--no-progress"]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("spikediff: error: cannot resume with " + setting.split("=")[0]) and "\n" not in err
    assert sorted(p.name for p in run.rglob("*")) == before  # nothing written by a refused resume
    # a hand edit of the run folder's config.json is not what resume trains: the checkpoint's config is
    saved = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**saved, "model": {**saved["model"], "spike_steps": 8}}))
    assert main(["train", "--out", str(run), "--resume", "--set", "train.total_steps=9", "--set", "train.lr=1e-4",
                 "--no-progress"]) == 0
    assert "train.total_steps 8 -> 9" in capsys.readouterr().out
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert {"step": 8, "resumed_with": {"train.total_steps": [8, 9], "train.lr": [0.001, 0.0001]}} in rows
    assert rows[-1]["step"] == 9
    assert spikediff.load_config(run).model.spike_steps == 2


def test_a_second_writer_is_refused_and_a_killed_one_leaves_no_lock(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--preset", "fmnist-snn-small", "--out", str(run), *TINY,
            "--set", "train.total_steps=100000", "--set", "train.save_every=2"]
    proc = subprocess.Popen(cli(*args), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: len(run_checkpoints(run)) >= 1)
        for argv in (["train", "--out", str(run), "--resume", "--no-progress"],
                     ["train", "--preset", "fmnist-snn-small", "--out", str(run), "--overwrite", "--no-progress"]):
            assert main(argv) == 1
            err = capsys.readouterr().err.strip()
            assert f"is being written by process {proc.pid}" in err and "\n" not in err
        assert run_checkpoints(run) and (run / "log.jsonl").is_file()  # --overwrite deleted nothing
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    last = int(run_checkpoints(run)[-1].name.split("_")[1])
    assert main(["train", "--out", str(run), "--resume", "--set", f"train.total_steps={last + 1}",
                 "--no-progress"]) == 0  # the killed writer's lock died with it
    assert run_checkpoints(run)[-1].name == f"step_{last + 1:07d}"


def test_keep_last_k_checkpoints(straight_run, tmp_path):
    run = tmp_path / "copy"  # a copy: the module's straight run stays as every other test expects it
    subprocess.run(["cp", "-r", str(straight_run), str(run)], check=True)
    names = [d.name for d in run_checkpoints(run)]
    assert names == ["step_0000003", "step_0000006", "step_0000008"]
    assert main(["train", "--out", str(run), "--resume", "--set", "train.total_steps=9",
                 "--set", "train.save_every=1", "--set", "train.keep_checkpoints=2", "--no-progress"]) == 0
    assert [d.name for d in run_checkpoints(run)] == ["step_0000008", "step_0000009"]


def test_nan_loss_stops_with_a_clear_message(tmp_path, monkeypatch, capsys):
    import spikediff.objectives as objectives

    real, calls = objectives.diffusion_loss, []

    def poisoned(*args, **kwargs):
        if torch.is_grad_enabled():  # a training step's loss, not the EMA's BatchNorm refresh
            calls.append(1)
        loss = real(*args, **kwargs)
        return loss * float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(objectives, "diffusion_loss", poisoned)
    run = tmp_path / "run"
    # eager fp32 (TINY): no fast-path trials before step 0, so the third training loss is step 2's
    code = main(["train", "--preset", "fmnist-snn-small", "--out", str(run), *TINY,
                 "--set", "train.total_steps=5", "--set", "train.save_every=2"])
    err = capsys.readouterr().err
    assert code == 1 and "loss is nan" in err and "at step 2" in err and "step_0000002" in err
    assert [d.name for d in run_checkpoints(run)] == ["step_0000002"]


def bf16_poisoned(monkeypatch, poisoned_when):
    """Make every bf16 (autocast) training loss NaN once ``poisoned_when()`` holds."""
    import spikediff.objectives as objectives

    real = objectives.diffusion_loss

    def poisoned(*args, **kwargs):
        loss = real(*args, **kwargs)
        hit = torch.is_grad_enabled() and torch.is_autocast_enabled("cpu") and poisoned_when()
        return loss * float("nan") if hit else loss

    monkeypatch.setattr(objectives, "diffusion_loss", poisoned)


BF16 = [a.replace("train.precision=fp32", "train.precision=bf16") for a in TINY]


def test_bf16_that_meets_nan_later_falls_back_to_fp32_from_its_last_checkpoint(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    bf16_poisoned(monkeypatch, lambda: (run / "checkpoints" / "step_0000002").is_dir())
    assert main(["train", "--preset", "fmnist-snn-small", "--out", str(run), *BF16,
                 "--set", "train.total_steps=5", "--set", "train.save_every=2"]) == 0
    out = capsys.readouterr().out
    assert "on bf16 eager: falling back to eager fp32 from step_0000002" in out
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "fallback" in r] == [2]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4, 5]  # step 3 replayed once, in fp32
    assert json.loads((run / "fast_path.json").read_text())["precision"] == "fp32"
    assert run_checkpoints(run)[-1].name == "step_0000005"


def test_bf16_nan_before_any_checkpoint_restarts_in_fp32_as_an_fp32_run_would(tmp_path, monkeypatch):
    common = ["train", "--preset", "fmnist-snn-small", "--set", "train.total_steps=3", "--set", "train.save_every=3"]
    assert main([*common, *TINY, "--out", str(tmp_path / "fp32")]) == 0
    calls = []
    bf16_poisoned(monkeypatch, lambda: calls.append(1) or len(calls) >= 3)  # after the fast path's trial and step 0
    assert main([*common, *BF16, "--out", str(tmp_path / "bf16")]) == 0
    fp32 = load_file(str(run_checkpoints(tmp_path / "fp32")[-1] / "model.safetensors"))
    fell_back = load_file(str(run_checkpoints(tmp_path / "bf16")[-1] / "model.safetensors"))
    assert fp32.keys() == fell_back.keys() and all(torch.equal(fp32[k], fell_back[k]) for k in fp32)


def run_ok(cmd: list[str]) -> None:
    """Run ``cmd``; on failure, fail with what it printed (torchrun's workers report there)."""
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"


def torchrun(nproc: int, *argv: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "spikediff", *argv]


@pytest.mark.slow
def test_two_ranks_equal_one_process_with_twice_the_batch_for_the_ann(tmp_path):
    common = ["train", "--preset", "fmnist-ann-small", "--set", "model.ch_mult=1,2", "--set", "model.dropout=0",
              "--set", "train.batch_size=8", "--set", "train.total_steps=2", "--set", "train.sample_every=0",
              "--set", "train.precision=fp32", "--no-progress"]  # fp32: bf16 sums differ with the split
    run_ok(torchrun(2, *common, "--out", str(tmp_path / "ddp")))
    assert main([*common, "--out", str(tmp_path / "single")]) == 0
    ddp = load_file(str(run_checkpoints(tmp_path / "ddp")[-1] / "model.safetensors"))
    single = load_file(str(run_checkpoints(tmp_path / "single")[-1] / "model.safetensors"))
    for name in single:
        torch.testing.assert_close(ddp[name], single[name], rtol=1e-4, atol=1e-6, msg=name)
    assert losses(tmp_path / "ddp") == pytest.approx(losses(tmp_path / "single"), rel=1e-5)


@pytest.mark.slow
def test_two_ranks_of_the_snn_stay_in_sync_and_track_one_process(tmp_path):
    common = ["train", "--preset", "fmnist-snn-small", *TINY, "--set", "train.total_steps=4"]
    # a sample grid at the last step: every rank samples its share (rank 0 alone would wait for the others)
    grid = ["--set", "train.sample_every=4", "--set", "train.sample_num=4", "--set", "train.sample_steps=2"]
    run_ok(torchrun(2, *common, *grid, "--out", str(tmp_path / "ddp")))
    assert (tmp_path / "ddp" / "samples" / "step_0000004.png").is_file()
    assert main([*common, "--out", str(tmp_path / "single")]) == 0
    last = json.loads((tmp_path / "ddp" / "log.jsonl").read_text().splitlines()[-1])
    assert last == {"step": 4, "ranks": 2, "ranks_in_sync": True}
    # per-rank BatchNorm statistics (batch 4 instead of 8) make the curves close, not equal
    assert losses(tmp_path / "ddp") == pytest.approx(losses(tmp_path / "single"), rel=0.1)


@pytest.mark.slow
def test_sampling_sharded_over_two_ranks_equals_one_process(straight_run, tmp_path):
    # one precision for both: under "auto" each launch times its own paths (two ranks on two cores
    # time differently from one process), and bf16 images differ from fp32 ones
    common = ["sample", str(straight_run), "--num-samples", "6", "--batch-size", "2", "--steps", "3",
              "--sampler", "ddpm", "--no-png", "--no-progress", "--precision", "fp32", "--compile", "off"]
    run_ok(torchrun(2, *common, "--out", str(tmp_path / "ddp")))
    run_ok(cli(*common, "--out", str(tmp_path / "single")))
    ddp = np.load(tmp_path / "ddp" / "samples.npz")["images"]
    single = np.load(tmp_path / "single" / "samples.npz")["images"]
    assert ddp.shape == (6, 28, 28, 1) and np.array_equal(ddp, single)  # ancestral noise included
    assert json.loads((tmp_path / "ddp" / "sampling.json").read_text())["ranks"] == 2
