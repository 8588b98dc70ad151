"""Choosing a run's fast path by measurement, and checking it against eager fp32 before using it.

A *path* is a numeric precision (fp32, or bf16 autocast with fp32 membranes) and whether the network
is torch.compile'd. Which one is fastest, and whether it is even correct, depends on the machine:
on one 2-core AMD EPYC (AVX512-BF16) bf16 trains 1.6x faster than fp32 and compiling adds 1.1-1.4x;
on a 2-core Intel Xeon with the same flags bf16 is *slower* than fp32, and bf16 under torch.compile
gives NaN gradients (its 512-bit bf16 kernels; see docs/fast_paths.md). CPU flags cannot tell these
apart, so a run:

1. times the eager candidates (fp32, bf16) on its own model and first batch;
2. tries torch.compile only when the run's budget repays the compilation (see :func:`compile_pays`);
3. verifies the chosen path against eager fp32 on the same batch (training: loss, gradient norm and
   gradient direction; sampling: the network's output) and falls back to eager fp32, saying why,
   when they disagree.

Timings and compile times are cached per machine (CPU vendor, model and flags, threads), torch
version, model shape and spikediff's code (``$SPIKEDIFF_CACHE/fast_paths.json``), so the measurement
is paid once per machine and version of the code;
the verification runs every time, because weights change what a fault does.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from spikediff.precision import COMPILE_MODES, PRECISIONS, compiler_available, precision_context

# Verification tolerances, from `python benchmarks/fast_path_tolerance.py` (2-core AMD EPYC, 2026-12-04;
# benchmarks/RESULTS.md, "What the fast path's tolerances rest on"): 1.5x the largest disagreement of a correct
# path measured. Training, bf16 eager on the first batch of every CPU preset: the U-Nets and SDiT agree within
# loss 0.011%, gradient norm 0.5%, cosine 0.998, the VQ-SVAE (LIF over 16 steps, codebook) within 3.3%, 4.9%,
# 0.957; bf16 compiled on a tiny T=2 Spiking U-Net (tests/test_fast_path.py) after one Adam step: loss 2.6%,
# gradient norm 16%, cosine 0.951 (spikes flip under the reordered rounding). NaN has no tolerance.
LOSS_RTOL = 0.05
GRAD_NORM_RTOL = 0.25
GRAD_COSINE_MIN = 0.925
# Sampling: a network output perturbed by random noise of 1% / 3% / 10% relative L2 moved FID (1,000 samples
# of the quick start's trained quantised ANN) by +3.6 / +13.0 / +98 against a seed-to-seed spread of 10.4,
# while bf16, 2.9% off fp32 at the verified diffusion step on the trained quantised ANN and its SNN, moved it
# by +3.0. The bound passes bf16 with a third to spare and refuses the 7-12% fault below, which doubled FID.
OUTPUT_RTOL = 0.04
# A compiled sampling network must also match eager at its own precision within this: compilation only
# reorders floating-point work, which flips a few spikes (compiled against eager fp32, trained Fashion-MNIST
# models: Spiking U-Net 0.3-0.8%, converted SNN 0.1-0.6%; in bf16 the two roundings differ like bf16 and
# fp32 do: 2.8% on the quick start's SNN, so bf16 is held to OUTPUT_RTOL). A compiled converted SNN that fired
# with the wrong thresholds was 7-12% off and doubled its FID (docs/fast_paths.md).
COMPILED_OUTPUT_RTOL = {"fp32": 0.03, "bf16": OUTPUT_RTOL}
# Compilation is tried under "auto" only where it is expected to buy >= 10% more work in the budget.
COMPILE_MIN_GAIN = 1.1
# What to assume before a compilation has been measured on this machine and model: the project's AMD
# machine (fmnist-snn-small, 2 cores) compiled a training graph cold in ~3 min for 1.15x over eager
# bf16, and a sampling graph in ~1 min for 1.8-2.2x (the sampling prior is kept lower on purpose).
PRIOR = {"train": (180.0, 1.15), "sample": (60.0, 1.5)}
TIMED_REPEATS = 3
# A candidate whose first timed call takes this many times the fastest candidate's median is not timed
# again (its first call may carry one-off kernel set-up, hence the wide margin and the floor below).
GIVE_UP_FACTOR = 5.0
GIVE_UP_MIN_MS = 1000.0  # and at least this long: on small models one-off set-up can dominate a first call
# bf16 is chosen only when its first-batch time beats fp32's by this factor: fp32 is exact, and three timed
# calls can differ by more than a few percent (a 2-core Xeon timed fp32 534 ms and bf16 531 ms on a model that
# a longer benchmark runs at 423 and 460 ms).
LOWER_PRECISION_MIN_GAIN = 1.05
# Timed calls of one candidate that differ by more than this ((max - min) / median) were taken on a busy
# machine: used for this run's choice, never cached (the noise of an idle machine: docs/fast_paths.md).
BUSY_SPREAD = 0.25
# Cached timings older than this are measured again (a driver, BIOS or library update changes them unseen).
CACHE_MAX_AGE_S = 30 * 86400
CACHE_MAX_KEYS = 200  # model shapes kept in the cache, the most recently measured first
# Compiled dropout draws from the eager RNG, so a compiled step can be checked against an eager one
# (and a run draws the same masks whichever path it takes).
COMPILE_OPTIONS = {"fallback_random": True}


@dataclass(frozen=True)
class FastPath:
    precision: str  # "fp32" | "bf16"
    compiled: bool

    def __str__(self) -> str:
        return f"{self.precision} {'compiled' if self.compiled else 'eager'}"


EAGER_FP32 = FastPath("fp32", False)


@dataclass
class Decision:
    """The path a run uses, the callable to run it with, and the lines that say why."""

    path: FastPath
    model: nn.Module
    report: list[str]

    def context(self, device: torch.device | str):
        return precision_context(self.path.precision, device)

    def describe(self) -> str:
        return f"fast path: {self.path}" + "".join(f"\n  {line}" for line in self.report)


# ---------------------------------------------------------------------------------------------------------------
# the cache


def _cache_file() -> Path:
    root = os.environ.get("SPIKEDIFF_CACHE") or Path.home() / ".cache" / "spikediff"
    return Path(root) / "fast_paths.json"


def cpu_facts() -> dict[str, str]:
    """Vendor, model and the flags that decide the fast paths (x86: AVX-512, AMX, AVX2; ARM:
    Features) of this machine's CPU, read from /proc/cpuinfo where it exists."""
    info: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    flags = (info.get("flags") or info.get("Features", "")).split()
    return {"arch": platform.machine(), "vendor": info.get("vendor_id") or info.get("CPU implementer", ""),
            "model": info.get("model name") or info.get("CPU part", "") or platform.processor(),
            "flags": " ".join(f for f in flags if f.startswith(("avx512", "amx", "avx2", "sve", "bf16", "asimd")))}


