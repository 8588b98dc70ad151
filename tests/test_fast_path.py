"""The fast paths agree with the eager reference: gradient checkpointing, BN folding, bf16 membranes."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest
import torch

import spikediff
from spikediff import fast_path
from spikediff.cli import main
from spikediff.diffusion import NoiseSchedule, diffusion_loss
from spikediff.families import family_of
from spikediff.models import build_model
from spikediff.models.folding import fold_batchnorm
from spikediff.train.trainer import prepare_for_training
from tests.conftest import TINY_SNN, randomise_batchnorm


def loss_and_grads(model, x0):
    loss = diffusion_loss(model, NoiseSchedule.linear(), x0, generator=torch.Generator().manual_seed(3))
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(fmnist_batch):
    torch.manual_seed(0)
    eager = build_model(TINY_SNN).train()
    ckpt = build_model(TINY_SNN).train()
    ckpt.load_state_dict(eager.state_dict())
    cfg = replace(spikediff.get_preset("fmnist-snn-small"), model=TINY_SNN)
    step_model = prepare_for_training(ckpt, replace(cfg, train=replace(cfg.train, grad_checkpointing=True)))
    assert ckpt.grad_checkpointing
    loss_a, grads_a = loss_and_grads(eager, fmnist_batch[:8])
    loss_b, grads_b = loss_and_grads(step_model, fmnist_batch[:8])
    assert loss_a == loss_b
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-5, atol=1e-7, msg=name)


def test_folded_batchnorm_matches_eval_outputs():
    torch.manual_seed(0)
    model = build_model(TINY_SNN)
    randomise_batchnorm(model)
    model.eval()
    folded = fold_batchnorm(model)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules()) < n_bn / 3  # only the head's remain
    x, t = torch.randn(4, 1, 32, 32), torch.tensor([0, 250, 500, 999])
    with torch.no_grad():
        torch.testing.assert_close(folded(x, t), model(x, t), rtol=1e-4, atol=1e-4)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.stem.modules())  # the original is untouched


def test_bf16_autocast_keeps_membranes_in_fp32():
    from spikediff.snn import IFNeuron

    seen = []
    neuron = IFNeuron()
    neuron.dynamics = staticmethod(lambda x, p, v: seen.append(x.dtype) or (x >= v).to(x.dtype))
    out = neuron(torch.full((2, 3), 0.999, dtype=torch.bfloat16))
    assert seen == [torch.float32] and out.dtype == torch.bfloat16


def test_bench_command_reports_throughput(capsys):
    assert main(["bench", "train", "--preset", "fmnist-snn-small", "--batch", "2", "--repeats", "1", "--warmup", "0",
                 "--set", "model.ch_mult=1,2", "--grad-checkpointing", "--json"]) == 0
    out = capsys.readouterr().out
    row = json.loads(out.strip().splitlines()[-1])
    assert row["kind"] == "train" and row["grad_checkpointing"] and row["batch"] == 2
    assert row["images_per_s"] == pytest.approx(2 / row["ms_per_step"] * 1000, rel=0.01)  # one timing, two units
    assert row["fast_path"] in ("fp32 eager", "bf16 eager")  # bench times the path train would choose
    assert row["peak_memory_mb"] > 0


def test_sampling_with_folded_batchnorm_gives_the_same_images():
    from spikediff.sample import generate

    cfg = replace(spikediff.get_preset("fmnist-snn-small"), model=TINY_SNN)
    model = spikediff.build(cfg)
    randomise_batchnorm(model)
    plain = generate(model, cfg, 4, "ddim", 3, seed=1, batch_size=4)
    folded = generate(model, cfg, 4, "ddim", 3, seed=1, batch_size=4, fold_bn=True)
    assert plain.shape == folded.shape == (4, 1, 32, 32)
    # folding is exact up to float rounding: at most one uint8 level anywhere, and on almost no pixel
    # (on this machine the images are identical)
    diff = (plain.int() - folded.int()).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() < 0.01
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.stem.modules())  # the model itself is untouched


def test_stem_computed_once_equals_the_image_repeated_over_t(fmnist_batch):
    """The stem's first Conv+BN runs once per image; outputs and gradients are those of T copies."""
    from spikediff.models.layers import fold, unfold

    torch.manual_seed(0)
    stem = build_model(replace(TINY_SNN, spike_steps=4)).stem.train()
    x = fmnist_batch[:8].clone().requires_grad_(True)
    fast = stem(x, 4)
    grad_fast = torch.autograd.grad(fast.square().mean(), [x, stem.conv_in.weight, stem.bn_in.weight])

    def repeated(x):  # the reference's way: the image repeated T times through every layer
        h = unfold(stem.bn_in(stem.conv_in(fold(x.unsqueeze(0).repeat(4, 1, 1, 1, 1)))), 4)
        return unfold(stem.bn_out(stem.conv_out(fold(stem.neuron(h)))), 4)

    slow = repeated(x)
    grad_slow = torch.autograd.grad(slow.square().mean(), [x, stem.conv_in.weight, stem.bn_in.weight])
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    for a, b in zip(grad_fast, grad_slow, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_tsm_stem_scales_each_step_of_the_repeated_image():
    torch.manual_seed(0)
    model = build_model(replace(TINY_SNN, tsm=True)).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        base = model.stem(x, 2)
        model.stem.conv_in.tsm_p.copy_(torch.tensor([1.0, 0.0]))
        scaled = model.stem(x, 2)
    torch.testing.assert_close(scaled[0], base[0])
    assert not torch.allclose(scaled[1], base[1])  # step 1's conv output was zeroed before BN


@pytest.fixture
def fast_path_cache(tmp_path, monkeypatch):
    """A fresh fast-path cache, so no test reads another's (or the machine's) timings."""
    monkeypatch.setenv("SPIKEDIFF_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SPIKEDIFF_REMEASURE", raising=False)
    # tiny models time unevenly on a busy test machine; the busy rule has a test of its own
    monkeypatch.setattr(fast_path, "BUSY_SPREAD", float("inf"))
    return tmp_path / "cache" / "fast_paths.json"


def tiny_loss_fn(fmnist_batch, poison=None):
    """The first-batch loss of a tiny Spiking U-Net; ``poison(net)`` True makes that loss NaN."""
    schedule = NoiseSchedule.linear()

    def loss_fn(net):
        torch.manual_seed(0)  # the same dropout masks on every path
        loss = diffusion_loss(net, schedule, fmnist_batch[:4], generator=torch.Generator().manual_seed(3))
        return loss * float("nan") if poison and poison(net) else loss

    return loss_fn


def tiny_snn():
    torch.manual_seed(0)
    return build_model(TINY_SNN).train()


def test_a_nan_in_bf16_falls_back_to_fp32_and_says_why(fmnist_batch, fast_path_cache):
    model = tiny_snn()
    loss_fn = tiny_loss_fn(fmnist_batch, poison=lambda net: torch.is_autocast_enabled("cpu"))
    decision = fast_path.choose_training_path(model, loss_fn, torch.device("cpu"), "bf16", "off")
    assert decision.path == fast_path.EAGER_FP32 and decision.model is model
    assert "not finite" in decision.describe() and "using fp32" in decision.describe()


class PoisonedCompile(torch.nn.Module):
    """Stands in for a miscompiled network: the same module, NaN outputs."""

    def __init__(self, model, **_):
        super().__init__()
        self.inner = model

    def forward(self, *args, **kwargs):
        return self.inner(*args, **kwargs) * float("nan")


def test_a_nan_in_the_compiled_path_falls_back_to_eager(fmnist_batch, fast_path_cache, monkeypatch):
    monkeypatch.setattr(torch, "compile", PoisonedCompile)
    monkeypatch.setattr(fast_path, "compiler_available", lambda device: True)
    model = tiny_snn()
    decision = fast_path.choose_training_path(model, tiny_loss_fn(fmnist_batch), torch.device("cpu"), "fp32", "on")
    assert decision.path == fast_path.EAGER_FP32 and decision.model is model
    assert "fp32 compiled disagrees (loss nan, gradient norm nan: not finite)" in decision.describe()
    cached = json.loads(fast_path_cache.read_text())
    assert any("problem" in entry.get("fp32 compiled", {}) for entry in cached.values())
    # compile=auto remembers the failure on this machine and does not compile again, whatever the budget
    again = fast_path.choose_training_path(model, tiny_loss_fn(fmnist_batch), torch.device("cpu"), "fp32", "auto",
                                           steps=10**9)
    assert not again.path.compiled and "failed before" in again.describe()


class FailingCompile(torch.nn.Module):
    """Stands in for inductor failing to build its kernels (a C++ error, a missing Python.h)."""

    def __init__(self, model, **_):
        super().__init__()
        self.inner = model

    def forward(self, *args, **kwargs):
        raise RuntimeError("C++ compile error\nmore lines")


def test_a_failing_compilation_falls_back_to_eager_and_says_why(fmnist_batch, fast_path_cache, monkeypatch):
    monkeypatch.setattr(torch, "compile", FailingCompile)
    model = tiny_snn()
    decision = fast_path.choose_training_path(model, tiny_loss_fn(fmnist_batch), torch.device("cpu"), "fp32", "on")
    assert decision.path == fast_path.EAGER_FP32 and decision.model is model
    assert "compilation failed: RuntimeError: C++ compile error" in decision.describe()


def test_sampling_falls_back_when_the_bf16_output_is_wrong(fast_path_cache):
    class WrongUnderAutocast(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = build_model(TINY_SNN).eval()

        def forward(self, x, t):
            out = self.net(x, t)
            return -out if torch.is_autocast_enabled("cpu") else out

    model = WrongUnderAutocast()
    x, t = torch.randn(2, 1, 32, 32), torch.tensor([500, 500])
    decision = fast_path.choose_sampling_path(model, x, t, torch.device("cpu"), "bf16", "off")
    assert decision.path == fast_path.EAGER_FP32 and "relative output error" in decision.describe()
    assert fast_path.choose_sampling_path(build_model(TINY_SNN).eval(), x, t, torch.device("cpu"), "bf16",
                                          "off").path == fast_path.FastPath("bf16", False)


class DriftingCompile(torch.nn.Module):
    """Stands in for a compiled spiking network that fires a little differently: outputs 3.5% off, which
    bf16's tolerance against fp32 (OUTPUT_RTOL) would pass."""

    def __init__(self, model, **_):
        super().__init__()
        self.inner = model

    def forward(self, *args, **kwargs):
        return self.inner(*args, **kwargs) * 1.035


def test_a_compiled_sampling_path_must_match_eager_at_its_own_precision(fast_path_cache, monkeypatch):
    monkeypatch.setattr(torch, "compile", DriftingCompile)
    monkeypatch.setattr(fast_path, "compiler_available", lambda device: True)
    model = build_model(TINY_SNN).eval()
    x, t = torch.randn(2, 1, 32, 32), torch.tensor([500, 500])
    assert fast_path.COMPILED_OUTPUT_RTOL["fp32"] < 0.035 < fast_path.OUTPUT_RTOL
    decision = fast_path.choose_sampling_path(model, x, t, torch.device("cpu"), "fp32", "on")
    assert decision.path == fast_path.EAGER_FP32 and decision.model is model
    assert "against eager fp32: relative output error 0.0350" in decision.describe()


def test_trials_leave_the_model_as_they_found_it(fmnist_batch, fast_path_cache):
    model = tiny_snn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast_path.choose_training_path(model, tiny_loss_fn(fmnist_batch), torch.device("cpu"), "auto", "off")
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # BatchNorm running statistics included


def test_auto_measures_once_per_machine_and_shape_then_reads_the_cache(fmnist_batch, fast_path_cache):
    model, calls = tiny_snn(), []
    loss_fn = tiny_loss_fn(fmnist_batch)

    def counted(net):
        calls.append(1)
        return loss_fn(net)

    first = fast_path.choose_training_path(model, counted, torch.device("cpu"), "auto", "off", shape={"n": 1})
    measured = len(calls)
    assert "measured on the first batch: fp32 eager" in first.describe()
    calls.clear()
    second = fast_path.choose_training_path(model, counted, torch.device("cpu"), "auto", "off", shape={"n": 1})
    assert second.path == first.path
    assert len(calls) < measured and len(calls) <= 2  # the reference, and the verification of a bf16 choice
    calls.clear()
    fast_path.choose_training_path(model, counted, torch.device("cpu"), "auto", "off", shape={"n": 2})
    # another shape is timed anew: the reference, fp32 three times, bf16 at least once (once only
    # where it is far slower: GIVE_UP_FACTOR, GIVE_UP_MIN_MS)
    assert len(calls) >= 2 + fast_path.TIMED_REPEATS


def test_a_candidate_far_slower_than_the_fastest_is_timed_once_after_its_warm_up(fmnist_batch, fast_path_cache):
    loss_fn, bf16_calls, fp32_seconds = tiny_loss_fn(fmnist_batch), [], [0.0]

    def bf16_without_hardware(net):  # what bf16 costs on a CPU without bf16 instructions: ~10x fp32
        if torch.is_autocast_enabled("cpu"):
            bf16_calls.append(1)
            time.sleep(2.0 + 30 * max(fp32_seconds))  # > 5x a whole fp32 step (forward + backward), however busy
            return loss_fn(net)
        tic = time.perf_counter()
        loss = loss_fn(net)
        fp32_seconds.append(time.perf_counter() - tic)
        return loss

    decision = fast_path.choose_training_path(tiny_snn(), bf16_without_hardware, torch.device("cpu"), "auto",
                                              "off", shape={"n": 3})
    assert decision.path == fast_path.EAGER_FP32 and len(bf16_calls) == 2  # its warm-up call, then one timed
    timed = fast_path.load_cached(fast_path.cache_key("train", torch.device("cpu"), {"n": 3}))
    give_up = max(fast_path.GIVE_UP_FACTOR * timed["fp32 eager"]["ms"], fast_path.GIVE_UP_MIN_MS)
    assert timed["bf16 eager"]["ms"] >= 2000 and timed["bf16 eager"]["ms"] > give_up


@pytest.mark.parametrize(("bf16_ms", "expected"), [(98.0, "fp32 eager"), (90.0, "bf16 eager")])
def test_bf16_is_chosen_only_when_clearly_faster_than_fp32(fmnist_batch, fast_path_cache, bf16_ms, expected):
    shape = {"n": 4}
    key = fast_path.cache_key("train", torch.device("cpu"), shape)
    fast_path.store_cached(key, {"fp32 eager": {"ms": 100.0}, "bf16 eager": {"ms": bf16_ms}})
    decision = fast_path.choose_training_path(tiny_snn(), tiny_loss_fn(fmnist_batch), torch.device("cpu"), "auto",
                                              "off", shape=shape)
    assert str(decision.path) == expected
    assert ("fp32 kept" in decision.describe()) == (expected == "fp32 eager")


def test_a_busy_machines_timings_decide_the_run_but_are_not_cached(fmnist_batch, fast_path_cache, monkeypatch):
    monkeypatch.setattr(fast_path, "BUSY_SPREAD", 0.25)
    loss_fn, calls = tiny_loss_fn(fmnist_batch), []

    def busy(net):  # every other call waits, as when another job takes the cores
        calls.append(1)
        time.sleep(0.3 * (len(calls) % 2))
        return loss_fn(net)

    decision = fast_path.choose_training_path(tiny_snn(), busy, torch.device("cpu"), "auto", "off", shape={"n": 6})
    assert "the machine is busy, so they are not cached" in decision.describe()
    cached = fast_path.load_cached(fast_path.cache_key("train", torch.device("cpu"), {"n": 6}))
    assert "ms" not in cached.get("fp32 eager", {}) and "ms" not in cached.get("bf16 eager", {})


def test_bf16_must_beat_fp32_by_the_timings_own_noise(fmnist_batch, fast_path_cache):
    shape = {"n": 7}
    key = fast_path.cache_key("train", torch.device("cpu"), shape)
    fast_path.store_cached(key, {"fp32 eager": {"ms": 100.0, "noise": 0.2}, "bf16 eager": {"ms": 90.0, "noise": 0.05}})
    decision = fast_path.choose_training_path(tiny_snn(), tiny_loss_fn(fmnist_batch), torch.device("cpu"), "auto",
                                              "off", shape=shape)
    assert decision.path == fast_path.EAGER_FP32 and "not 20% faster than fp32" in decision.describe()


def test_cache_entries_expire_and_remeasure_ignores_them(fast_path_cache, monkeypatch):
    key = fast_path.cache_key("train", torch.device("cpu"), {"n": 8})
    fast_path.store_cached(key, {"fp32 eager": {"ms": 100.0}})
    assert fast_path.load_cached(key)["fp32 eager"]["ms"] == 100.0
    monkeypatch.setenv("SPIKEDIFF_REMEASURE", "1")
    assert fast_path.load_cached(key) == {}
    monkeypatch.delenv("SPIKEDIFF_REMEASURE")
    now = time.time()
    monkeypatch.setattr(fast_path.time, "time", lambda: now + fast_path.CACHE_MAX_AGE_S + 60)
    assert fast_path.load_cached(key) == {}


def test_the_cache_is_bounded_and_not_rewritten_when_nothing_changed(fast_path_cache, monkeypatch):
    monkeypatch.setattr(fast_path, "CACHE_MAX_KEYS", 3)
    keys = [fast_path.cache_key("train", torch.device("cpu"), {"n": 100 + i}) for i in range(5)]
    for i, key in enumerate(keys):
        monkeypatch.setattr(fast_path.time, "time", lambda i=i: 1e9 + i)  # measured one after another
        fast_path.store_cached(key, {"fp32 eager": {"ms": float(i)}, "unused": {}})
    data = json.loads(fast_path_cache.read_text())
    assert list(data) == keys[2:] and all("unused" not in entries for entries in data.values())
    before = fast_path_cache.stat().st_mtime_ns
    time.sleep(0.01)
    fast_path.store_cached(keys[-1], fast_path.load_cached(keys[-1]))
    assert fast_path_cache.stat().st_mtime_ns == before


@pytest.mark.parametrize(("mine", "theirs"), [(("bf16", True), ("fp32", True)), (("fp32", True), ("bf16", True))])
def test_ranks_agree_on_precision_and_compilation_together(monkeypatch, mine, theirs):
    """A rank compiled at bf16 and one compiled at fp32 agree on fp32, and then on eager for both: the first
    rank's graph was verified at bf16 only (each rank is simulated in turn, the other's votes replayed)."""
    import torch.distributed as dist

    other_path = fast_path.FastPath(*theirs)
    other_votes = [torch.tensor([float(other_path.precision != "bf16"), float(not other_path.compiled)])]
    agreed_first = fast_path.FastPath("fp32", True)
    other_votes.append(torch.tensor([float(agreed_first.compiled and other_path != agreed_first)]))

    def all_reduce(tensor, op=None):
        tensor.copy_(torch.maximum(tensor, other_votes.pop(0)))

    for name, value in (("is_available", lambda: True), ("is_initialized", lambda: True),
                        ("get_world_size", lambda: 2), ("all_reduce", all_reduce)):
        monkeypatch.setattr(dist, name, value)
    eager, compiled = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)
    decision = fast_path.Decision(fast_path.FastPath(*mine), compiled, [])
    agreed = fast_path.agree_across_ranks(decision, eager, torch.device("cpu"))
    assert agreed.path == fast_path.EAGER_FP32 and agreed.model is eager and not other_votes


def test_timings_of_other_code_are_not_read_back(fmnist_batch, fast_path_cache, monkeypatch):
    shape = {"n": 5}
    key = fast_path.cache_key("train", torch.device("cpu"), shape)
    # timings that would make bf16 the choice without a measurement, cached by "another release"
    fast_path.store_cached(key, {"fp32 eager": {"ms": 1000.0}, "bf16 eager": {"ms": 1.0}})
    monkeypatch.setattr(fast_path, "code_digest", lambda: "this release")
    loss_fn, calls = tiny_loss_fn(fmnist_batch), []
    fast_path.choose_training_path(tiny_snn(), lambda net: calls.append(1) or loss_fn(net), torch.device("cpu"),
                                   "auto", "off", shape=shape)
    assert len(calls) >= 2 + fast_path.TIMED_REPEATS  # measured anew: the reference, warm-ups and timed calls


def test_compilation_must_repay_itself_within_the_budget():
    pays = fast_path.compile_pays
    # a 30-minute run cannot repay 3 minutes of compiling at 1.15x with the 10% gain asked for
    assert not pays(30 * 60, 180, 1.15)
    assert pays(3 * 3600, 180, 1.15)
    assert pays(30 * 60, 20, 2.0)  # a cached compilation at a real speed-up pays quickly
    assert not pays(float("inf"), 0, 1.05) and pays(float("inf"), 600, 1.2)


def test_auto_does_not_compile_a_short_run_and_says_why(fmnist_batch, fast_path_cache, monkeypatch):
    monkeypatch.setattr(torch, "compile", PoisonedCompile)  # would fail loudly if it were called
    decision = fast_path.choose_training_path(tiny_snn(), tiny_loss_fn(fmnist_batch), torch.device("cpu"), "fp32",
                                              "auto", budget_s=60)
    assert not decision.path.compiled and "torch.compile off" in decision.describe()


def test_a_familys_compile_prior_decides_what_auto_tries_until_measured(fmnist_batch, fast_path_cache, monkeypatch):
    """The quantised ANN's prior (compiling fuses its quantisers) makes a 30-minute run try compilation, which
    the default prior would not; the poisoned compilation then falls back to eager and says so."""
    monkeypatch.setattr(torch, "compile", PoisonedCompile)
    monkeypatch.setattr(fast_path, "compiler_available", lambda device: True)
    prior = family_of("qann_unet").compile_prior["train"]

    def decide(**kwargs) -> fast_path.Decision:
        return fast_path.choose_training_path(tiny_snn(), tiny_loss_fn(fmnist_batch), torch.device("cpu"), "fp32",
                                              "auto", budget_s=30 * 60, **kwargs)

    default = decide()
    assert not default.path.compiled and "assumed until measured here" in default.describe()
    assert "torch.compile off" in default.describe()
    tried = decide(prior=prior)
    assert not tried.path.compiled and "disagrees" in tried.describe() and "using eager" in tried.describe()
    assert family_of("spiking_unet").compile_prior.get("train") is None


@pytest.mark.slow
def test_default_path_of_the_small_presets_gives_gradients_close_to_eager_fp32(fmnist_batch, fast_path_cache):
    """The CLI's path for a long small-preset run on a bf16-capable CPU (bf16, compiled), really compiled,
    a few steps of a tiny Spiking U-Net: the check that would have caught bf16 + torch.compile's NaN
    gradients on an Intel Xeon. The decision itself must take the same path or say why not."""
    cfg = spikediff.get_preset("fmnist-snn-small")
    assert (cfg.train.precision, cfg.train.compile) == ("auto", "auto")
    model = tiny_snn()
    loss_fn = tiny_loss_fn(fmnist_batch)
    compiled = torch.compile(model, options=fast_path.COMPILE_OPTIONS)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-3)
    for step in range(3):
        reference = fast_path.trial_step(model, model, loss_fn, "fp32", "cpu")
        candidate = fast_path.trial_step(model, compiled, loss_fn, "bf16", "cpu")
        assert fast_path.gradient_agreement(reference, candidate)[0] is None, step
        for p, g in zip(params, candidate[1].split([p.numel() for p in params]), strict=True):
            p.grad = g.view_as(p)
        optimizer.step()
    decision = fast_path.choose_training_path(model, loss_fn, torch.device("cpu"), "bf16", "on")
    assert decision.path == fast_path.FastPath("bf16", True), decision.describe()


