"""Numeric precision and compilation switches shared by training and sampling.

Which of them a run uses is decided by measurement in :mod:`spikediff.fast_path`; this module only
names the choices and applies a concrete one.
"""

from __future__ import annotations

import contextlib
import shutil

import torch

PRECISIONS = ("auto", "fp32", "bf16")
COMPILE_MODES = ("auto", "on", "off")


def precision_context(precision: str, device: torch.device | str):
    """bfloat16 autocast for ``"bf16"`` (neurons keep their membranes in fp32), a no-op for ``"fp32"``.
    ``"auto"`` must be resolved first (:func:`spikediff.fast_path.choose_training_path` measures it)."""
    if precision == "bf16":
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    if precision == "fp32":
        return contextlib.nullcontext()
    raise ValueError(f"precision {precision!r} is not a concrete precision; expected 'fp32' or 'bf16'")


def compiler_available(device: torch.device | str) -> bool:
    """torch.compile's backend can run: CUDA compiles to Triton kernels, the CPU needs a C compiler."""
    return torch.device(device).type == "cuda" or any(shutil.which(cc) for cc in ("cc", "gcc", "clang"))
