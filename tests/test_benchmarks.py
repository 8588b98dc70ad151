"""The benchmark scripts import and parse their options, and record where their figures came from."""

from __future__ import annotations

import json
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


def _learning_curve(monkeypatch, tmp_path, *extra: str, preset: str = "fmnist-snn-small") -> None:
    """Run benchmarks/learning_curve.py on a tiny ``preset``, 16 samples per point, 2 evaluations."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    tiny = ["--set", "model.ch=8", "--set", "model.ch_mult=1,2", "--set", "train.batch_size=4",
            "--set", "train.sample_every=0", "--set", "train.warmup_steps=0", "--set", "train.lr_decay=constant",
            "--set", "train.log_every=1"]
    monkeypatch.setattr("sys.argv", ["learning_curve.py", "--preset", preset, "--label", "c", *tiny,
                                     "--num", "16", "--steps", "2", "--out", str(tmp_path / "out"),
                                     "--work", str(tmp_path / "work"), *extra])
    runpy.run_path(str(BENCHMARKS / "learning_curve.py"), run_name="__main__")


def test_learning_curve_extends_a_run_instead_of_starting_again(tmp_path, monkeypatch, small_fmnist_dir):
    monkeypatch.setenv("SPIKEDIFF_DATA", str(small_fmnist_dir))
    _learning_curve(monkeypatch, tmp_path, "--at-steps", "2")
    first = json.loads((tmp_path / "out" / "c.json").read_text())["points"]
    by_t = first[0]["heldout_loss_by_t"]  # eighths of the diffusion steps, whose mean is the held-out loss
    assert len(by_t) == 8 and first[0]["heldout_loss"] == pytest.approx(sum(by_t) / 8, abs=1e-4)
    # benchmarks/heldout_by_t.py gives a saved point the numbers its curve recorded
    monkeypatch.setattr("sys.argv", ["heldout_by_t.py", str(tmp_path / "work" / "c-step2"), "--weights", "model",
                                     "--out", str(tmp_path / "by_t.json")])
    runpy.run_path(str(BENCHMARKS / "heldout_by_t.py"), run_name="__main__")
    assert json.loads((tmp_path / "by_t.json").read_text())[0]["heldout_loss_by_t"] == by_t
    log_before = (tmp_path / "work" / "c" / "log.jsonl").read_text()
    _learning_curve(monkeypatch, tmp_path, "--at-steps", "4", "--extend")
    curve = json.loads((tmp_path / "out" / "c.json").read_text())
    points = curve["points"]
    assert points[0] == first[0] and [p["step"] for p in points] == [2, 4]
    assert points[1]["minutes"] > points[0]["minutes"]  # the clock goes on from the earlier point
    log = (tmp_path / "work" / "c" / "log.jsonl").read_text()
    assert log.startswith(log_before) and json.loads(log.splitlines()[-1])["step"] == 4  # one run, trained on
    assert len(curve["meta"]["earlier_commands"]) == 1  # the first segment's command is kept beside the extension's
    with pytest.raises(SystemExit, match="2"):  # another recipe is another curve, not an extension
        _learning_curve(monkeypatch, tmp_path, "--at-steps", "6", "--extend", "--set", "model.ch=16")
    with pytest.raises(SystemExit, match="2"):
        _learning_curve(monkeypatch, tmp_path, "--at-steps", "4", "--extend")
    with pytest.raises(SystemExit, match="2"):  # a weight set the earlier points did not score
        _learning_curve(monkeypatch, tmp_path, "--at-steps", "6", "--extend", "--weights", "model,ema")


def test_learning_curve_measures_a_conditional_models_agreement_with_the_requested_class(
        tmp_path, monkeypatch, small_fmnist_dir):
    monkeypatch.setenv("SPIKEDIFF_DATA", str(small_fmnist_dir))
    _learning_curve(monkeypatch, tmp_path, "--at-steps", "1", "--set", "model.depth=2", "--weights", "model",
                    preset="fmnist-sdit-cpu-small")
    point = json.loads((tmp_path / "out" / "c.json").read_text())["points"][0]
    agreement = point["class_agreement"]
    assert 0 <= agreement["overall"] <= 1 and len(agreement["per_class"]) == 10
    # 16 samples of classes i mod 10: the overall share is the per-class shares weighted by 2 or 1 samples
    weights = [2] * 6 + [1] * 4
    assert agreement["overall"] == pytest.approx(
        sum(w * a for w, a in zip(weights, agreement["per_class"].values(), strict=True)) / 16, abs=1e-3)
    # benchmarks/sdit_fmnist.py scores the curve's snapshot (a checkpoint without the run's log) at two guidances
    out = tmp_path / "sdit"
    monkeypatch.setattr("sys.argv", ["sdit_fmnist.py", str(tmp_path / "work" / "c-step1"), "--num", "10", "--steps",
                                     "2", "--cfg", "1,2", "--bench", "", "--out", str(out)])
    runpy.run_path(str(BENCHMARKS / "sdit_fmnist.py"), run_name="__main__")
    result = json.loads((out / "sdit.json").read_text())
    assert result["training"]["train_steps"] == 1 and result["training"]["train_images_per_s_median"] is None
    plain, guided = result["rows"]
    assert (plain["network_evaluations"], guided["network_evaluations"]) == (2, 4)  # guidance evaluates twice
    assert guided["sampling_path"].split()[0] in ("fp32", "bf16")  # the path its images/s were measured on
    assert guided["energy_per_image_mj"] == pytest.approx(2 * plain["energy_per_image_mj"])
    assert guided["smallest_class_share"] == min(guided["classes"].values())  # does it draw every class
    assert sum(guided["classes"].values()) == pytest.approx(1.0, abs=1e-3) and (out / "grid-cfg2.png").is_file()


def test_learning_curve_scores_the_snn_a_quantised_ann_converts_to(tmp_path, monkeypatch, small_fmnist_dir):
    monkeypatch.setenv("SPIKEDIFF_DATA", str(small_fmnist_dir))
    _learning_curve(monkeypatch, tmp_path, "--at-steps", "1,2", "--weights", "model,ema", "--convert", "3",
                    "--convert-at", "2", preset="fmnist-qann-small")
    rows = json.loads((tmp_path / "out" / "c.json").read_text())["points"]
    assert [(r["step"], r["weights"], "converted" in r) for r in rows] == [  # the SNN only where --convert-at asks
        (1, "model", False), (1, "ema", False), (2, "model", False), (2, "model", True), (2, "ema", False),
        (2, "ema", True)]
    snn = rows[5]["converted"]
    assert snn["spike_steps"] == 3 and snn["output_mse_vs_qann"] >= 0
    assert rows[5]["FID"] != rows[4]["FID"]  # the SNN sampled its own images, not the quantised ANN's
    converted = tmp_path / "work" / "c-step2-ema-snn-t3"
    assert json.loads((converted / "config.json").read_text())["model"]["arch"] == "converted_snn"
    assert (tmp_path / "out" / "c" / "step2-ema-snn-t3.png").is_file()
    with pytest.raises(SystemExit, match="2"):  # only a quantised ANN converts
        _learning_curve(monkeypatch, tmp_path, "--at-steps", "2", "--convert", "3")
    with pytest.raises(SystemExit, match="2"):  # a conversion point that is not a point of the curve
        _learning_curve(monkeypatch, tmp_path, "--at-steps", "2", "--convert", "3", "--convert-at", "3",
                        preset="fmnist-qann-small")


def _comparison_row(row: str, fid: float, recall: float, smallest_share: float, cpu: str = "CPU A") -> dict:
    """A measured row of benchmarks/comparison.py with the scores the table reads."""
    return {"row": row, "model": row, "params_trainable": 1000, "budget_minutes": 30.0, "train_steps": {"train": 100},
            "train_images_per_s_median": 10.0, "sampler": "dpm-solver++", "steps": 20, "num_samples": 2000,
            "FID (fmnist-classifier)": fid, "KID (fmnist-classifier)": 1.0,
            "precision (fmnist-classifier, k=3)": 0.8, "recall (fmnist-classifier, k=3)": recall,
            "classes": {"smallest": "bag", "smallest_share": smallest_share}, "energy_per_image_mj": 1.0,
            "snn_over_ann": None, "sampling_images_per_s": 5.0, "meta": {"machine": {"model": cpu, "flags": "avx2"}}}


def test_comparison_ranks_only_the_rows_that_draw_the_data(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import comparison

    rows = [_comparison_row("spiking-unet", 300, 0.5, 0.05), _comparison_row("ann-twin", 200, 0.6, 0.06),
            _comparison_row("sdit", 100, 0.004, 0.0), _comparison_row("fsddim-style", 150, 0.3, 0.002)]
    text = comparison.table(rows)
    body = [line.split(" | ")[:2] for line in text.splitlines()
            if line.startswith("| ") and not line.startswith("| rank")]
    # the lowest FIDs belong to rows that sample noise or miss a class: listed last, not ranked
    assert body == [["| 1", "ann-twin"], ["| 2", "spiking-unet"], ["| not ranked", "sdit"],
                    ["| not ranked", "fsddim-style"]]
    assert "- sdit: not ranked, recall 0.004" in text and "- fsddim-style: not ranked, class bag gets 0.2%" in text
    assert "machine |" not in text
    rows[1]["sampling_paths"] = ["bf16 compiled"]  # the fast path each row sampled on, where recorded
    assert "| 5.0 (bf16 compiled) |" in comparison.table(rows) and "| 5.0 |" in comparison.table(rows)
    rows[2]["class_agreement"] = {"overall": 0.4512, "per_class": {}}  # a conditional row: its classes agree
    lines = [line.split(" | ") for line in comparison.table(rows).splitlines() if line.startswith("| ")]
    column = lines[0].index("class agreement")
    assert {cells[1]: cells[column] for cells in lines[1:]} == {"ann-twin": "-", "spiking-unet": "-", "sdit": "0.451",
                                                                 "fsddim-style": "-"}
    rows[0]["meta"]["machine"]["model"] = "CPU B"  # rows from two machines name theirs
    assert "| machine |" in comparison.table(rows) and "CPU B" in comparison.table(rows)


def test_comparison_front_keeps_the_ranked_rows_no_other_beats_on_fid_and_energy(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import comparison

    rows = [_comparison_row("ann-twin", 250, 0.6, 0.06), _comparison_row("converted-snn", 180, 0.7, 0.07),
            _comparison_row("converted-snn-signed", 240, 0.6, 0.06), _comparison_row("spiking-unet", 600, 0.3, 0.05),
            _comparison_row("sdit", 100, 0.004, 0.0)]
    for row, mj in zip(rows, [17.0, 34.0, 5.0, 0.8, 0.1], strict=True):
        row["energy_per_image_mj"] = mj
    # the ANN twin is beaten on both by the signed SNN; sdit is cheapest and best but does not draw the data
    assert [r["row"] for r in comparison.front(rows)] == ["converted-snn", "converted-snn-signed", "spiking-unet"]
    assert comparison.table(rows).splitlines()[-1] == (
        "FID-energy front (the ranked rows no other ranked row beats on both): spiking-unet (600.0, 0.800 mJ), "
        "converted-snn-signed (240.0, 5.000 mJ), converted-snn (180.0, 34.000 mJ)")


def test_comparison_sampling_waits_for_a_session_long_enough_for_its_longest_chunk(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import comparison
    import numpy as np

    from spikediff.checkpoint import CheckpointError

    parts = tmp_path / "samples"
    parts.mkdir()
    np.savez_compressed(parts / "part_000000.npz", images=np.zeros((1, 1, 2, 2)), seconds=600.0)
    args = type("Args", (), {"num": 2 * comparison.CHUNK, "steps": 2})()
    # 12 minutes left, the first chunk took 10: the second would overrun the session, so it waits
    # (before loading the checkpoint, which does not exist here)
    assert comparison.longest_chunk_seconds(parts) == 600.0
    assert not comparison.sample_chunks(tmp_path / "no-checkpoint", parts, args, comparison.Session(12.0))
    assert sorted(p.name for p in parts.iterdir()) == ["part_000000.npz"]
    # with 16 minutes left it starts: loading the missing checkpoint is what fails
    with pytest.raises(CheckpointError, match="not a spikediff checkpoint"):
        comparison.sample_chunks(tmp_path / "no-checkpoint", parts, args, comparison.Session(16.0))


def test_comparison_stage_resumes_its_run_in_a_later_piece(monkeypatch, tmp_path, small_fmnist_dir):
    """A stage cut by the end of a session trains on from its checkpoint in the next piece: the run's own
    config (train refuses --preset with --resume), the ledger adding the minutes of both pieces."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import comparison

    monkeypatch.setenv("SPIKEDIFF_DATA", str(small_fmnist_dir))
    tiny = ["model.ch=8", "model.num_res_blocks=1", "train.batch_size=4", "train.compile=off",
            "train.warmup_steps=0"]
    stage = comparison.Stage("train", "fmnist-qann-signed-small", sets=tiny)
    args = type("Args", (), {"work": tmp_path, "budget_minutes": 0.1})()
    log = tmp_path / "row" / "train" / "log.jsonl"

    def steps() -> list[int]:
        return [json.loads(line)["step"] for line in log.read_text().splitlines() if '"step"' in line]

    assert comparison.train_stage("row", stage, args, comparison.Session(60.0))
    first, first_steps = json.loads((tmp_path / "row" / "train.budget.json").read_text())["minutes"], steps()
    args.budget_minutes = first + 0.1  # a longer budget: the stage is unfinished, its run has checkpoints
    assert comparison.train_stage("row", stage, args, comparison.Session(60.0))
    both = steps()
    assert len(both) > len(first_steps) and both == sorted(both)  # the second piece went on from the first
    assert json.loads((tmp_path / "row" / "train.budget.json").read_text())["minutes"] > first


