"""Where a training step's time goes: the convolution floor that bounds issue 6's speed-ups.

    python benchmarks/step_profile.py [--preset fmnist-snn-small] [--what train|sample] [--precision fp32|bf16]
        [--compile] [--batch 32]

Profiles training steps (or sampling evaluations: inference mode, BatchNorm folded) of a preset
(default fmnist-snn-small, issue 6's bench size; ``--preset fmnist-qann-signed-small`` and
``fmnist-sdit-cpu-small`` show where the quantisers' and the WKV's time goes, benchmarks/RESULTS.md)
with the autograd profiler and splits self time into convolutions (forward and backward) and
everything else (neurons, BatchNorm, element-wise ops, optimiser). If everything but the
convolutions took no time, a step would take the convolution time: that is the floor, and
``images/s at the floor`` the ceiling no fusion can pass.
"""

from __future__ import annotations

import argparse
import json

import torch
from provenance import provenance
from torch.profiler import ProfilerActivity, profile

import spikediff
from spikediff.diffusion import NoiseSchedule, diffusion_loss
from spikediff.models.folding import fold_batchnorm
from spikediff.precision import precision_context
from spikediff.train.trainer import make_optimizer, prepare_for_training


def is_convolution(op_name: str) -> bool:
    return "conv" in op_name.lower()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="fmnist-snn-small")
    parser.add_argument("--what", choices=["train", "sample"], default="train")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    config = spikediff.get_preset(args.preset)
    config = spikediff.Config(name=config.name, model=config.model, diffusion=config.diffusion, data=config.data,
                              train=type(config.train)(precision=args.precision,
                                                       compile="on" if args.compile else "off"))
    torch.manual_seed(0)
    model = spikediff.build(config).train()
    step_model = prepare_for_training(model, config)
    opt = make_optimizer(model, config)
    schedule = NoiseSchedule.linear()
    size = config.model.image_size
    x0 = torch.rand(args.batch, config.model.img_ch, size, size) * 2 - 1

    def train_step() -> None:
        with precision_context(args.precision, "cpu"):
            loss = diffusion_loss(step_model, schedule, x0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    folded = fold_batchnorm(model)
    t = torch.randint(0, 1000, (args.batch,), generator=torch.Generator().manual_seed(0))

    def sample_step() -> None:
        with torch.inference_mode(), precision_context(args.precision, "cpu"):
            folded(x0, t)

    step = train_step if args.what == "train" else sample_step

    for _ in range(2):  # warm-up (and compilation)
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / args.steps / 1000
    conv = sum(e.self_cpu_time_total for e in events if is_convolution(e.key)) / args.steps / 1000
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:8]
    result = {
        **provenance(), "preset": args.preset, "what": args.what, "precision": args.precision, "compile": args.compile,
        "batch": args.batch,
        "step_ms": round(total, 1), "convolution_ms": round(conv, 1), "convolution_share": round(conv / total, 3),
        "images_per_s": round(args.batch / total * 1000, 2),
        "images_per_s_at_floor": round(args.batch / conv * 1000, 2),
        "top_ops_ms": {e.key: round(e.self_cpu_time_total / args.steps / 1000, 1) for e in top},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
