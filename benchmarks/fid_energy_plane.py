"""The FID-energy plane of models measured one by one: which of them no other beats on both.

    python benchmarks/fid_energy_plane.py LABEL=METRICS_JSON:ENERGY_JSON [...] --out PLOT.png [--title TEXT]

Each model is given by the ``metrics-classifier.json`` of its samples (``spikediff sample --evaluate``
or ``spikediff evaluate``) and the ``energy.json`` of ``spikediff energy`` (energy per image at the
sampler's steps, 45 nm, every layer counted each time it runs). The front is
``benchmarks/comparison.py``'s: the models that no other model beats on FID and energy at once, here
among the given models whose samples pass as Fashion-MNIST (comparison.py's recall and smallest-class
floor). Writes the plot and ``PLOT.json`` with the rows.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from comparison import front  # noqa: E402
from provenance import provenance  # noqa: E402

from spikediff.metrics import score_key  # noqa: E402


def row(spec: str) -> dict:
    """``LABEL=METRICS:ENERGY`` -> one row of the comparison's shape."""
    label, paths = spec.rsplit("=", 1)
    metrics_path, energy_path = paths.split(":", 1)
    metrics, energy = json.loads(Path(metrics_path).read_text()), json.loads(Path(energy_path).read_text())
    steps = metrics["protocol"].get("sampling", {}).get("steps")
    if energy["sampling_steps"] != steps:
        raise ValueError(f"{label}: its samples took {steps} evaluations, its energy per image is for "
                         f"{energy['sampling_steps']}: rerun spikediff energy with --steps {steps}")
    return {"row": label, **metrics["scores"], "num_samples": metrics["protocol"]["num_samples"],
            "steps": steps, "classes": metrics["classes"],
            "energy_per_image_mj": energy["energy_per_image_mj"],
            "energy_per_evaluation_mj": energy["report"]["totals_per_evaluation"]["energy_mj"],
            "metrics": metrics_path, "energy": energy_path}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", metavar="LABEL=METRICS_JSON:ENERGY_JSON")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--title", default="Fashion-MNIST, one machine")
    args = parser.parse_args()
    rows = [row(spec) for spec in args.models]
    fid = score_key(rows[0], "FID")
    recall = score_key(rows[0], "recall")
    best = front(rows)
    on_front = {r["row"] for r in best}
    fig, ax = plt.subplots(figsize=(8, 5))
    for r in rows:
        ax.scatter(r["energy_per_image_mj"], r[fid], s=30, color="k" if r["row"] in on_front else "grey")
        ax.annotate(r["row"], (r["energy_per_image_mj"], r[fid]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    best = sorted(best, key=lambda r: r["energy_per_image_mj"])
    ax.plot([r["energy_per_image_mj"] for r in best], [r[fid] for r in best], "k--", lw=1, label="front")
    ax.set_xscale("log")
    ax.set_xlabel("energy per image, mJ (45 nm, field convention)")
    ax.set_ylabel(f"{fid}, {rows[0]['num_samples']:,} samples")
    ax.set_title(f"{args.title}\n{rows[0]['steps']} network evaluations per sample", fontsize=9)
    ax.margins(x=0.25)
    ax.legend(fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    for r in rows:
        print(f"{r['row']:<40} FID {r[fid]:7.1f}  recall {r[recall]:.3f}  smallest class "
              f"{r['classes']['smallest_share']:.3f}  {r['energy_per_image_mj']:.3f} mJ/image"
              + ("  (front)" if r["row"] in on_front else ""))
    args.out.with_suffix(".json").write_text(json.dumps(
        {"rows": rows, "front": sorted(on_front), "meta": provenance()}, indent=2))


if __name__ == "__main__":
    main()
