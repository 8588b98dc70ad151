"""Multi-step IF neuron, forward + backward on the same tensors: spikediff's neuron (eager and
torch.compile'd) against SpikingJelly's multi-step IFNode (torch backend; eager and compiled), when
SpikingJelly is importable in this environment.

    python benchmarks/neuron_step.py [--shape 4,32,64,16,16]

SpikingJelly 2.0 and 0.0.0.0.14 cannot share an environment; run this once in each (e.g. a venv
with ``pip install --no-deps spikingjelly==2.0.0``) and compare the printed rows.

The "floor" row times the cheapest function any neuron could be in this harness, one compiled
element-wise op (``x * 0.5``: forward reads x and writes the output, backward reads the output
gradient and writes the input gradient): the memory traffic every neuron pays at least.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from spikediff.config import NeuronConfig
from spikediff.snn import if_sequence


def timed(fn, x: torch.Tensor, repeats: int = 20, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn(x).sum().backward()
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn(x).sum().backward()
        times.append(time.perf_counter() - tic)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", default="4,32,64,16,16", help="T,B,C,H,W")
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    x = (torch.randn(shape) * 0.7 + 0.4).requires_grad_()
    params = NeuronConfig()

    def ours(z: torch.Tensor) -> torch.Tensor:
        return if_sequence(z, params, 1.0)

    rows = {"spikediff IF, eager": timed(ours, x), "spikediff IF, torch.compile": timed(torch.compile(ours), x),
            "floor: one element-wise op, torch.compile": timed(torch.compile(lambda z: z * 0.5), x)}
    try:
        from importlib.metadata import version as installed_version

        from spikingjelly.activation_based import neuron, surrogate

        version = installed_version("spikingjelly")
        try:
            sj = neuron.IFNode(surrogate_function=surrogate.ATan(), step_mode="m", backend="torch")
        except TypeError:  # SpikingJelly 2.0 has no backend argument: its IFNode is plain torch
            sj = neuron.IFNode(surrogate_function=surrogate.ATan(), step_mode="m")

        def theirs(z: torch.Tensor) -> torch.Tensor:
            sj.reset()
            return sj(z)

        rows[f"SpikingJelly {version} IFNode, eager"] = timed(theirs, x)
        rows[f"SpikingJelly {version} IFNode, torch.compile"] = timed(torch.compile(theirs), x)
    except ImportError:
        pass
    for name, ms in rows.items():
        row = {"neuron": name, "shape": shape, "threads": torch.get_num_threads(), "ms_fwd_bwd": round(ms, 2)}
        print(json.dumps(row))


if __name__ == "__main__":
    main()