def test_comparison_guided_row_samples_the_trained_rows_model_at_twice_the_evaluations(
        monkeypatch, tmp_path, small_fmnist_dir):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import comparison

    monkeypatch.setenv("SPIKEDIFF_DATA", str(small_fmnist_dir))
    tiny = ["model.depth=2", "model.ch=16", "train.batch_size=4", "train.compile=off", "train.warmup_steps=0"]
    monkeypatch.setitem(comparison.ROWS, "sdit-fast", comparison.Row(
        "tiny SDiT", [comparison.Stage("train", "fmnist-sdit-fast-small", sets=tiny)], conditional=True))
    assert comparison.ROWS["sdit-fast-cfg2"].samples == "sdit-fast"
    out, work = tmp_path / "out", tmp_path / "work"
    monkeypatch.setattr("sys.argv", ["comparison.py", "--rows", "sdit-fast,sdit-fast-cfg2", "--budget-minutes", "0.1",
                                     "--num", "20", "--steps", "2", "--out", str(out), "--work", str(work)])
    comparison.main()
    plain, guided = (json.loads((out / f"{row}.json").read_text()) for row in ("sdit-fast", "sdit-fast-cfg2"))
    assert not (work / "sdit-fast-cfg2" / "train").exists()  # it trained nothing: the model is sdit-fast's
    assert guided["checkpoint"] == plain["checkpoint"] and guided["train_steps"] == plain["train_steps"]
    assert (plain["guidance"], plain["network_evaluations"]) == (1.0, 2)
    assert (guided["guidance"], guided["network_evaluations"]) == (2.0, 4)
    assert guided["energy_per_image_mj"] == pytest.approx(2 * plain["energy_per_image_mj"])
    table = (out / "table.md").read_text()
    assert "| dpm-solver++ (4) |" in table and "| dpm-solver++ (2) |" in table
    assert table.count("0.1 min (") == 2  # the guided row's budget is the trained row's
    assert "The floor: 20 real test images score FID (fmnist-classifier) " in table
    assert (out / "real-test-images-20.json").is_file()


