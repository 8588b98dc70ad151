"""FID (fmnist-classifier) against the number of network evaluations, for every sampler, on one
trained checkpoint; optionally a threshold-guidance sweep. Writes JSON, a markdown table and a plot.

    python benchmarks/sampler_fid.py RUN_DIR --num 500 --out benchmarks/results/sampler_fid
    python benchmarks/sampler_fid.py RUN_DIR --num 500 --tg 0.995:1.005:0.002 --tg-sampler ddim --tg-steps 20
    python benchmarks/sampler_fid.py RUN_DIR --grid ddim:100,ddim:50:100 --ddpm1000-num 100 --append

Grid entries are ``sampler:steps`` or ``sampler:steps:num`` (their own sample count); ``--append``
adds the rows to the JSON already in ``--out`` (replacing rows of the same sampler, steps and count).

Every row uses the same seed (so the same initial noise) and states its sample count; the FID is
against the whole Fashion-MNIST training split and is biased upward at small sample counts, so
compare rows with the same count only.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from provenance import provenance  # noqa: E402

import spikediff  # noqa: E402
from spikediff.checkpoint import uses_ema  # noqa: E402
from spikediff.metrics import evaluate_images, score, score_key  # noqa: E402
from spikediff.metrics.reference import reference_images  # noqa: E402
from spikediff.sample import analytic_gamma, generate  # noqa: E402

DEFAULT_GRID = "ddim:10,ddim:20,ddim:50,ddim:100,dpm-solver++:10,dpm-solver++:20,analytic-dpm:50,analytic-dpm:100"


def parse_grid_entry(entry: str, default_num: int) -> tuple[str, int, int]:
    """``sampler:steps`` or ``sampler:steps:num`` -> (sampler, steps, num)."""
    parts = entry.split(":")
    return parts[0], int(parts[1]), int(parts[2]) if len(parts) > 2 else default_num


def run_one(model, config, ckpt, weights: str, sampler: str, steps: int, num: int, args,
            threshold: float = 1.0) -> dict:
    extra = {}
    if sampler == "analytic-dpm":
        extra["gamma"] = analytic_gamma(model, config, steps, ckpt, num_images=args.gamma_images, threshold=threshold,
                                        weights=weights)
    tic = time.perf_counter()
    images = generate(model, config, num, sampler, steps, args.seed, args.batch_size, "cpu",
                      threshold=threshold, precision=args.precision, fold_bn=True, compile=args.compile, **extra)
    seconds = time.perf_counter() - tic
    scores = evaluate_images(images, config.data.dataset, "classifier")["scores"]
    row = {"sampler": sampler, "nfe": steps, "num_samples": num, "threshold": threshold,
           "sampling_seconds": round(seconds, 1), **scores}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--num", type=int, default=500)
    parser.add_argument("--grid", default=DEFAULT_GRID, help="sampler:steps[:num],... ")
    parser.add_argument("--append", action="store_true", help="merge with the rows already in --out")
    parser.add_argument("--ddpm1000-num", type=int, default=100, help="samples for DDPM-1000 (0 = skip)")
    parser.add_argument("--tg", help="threshold sweep start:stop:step")
    parser.add_argument("--tg-sampler", default="ddim")
    parser.add_argument("--tg-steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--compile", default="auto", help="torch.compile for sampling: auto|on|off")
    parser.add_argument("--gamma-images", type=int, default=256, help="images for Analytic-DPM's statistic")
    parser.add_argument("--real-baseline", action="store_true", help="also score --num real test images")
    parser.add_argument("--out", default="benchmarks/results/sampler_fid")
    args = parser.parse_args()

    torch.set_grad_enabled(False)
    ckpt = spikediff.checkpoint.resolve(args.checkpoint)
    config = spikediff.load_config(ckpt)
    weights = "ema" if uses_ema(ckpt) else "model"  # the analytic-DPM cache and the JSON name them
    model = spikediff.load(ckpt, use_ema=weights == "ema")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {**provenance(), "checkpoint": str(args.checkpoint), "weights": weights,
            "precision": args.precision, "seed": args.seed}
    rows = []
    if not args.tg:
        grid = [parse_grid_entry(entry, args.num) for entry in args.grid.split(",") if entry]
        if args.ddpm1000_num:
            grid.append(("ddpm", 1000, args.ddpm1000_num))
        rows = [run_one(model, config, ckpt, weights, sampler, steps, num, args) for sampler, steps, num in grid]
        if args.real_baseline:  # the same protocol on real test images: the floor of this FID at each count
            for num in sorted({r["num_samples"] for r in rows}):
                images = reference_images(config.data.dataset, "test", config.model.image_size)[:num]
                scores = evaluate_images(images, config.data.dataset, "classifier")["scores"]
                rows.append({"sampler": "real test images", "nfe": 0, "num_samples": num, "threshold": 1.0,
                             "sampling_seconds": 0.0, **scores})
        if args.append and (out / "fid_vs_nfe.json").is_file():
            earlier = json.loads((out / "fid_vs_nfe.json").read_text())
            new = {(r["sampler"], r["nfe"], r["num_samples"]) for r in rows}
            rows = [r for r in earlier["rows"] if (r["sampler"], r["nfe"], r["num_samples"]) not in new] + rows
            meta = {"runs": [*earlier["meta"].get("runs", [earlier["meta"]]), meta]}
        rows.sort(key=lambda r: (r["sampler"] == "real test images", r["sampler"], r["num_samples"], r["nfe"]))
        (out / "fid_vs_nfe.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
        fid_key = score_key(rows[0], "FID")
        lines = ["| sampler | NFE | samples | " + fid_key + " | precision | recall | sampling s |", "|---" * 7 + "|"]
        for r in rows:
            prec, rec = score(r, "precision"), score(r, "recall")
            lines.append(f"| {r['sampler']} | {r['nfe']} | {r['num_samples']} | {r[fid_key]:.3f} | {prec:.3f} | "
                         f"{rec:.3f} | {r['sampling_seconds']} |")
        (out / "fid_vs_nfe.md").write_text("\n".join(lines) + "\n")
        fig, ax = plt.subplots(figsize=(6, 4))
        for sampler, num in dict.fromkeys((r["sampler"], r["num_samples"]) for r in rows if r["nfe"]):
            pts = [(r["nfe"], r[fid_key]) for r in rows if (r["sampler"], r["num_samples"]) == (sampler, num)]
            ax.plot(*zip(*pts, strict=True), marker="o", label=f"{sampler} (N={num})")
        ax.set_xscale("log")
        ax.set_xlabel("network evaluations (NFE)")
        ax.set_ylabel(fid_key)
        ax.set_title(f"{config.name}: FID vs NFE (N = samples per point)")
        for r in rows:
            if not r["nfe"]:
                ax.axhline(r[fid_key], color="grey", ls="--", label=f"{r['sampler']} (N={r['num_samples']})")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "fid_vs_nfe.png", dpi=120)
        print("\n".join(lines))
    else:
        start, stop, step = (float(v) for v in args.tg.split(":"))
        thresholds = [round(start + i * step, 6) for i in range(int(round((stop - start) / step)) + 1)]
        rows = [run_one(model, config, ckpt, weights, args.tg_sampler, args.tg_steps, args.num, args, th)
                for th in thresholds]
        (out / "tg_sweep.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
        fid_key = score_key(rows[0], "FID")
        base = next(r[fid_key] for r in rows if r["threshold"] == 1.0)
        lines = [f"| threshold | {fid_key} | change vs 1.0 | precision | recall |", "|---" * 5 + "|"]
        for r in rows:
            prec, rec = score(r, "precision"), score(r, "recall")
            lines.append(f"| {r['threshold']:.3f} | {r[fid_key]:.3f} | {(r[fid_key] - base) / base * 100:+.1f}% | "
                         f"{prec:.3f} | {rec:.3f} |")
        (out / "tg_sweep.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))


if __name__ == "__main__":
    main()
