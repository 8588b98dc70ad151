"""The training loop: data, loss, optimiser, warmup, clipping, EMA, logs, sample grids, checkpoints,
on one process or many (torchrun, DDP).

Reproducible by construction: the batch order, the flips, the diffusion steps and the noise of
step ``s`` are drawn from generators seeded with ``(seed, s)`` for the whole global batch, and each
rank takes its share; so a resumed run sees exactly the data and noise an uninterrupted one would
have, and N ranks of batch b draw what one process of batch N*b draws (with GroupNorm models they
compute the same step; with BatchNorm the statistics are per rank and per micro-batch).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from spikediff.checkpoint import (
    EMA_FILE,
    RUN_CHECKPOINTS,
    WEIGHTS_FILE,
    build,
    load_config,
    load_trainer_state,
    load_weights,
    prune,
    resolve,
    run_checkpoints,
    save,
)
from spikediff.config import UNCAPPED_STEPS, Config, resume_changes
from spikediff.data import InMemoryImages, batch_transform, load_dataset, match_channels
from spikediff.families import family_of
from spikediff.fast_path import (
    COMPILE_OPTIONS,
    EAGER_FP32,
    Decision,
    agree_across_ranks,
    choose_training_path,
)
from spikediff.objectives import dataset_variance
from spikediff.sample import generate, save_grid
from spikediff.snn.firing import FiringRecorder, has_neurons
from spikediff.train.distributed import (
    Dist,
    all_ranks,
    barrier,
    init_distributed,
    mean_over_ranks,
    ranks_in_sync,
    shutdown,
)
from spikediff.train.ema import EMA
from spikediff.train.run_lock import LOCK_FILE, exclusive_writer

RUN_CONFIG = "config.json"
LOG_FILE = "log.jsonl"
FAST_PATH_FILE = "fast_path.json"


def _step_seed(seed: int, step: int, stream: int) -> int:
    return (seed * 1_000_003 + step * 7 + stream) % (2**63)


class BatchStream:
    """Batch ``s`` of a seeded, epoch-wise shuffled pass over a dataset (drop-last)."""

    def __init__(self, dataset, batch_size: int, seed: int) -> None:
        if len(dataset) < batch_size:
            raise ValueError(f"dataset has {len(dataset)} images, fewer than one batch of {batch_size}")
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.per_epoch = len(dataset) // batch_size
        self._epoch, self._perm = -1, None

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(images, labels)`` of batch ``step``; labels are None for a dataset without them."""
        epoch, pos = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            gen = torch.Generator().manual_seed(_step_seed(self.seed, epoch, 1))
            self._epoch, self._perm = epoch, torch.randperm(len(self.dataset), generator=gen)
        idx = self._perm[pos * self.batch_size : (pos + 1) * self.batch_size]
        labels = getattr(self.dataset, "labels", None)
        labels = labels[idx] if labels is not None else None
        if isinstance(self.dataset, InMemoryImages):
            return self.dataset.images[idx], labels
        return torch.stack([self.dataset[int(i)] for i in idx]), labels


# A decaying learning rate under --max-minutes must reach its end when the time does: the run times
# this many steps (after its first) and ends the schedule at the step the budget allows, less a margin
# for checkpoints and sample grids.
FIT_STEPS = 10
FIT_MARGIN = 0.95


