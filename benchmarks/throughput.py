"""Training and sampling throughput of spikediff's paths against the reference SDDPM code, side by
side in one run on one machine; each configuration in its own process (clean peak memory).

    python benchmarks/throughput.py --reference-repo PATH/TO/SDDPM [--batch 32] [--out benchmarks/results]

Configuration: issue 6's bench size, fmnist-snn-small (ch 32, ch_mult [1,2,2], 1 res block, T 4,
32x32x1), batch 32. Writes throughput.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from datetime import date
from pathlib import Path

OURS = [
    ("train", []),
    ("train", ["--precision", "bf16"]),
    ("train", ["--compile"]),
    ("train", ["--precision", "bf16", "--compile"]),
    ("train", ["--grad-checkpointing"]),
    ("sample", []),
    ("sample", ["--fold-bn"]),
    ("sample", ["--precision", "bf16"]),
    ("sample", ["--precision", "bf16", "--fold-bn"]),
    ("sample", ["--precision", "bf16", "--fold-bn", "--compile"]),
]


def run(cmd: list[str]) -> dict:
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reference-repo", type=Path)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    rows = []
    if args.reference_repo:
        for what in ("train", "sample"):
            row = run([sys.executable, "benchmarks/reference_step.py", "--reference-repo", str(args.reference_repo),
                       "--what", what, "--batch", str(args.batch), "--repeats", str(args.repeats)])
            row["path"] = "reference (SpikingJelly 0.0.0.0.14, eager)"
            rows.append(row)
            print(json.dumps(row), flush=True)
    for what, flags in OURS:
        row = run([sys.executable, "-m", "spikediff", "bench", what, "--preset", "fmnist-snn-small", "--batch",
                   str(args.batch), "--repeats", str(args.repeats), "--json", *flags])
        row["path"] = "spikediff " + (" ".join(flags) or "eager fp32")
        rows.append(row)
        print(json.dumps(row), flush=True)
    meta = {"date": str(date.today()), "machine": f"{platform.machine()}, {platform.processor()}",
            "command": "python benchmarks/throughput.py " + " ".join(sys.argv[1:])}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "throughput.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    ref = {r["kind"]: r["images_per_s"] for r in rows if r["path"].startswith("reference")}
    print("| kind | path | images/s | ms/step | peak MB | vs reference |\n|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r['images_per_s'] / ref[r['kind']]:.2f}x" if r["kind"] in ref else "n/a"
        print(f"| {r['kind']} | {r['path']} | {r['images_per_s']} | {r['ms_per_step']} | {r['peak_memory_mb']} | "
              f"{ratio} |")


if __name__ == "__main__":
    main()
