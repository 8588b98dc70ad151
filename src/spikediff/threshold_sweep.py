"""Threshold guidance, swept: the same seeds sampled at each neuron-threshold scale, and scored.

SDDPM's training-free threshold guidance scales every spiking neuron's threshold at sampling time
(0.997 was its best on CIFAR-10); the best scale depends on the model, so it is found by a sweep.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from spikediff.config import Config
from spikediff.metrics import evaluate_images
from spikediff.sample import generate


def parse_thresholds(text: str) -> list[float]:
    """``start:stop:step`` (inclusive) or ``a,b,c``."""
    if ":" in text:
        start, stop, step = (float(v) for v in text.split(":"))
        if step <= 0 or stop < start:
            raise ValueError(f"thresholds {text!r}: expected start:stop:step with stop >= start and step > 0")
        n = int(round((stop - start) / step)) + 1
        return [round(start + i * step, 10) for i in range(n)]
    return [float(v) for v in text.split(",")]


def threshold_sweep(
    model: nn.Module, config: Config, thresholds: list[float], num: int, sampler: str, steps: int,
    options: Callable[[float], dict], *, dataset: str | None = None, features: str = "classifier",
    split: str = "train", inception_weights: str | Path | None = None, data_dir: str | Path | None = None,
    seed: int = 0, batch_size: int = 64, device: str | torch.device | None = None, precision: str = "auto",
    fold_bn: bool = True, compile: str = "auto", on_row: Callable[[dict], None] | None = None,
) -> list[dict]:
    """One row of scores per threshold scale; ``options(threshold)`` gives the sampler's keyword
    arguments (Analytic-DPM's gamma depends on the threshold)."""
    rows = []
    for threshold in thresholds:
        images = generate(model, config, num, sampler, steps, seed, batch_size, device, threshold=threshold,
                          precision=precision, fold_bn=fold_bn, compile=compile, **options(threshold))
        result = evaluate_images(images, dataset or config.data.dataset, features, split, inception_weights, data_dir)
        rows.append({"threshold": threshold, **result["scores"]})
        if on_row:
            on_row(rows[-1])
    return rows