def test_a_resumed_run_keeps_the_path_its_start_chose(tmp_path):
    from spikediff.train.trainer import FAST_PATH_FILE, _path_to_take

    (tmp_path / FAST_PATH_FILE).write_text(json.dumps({"path": "bf16 compiled", "precision": "bf16", "compiled": True,
                                                       "report": []}))
    assert _path_to_take(tmp_path, True, "auto", "auto") == ("bf16", "on")
    assert _path_to_take(tmp_path, True, "fp32", "off") == ("fp32", "off")  # an explicit choice still wins
    assert _path_to_take(tmp_path, False, "auto", "auto") == ("auto", "auto")  # a new run decides anew


def test_configs_saved_with_a_boolean_compile_still_load():
    cfg = spikediff.get_preset("fmnist-snn-small").to_dict()
    cfg["train"]["compile"] = True
    assert spikediff.Config.from_dict(cfg).train.compile == "on"
    cfg["train"]["compile"] = False
    assert spikediff.Config.from_dict(cfg).train.compile == "off"


@pytest.mark.slow
def test_compiled_sampling_gives_the_same_images():
    """The sampling fast path (folded BatchNorm + torch.compile) against the eager model."""
    from spikediff.sample import generate

    cfg = replace(spikediff.get_preset("fmnist-snn-small"), model=replace(TINY_SNN, ch_mult=(1,)))
    model = spikediff.build(cfg)
    randomise_batchnorm(model)
    eager = generate(model, cfg, 2, "ddim", 2, seed=1, batch_size=2)
    fast = generate(model, cfg, 2, "ddim", 2, seed=1, batch_size=2, fold_bn=True, compile="on")
    assert (eager.int() - fast.int()).abs().float().mean() < 0.5
