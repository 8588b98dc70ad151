"""Where a benchmark's figures came from, recorded beside them: the date, the machine, the git
revision and the command line that reruns the benchmark (paths of this machine made relative to
the repository, or replaced by a placeholder)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from datetime import date
from pathlib import Path

import torch

from spikediff.fast_path import cpu_facts

ROOT = Path(__file__).resolve().parent.parent


def _portable(arg: str) -> str:
    """``arg`` with an absolute path made relative to the repository, or ``PATH/TO/<name>`` outside it."""
    key, sep, value = arg.partition("=") if arg.startswith("--") and "=" in arg else ("", "", arg)
    if os.path.isabs(value):
        path = Path(value).resolve()
        value = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else f"PATH/TO/{path.name}"
    return key + sep + value


def git_revision() -> str:
    """The commit the figures were measured on (``-dirty`` if the tree had changes)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()

    rev = git("rev-parse", "--short", "HEAD") or "unknown"
    return rev + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def provenance(argv: list[str] | None = None) -> dict:
    """``date``, ``machine``, ``git`` and ``command`` of the running benchmark (``sys.argv`` by default)."""
    argv = sys.argv if argv is None else argv
    script = Path(argv[0]).resolve()
    command = ["python", str(script.relative_to(ROOT)) if script.is_relative_to(ROOT) else script.name]
    return {
        "date": str(date.today()),
        "machine": {**cpu_facts(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__},
        "git": git_revision(),
        "command": shlex.join(command + [_portable(a) for a in argv[1:]]),
    }
