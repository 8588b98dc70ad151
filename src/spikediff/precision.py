"""Numeric precision and compilation of training and sampling: the fast path and when it is used."""

from __future__ import annotations

import contextlib
import functools
import shutil
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16")
COMPILE_MODES = ("auto", "on", "off")
# torch.compile costs ~40-80 s per configuration on 2 CPU cores and saves ~0.2 s of a 1.2 s bf16
# training step and ~0.3 s of a 0.6 s sampling evaluation at batch 32 (benchmarks/RESULTS.md), so it
# pays for itself after a few hundred of either; "auto" asks for 1000 steps or 500 evaluations.
COMPILE_AUTO_MIN_STEPS = 1000
COMPILE_AUTO_MIN_EVALUATIONS = 500
# Architectures that "auto" keeps eager: SDiT's WKV scans are Python loops over the tokens, which
# torch.compile would unroll into one graph node per token.
EAGER_UNDER_AUTO = frozenset({"sdit"})


@functools.cache
def _cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: the CPUs on which bfloat16 convolutions run faster than fp32 ones."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``"auto"`` is ``"bf16"`` where the hardware computes in bfloat16 natively (a GPU that supports
    it, a CPU with AVX512-BF16/AMX), else ``"fp32"``; an explicit choice is returned unchanged."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and _cpu_has_native_bf16() else "fp32"


def precision_context(precision: str, device: torch.device | str):
    """Autocast for bf16 (1.5x faster training on this project's AVX512-BF16 CPU, see
    benchmarks/RESULTS.md), a no-op for fp32. Neurons keep their membranes in fp32 either way."""
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def resolve_compile(mode: str | bool, steps_to_run: int, device: torch.device | str,
                    min_steps: int = COMPILE_AUTO_MIN_STEPS, arch: str = "") -> bool:
    """Whether to torch.compile: ``"auto"`` compiles when ``steps_to_run`` (training steps or network
    evaluations) reaches ``min_steps``, enough to repay the compile time, a backend compiler exists
    (a C compiler for the CPU; CUDA compiles to Triton kernels) and ``arch`` compiles well."""
    if isinstance(mode, bool):  # configs written before "auto" existed
        return mode
    if mode not in COMPILE_MODES:
        raise ValueError(f"unknown compile mode {mode!r}; expected one of {', '.join(COMPILE_MODES)}")
    if mode != "auto":
        return mode == "on"
    if arch in EAGER_UNDER_AUTO:
        return False
    has_backend = torch.device(device).type == "cuda" or any(shutil.which(cc) for cc in ("cc", "gcc", "clang"))
    return steps_to_run >= min_steps and has_backend
