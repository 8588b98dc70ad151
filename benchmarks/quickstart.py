"""README's quick start, run as a new user runs it: the marked command, verbatim, in a fresh clone.

    python benchmarks/quickstart.py [--label epyc-avx512] [--clone /tmp/spikediff-quickstart]
        [--out benchmarks/results/quickstart] [--shrink]

The command after README's ``<!-- quickstart-command -->`` marker is split at its ``&&`` into its
stages (setup, train, convert, sample, energy); each runs in the clone, timed alone. Then the samples
are scored once more on their own (the ``metrics`` stage: the sample stage's ``--evaluate`` includes
that time, so the sampling time is the difference), and again on disjoint subsets of 500 and 1,000
images, which shows how far an FID of fewer samples lands from the full one. ``--shrink`` shrinks the
command as CI does (one minute of training, 20 samples, 5 sampler steps) for a check of the script.

Writes ``LABEL.json`` (per stage: wall time, and what the stage left: steps and fast path, conversion
error, FID / recall / precision / smallest class and images/s, energy), ``grid-LABEL.png`` and a
row of ``table.md`` to ``--out``, with the machine and the git revision (provenance). README's
quick-start figures are this script's rows.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
from provenance import ROOT, provenance

from spikediff.metrics import evaluate_images, score

MARKER = "<!-- quickstart-command -->"
SUBSETS = (500, 1000)
STAGES = ("setup", "train", "convert", "sample", "metrics", "energy")
HEADER = ("| machine (date, git) | steps | FID (fmnist-classifier) | precision | recall | smallest class | images/s "
          "| mJ per image | minutes: " + " / ".join(STAGES) + " |\n|---|---|---|---|---|---|---|---|---|\n")
# the shrink CI applies to the same command (.ci/run)
SHRINK = (("--max-minutes 30", "--max-minutes 1"), ("--num 2000", "--num 20"), ("--batch-size 100", "--batch-size 10"),
          ("--steps 20", "--steps 5"))


def readme_command(readme: Path) -> str:
    """The ``bash ...`` line after README's quick-start marker."""
    lines = readme.read_text().splitlines()
    if MARKER not in lines:
        raise ValueError(f"{readme} has no {MARKER} line")
    for line in lines[lines.index(MARKER) + 1:]:
        if line.startswith("bash "):
            return line
    raise ValueError(f"no 'bash ...' line after {MARKER} in {readme}")


def stages(command: str) -> list[tuple[str, str]]:
    """``(stage, command)`` per ``&&``-separated part: ``setup`` for the setup script, otherwise the
    spikediff subcommand's role (``ann2snn`` is the ``convert`` stage)."""
    named = []
    for part in (p.strip() for p in command.split("&&")):
        words = shlex.split(part)
        if words[:2] == ["bash", "scripts/setup.sh"]:
            named.append(("setup", part))
        elif words and words[0].endswith("spikediff") and len(words) > 1:
            named.append(({"ann2snn": "convert"}.get(words[1], words[1]), part))
        else:
            raise ValueError(f"unexpected part of the quick start: {part!r}")
    return named


def option(command: str, name: str) -> str:
    """The value of option ``name`` in ``command``."""
    words = shlex.split(command)
    return words[words.index(name) + 1]


def positional(command: str, k: int) -> str:
    """The ``k``-th word after the subcommand that is neither an option nor an option's value."""
    words, found, skip = shlex.split(command)[2:], [], False
    for w in words:
        if skip:
            skip = False
        elif w.startswith("--"):
            skip = "=" not in w and w not in ("--evaluate", "--overwrite", "--resume", "--no-progress")
        else:
            found.append(w)
    return found[k]


def run_stage(cmd: str, cwd: Path, log: Path) -> float:
    """Run ``cmd`` with bash in ``cwd``, output to ``log``; its wall time in seconds (a failure raises)."""
    tic = time.perf_counter()
    with open(log, "w") as f:
        done = subprocess.run(["bash", "-c", cmd], cwd=cwd, stdout=f, stderr=subprocess.STDOUT, check=False)
    seconds = time.perf_counter() - tic
    if done.returncode:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        raise RuntimeError(f"{cmd!r} exited {done.returncode} after {seconds:.0f} s; its log {log} ends:\n{tail}")
    return seconds


def summary(result: dict) -> dict:
    """FID, precision, recall and the smallest class's share of one ``evaluate_images`` result."""
    s = result["scores"]
    return {"fid": score(s, "FID"), "precision": score(s, "precision"), "recall": score(s, "recall"),
            "smallest_class_share": result["classes"]["smallest_share"],
            "num_samples": result["protocol"]["num_samples"], "extractor": result["protocol"]["extractor"]}