def machine_id(device: torch.device) -> str:
    """CPU vendor, model and flags (or the GPU's name), thread count and torch version: what a timing
    depends on."""
    hw = torch.cuda.get_device_name(device) if device.type == "cuda" else json.dumps(cpu_facts(), sort_keys=True)
    return f"{hw} | threads {torch.get_num_threads()} | torch {torch.__version__}"


@functools.cache
def code_digest() -> str:
    """A digest of spikediff's own sources: timings measured with other code (a faster kernel of a newer
    release, say) are measured again rather than read back."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cache_key(kind: str, device: torch.device, shape: dict) -> str:
    text = json.dumps({"kind": kind, "machine": machine_id(device), "shape": shape, "code": code_digest()},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def remeasure_asked() -> bool:
    """``$SPIKEDIFF_REMEASURE`` set (to anything but 0 or empty; ``--remeasure`` sets it): timings are
    measured again and the new ones cached, whatever the cache holds."""
    return os.environ.get("SPIKEDIFF_REMEASURE", "0") not in ("", "0")


def load_cached(key: str) -> dict[str, dict]:
    """The cached entries of ``key`` still in date (:data:`CACHE_MAX_AGE_S`); none under :func:`remeasure_asked`."""
    entries = {} if remeasure_asked() else _read_cache(_cache_file()).get(key, {})
    if not isinstance(entries, dict):
        return {}
    now = time.time()
    return {k: v for k, v in entries.items() if isinstance(v, dict) and now - v.get("at", now) <= CACHE_MAX_AGE_S}


def store_cached(key: str, entries: dict[str, dict]) -> None:
    """Best effort: a read-only home directory only costs the next run its measurement. Empty entries are
    not written; the cache keeps the :data:`CACHE_MAX_KEYS` most recently measured keys."""
    entries = {k: {"at": time.time(), **v} for k, v in entries.items() if v}
    path = _cache_file()
    with contextlib.suppress(OSError, ValueError):
        data = _read_cache(path)
        if data.get(key) == entries:
            return
        if entries:
            data[key] = entries
        newest = sorted(data, key=lambda k: max((e.get("at", 0) for e in data[k].values() if isinstance(e, dict)),
                                                default=0) if isinstance(data[k], dict) else 0)
        data = {k: data[k] for k in newest[-CACHE_MAX_KEYS:]}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(path)


# ---------------------------------------------------------------------------------------------------------------
# decisions shared by training and sampling


def compile_pays(budget_s: float, compile_s: float, speedup: float) -> bool:
    """Whether compiling buys at least ``COMPILE_MIN_GAIN`` times the work in ``budget_s`` seconds:
    ``speedup * (budget - compile time) >= COMPILE_MIN_GAIN * budget`` (for an unlimited budget:
    ``speedup >= COMPILE_MIN_GAIN``)."""
    if math.isinf(budget_s):
        return speedup >= COMPILE_MIN_GAIN
    return speedup * (budget_s - compile_s) >= COMPILE_MIN_GAIN * budget_s


def _eager_candidates(precision: str, device: torch.device) -> list[str]:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return [precision]
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return ["fp32"]
    return ["fp32", "bf16"]


def call_times_ms(fn: Callable[[], object], repeats: int = TIMED_REPEATS, warmup: int = 0,
                  give_up_ms: float = math.inf) -> list[float]:
    """Wall times of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones, in milliseconds.

    A first timed call slower than ``give_up_ms`` is returned alone: a candidate path that slow has
    lost, and timing it again would only take more of the run's budget (bf16 without bf16 hardware
    is ~10x slower than fp32: three timed steps of it cost a 30-minute run two minutes).
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        times.append((time.perf_counter() - tic) * 1000)
        if len(times) == 1 and times[0] > give_up_ms:
            break
    return times


