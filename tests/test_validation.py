"""Validation derived from the parser and the config schema themselves: every numeric option and field
tried at its edges, every option that a mode ignores refused, every image size checked. A new option
or field without a declared range or rule fails here, not in a user's run."""

from __future__ import annotations

import argparse
import typing

import numpy as np
import pytest
import torch

from spikediff.cli import build_parser, device_name, main, step_list
from spikediff.config import RANGES, Config, apply_overrides, flat
from spikediff.metrics import evaluate_images
from spikediff.option_rules import ALWAYS_USED, RULES, refuse_ignored
from spikediff.ranges import COUNT, FRACTION, POSITIVE, SEED, Range

PROBES = ("0", "-1", "1000000000000", "1e400", "abc", "nan")
# the smallest command line each (sub)command parses, options added to it one at a time
BASE = {
    "info": ["info", "run"], "train": ["train", "--preset", "fmnist-snn-small", "--out", "r"],
    "sample": ["sample", "run", "--out", "s"], "tg-sweep": ["tg-sweep", "run"],
    "evaluate": ["evaluate", "x.npz", "--dataset", "fmnist"], "train-classifier": ["train-classifier"],
    "energy": ["energy", "--preset", "fmnist-snn-small"], "bench": ["bench", "train", "--preset", "fmnist-snn-small"],
    "ann2snn": ["ann2snn", "q", "s"], "convert sddpm": ["convert", "sddpm", "in.pt", "out"],
    "convert sdm": ["convert", "sdm", "in.pt", "out"], "presets": ["presets"],
}
# one command line per option that a mode ignores, checked when the command line is read
IGNORED = {
    ("train", "preset"): ["train", "--out", "r", "--resume", "--preset", "fmnist-snn-small"],
    ("train", "init_from"): ["train", "--out", "r", "--resume", "--init-from", "other"],
    ("train", "overwrite"): ["train", "--out", "r", "--resume", "--overwrite"],
    ("tg-sweep", "threshold"): ["tg-sweep", "run", "--threshold", "0.9"],
    ("sample", "dataset"): ["sample", "run", "--out", "s", "--dataset", "mnist"],
    ("sample", "features"): ["sample", "run", "--out", "s", "--features", "inception"],
    ("sample", "split"): ["sample", "run", "--out", "s", "--split", "test"],
    ("sample", "inception_weights"): ["sample", "run", "--out", "s", "--inception-weights", "w.pth"],
    ("info", "preset"): ["info", "run", "--preset", "fmnist-snn-small"],
    ("energy", "preset"): ["energy", "run", "--preset", "fmnist-snn-small"],
    ("energy", "ema"): ["energy", "--preset", "fmnist-snn-small", "--no-ema"],
    ("bench", "budget_minutes"): ["bench", "sample", "--preset", "fmnist-snn-small", "--budget-minutes", "5"],
    ("bench", "grad_checkpointing"): ["bench", "sample", "--preset", "fmnist-snn-small", "--grad-checkpointing"],
    ("bench", "evaluations"): ["bench", "train", "--preset", "fmnist-snn-small", "--evaluations", "5"],
    ("bench", "fold_bn"): ["bench", "train", "--preset", "fmnist-snn-small", "--fold-bn"],
    **{("ann2snn", name): ["ann2snn", "q", "s", flag, "2"]
       for name, flag in (("finetune_steps", "--finetune-steps"), ("lr", "--lr"), ("batch_size", "--batch-size"),
                          ("num_images", "--num-images"))},
    ("ann2snn", "slack_steps"): ["ann2snn", "q", "s", "--coding", "phase", "--slack-steps", "1"],
    ("ann2snn", "finetune"): ["ann2snn", "q", "s", "--coding", "count", "--finetune"],
}


def commands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every (sub-)subcommand's parser, by its name ("convert sddpm")."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = commands(sub, f"{prefix}{name} ")
                found.update(nested or {f"{prefix}{name}": sub})
    return found


