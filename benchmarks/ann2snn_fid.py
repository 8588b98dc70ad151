"""ANN-to-SNN on Fashion-MNIST (issue 10): FID (fmnist-classifier) and energy of a trained quantised
ANN and of its converted SNNs at several T, with and without block-wise fine-tuning.

    python benchmarks/ann2snn_fid.py QANN_RUN --spike-steps 3,7,15 --num 256 --steps 20 \
        --finetune-steps 50 --out benchmarks/results/ann2snn

Every row samples the same seeded noise with DDIM (``--steps`` network evaluations), scores ``--num``
images against the Fashion-MNIST training set with the project's classifier features (not Inception),
and measures energy with `spikediff energy` (32 noisy test images at t = 0, 250, 500, 999; 45 nm
fp32 constants) per network evaluation and per image at ``--steps``. Writes ann2snn.json and a
markdown table; converted checkpoints go to ``--work`` (not committed).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from provenance import provenance

import spikediff
from spikediff.ann2snn import ann2snn
from spikediff.cli import main as cli
from spikediff.metrics import evaluate_images, score, score_key
from spikediff.sample import generate


def score_checkpoint(ckpt: Path, args) -> dict:
    """Sample, evaluate and measure the energy of one checkpoint."""
    config = spikediff.load_config(ckpt)
    model = spikediff.load(ckpt)
    tic = time.perf_counter()
    images = generate(model, config, args.num, "ddim", args.steps, args.seed, args.batch_size, "cpu",
                      precision=args.precision)
    seconds = time.perf_counter() - tic
    scores = evaluate_images(images, config.data.dataset, "classifier")["scores"]
    spikediff.sample.save_grid(images[:64], args.out / f"grid-{ckpt.name}.png")
    return {"sampling_seconds": round(seconds, 1), **scores, **energy(ckpt, args)}


def energy(ckpt: Path, args) -> dict:
    """`spikediff energy` of a checkpoint: per evaluation, per image at ``--steps``, and against the QANN."""
    assert cli(["energy", str(ckpt), "--steps", str(args.steps), "--out", str(ckpt / "energy")]) == 0
    report = json.loads((ckpt / "energy" / "energy.json").read_text())
    return {"energy_mj_per_evaluation": report["report"]["totals_per_evaluation"]["energy_mj"],
            "energy_mj_per_image": report["energy_per_image_mj"], "energy_vs_qann": report.get("snn_over_ann")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("qann", type=Path, help="run or checkpoint directory of a qann_unet model")
    parser.add_argument("--spike-steps", default="3,7,15")
    parser.add_argument("--num", type=int, default=500)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--finetune-steps", type=int, default=100, help="per residual block (0 = no fine-tuning)")
    parser.add_argument("--finetune-lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ann2snn"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/spikediff-ann2snn"))
    parser.add_argument("--energy-only", action="store_true", help="re-measure the energy of the rows in --out")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    qann = spikediff.checkpoint.resolve(args.qann)
    if args.energy_only:
        saved = json.loads((args.out / "ann2snn.json").read_text())
        for row in saved["rows"]:
            ckpt = qann if not row["spike_steps"] else \
                args.work / f"snn-t{row['spike_steps']}{'-ft' if row['finetuned'] else ''}"
            row.update(energy(ckpt, args))
        write_results(saved["meta"], saved["rows"], args.out)
        return
    rows = [{"model": "quantised ANN", "spike_steps": 0, "finetuned": False, **score_checkpoint(qann, args)}]
    print(json.dumps(rows[-1]), flush=True)
    for T in (int(v) for v in args.spike_steps.split(",")):
        for finetune in (False, True) if args.finetune_steps else (False,):
            out = args.work / f"snn-t{T}{'-ft' if finetune else ''}"
            tic = time.perf_counter()
            summary = ann2snn(qann, out, T, finetune, args.finetune_steps, args.finetune_lr, overwrite=True,
                              seed=args.seed)
            row = {"model": "converted SNN", "spike_steps": T, "finetuned": finetune,
                   "finetune_steps_per_block": args.finetune_steps if finetune else 0,
                   "conversion_seconds": round(time.perf_counter() - tic, 1),
                   "output_mse_vs_qann": summary.get("output_mse_after_finetune", summary["output_mse_vs_qann"]),
                   **score_checkpoint(out, args)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    meta = {**provenance(), "qann": str(args.qann),
            "protocol": f"DDIM-{args.steps}, {args.num} samples, seed {args.seed}, FID against the training set"}
    write_results(meta, rows, args.out)


def write_results(meta: dict, rows: list[dict], out: Path) -> None:
    (out / "ann2snn.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    fid_key = score_key(rows[0], "FID")
    lines = [f"| model | T | fine-tuned | {fid_key} | KID | precision | recall | output MSE vs QANN | "
             "mJ per evaluation | mJ per image | vs QANN |", "|---" * 11 + "|"]
    for r in rows:
        prec = score(r, "precision")
        rec = score(r, "recall")
        kid = score(r, "KID")
        mse = f"{r['output_mse_vs_qann']:.2e}" if "output_mse_vs_qann" in r else "-"
        ratio = f"{r['energy_vs_qann']:.3f}" if r.get("energy_vs_qann") else "-"
        lines.append(f"| {r['model']} | {r['spike_steps'] or '-'} | {'yes' if r['finetuned'] else 'no'} | "
                     f"{r[fid_key]:.1f} | {kid:.3f} | {prec:.3f} | {rec:.3f} | {mse} | "
                     f"{r['energy_mj_per_evaluation']:.4f} | {r['energy_mj_per_image']:.2f} | {ratio} |")
    (out / "ann2snn.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