def lr_factor(step: int, warmup_steps: int, decay: str = "constant", total_steps: int = 0) -> float:
    """Linear warmup from ~0 to 1 over ``warmup_steps`` (the reference defines this but never applies it),
    then 1 or (``decay`` "cosine") a half cosine down to 0 at ``total_steps``: a short run that ends on a
    small learning rate lands in a lower-loss point than one stopped at its peak rate."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if decay == "cosine" and total_steps > warmup_steps:
        progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
        return 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0


def enable_grad_checkpointing(model: torch.nn.Module, config: Config) -> None:
    """Switch gradient checkpointing on where the config asks for it (and refuse models without it)."""
    if config.train.grad_checkpointing:
        if not hasattr(model, "grad_checkpointing"):
            raise ValueError(f"{config.model.arch} does not support gradient checkpointing")
        model.grad_checkpointing = True


def prepare_for_training(model: torch.nn.Module, config: Config) -> torch.nn.Module:
    """``model`` with gradient checkpointing and torch.compile exactly as the config says
    (``compile="on"`` compiles; benchmarks use this to time a fixed path; :func:`train` chooses its
    path by measurement instead, see :mod:`spikediff.fast_path`)."""
    enable_grad_checkpointing(model, config)
    return torch.compile(model, options=COMPILE_OPTIONS) if config.train.compile == "on" else model


def make_optimizer(model: torch.nn.Module, config: Config) -> torch.optim.Optimizer:
    t = config.train
    params = [p for p in model.parameters() if p.requires_grad]
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    raise ValueError(f"unknown optimizer {t.optimizer!r}; expected 'adam' or 'adamw'")


def training_shape(config: Config, micro_batch: int) -> dict:
    """What a training step's speed depends on, as the fast-path cache's key."""
    return {"model": asdict(config.model), "prediction": config.diffusion.prediction, "batch": micro_batch,
            "grad_checkpointing": config.train.grad_checkpointing}


def _path_to_take(out_dir: Path, resume: bool, precision: str, compile_mode: str) -> tuple[str, str]:
    """The precision and compile mode to ask for: a resumed run keeps the path its start chose (still
    verified), so that it computes like an uninterrupted run; "auto" is only decided once per run."""
    recorded = out_dir / FAST_PATH_FILE
    if not resume or not recorded.is_file():
        return precision, compile_mode
    chosen = json.loads(recorded.read_text())
    if precision == "auto" and chosen.get("precision") in ("fp32", "bf16"):
        precision = chosen["precision"]
    if compile_mode == "auto" and isinstance(chosen.get("compiled"), bool):
        compile_mode = "on" if chosen["compiled"] else "off"
    return precision, compile_mode


@dataclass
class TrainResult:
    out_dir: Path
    step: int
    loss: float
    images_per_s: float
    stopped_early: bool


def check_resumable(out_dir: Path) -> None:
    """A one-line error unless ``out_dir`` holds a checkpoint to resume from."""
    if not run_checkpoints(out_dir):
        raise FileNotFoundError(f"cannot resume: {out_dir} holds no {RUN_CHECKPOINTS}/ from an earlier run (a run "
                                "stopped before its first checkpoint starts again with --overwrite)")


def prepare_run_dir(out_dir: Path, resume: bool, overwrite: bool, d: Dist) -> None:
    """Refuse to clobber a run: an existing non-empty ``out_dir`` (its writer lock aside) needs ``resume``
    or ``overwrite``; ``overwrite`` empties it, keeping the lock that this process holds."""
    if resume:
        return
    held = [f for f in out_dir.iterdir() if f.name != LOCK_FILE] if out_dir.exists() else []
    if held:
        if not overwrite:
            raise FileExistsError(f"{out_dir} already holds a run; use --resume to continue it or --overwrite")
        if d.main:
            for f in held:
                shutil.rmtree(f) if f.is_dir() and not f.is_symlink() else f.unlink()
    barrier(d)
    if d.main:
        out_dir.mkdir(parents=True, exist_ok=True)


def _record_fast_path(out_dir: Path, fast: Decision) -> None:
    """``fast_path.json``: the path a run takes and why (read back by a resumed run)."""
    record = {"path": str(fast.path), **asdict(fast.path), "report": fast.report}
    (out_dir / FAST_PATH_FILE).write_text(json.dumps(record, indent=1))


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines past ``step``: steps after the last checkpoint of a killed run are replayed."""
    if path.is_file():
        lines = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
        path.write_text("".join(ln + "\n" for ln in lines))


def _fitted_end(done: int, timed_s: float, deadline: float, total_steps: int, d: Dist, device: torch.device) -> int:
    """The last step the time budget allows, after ``FIT_STEPS`` steps took ``timed_s`` seconds; every
    rank computes the same end from the ranks' mean timings."""
    per_step = mean_over_ranks(timed_s / FIT_STEPS, d, device)
    left = mean_over_ranks(deadline - time.monotonic(), d, device)
    return max(done + 1, min(total_steps, done + int(FIT_MARGIN * left / per_step)))