PARSER = build_parser()  # parse_args leaves a parser as it was: one serves every probe
COMMANDS = commands(PARSER)
OPTIONS = [(cmd, a) for cmd, p in COMMANDS.items() for a in p._actions
           if a.option_strings and a.dest not in ("help", "debug")]


def test_every_command_has_a_base_command_line_and_every_numeric_option_a_declared_range():
    assert set(BASE) == set(COMMANDS)
    for cmd, action in OPTIONS:
        assert action.type in (None, device_name, step_list) or isinstance(action.type, Range), (cmd, action.dest)
        assert action.type not in (int, float), f"{cmd} {action.option_strings[0]}: declare its Range"


@pytest.mark.parametrize(("cmd", "action"), [(c, a) for c, a in OPTIONS if isinstance(a.type, Range)],
                         ids=lambda v: v.option_strings[0] if isinstance(v, argparse.Action) else v)
def test_numeric_options_refuse_what_their_range_excludes_in_one_line(cmd, action, capsys):
    flag, allowed = action.option_strings[0], action.type
    for text in PROBES:
        try:
            value = int(text) if allowed.integer else float(text)
        except (ValueError, OverflowError):
            value = None
        if value is not None and allowed.contains(value):
            args = PARSER.parse_args([*BASE[cmd], flag, text])
            assert getattr(args, action.dest) == value
            continue
        with pytest.raises(SystemExit) as stop:
            PARSER.parse_args([*BASE[cmd], flag, text])
        err = capsys.readouterr().err.strip()
        assert stop.value.code == 2 and len(err.splitlines()) == 1, (flag, text, err)
        assert f"argument {flag}" in err and allowed.describe() in err, (flag, text, err)


def test_the_ranges_themselves():
    assert [COUNT.contains(v) for v in (1, 0, -1, 10**12, 1.5, True)] == [True, False, False, True, False, False]
    assert [POSITIVE.contains(v) for v in (1e-9, 0.0, -1.0, float("inf"), float("nan"))] == [True] + [False] * 4
    assert FRACTION.contains(0.0) and FRACTION.contains(1.0) and not FRACTION.contains(1.0001)
    assert SEED.contains(2**63 - 1) and not SEED.contains(2**63)
    assert COUNT.describe() == "a whole number >= 1" and FRACTION.describe() == "a number in [0, 1]"
    assert Range(False, 0, 1, open_low=True, open_high=True).describe() == "a number in (0, 1)"
    assert step_list("0,250,999") == [0, 250, 999]
    for bad in ("0,-1", "a", "1,,2"):
        with pytest.raises(argparse.ArgumentTypeError, match="diffusion steps"):
            step_list(bad)


def _numeric(hint) -> bool:
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    base = args[0]
    if typing.get_origin(base) is tuple:
        base = typing.get_args(base)[0]
    return base in (int, float)


def _leaf_hints(cls, prefix: str = "") -> dict:
    out = {}
    for name, hint in typing.get_type_hints(cls).items():
        if isinstance(hint, type) and hasattr(hint, "__dataclass_fields__"):
            out.update(_leaf_hints(hint, f"{prefix}{name}."))
        else:
            out[prefix + name] = hint
    return out


HINTS = _leaf_hints(Config)
NUMERIC_FIELDS = sorted(k for k, h in HINTS.items() if _numeric(h))


def test_every_numeric_config_field_has_a_declared_range():
    assert set(HINTS) == set(flat(Config()))
    assert set(NUMERIC_FIELDS) == set(RANGES)  # no field unchecked, no range of a field that is gone


@pytest.mark.parametrize("key", NUMERIC_FIELDS)
def test_numeric_config_fields_refuse_what_their_range_excludes(key):
    declared = RANGES[key]
    for text in PROBES:
        try:
            value = float(text)
            value = int(value) if declared.integer and value.is_integer() else value
        except (ValueError, OverflowError):
            value = None
        inside = value is not None and declared.contains(value)
        try:
            config = apply_overrides(Config(), [f"{key}={text}"])
        except ValueError as exc:
            message = str(exc)
            assert "\n" not in message and key in message, (key, text, message)
            # inside the range, only a rule between two fields may refuse it, and it says which
            assert not inside or "must be below" in message, (key, text, message)
            continue
        assert inside, f"--set {key}={text} was accepted"
        leaf = flat(config)[key]
        assert leaf == value or leaf == (value,), (key, text, leaf)