def subset_spread(images: torch.Tensor, dataset: str, data_dir: str | None) -> dict:
    """FID on disjoint subsets of ``images`` per subset size in :data:`SUBSETS` (where two fit at least)."""
    spread = {}
    for size in SUBSETS:
        if len(images) >= 2 * size:
            fids = [score(evaluate_images(images[k:k + size], dataset, data_dir=data_dir)["scores"], "FID")
                    for k in range(0, len(images) - size + 1, size)]
            spread[str(size)] = {"fids": fids, "mean": float(np.mean(fids)), "std": float(np.std(fids, ddof=1))}
    return spread


def measure(clone: Path, command: str, logs: Path) -> dict:
    """Every stage of ``command`` run in ``clone``, and what each left behind."""
    record: dict = {"command": command, "stages": {}}
    for name, cmd in stages(command):
        seconds = run_stage(cmd, clone, logs / f"{name}.log")
        stage: dict = {"seconds": round(seconds, 1)}
        if name == "train":
            run = clone / option(cmd, "--out")
            newest = sorted((run / "checkpoints").glob("step_*"))[-1]  # the log has every log_every-th step
            stage.update(steps=int(newest.name.removeprefix("step_")),
                         fast_path=json.loads((run / "fast_path.json").read_text()))
        elif name == "convert":
            stage["conversion"] = json.loads((clone / positional(cmd, 1) / "conversion.json").read_text())
        elif name == "sample":
            out = clone / option(cmd, "--out")
            metrics = json.loads(next(out.glob("metrics-*.json")).read_text())
            stage.update(num=int(option(cmd, "--num")), sampling=json.loads((out / "sampling.json").read_text()),
                         **summary(metrics))
            record["samples"] = out
        elif name == "energy":
            report = json.loads((clone / positional(cmd, 0) / "energy" / "energy.json").read_text())
            keys = ("energy_per_image_mj", "snn_over_ann", "sampling_steps")
            stage.update({k: report[k] for k in keys if k in report})
            stage["per_evaluation"] = report["report"]["totals_per_evaluation"]
        record["stages"][name] = stage
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", required=True, help="the machine kind, e.g. epyc-avx512")
    parser.add_argument("--clone", default="/tmp/spikediff-quickstart", help="where to clone (replaced)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "quickstart"))
    parser.add_argument("--shrink", action="store_true", help="CI's tiny budget, to check the script itself")
    parser.add_argument("--data-dir", help="where the metrics stage finds Fashion-MNIST (default: the usual places)")
    args = parser.parse_args()

    clone, out = Path(args.clone), Path(args.out)
    if clone.exists():
        shutil.rmtree(clone)
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    command = readme_command(clone / "README.md")
    if args.shrink:
        for old, new in SHRINK:
            command = command.replace(old, new)
    out.mkdir(parents=True, exist_ok=True)
    logs = out / f"logs-{args.label}"
    logs.mkdir(exist_ok=True)
    record = {**provenance(), **measure(clone, command, logs)}
    samples = record.pop("samples")
    images = torch.from_numpy(np.load(samples / "samples.npz")["images"]).permute(0, 3, 1, 2).contiguous()
    tic = time.perf_counter()
    full = evaluate_images(images, "fmnist", data_dir=args.data_dir)
    metrics_s = time.perf_counter() - tic
    sample = record["stages"]["sample"]
    record["stages"]["metrics"] = {"seconds": round(metrics_s, 1), "fid_again": score(full["scores"], "FID")}
    sample["sampling_seconds"] = round(sample["seconds"] - metrics_s, 1)
    sample["images_per_s"] = round(sample["num"] / sample["sampling_seconds"], 3)
    record["fid_of_subsets"] = subset_spread(images, "fmnist", args.data_dir)
    record["total_minutes"] = round(sum(s["seconds"] for s in record["stages"].values()) / 60, 1)
    (out / f"{args.label}.json").write_text(json.dumps(record, indent=1))
    shutil.copy(samples / "grid.png", out / f"grid-{args.label}.png")
    minutes = {k: f"{v['seconds'] / 60:.1f}" for k, v in record["stages"].items()}
    energy = record["stages"].get("energy", {})
    row = (f"| {args.label} ({record['machine'].get('model', '?')}, {record['date']}, {record['git']}) "
           f"| {record['stages']['train']['steps']:,} | {sample['fid']:.1f} | {sample['precision']:.2f} "
           f"| {sample['recall']:.2f} | {sample['smallest_class_share']:.1%} | {sample['images_per_s']:.2f} "
           f"| {energy.get('energy_per_image_mj', float('nan')):.1f} | "
           + " / ".join(minutes[k] for k in STAGES if k in minutes)
           + " |")
    table = out / "table.md"
    if not table.is_file():
        table.write_text(HEADER)
    with open(table, "a") as f:
        f.write(row + "\n")
    print(json.dumps(record["stages"], indent=1))
    print(row)


if __name__ == "__main__":
    main()
