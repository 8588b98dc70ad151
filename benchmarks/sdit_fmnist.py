"""SDiT on Fashion-MNIST (issue 12): class-conditional sample grids, FID / KID / precision / recall
(fmnist-classifier), the share of samples the classifier assigns to the class they were asked for (class agreement)
and to each class (the smallest share: does the model draw every class),
energy per image, and training / sampling throughput, for each classifier-free guidance scale.

    python benchmarks/sdit_fmnist.py RUN --num 1280 --steps 20 --cfg 1,2 [--out benchmarks/results/sdit]

RUN is a trained class-conditional run (e.g. ``spikediff train --preset fmnist-sdit-small``). Image i
is sampled as class i mod 10, so the 1,280 samples are balanced; the grids show 10 images per class,
one class per column. FIDs use the project's classifier features against the Fashion-MNIST training
set at the samples' 28x28 (not Inception). Guidance scales other than 1 cost two network evaluations
per step (conditional and unconditional), and the energy per image counts both.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from provenance import provenance

import spikediff
from spikediff.cli import main as cli
from spikediff.metrics import evaluate_images, score, score_key
from spikediff.sample import class_labels, generate, save_grid


def training_rate(run: Path) -> dict:
    """Median training images/s of the run (from its log) and how long it trained. A learning-curve
    snapshot (``benchmarks/learning_curve.py``'s ``LABEL-30min``) keeps the checkpoint but no log: its step
    count comes from the trainer state and its rate from the curve's own JSON."""
    ckpt = spikediff.checkpoint.resolve(run)
    info = {"batch_size": spikediff.load_config(ckpt).train.batch_size}
    log_file = run / "log.jsonl"
    if not log_file.is_file():
        step = spikediff.checkpoint.load_trainer_state(ckpt)["step"]
        return info | {"train_steps": step, "train_images_per_s_median": None,
                       "note": f"{run} has no log.jsonl (a learning-curve snapshot?)"}
    log = [json.loads(line) for line in log_file.read_text().splitlines() if line.strip()]
    rates = [r["images_per_s"] for r in log if "images_per_s" in r]
    return info | {"train_images_per_s_median": round(statistics.median(rates), 2), "train_steps": log[-1]["step"]}


def bench_rows(presets: list[str], batch: int) -> list[dict]:
    """``spikediff bench`` (train step, sampling evaluation) in fp32 and bf16 for each preset, one
    process per figure so that none inherits another's memory or threads."""
    rows = []
    for preset in presets:
        for what in ("train", "sample"):
            for precision in ("fp32", "bf16"):
                cmd = [sys.executable, "-m", "spikediff", "bench", what, "--preset", preset, "--batch", str(batch),
                       "--precision", precision, "--json"]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                rows.append(json.loads(out.strip().splitlines()[-1]) | {"precision": precision})
                print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--num", type=int, default=1280)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--sampler", default="ddim")
    parser.add_argument("--cfg", default="1,2", help="guidance scales, comma-separated")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bench", default="fmnist-sdit-small,fmnist-snn-small",
                        help="presets whose training and sampling throughput to measure beside ('' = none)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/sdit"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    ckpt = spikediff.checkpoint.resolve(args.run)
    config = spikediff.load_config(ckpt)
    model = spikediff.load(ckpt)
    dataset = config.data.dataset
    training = training_rate(args.run)  # before sampling: a run it cannot read fails in seconds, not after it
    assert cli(["energy", str(ckpt), "--steps", str(args.steps), "--out", str(args.out / "energy")]) == 0
    energy = json.loads((args.out / "energy" / "energy.json").read_text())
    per_evaluation = energy["report"]["totals_per_evaluation"]["energy_mj"]
    labels = class_labels(config, args.num, None)
    rows = []
    for scale in (float(s) for s in args.cfg.split(",")):
        chosen = []
        tic = time.perf_counter()
        images = generate(model, config, args.num, args.sampler, args.steps, args.seed, args.batch_size, "cpu",
                          precision=args.precision, guidance=scale, on_fast_path=chosen.append)
        seconds = time.perf_counter() - tic
        save_grid(images[:100], args.out / f"grid-cfg{scale:g}.png", config.model.num_classes)
        evaluations = args.steps * (1 if scale == 1.0 else 2)
        scored = evaluate_images(images, dataset, "classifier", requested_classes=labels)
        row = {"model": config.name, "params": sum(p.numel() for p in model.parameters() if p.requires_grad),
               "cfg": scale, "sampler": args.sampler, "steps": args.steps, "network_evaluations": evaluations,
               "num_samples": args.num, "sampling_images_per_s": round(args.num / seconds, 2),
               "sampling_path": str(chosen[0].path),
               "class_agreement (fmnist-classifier)": scored["class_agreement"]["overall"],
               "class_agreement_per_class": scored["class_agreement"]["per_class"],
               "classes": scored["classes"]["shares"], "smallest_class_share": scored["classes"]["smallest_share"],
               "energy_per_image_mj": per_evaluation * evaluations, **scored["scores"]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {"rows": rows, "training": training,
              "throughput": bench_rows([p for p in args.bench.split(",") if p], 32), "energy": {
        "per_evaluation_mj": per_evaluation, "ann_twin_per_evaluation_mj": energy.get("ann_twin", {}).get(
            "totals_per_evaluation", {}).get("energy_mj"), "snn_over_ann": energy.get("snn_over_ann"),
        "report": str(args.out / "energy")},
        "meta": provenance()}
    (args.out / "sdit.json").write_text(json.dumps(result, indent=2))
    fid_key = score_key(rows[0], "FID")
    lines = ["| model | cfg | sampler steps (NFE) | samples | " + fid_key + " | KID | precision | recall | class "
             "agreement | smallest class | energy per image (mJ) | sampling img/s |", "|---" * 12 + "|"]
    for r in rows:
        kid = score(r, "KID")
        prec = score(r, "precision")
        rec = score(r, "recall")
        lines.append(f"| {r['model']} | {r['cfg']:g} | {r['steps']} ({r['network_evaluations']}) | "
                     f"{r['num_samples']} | "
                     f"{r[fid_key]:.1f} | {kid:.2f} | {prec:.3f} | {rec:.3f} | "
                     f"{r['class_agreement (fmnist-classifier)']:.3f} | {r['smallest_class_share']:.1%} | "
                     f"{r['energy_per_image_mj']:.3f} | "
                     f"{r['sampling_images_per_s']:.1f} |")
    (args.out / "sdit.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