def test_every_option_is_always_used_or_has_a_rule_for_the_modes_that_ignore_it():
    ruled = {(r.command, r.option) for r in RULES}
    for cmd, parser in COMMANDS.items():
        dests = {a.dest for a in parser._actions if a.dest not in ("help", "debug")}
        always = ALWAYS_USED.get(cmd, set())
        mine = {o for c, o in ruled if c == cmd}
        assert not always & mine, cmd
        assert dests == always | mine, (cmd, sorted(dests - always - mine), sorted((always | mine) - dests))


@pytest.mark.parametrize("rule", [r for r in RULES if not r.needs], ids=lambda r: f"{r.command}-{r.option}")
def test_an_option_its_mode_ignores_is_refused_in_one_line(rule, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written, and nothing is
    assert main(IGNORED[rule.command, rule.option]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("spikediff: error: ") and "is ignored here" in err and "\n" not in err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("rule", [r for r in RULES if r.needs], ids=lambda r: f"{r.command}-{r.option}")
def test_options_a_model_or_sampler_ignores_are_refused_once_they_are_known(rule):
    args = PARSER.parse_args(["sample", "run", "--out", "s"])
    args.given = {rule.option: "--" + rule.option.replace("_", "-")}
    args.evaluate = False
    users = {"eta": "ddim", "temperature": "absorbing", "variance": "ddpm", "data_dir": "analytic-dpm"}
    ignoring = {"sampler": "dpm-solver++", "spiking": False}
    using = {**ignoring, "sampler": users.get(rule.option, "dpm-solver++"), "spiking": rule.option == "threshold"}
    refuse_ignored(rule.command, args, using)
    with pytest.raises(ValueError, match=f"--{rule.option.replace('_', '-')} is ignored here"):
        refuse_ignored(rule.command, args, ignoring)


def test_sample_refuses_eta_for_a_sampler_without_it(capsys, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--preset", "fmnist-ann-small", "--out", str(run), "--set", "model.ch_mult=1,2",
                 "--set", "train.total_steps=1", "--set", "train.sample_every=0", "--set", "train.precision=fp32",
                 "--set", "train.compile=off", "--no-progress"]) == 0
    capsys.readouterr()
    for extra, what in ((["--sampler", "dpm-solver++", "--eta", "0.5"], "--eta"),
                        (["--threshold", "0.99"], "--threshold")):
        assert main(["sample", str(run), "--out", str(tmp_path / "s"), "--num", "2", *extra, "--no-progress"]) == 1
        err = capsys.readouterr().err.strip()
        assert f"{what} is ignored here" in err and "\n" not in err
    assert not (tmp_path / "s").exists()


def test_evaluate_checks_the_image_size_against_the_dataset(small_fmnist_dir, capsys, tmp_path):
    rng = np.random.default_rng(0)
    square32 = tmp_path / "x32.npz"
    np.savez(square32, images=rng.integers(0, 256, (8, 32, 32, 1), dtype=np.uint8))
    argv = ["evaluate", str(square32), "--dataset", "fmnist", "--data-dir", str(small_fmnist_dir), "--no-progress"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert "images are 32x32, fmnist's are 28x28: pass --resize" in err and "\n" not in err
    assert main([*argv, "--resize"]) == 0
    assert "8 samples of 1x32x32 (the reference resized from 28x28)" in capsys.readouterr().out
    with pytest.raises(ValueError, match="square"):
        evaluate_images(torch.zeros(4, 1, 28, 32, dtype=torch.uint8), "fmnist", data_dir=small_fmnist_dir)
