"""The benchmark scripts import and parse their options, and record where their figures came from."""

from __future__ import annotations

import runpy
import shlex
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPTS = sorted(p for p in BENCHMARKS.glob("*.py") if p.name != "provenance.py")


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_every_benchmark_script_imports_and_parses_its_options(script, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.setattr("sys.argv", [str(script), "--help"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(script), run_name="__main__")
    assert exit_info.value.code == 0 and "usage:" in capsys.readouterr().out


def test_provenance_records_a_runnable_command_without_this_machines_paths(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from provenance import provenance

    root = BENCHMARKS.parent
    meta = provenance([str(BENCHMARKS / "throughput.py"), "--reference-repo", str(tmp_path / "SDDPM"),
                       f"--out={root / 'benchmarks' / 'results'}", "--name", "a b.json"])
    assert shlex.split(meta["command"]) == ["python", "benchmarks/throughput.py", "--reference-repo",
                                            "PATH/TO/SDDPM", "--out=benchmarks/results", "--name", "a b.json"]
    assert str(tmp_path) not in meta["command"] and str(root) not in meta["command"]
    assert meta["git"] and meta["date"] and meta["machine"]["threads"] >= 1 and meta["machine"]["torch"]