def train(
    config: Config,
    out_dir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    data_dir: str | Path | None = None,
    max_minutes: float | None = None,
    device: str | torch.device | None = None,
    init_from: str | Path | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train ``config`` into ``out_dir`` (see the module docstring); returns where it stopped.

    Under torchrun, ``config.train.batch_size`` is the global batch (split evenly over the ranks,
    and over ``grad_accum`` micro-batches within a rank) and ``lr`` applies to it unchanged.
    """
    out_dir = Path(out_dir)
    if resume:
        check_resumable(out_dir)
    d, device = init_distributed(torch.device(device) if device is not None else None)
    with exclusive_writer(out_dir) if d.main else contextlib.nullcontext():
        prepare_run_dir(out_dir, resume, overwrite, d)
        return _train(config, out_dir, d, device, resume=resume, data_dir=data_dir, max_minutes=max_minutes,
                      init_from=init_from, progress=progress)


def _train(config: Config, out_dir: Path, d: Dist, device: torch.device, *, resume: bool,
           data_dir: str | Path | None, max_minutes: float | None, init_from: str | Path | None,
           progress: bool) -> TrainResult:
    """:func:`train` in a run folder that this process holds and has prepared."""
    t = config.train
    changed = resume_changes(load_config(resolve(out_dir)), config) if resume else {}
    if t.batch_size % (d.world * t.grad_accum):
        parts = d.world * t.grad_accum
        raise ValueError(f"train.batch_size {t.batch_size} must divide by ranks x grad_accum ({parts})")
    local = t.batch_size // d.world
    dataset = load_dataset(config.data, config.model.image_size, "train", data_dir)
    if config.model.num_classes and getattr(dataset, "labels", None) is None:
        raise ValueError(f"model.num_classes={config.model.num_classes} needs class labels, and {config.data.dataset} "
                         "is read here without them: train it unconditionally (--set model.num_classes=0)")
    if config.model.num_classes and int(dataset.labels.max()) >= config.model.num_classes:
        raise ValueError(f"{config.data.dataset} has labels up to {int(dataset.labels.max())}; "
                         f"model.num_classes={config.model.num_classes} is too few")
    batches = BatchStream(dataset, t.batch_size, t.seed)

    torch.manual_seed(t.seed)
    model = build(config).to(device)
    family = family_of(config)
    if family.needs_init_from and init_from is None and not resume:
        raise ValueError(family.needs_init_from)
    if init_from is not None:
        family.init_from(model, config, Path(init_from), device)
    optimizer = make_optimizer(model, config)
    plan = {"end": t.total_steps}  # the last step: total_steps, or where a decaying lr fits the time budget
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, t.warmup_steps, t.lr_decay, plan["end"]))
    ema = EMA(model, t.ema_decay, warmup=t.ema_warmup, batchnorm=t.ema_batchnorm) if t.ema_decay else None

    def restore(ckpt: Path) -> int:
        """Weights, EMA, optimizer and schedule of checkpoint ``ckpt``; its step."""
        load_weights(model, ckpt / WEIGHTS_FILE, device)
        if ema is not None:
            load_weights(ema.shadow, ckpt / EMA_FILE, device)
        state = load_trainer_state(ckpt)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if "end" in state:
            plan.update(end=min(t.total_steps, int(state["end"])), fitted=True)
        return int(state["step"])

    start = restore(resolve(out_dir)) if resume else 0
    if d.main:
        (out_dir / RUN_CONFIG).write_text(config.to_json())
        _truncate_log(out_dir / LOG_FILE, start)
        if changed:
            with open(out_dir / LOG_FILE, "a") as f:
                f.write(json.dumps({"step": start, "resumed_with": changed}) + "\n")
            print("resumed with " + ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changed.items()),
                  flush=True)

    refreshed_at: list[int] = []

    def refresh_ema(step: int) -> None:
        """Give the EMA weights BatchNorm statistics of their own: recomputed on the first micro-batch of
        each of the last ``ema_bn_batches`` steps (their images and draws, so a resumed run recomputes
        the same)."""
        if ema is None or step == 0 or not ema.needs_statistics() or refreshed_at == [step]:
            return
        torch.manual_seed(_step_seed(t.seed, step, 5) + d.rank)
        recent = [batch_at(s) for s in range(max(0, step - t.ema_bn_batches), step)]
        ema.recompute_statistics(
            (lambda net, x0=x0, draws=draws: objective.loss(net, x0[:micro], {k: v[:micro] for k, v in draws.items()}))
            for x0, draws in recent)
        refreshed_at[:] = [step]

    def checkpoint(step: int) -> None:
        refresh_ema(step)
        if not d.main:
            return
        trainer_state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step}
        if "fitted" in plan:  # a schedule fitted to --max-minutes keeps its end when resumed
            trainer_state["end"] = plan["end"]
        save(model, config, out_dir / RUN_CHECKPOINTS / f"step_{step:07d}", overwrite=True,
             ema=ema.shadow if ema else None, trainer_state=trainer_state)
        prune(out_dir, t.keep_checkpoints)

    def sample_grid(step: int) -> None:
        """Every rank samples its share (``generate`` deals the batches out and gathers them); rank 0 saves.
        One batch per rank at least as large as the training batch, BatchNorm folded into a copy: a grid
        is time taken from training."""
        refresh_ema(step)
        net = ema.shadow if ema else model
        images = generate(net, config, t.sample_num, t.sample_sampler, t.sample_steps, seed=t.seed,
                          batch_size=max(local, -(-t.sample_num // d.world)), device=device, precision=t.precision,
                          fold_bn=True)
        if d.main:
            save_grid(images, out_dir / "samples" / f"step_{step:07d}.png", config.model.num_classes or None)
        model.train()

    objective = family.objective(config, model, lambda: dataset_variance(dataset, config))
    mine = slice(d.rank * local, (d.rank + 1) * local)
    micro = local // t.grad_accum

    def batch_at(step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """This rank's images and draws (diffusion steps, noise, labels) of step ``step``."""
        gen = torch.Generator().manual_seed(_step_seed(t.seed, step, 3))
        flip_gen = torch.Generator().manual_seed(_step_seed(t.seed, step, 4))
        images, labels = batches(step)
        x0 = match_channels(batch_transform(images, config.model.image_size, config.data.random_flip, flip_gen),
                            config.model.img_ch)
        draws = objective.draws(x0.shape, gen)
        if config.model.num_classes:
            draws["y"] = labels
        return x0[mine].to(device), {k: v[mine].to(device) for k, v in draws.items()}

    def first_loss(net: torch.nn.Module) -> torch.Tensor:
        """The first micro-batch's loss, with the first step's dropout draws, for the fast-path trials."""
        torch.manual_seed(_step_seed(t.seed, start, 2) + d.rank)
        return objective.loss(net, first_x0[:micro], {k: v[:micro] for k, v in first_draws.items()})

    deadline = time.monotonic() + max_minutes * 60 if max_minutes else math.inf
    first_x0, first_draws = batch_at(start)
    model.train()
    enable_grad_checkpointing(model, config)
    precision, compile_mode = _path_to_take(out_dir, resume, t.precision, t.compile)
    fast = choose_training_path(
        model, first_loss, device, precision, compile_mode, budget_s=deadline - time.monotonic(),
        steps=(t.total_steps - start) * t.grad_accum, shape=training_shape(config, micro),
        prior=family.compile_prior.get("train"),
    )
    fast = agree_across_ranks(fast, model, device)
    if d.main:
        _record_fast_path(out_dir, fast)
        print(f"{fast.describe()}\n  on {device}{', gradient checkpointing' if t.grad_checkpointing else ''}",
              flush=True)

    def distributed(net: torch.nn.Module) -> torch.nn.Module:
        """``net`` as every rank steps it: wrapped in DDP (and SyncBatchNorm where asked) under torchrun."""
        if not d.enabled:
            return net
        if t.sync_bn and device.type == "cuda":
            net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
        return torch.nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda"
                                                         else None)

    step_model = distributed(fast.model)
    autocast = fast.context(device)
    # a bf16 run that meets a non-finite loss later falls back to eager fp32 from its last checkpoint (or
    # from the start, whose state is kept for that); an fp32 run stops
    initial = None
    if fast.path.precision == "bf16" and not run_checkpoints(out_dir):
        initial = ({k: v.clone() for k, v in model.state_dict().items()},
                   {k: v.clone() for k, v in ema.shadow.state_dict().items()} if ema else None,
                   copy.deepcopy(optimizer.state_dict()), copy.deepcopy(scheduler.state_dict()))

    def fall_back_to_fp32(step: int, why: str) -> int:
        """Restore the last good state and continue in eager fp32; the step to go on from."""
        nonlocal step_model, autocast, fast, initial
        last = run_checkpoints(out_dir)
        if last:
            resumed = restore(last[-1])
        else:
            model.load_state_dict(initial[0])
            if ema is not None:
                ema.shadow.load_state_dict(initial[1])
            optimizer.load_state_dict(initial[2])
            scheduler.load_state_dict(initial[3])
            resumed = start
        initial = None
        note = (f"{why} at step {step} on {fast.path}: falling back to eager fp32 from "
                f"{last[-1].name if last else f'step {start} (no checkpoint yet)'}")
        fast = Decision(EAGER_FP32, model, [*fast.report, note])
        step_model, autocast = distributed(model), fast.context(device)
        refreshed_at.clear()
        if d.main:
            tqdm.write(note)
            _record_fast_path(out_dir, fast)
            _truncate_log(out_dir / LOG_FILE, resumed)
            with open(out_dir / LOG_FILE, "a") as f:
                f.write(json.dumps({"step": resumed, "fallback": str(EAGER_FP32), "reason": note}) + "\n")
        return resumed

    bar = tqdm(total=t.total_steps if t.total_steps < UNCAPPED_STEPS else None, initial=start,
               disable=not (progress and d.main), unit="step", dynamic_ncols=True)
    loss_value, rate, completed, stopped_early = float("nan"), 0.0, start, False
    tic = time.perf_counter()
    # a decaying lr under a time budget: steps start+2 .. start+1+FIT_STEPS are timed to fit its end
    fit_from = start + 1 if t.lr_decay != "constant" and math.isfinite(deadline) and not resume else None
    fit_tic = 0.0
    log = open(out_dir / LOG_FILE, "a") if d.main else None
    spiking = has_neurons(model)
    step = start
    try:
        while step < plan["end"]:
            torch.manual_seed(_step_seed(t.seed, step, 2) + d.rank)  # dropout and any other global draw
            x0, draws = batch_at(step)
            lr = optimizer.param_groups[0]["lr"]
            optimizer.zero_grad(set_to_none=True)
            loss_sum = 0.0
            # a logged step of an eager spiking network also records its neurons' firing rates (hooks
            # would make a compiled one recompile)
            logs_rates = spiking and not fast.path.compiled and (step + 1) % t.log_every == 0
            with FiringRecorder(model) if logs_rates else contextlib.nullcontext() as recorder:
                for k in range(t.grad_accum):
                    part = slice(k * micro, (k + 1) * micro)
                    sync = k == t.grad_accum - 1 or not d.enabled
                    with step_model.no_sync() if not sync else contextlib.nullcontext():
                        with autocast:
                            loss = objective.loss(step_model, x0[part], {k: v[part] for k, v in draws.items()})
                        (loss / t.grad_accum).backward()
                    loss_sum += loss.item() / t.grad_accum
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip or math.inf)
            # every rank decides together, so that none stops while the others wait in a collective
            if not all_ranks(math.isfinite(loss_sum) and bool(torch.isfinite(norm)), d, device):
                if fast.path.precision == "bf16":
                    if log:
                        log.close()
                    step = fall_back_to_fp32(step, f"loss {loss_sum} (gradient norm {norm.item()})")
                    log = open(out_dir / LOG_FILE, "a") if d.main else None
                    completed = step
                    bar.n = step
                    bar.refresh()
                    tic = time.perf_counter()
                    continue
                last = run_checkpoints(out_dir)
                raise FloatingPointError(
                    f"loss is {loss_sum} (gradient norm {norm.item()}) at step {step} on some rank; stopped before "
                    f"the update. The last good checkpoint is {last[-1] if last else 'none (none written yet)'}"
                )
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update(model, step)
            done = completed = step + 1
            loss_value = mean_over_ranks(loss_sum, d, device)
            toc = time.perf_counter()
            rate, tic = t.batch_size / (toc - tic), toc
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", img_s=f"{rate:.1f}")
            if done == fit_from:
                fit_tic = time.monotonic()
            elif fit_from is not None and done == fit_from + FIT_STEPS:
                end = _fitted_end(done, time.monotonic() - fit_tic, deadline, t.total_steps, d, device)
                plan.update(end=end, fitted=True)
                bar.total = end
                bar.refresh()
                if d.main:
                    tqdm.write(f"learning rate decays to 0 at step {end} (fitted to --max-minutes)")
            if log and (done % t.log_every == 0 or done == plan["end"]):
                line = {"step": done, "loss": loss_value, "lr": lr, "images_per_s": rate}
                if recorder is not None:
                    line["firing_rates"] = recorder.rates()
                log.write(json.dumps(line) + "\n")
                log.flush()
            if t.sample_every and done % t.sample_every == 0:
                sample_grid(done)
            out_of_time = not all_ranks(time.monotonic() <= deadline, d, device)
            if done % t.save_every == 0 or done == plan["end"] or out_of_time:
                checkpoint(done)
            if out_of_time or done == plan["end"]:
                stopped_early = done < t.total_steps
                break
            step += 1
            tic = time.perf_counter()
    except (KeyboardInterrupt, torch.OutOfMemoryError):
        # Ctrl-C or out of memory: keep what the completed steps learned, then stop.
        if completed > start and not (out_dir / RUN_CHECKPOINTS / f"step_{completed:07d}").exists():
            checkpoint(completed)
        raise
    finally:
        bar.close()
        if log:
            log.close()
    if not run_checkpoints(out_dir):
        checkpoint(completed)
    if d.enabled:
        in_sync = ranks_in_sync(model, d, device)
        if d.main:
            with open(out_dir / LOG_FILE, "a") as f:
                f.write(json.dumps({"step": completed, "ranks": d.world, "ranks_in_sync": in_sync}) + "\n")
        shutdown(d)
    return TrainResult(out_dir, completed, loss_value, rate, stopped_early)

