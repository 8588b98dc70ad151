"""Throughput and memory of one training step and one sampling evaluation (``spikediff bench``).

Each figure is a median over timed repetitions after warm-up (which also absorbs torch.compile's
first compilation). Peak memory is the process's peak resident set on the CPU (run one
configuration per process to compare them) and ``max_memory_allocated`` on CUDA.
"""

from __future__ import annotations

import resource

import torch

from spikediff.checkpoint import build
from spikediff.config import Config
from spikediff.families import family_of
from spikediff.fast_path import choose_sampling_path, choose_training_path, median_ms
from spikediff.models.folding import fold_batchnorm
from spikediff.precision import precision_context
from spikediff.sample import sampling_shape
from spikediff.train.distributed import default_device
from spikediff.train.trainer import enable_grad_checkpointing, make_optimizer, prepare_for_training, training_shape


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def bench_train(config: Config, batch: int, repeats: int = 5, warmup: int = 2, budget_minutes: float = 30.0) -> dict:
    """One optimiser step of ``config`` (precision, compile, checkpointing from ``config.train``);
    ``"auto"`` precision or compile choose as ``spikediff train`` would for a run of ``budget_minutes``."""
    device = default_device()
    torch.manual_seed(0)
    model = build(config).to(device).train()
    opt = make_optimizer(model, config)
    m = config.model
    x0 = torch.rand(batch, m.img_ch, m.image_size, m.image_size, device=device) * 2 - 1
    # the family's own training objective (Gaussian, VQ or absorbing), with one step's draws
    objective = family_of(config).objective(config, model, lambda: float(x0.var()))
    gen = torch.Generator().manual_seed(0)
    draws = {k: v.to(device) for k, v in objective.draws(x0.shape, gen).items()}
    if m.num_classes:
        draws["y"] = torch.randint(0, m.num_classes, (batch,), generator=gen).to(device)

    def loss_of(net: torch.nn.Module) -> torch.Tensor:
        return objective.loss(net, x0, draws)

    t = config.train
    if "auto" in (t.precision, t.compile):
        enable_grad_checkpointing(model, config)
        shape = {**training_shape(config, batch), "source": "bench"}  # cached apart from real runs' timings
        fast = choose_training_path(model, loss_of, device, t.precision, t.compile, budget_s=budget_minutes * 60,
                                    shape=shape)
        step_model, autocast, chosen = fast.model, fast.context(device), {"fast_path": str(fast.path)}
    else:
        step_model, autocast, chosen = prepare_for_training(model, config), precision_context(t.precision, device), {}

    def step() -> None:
        with autocast:
            loss = loss_of(step_model)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return {**_summary("train", config, batch, median_ms(step, repeats, warmup), device), **chosen}


@torch.inference_mode()
def bench_sample(config: Config, batch: int, repeats: int = 5, warmup: int = 2, precision: str = "fp32",
                 fold_bn: bool = False, compile: str = "off", evaluations: int = 100) -> dict:
    """One network evaluation as a sampler makes it (eval mode, inference mode); ``"auto"``
    precision or compile choose as ``spikediff sample`` would for ``evaluations`` evaluations."""
    device = default_device()
    torch.manual_seed(0)
    model = build(config).to(device).eval()
    if fold_bn:
        model = fold_batchnorm(model)
    m = config.model
    x = torch.randn(batch, m.img_ch, m.image_size, m.image_size, device=device)
    t = torch.full((batch,), 500, device=device, dtype=torch.long)
    fast = choose_sampling_path(model, x, t, device, precision, compile, evaluations,
                                shape={**sampling_shape(config, batch, fold_bn), "source": "bench"})

    def evaluate() -> None:
        with fast.context(device):
            fast.model(x, t)

    result = _summary("sample", config, batch, median_ms(evaluate, repeats, warmup), device)
    result.update(precision=precision, fold_bn=fold_bn, compile=compile, fast_path=str(fast.path))
    return result


def _summary(kind: str, config: Config, batch: int, ms: float, device: torch.device) -> dict:
    return {
        "kind": kind, "preset": config.name, "batch": batch, "device": str(device), "threads": torch.get_num_threads(),
        "precision": config.train.precision, "compile": config.train.compile,
        "grad_checkpointing": config.train.grad_checkpointing, "ms_per_step": round(ms, 1),
        "images_per_s": round(batch / ms * 1000, 2), "peak_memory_mb": round(_peak_memory_mb(device), 1),
    }