def median_ms(fn: Callable[[], object], repeats: int = TIMED_REPEATS, warmup: int = 0,
              give_up_ms: float = math.inf) -> float:
    """The median of :func:`call_times_ms`."""
    return statistics.median(call_times_ms(fn, repeats, warmup, give_up_ms))


def spread(times: list[float]) -> float:
    """Run-to-run noise of timed calls: ``(max - min) / median`` (0 for one call)."""
    return (max(times) - min(times)) / statistics.median(times)


def _choose(kind: str, model: nn.Module, device: torch.device, precision: str, compile: str | bool,
            budget_s: Callable[[float], float], shape: dict, run: Callable[[nn.Module, str], object],
            check: Callable[[object, object], tuple[str | None, str]],
            compiled_check: Callable[[object, object, str], tuple[str | None, str]] | None = None,
            prior: tuple[float, float] | None = None) -> Decision:
    """The shared algorithm of :func:`choose_training_path` and :func:`choose_sampling_path`.

    ``run(net, precision)`` computes one result (a loss and gradients, or an output) and
    ``check(reference, candidate)`` says why a candidate's result disagrees with eager fp32's (or
    None) and the figures it compared; ``compiled_check(eager, compiled, precision)``, where given,
    also holds a compiled path to eager at its own precision. ``budget_s(ms)`` is the run's remaining
    work in seconds at ``ms`` per step. ``prior``: the compile time and speed-up ``compile="auto"``
    assumes before it has measured them here (default ``PRIOR[kind]``).
    """
    if isinstance(compile, bool):  # configs written before "auto" existed held a bool
        compile = "on" if compile else "off"
    if compile not in COMPILE_MODES:
        raise ValueError(f"unknown compile mode {compile!r}; expected one of {', '.join(COMPILE_MODES)}")
    candidates = _eager_candidates(precision, device)
    if candidates == ["fp32"] and compile == "off":
        return Decision(EAGER_FP32, model, ["eager fp32 as asked: nothing to measure or verify"])
    key = cache_key(kind, device, shape)
    cached = load_cached(key)
    reference = run(model, "fp32")  # eager fp32: the result every other path must reproduce
    report: list[str] = []

    # 1. the eager precisions, each warmed by one call (fp32's is the reference), then timed (or their
    # timings read from the cache); a timing too noisy to trust (a busy machine) is used, not cached
    ms: dict[str, float] = {}
    results = {"fp32": reference}
    noise = 0.0
    for p in candidates:
        entry = cached.setdefault(str(FastPath(p, False)), {})
        if len(candidates) > 1 and "ms" not in entry:
            if p not in results:
                results[p] = run(model, p)  # the warm-up call, kept for the verification below
            give_up = max(GIVE_UP_FACTOR * min(ms.values(), default=math.inf), GIVE_UP_MIN_MS)
            times = call_times_ms(lambda p=p: run(model, p), give_up_ms=give_up)
            entry.update(ms=statistics.median(times), noise=spread(times))
            if entry["noise"] > BUSY_SPREAD:
                report.append(f"{p} eager timings {', '.join(f'{t:.0f}' for t in times)} ms vary by "
                              f"{entry['noise']:.0%}: the machine is busy, so they are not cached")
        ms[p] = entry.get("ms", math.nan)
        noise = max(noise, entry.get("noise", 0.0))
    chosen = min(candidates, key=lambda p: ms[p] if not math.isnan(ms[p]) else math.inf)
    if len(candidates) > 1:
        report.append("measured on the first batch: " + ", ".join(f"{p} eager {ms[p]:.0f} ms" for p in candidates))
    margin = max(LOWER_PRECISION_MIN_GAIN, 1 + noise)
    if chosen != "fp32" and "fp32" in ms and not ms[chosen] * margin < ms["fp32"]:
        report.append(f"{chosen} is not {margin - 1:.0%} faster than fp32 (the margin is at least the timings' own "
                      "noise): fp32 kept (exact)")
        chosen = "fp32"
    eager_result = reference
    if chosen != "fp32":
        eager_result = results[chosen] if chosen in results else run(model, chosen)
        problem, figures = check(reference, eager_result)
        if problem:
            report.append(f"{chosen} eager disagrees with eager fp32 ({problem}): using fp32")
            cached[str(FastPath(chosen, False))]["problem"] = problem
            chosen, eager_result = "fp32", reference
        else:
            report.append(f"{chosen} eager verified against eager fp32: {figures}")

    # 2. compilation, where it is asked for or repays itself
    path, net = FastPath(chosen, False), model
    trial = cached.get(str(FastPath(chosen, True)), {})
    want = compile == "on"
    if math.isnan(ms.get(chosen, math.nan)) and compile != "off":  # one precision asked for: not timed yet
        ms[chosen] = median_ms(lambda: run(model, chosen))
    if compile == "auto":
        budget = budget_s(ms[chosen])
        if not compiler_available(device):
            report.append("torch.compile off: no C compiler for inductor's CPU kernels")
        elif trial.get("problem"):
            report.append(f"torch.compile off: on this machine and model it failed before ({trial['problem']}); "
                          "--compile on tries again")
        else:
            compile_s, speedup = trial.get("compile_s"), trial.get("speedup")
            seen = compile_s is not None and speedup is not None
            if not seen:
                compile_s, speedup = prior or PRIOR[kind]
            want = compile_pays(budget, compile_s, speedup)
            basis = "measured here" if seen else "assumed until measured here"
            verdict = "compiling" if want else "torch.compile off"
            report.append(f"{verdict}: {budget / 60:.1f} min of work, {compile_s:.0f} s to compile, "
                          f"{speedup:.2f}x faster ({basis}); compiling needs >= {COMPILE_MIN_GAIN - 1:.0%} more work "
                          "in the budget")
    if want:
        tight = (compiled_check, eager_result) if compiled_check else None
        path, net, line, trial = _try_compiled(model, chosen, run, check, reference, ms[chosen], trial,
                                               keep_slower=compile == "on", same_precision=tight)
        report.append(line)
        cached[str(FastPath(chosen, True))] = trial
    store_cached(key, {k: v for k, v in cached.items() if v.get("noise", 0.0) <= BUSY_SPREAD})
    return Decision(path, net, report)