def test_comparison_phase_row_converts_the_signed_rows_trained_network_with_its_own_neurons(
        monkeypatch, tmp_path, small_fmnist_dir):
    """The two converted rows of fmnist-qann-signed-small share one trained quantised ANN: the phase row
    trains nothing and converts that network at T = 3 where the signed row converts it at T = 7."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import comparison

    monkeypatch.setenv("SPIKEDIFF_DATA", str(small_fmnist_dir))
    tiny = ["model.ch=8", "model.num_res_blocks=1", "train.batch_size=4",
            "train.compile=off", "train.warmup_steps=0"]
    signed = comparison.ROWS["converted-snn-signed"]
    monkeypatch.setitem(comparison.ROWS, "converted-snn-signed", comparison.Row(
        "tiny signed", [comparison.Stage("train", "fmnist-qann-signed-small", sets=tiny)], convert=True,
        coding=signed.coding))
    assert comparison.ROWS["converted-snn-phase"].samples == "converted-snn-signed"
    out, work = tmp_path / "out", tmp_path / "work"
    monkeypatch.setattr("sys.argv", ["comparison.py", "--rows", "converted-snn-signed,converted-snn-phase",
                                     "--budget-minutes", "0.1", "--num", "20", "--steps", "2", "--out", str(out),
                                     "--work", str(work)])
    comparison.main()
    names = ("converted-snn-signed", "converted-snn-phase")
    rows = {row: json.loads((out / f"{row}.json").read_text()) for row in names}
    assert not (work / "converted-snn-phase" / "train").exists()  # it converted the signed row's network
    assert rows["converted-snn-phase"]["train_steps"] == rows["converted-snn-signed"]["train_steps"]
    conversions = {row: json.loads((work / row / "converted" / "conversion.json").read_text()) for row in rows}
    assert {c["qann"] for c in conversions.values()} == {str(work / "converted-snn-signed" / "train")}
    assert (conversions["converted-snn-signed"]["spike_coding"], conversions["converted-snn-signed"]["spike_steps"]) \
        == ("signed-if", 7)
    assert (conversions["converted-snn-phase"]["spike_coding"], conversions["converted-snn-phase"]["spike_steps"]) \
        == ("phase", 3)
    assert rows["converted-snn-phase"]["checkpoint"] != rows["converted-snn-signed"]["checkpoint"]


def test_quickstart_runs_the_marked_readme_command_as_ci_shrinks_it(monkeypatch):
    """benchmarks/quickstart.py measures the very command README marks, stage by stage, and shrinks it
    exactly as .ci/run does (so its --shrink check runs what CI runs)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import quickstart

    command = quickstart.readme_command(BENCHMARKS.parent / "README.md")
    named = quickstart.stages(command)
    assert [name for name, _ in named] == ["setup", "train", "convert", "sample", "energy"]
    assert " && ".join(part for _, part in named) == command
    sample = dict(named)["sample"]
    assert quickstart.option(sample, "--out") == "runs/fmnist-snn/dpm20"
    assert quickstart.positional(sample, 0) == "runs/fmnist-snn"
    assert quickstart.positional(dict(named)["convert"], 1) == "runs/fmnist-snn"
    ci = (BENCHMARKS.parent / ".ci" / "run").read_text()
    for old, new in quickstart.SHRINK:
        assert old in command and f"s/{old}/{new}/" in ci.replace("[0-9.]*", old.split()[1]).replace(
            "[0-9]*", old.split()[1])
    with pytest.raises(ValueError, match="unexpected part"):
        quickstart.stages("bash scripts/setup.sh && rm -rf /")


