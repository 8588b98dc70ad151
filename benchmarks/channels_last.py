"""Is channels-last memory format a fast-path candidate? One training step of ``fmnist-snn-small``
(forward and backward, batch 32) in fp32 and bf16, with the convolution weights and the input in
the default (NCHW) and in channels-last layout; median of 4 timed steps after one warm-up.

    python benchmarks/channels_last.py [--out benchmarks/results/channels_last.json]
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import torch
from provenance import provenance

import spikediff
from spikediff.data import load_mnist_like, to_model_range
from spikediff.diffusion import NoiseSchedule, diffusion_loss
from spikediff.fast_path import median_ms
from spikediff.precision import precision_context


def step_ms(model: torch.nn.Module, x0: torch.Tensor, precision: str, repeats: int = 4) -> float:
    schedule = NoiseSchedule.linear()

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with precision_context(precision, "cpu"):
            loss = diffusion_loss(model, schedule, x0, generator=torch.Generator().manual_seed(3))
        loss.backward()

    return median_ms(step, repeats, warmup=1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/channels_last.json"))
    args = parser.parse_args()
    images, _ = load_mnist_like("fmnist", "train")
    x0 = to_model_range(torch.from_numpy(images[:32].copy()), 32)
    torch.manual_seed(0)
    base = spikediff.build(spikediff.get_preset("fmnist-snn-small")).train()
    rows = []
    for precision in ("fp32", "bf16"):
        for layout in ("NCHW", "channels_last"):
            model, x = copy.deepcopy(base), x0
            if layout == "channels_last":
                for p in model.parameters():
                    if p.dim() == 4:
                        p.data = p.data.contiguous(memory_format=torch.channels_last)
                x = x0.contiguous(memory_format=torch.channels_last)
            ms = round(step_ms(model, x, precision), 1)
            rows.append({"precision": precision, "layout": layout, "ms_per_step": ms})
            print(json.dumps(rows[-1]), flush=True)
    meta = provenance()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
