"""Where a denoiser's error is: the held-out epsilon error of checkpoints by eighths of the diffusion steps.

    python benchmarks/heldout_by_t.py RUN_OR_CHECKPOINT [...] [--weights ema] [--out table.json]

The protocol of ``learning_curve.py``'s held-out loss (the first 512 Fashion-MNIST test images, image i
noised to the i-th of 512 evenly spread steps, fixed noise, eval mode, no class label), split into eighths
of the steps, low noise first. The mean is mostly the lowest-noise eighth, so two models with the same mean
can differ several-fold at high noise, where the global layout of an image is drawn; this table shows it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from learning_curve import heldout_errors, heldout_summary, weights

import spikediff
from spikediff.checkpoint import load_config


def by_t(ckpt: Path, which: str) -> dict:
    """The mean error and its eighths (low noise first) of checkpoint ``ckpt``'s weight set ``which``."""
    errors = heldout_errors(weights(ckpt, which), load_config(ckpt))
    return {"checkpoint": str(ckpt), "weights": which, **heldout_summary(errors)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="runs or checkpoints (a run's latest checkpoint)")
    parser.add_argument("--weights", default="ema", choices=["model", "ema", "ema-live-bn"])
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    rows = [by_t(spikediff.checkpoint.resolve(run), args.weights) for run in args.runs]
    print("| checkpoint | " + " | ".join(f"t in eighth {i + 1}" for i in range(8)) + " | mean |")
    print("|---" * 10 + "|")
    for row in rows:
        print(f"| {row['checkpoint']} | " + " | ".join(f"{v:.4f}" for v in row["heldout_loss_by_t"])
              + f" | {row['heldout_loss']:.4f} |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