def test_fid_energy_plane_draws_the_front_of_measured_models(tmp_path, monkeypatch, capsys):
    """Four models from their metrics and energy files: those beaten on both FID and energy are off the front,
    and one whose samples miss a class is not on it however good its figures; an energy per image of another
    step count than the samples' is refused."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    specs = []
    for label, fid, mj, smallest in (("twin", 200.0, 17.0, 0.07), ("snn", 180.0, 3.0, 0.06),
                                     ("worse", 250.0, 20.0, 0.06), ("no-bags", 50.0, 1.0, 0.0)):
        metrics, energy = tmp_path / f"{label}-metrics.json", tmp_path / f"{label}-energy.json"
        metrics.write_text(json.dumps({
            "scores": {"FID (fmnist-classifier)": fid, "recall (fmnist-classifier, k=3)": 0.6},
            "protocol": {"num_samples": 2000, "sampling": {"steps": 20}},
            "classes": {"smallest": "bag", "smallest_share": smallest}}))
        totals = {"totals_per_evaluation": {"energy_mj": mj}}
        energy.write_text(json.dumps({"energy_per_image_mj": mj, "sampling_steps": 20, "report": totals}))
        specs.append(f"{label}={metrics}:{energy}")
    out = tmp_path / "plane.png"
    monkeypatch.setattr("sys.argv", ["fid_energy_plane.py", *specs, "--out", str(out)])
    runpy.run_path(str(BENCHMARKS / "fid_energy_plane.py"), run_name="__main__")
    assert out.is_file() and json.loads(out.with_suffix(".json").read_text())["front"] == ["snn"]
    assert "snn" in capsys.readouterr().out
    energy.write_text(json.dumps({"energy_per_image_mj": 1000.0, "sampling_steps": 1000, "report": totals}))
    with pytest.raises(ValueError, match="--steps 20"):
        runpy.run_path(str(BENCHMARKS / "fid_energy_plane.py"), run_name="__main__")