def _try_compiled(model: nn.Module, precision: str, run: Callable[[nn.Module, str], object],
                  check: Callable[[object, object], tuple[str | None, str]], reference: object, eager_ms: float,
                  previous: dict, keep_slower: bool,
                  same_precision: tuple[Callable[[object, object, str], tuple[str | None, str]], object] | None = None,
                  ) -> tuple[FastPath, nn.Module, str, dict]:
    """Compile ``model``, time and verify it: ``(path, network, report line, cache entry)``. A failed
    compilation or a wrong result falls back to eager at ``precision``; so does a slower compiled
    path unless ``keep_slower`` (compilation was asked for). ``same_precision``: a second check and
    the eager result at ``precision`` it holds the compiled result to. The compile time kept is the
    largest seen, so a warm compile cache does not make a cold one look cheap."""
    eager = FastPath(precision, False), model
    compiled = torch.compile(model, options=COMPILE_OPTIONS)
    tic = time.perf_counter()
    try:
        result = run(compiled, precision)  # the first call compiles
    except Exception as exc:  # inductor's failures have many types (no Python.h, a C++ error, ...)
        problem = f"compilation failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return *eager, f"{precision} {problem}: using eager", {**previous, "problem": problem}
    compile_s = max(time.perf_counter() - tic, previous.get("compile_s", 0.0))
    problem, figures = check(reference, result)
    if not problem and same_precision:
        tight, eager_result = same_precision
        problem, also = tight(eager_result, result, precision)
        problem = problem and f"against eager {precision}: {problem}"
        if precision != "fp32":  # at fp32 the two comparisons are one: say it once
            figures += f"; against eager {precision}: {also}"
    compiled_ms = median_ms(lambda: run(compiled, precision))
    entry = {"compile_s": compile_s, "ms": compiled_ms, "speedup": eager_ms / compiled_ms}
    if problem:
        return *eager, f"{precision} compiled disagrees ({problem}): using eager", {**entry, "problem": problem}
    if compiled_ms >= eager_ms and not keep_slower:
        return *eager, (f"{precision} compiled {compiled_ms:.0f} ms is no faster than eager {eager_ms:.0f} ms: "
                        "using eager"), entry
    return (FastPath(precision, True), compiled, f"{precision} compiled ({compile_s:.0f} s): {compiled_ms:.0f} ms "
            f"against eager {eager_ms:.0f} ms, verified against eager fp32: {figures}", entry)


