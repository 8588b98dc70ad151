"""Options that a mode of their command ignores, declared once and refused when given.

An option that a run silently ignores looks accepted: ``sample --eta 0.5`` with DPM-Solver++ ran
exactly as without it. Each rule names an option and the modes that use it; an option given (set to
anything but its default) in another mode is refused in one line. Rules whose mode is known only once
the checkpoint is read (the sampler a model defaults to, whether it spikes) are checked then, by the
command, with that ``context``. ``tests/test_validation.py`` gives every rule an example and checks that
every option of every command is either always used (:data:`ALWAYS_USED`) or has a rule here, so a new
option cannot skip them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    """``option`` (an argparse dest) of ``command`` is used only where ``used(args, context)`` holds,
    which is in ``by``'s words; ``needs`` names the context keys the test needs (empty: parse time)."""

    command: str
    option: str
    used: Callable[[argparse.Namespace, dict], bool]
    by: str
    needs: tuple[str, ...] = ()


_SAMPLING = ("sample", "tg-sweep")
RULES: list[Rule] = [
    Rule("train", "preset", lambda a, c: not a.resume, "a new run (--resume trains the run's own config)"),
    Rule("train", "init_from", lambda a, c: not a.resume, "a new run (--resume starts from the run's checkpoint)"),
    Rule("train", "overwrite", lambda a, c: not a.resume, "a new run (--resume continues the run in --out)"),
    *[r for cmd in _SAMPLING for r in (
        Rule(cmd, "eta", lambda a, c: c["sampler"] == "ddim", "the ddim sampler", ("sampler",)),
        Rule(cmd, "temperature", lambda a, c: c["sampler"] == "absorbing", "the absorbing sampler", ("sampler",)),
        Rule(cmd, "variance", lambda a, c: c["sampler"] == "ddpm", "the ddpm sampler", ("sampler",)),
    )],
    Rule("sample", "threshold", lambda a, c: c["spiking"], "models with spiking neurons", ("spiking",)),
    Rule("tg-sweep", "threshold", lambda a, c: False, "sample (tg-sweep takes its thresholds from --thresholds)"),
    *[Rule("sample", name, lambda a, c: a.evaluate, "--evaluate")
      for name in ("dataset", "features", "split", "inception_weights")],
    Rule("sample", "data_dir", lambda a, c: a.evaluate or c["sampler"] == "analytic-dpm",
         "--evaluate and the analytic-dpm sampler", ("sampler",)),
    Rule("info", "preset", lambda a, c: not a.target, "info without a checkpoint directory"),
    Rule("energy", "preset", lambda a, c: not a.target, "energy without a checkpoint directory"),
    Rule("energy", "ema", lambda a, c: bool(a.target), "a checkpoint directory (a preset is measured untrained)"),
    Rule("bench", "budget_minutes", lambda a, c: a.what == "train", "bench train"),
    Rule("bench", "grad_checkpointing", lambda a, c: a.what == "train", "bench train"),
    Rule("bench", "evaluations", lambda a, c: a.what == "sample", "bench sample"),
    Rule("bench", "fold_bn", lambda a, c: a.what == "sample", "bench sample"),
    *[Rule("ann2snn", name, lambda a, c: a.finetune, "--finetune")
      for name in ("finetune_steps", "lr", "batch_size", "num_images")],
    *[Rule("ann2snn", name, lambda a, c: a.coding == "signed-if",
           "--coding signed-if (the integrate-then-fire codings convert exactly, in their own T)")
      for name in ("slack_steps", "finetune")],
]

# Options every mode of their command uses (positionals, outputs, devices, progress bars ...).
ALWAYS_USED: dict[str, set[str]] = {
    "info": {"target"},
    "train": {"out", "set", "resume", "max_minutes", "data_dir", "device", "no_progress", "remeasure"},
    "sample": {"checkpoint", "out", "num", "sampler", "steps", "seed", "batch_size", "precision", "fold_bn", "compile",
               "remeasure", "ema", "classes", "cfg", "device", "no_png", "overwrite", "no_progress", "evaluate"},
    "tg-sweep": {"checkpoint", "thresholds", "num", "out", "device", "sampler", "steps", "seed", "batch_size",
                 "precision", "fold_bn", "compile", "remeasure", "ema", "dataset", "features", "split",
                 "inception_weights", "data_dir"},
    "evaluate": {"samples", "num", "out", "resize", "no_progress", "dataset", "features", "split", "inception_weights",
                 "data_dir"},
    "train-classifier": {"dataset", "out", "epochs", "seed", "data_dir", "no_progress"},
    "energy": {"target", "dataset", "t", "num_images", "steps", "energy_model", "no_ann", "out", "data_dir"},
    "bench": {"what", "preset", "batch", "set", "precision", "compile", "remeasure", "repeats", "warmup", "json"},
    "convert sddpm": {"input", "out_dir", "spike_steps", "image_size", "preset", "key", "overwrite"},
    "convert sdm": {"input", "out_dir", "image_size", "preset", "key", "overwrite"},
    "ann2snn": {"qann_dir", "out_dir", "spike_steps", "coding", "ema", "data_dir", "device", "seed",
                "overwrite", "no_progress"},
}


def given_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, str]:
    """``{dest: spelling}`` of the options of ``parser`` that ``args`` sets to other than their default."""
    return {a.dest: (a.option_strings[0] if a.option_strings else a.dest) for a in parser._actions
            if a.dest in vars(args) and getattr(args, a.dest) != a.default}


def refuse_ignored(command: str, args: argparse.Namespace, context: dict | None = None) -> None:
    """``ValueError`` for the first option given that ``command`` ignores in this mode: the rules that need
    no context at parse time (``context`` None), those that need ``context``'s keys when it is given."""
    given = getattr(args, "given", {})
    for rule in RULES:
        if rule.command != command or rule.option not in given:
            continue
        if bool(rule.needs) == (context is None):  # checked at the other time
            continue
        if not rule.used(args, context or {}):
            raise ValueError(f"{given[rule.option]} is ignored here: it applies to {rule.by} only"
                             + (f" (this run: {', '.join(f'{k} {context[k]}' for k in rule.needs)})" if rule.needs
                                else ""))
