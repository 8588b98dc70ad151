"""One network evaluation of a converted SNN run folded (``[T*B, ...]``, every layer on all T spiking
steps at once) against step by step (each step through the whole network on ``[B, ...]``, membranes
kept: how it samples), beside its quantised ANN and the ANN twin; eager, fp32 and bf16 autocast.
The integrate-then-fire SNNs (``ann2snn --coding count|phase``) are timed as they sample (one pass on
the levels) and as the energy counter runs them (their T spiking steps simulated, folded); the two
outputs' distance is reported, but on these synthetic weights (whose BatchNorm amplifies each layer
several times) one rounding flip of a level spreads through the whole output: compare the two on a
trained network (``spikediff ann2snn`` records its simulated SNN's error against the quantised ANN).

    python benchmarks/snn_stepwise.py [--preset fmnist-qann-signed-small] [--twin fmnist-ann-small]
        [--batch 100] [--repeats 5] [--out benchmarks/results/snn_stepwise.json]

Untrained weights with BatchNorm statistics randomised like a trained network's (so neurons fire):
the time of a dense evaluation does not depend on what the weights learned. Also checks that both
layouts give the same output (relative L2 difference, reported).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from provenance import provenance

import spikediff
from spikediff.ann2snn import convert


def trained_like(model: torch.nn.Module) -> torch.nn.Module:
    """BatchNorm statistics of a trained network's order (unit-ish variance, spread means) and residual
    branches that are not zero, so that the neurons fire as they do after training."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) * 0.02 + 0.01)
            if isinstance(m, torch.nn.Conv2d) and m.weight.abs().max() < 1e-3:
                m.weight.normal_(0, 0.05, generator=gen)
    return model.eval()


def relative_l2(out: torch.Tensor, reference: torch.Tensor) -> float:
    return float((out.float() - reference.float()).norm() / reference.float().norm())


def timed(fn, repeats: int) -> float:
    """Median milliseconds of ``fn()`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="fmnist-qann-signed-small")
    parser.add_argument("--twin", default="fmnist-ann-small")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/snn_stepwise.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    config = spikediff.get_preset(args.preset)
    qann = trained_like(spikediff.build(config))
    snn, _ = convert(qann, config)
    exact = {coding: convert(qann, config, coding=coding)[0] for coding in ("count", "phase")}
    twin = spikediff.build(args.twin).eval()
    for p in [*snn.parameters(), *qann.parameters(), *twin.parameters(),
              *(p for m in exact.values() for p in m.parameters())]:
        p.requires_grad_(False)  # with gradients enabled below, nothing records a graph
    x = torch.randn(args.batch, config.model.img_ch, config.model.image_size, config.model.image_size)
    t = torch.full((args.batch,), 500, dtype=torch.long)
    rows = []
    for precision in ("fp32", "bf16"):
        autocast = torch.autocast("cpu", torch.bfloat16) if precision == "bf16" else nullcontext()

        def run(model, folded: bool = False, autocast=autocast):
            def call():
                with autocast, torch.enable_grad() if folded else torch.no_grad():
                    return model(x, t)
            return call

        def simulated(model, autocast=autocast):
            def call():
                model.simulate_spikes = True
                try:
                    with autocast, torch.no_grad():
                        return model(x, t)
                finally:
                    model.simulate_spikes = False
            return call

        stepwise_out, folded_out = run(snn)(), run(snn, folded=True)()
        difference = relative_l2(stepwise_out, folded_out)
        row = {"precision": precision, "batch": args.batch, "spike_steps": snn.spike_steps,
               "ms_per_evaluation": {
                   "snn step by step": timed(run(snn), args.repeats),
                   "snn folded": timed(run(snn, folded=True), args.repeats),
                   "its quantised ANN": timed(run(qann), args.repeats),
                   **{f"snn {c} code, one pass (how it samples)": timed(run(m), args.repeats)
                      for c, m in exact.items()},
                   **{f"snn {c} code, T={m.spike_steps} simulated (energy)": timed(simulated(m), args.repeats)
                      for c, m in exact.items()},
                   f"ANN twin ({args.twin})": timed(run(twin), args.repeats)},
               "stepwise_vs_folded_relative_l2": difference,
               "one_pass_vs_simulated_relative_l2": {c: relative_l2(run(m)(), simulated(m)())
                                                     for c, m in exact.items()}}
        rows.append(row)
        print(json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"preset": args.preset, "rows": rows, "meta": provenance()}, indent=2))


if __name__ == "__main__":
    main()