def agree_across_ranks(decision: Decision, model: nn.Module, device: torch.device) -> Decision:
    """Under torch.distributed every rank decides on its own; all then take the most cautious choice
    (bf16 or compiled only where every rank chose it), so that no rank runs a path another refused
    and all ranks compute alike. A rank whose compiled graph was verified at another precision
    runs eager rather than an unverified recompilation."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return decision
    votes = torch.tensor([decision.path.precision != "bf16", not decision.path.compiled], dtype=torch.float32,
                         device=device)
    dist.all_reduce(votes, op=dist.ReduceOp.MAX)
    agreed = FastPath("fp32" if votes[0] else "bf16", not votes[1])
    # a second vote: compiled only if every rank holds a graph verified at the agreed precision, so that
    # the ranks agree on precision and compilation together
    unverified = torch.tensor([float(agreed.compiled and decision.path != agreed)], device=device)
    dist.all_reduce(unverified, op=dist.ReduceOp.MAX)
    if unverified.item():
        agreed = FastPath(agreed.precision, False)
    if agreed == decision.path:
        return decision
    return Decision(agreed, decision.model if agreed.compiled else model,
                    [*decision.report, f"another rank chose otherwise: every rank runs {agreed}"])


# ---------------------------------------------------------------------------------------------------------------
# training


def gradient_agreement(reference: tuple[float, torch.Tensor],
                       candidate: tuple[float, torch.Tensor]) -> tuple[str | None, str]:
    """``(why a candidate's (loss, flattened gradient) disagrees with the reference's or None, the
    figures compared)``."""
    (loss_a, grad_a), (loss_b, grad_b) = reference, candidate
    norm_a, norm_b = grad_a.norm().item(), grad_b.norm().item()
    cosine = (grad_a @ grad_b).item() / max(norm_a * norm_b, 1e-30)
    figures = f"loss {loss_b:.5g} vs {loss_a:.5g}, gradient norm {norm_b:.4g} vs {norm_a:.4g}, cosine {cosine:.4f}"
    if not (math.isfinite(loss_a) and math.isfinite(norm_a)):
        return "eager fp32 itself is not finite on this batch", figures
    if not (math.isfinite(loss_b) and math.isfinite(norm_b)):
        return f"loss {loss_b:.4g}, gradient norm {norm_b:.4g}: not finite", figures
    if abs(loss_b - loss_a) > LOSS_RTOL * abs(loss_a):
        return f"loss {loss_b:.4g} vs {loss_a:.4g}, beyond {LOSS_RTOL:.0%}", figures
    if abs(norm_b - norm_a) > GRAD_NORM_RTOL * norm_a:
        return f"gradient norm {norm_b:.4g} vs {norm_a:.4g}, beyond {GRAD_NORM_RTOL:.0%}", figures
    if cosine < GRAD_COSINE_MIN:
        return f"gradient cosine {cosine:.3f} < {GRAD_COSINE_MIN}", figures
    return None, figures


def trial_step(model: nn.Module, net: nn.Module, loss_fn: Callable[[nn.Module], torch.Tensor], precision: str,
               device: torch.device | str) -> tuple[float, torch.Tensor]:
    """``(loss, flat gradient)`` of one trial step through ``net`` (``model`` or a compiled view of it)
    in ``precision``; ``model`` is left as found: gradients cleared, BatchNorm statistics restored."""
    params = [p for p in model.parameters() if p.requires_grad]
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    for q in params:
        q.grad = None
    with precision_context(precision, device):
        loss = loss_fn(net)
    loss.backward()
    grad = torch.cat([(q.grad if q.grad is not None else torch.zeros_like(q)).flatten().float() for q in params])
    for q in params:
        q.grad = None
    with torch.no_grad():
        for k, v in model.named_buffers():
            v.copy_(buffers[k])
    return loss.item(), grad


def choose_training_path(model: nn.Module, loss_fn: Callable[[nn.Module], torch.Tensor], device: torch.device,
                         precision: str = "auto", compile: str | bool = "auto", budget_s: float = math.inf,
                         steps: float = math.inf, shape: dict | None = None,
                         prior: tuple[float, float] | None = None) -> Decision:
    """The training path for ``model``: ``loss_fn(net)`` is the first batch's loss through ``net``
    (``prior``: see :func:`_choose`).

    Every trial leaves the model as it found it (gradients cleared, BatchNorm statistics restored).
    The budget is the smaller of ``budget_s`` seconds and ``steps`` steps at the measured speed.
    """
    def run(net: nn.Module, p: str) -> tuple[float, torch.Tensor]:
        return trial_step(model, net, loss_fn, p, device)

    def remaining(ms: float) -> float:
        return min(budget_s, steps * ms / 1000)

    return _choose("train", model, torch.device(device), precision, compile, remaining, shape or {}, run,
                   gradient_agreement, prior=prior)


# ---------------------------------------------------------------------------------------------------------------
# sampling


def output_agreement(reference: torch.Tensor, candidate: torch.Tensor,
                     rtol: float = OUTPUT_RTOL) -> tuple[str | None, str]:
    """``(why a candidate network output disagrees with the reference's or None, the figure compared)``."""
    candidate = candidate.float()
    if not torch.isfinite(reference).all():
        return "eager fp32 itself is not finite", "eager fp32 output not finite"
    if not torch.isfinite(candidate).all():
        return "output not finite", "output not finite"
    error = ((candidate - reference).norm() / reference.norm().clamp_min(1e-12)).item()
    figures = f"relative output error {error:.4f}"
    return (f"{figures} > {rtol}" if error > rtol else None), figures


@torch.no_grad()
def choose_sampling_path(model: nn.Module, x: torch.Tensor, t: torch.Tensor, device: torch.device,
                         precision: str = "auto", compile: str | bool = "auto", evaluations: int = 0,
                         shape: dict | None = None, *extra: torch.Tensor,
                         prior: tuple[float, float] | None = None) -> Decision:
    """The sampling path for ``model`` (in eval mode), verified on one evaluation ``model(x, t, *extra)``
    (the call the sampler makes: a class-guided batch is doubled, with its labels as ``extra``); the
    budget is ``evaluations`` such evaluations at the measured speed (``prior``: see :func:`_choose`)."""

    def run(net: nn.Module, p: str) -> torch.Tensor:
        with precision_context(p, device):
            return net(x, t, *extra).float()

    return _choose("sample", model, torch.device(device), precision, compile, lambda ms: evaluations * ms / 1000,
                   shape or {}, run, output_agreement,
                   compiled_check=lambda eager, compiled, p: output_agreement(eager, compiled, COMPILED_OUTPUT_RTOL[p]),
                   prior=prior)
