"""One sampling evaluation of fmnist-snn-small (batch 32, BatchNorm folded, inference mode), eager
against torch.compile, in fp32 and bf16: what `spikediff sample --compile auto` buys.

    python benchmarks/sample_compile.py

Prints, per precision, the seconds of the first two calls (compilation included) and the median of
seven timed calls in ms.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from provenance import provenance

import spikediff
from spikediff.models.folding import fold_batchnorm
from spikediff.precision import precision_context


def timed(net, x: torch.Tensor, t: torch.Tensor, precision: str) -> tuple[float, float]:
    with torch.inference_mode(), precision_context(precision, "cpu"):
        tic = time.perf_counter()
        for _ in range(2):
            net(x, t)
        warmup = time.perf_counter() - tic
        times = []
        for _ in range(7):
            tic = time.perf_counter()
            net(x, t)
            times.append(time.perf_counter() - tic)
    return round(warmup, 1), round(sorted(times)[3] * 1000, 1)


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    print(json.dumps(provenance()))
    torch.manual_seed(0)
    folded = fold_batchnorm(spikediff.build("fmnist-snn-small").eval())
    compiled = torch.compile(folded)
    x, t = torch.randn(32, 1, 32, 32), torch.randint(0, 1000, (32,))
    for precision in ("bf16", "fp32"):
        (_, eager_ms), (compile_s, compiled_ms) = timed(folded, x, t, precision), timed(compiled, x, t, precision)
        print(json.dumps({"precision": precision, "batch": 32, "eager_folded_ms": eager_ms,
                          "compiled_ms": compiled_ms, "first_two_compiled_calls_s": compile_s,
                          "compiled_images_per_s": round(32e3 / compiled_ms, 1)}))


if __name__ == "__main__":
    main()
