"""ANN-to-SNN conversion (SDM): quantiser, signed IF neuron, conversion, fine-tuning, the CLI path."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

import spikediff
from spikediff.ann2snn import activation_consumers, blockwise_finetune, convert, output_error, res_blocks
from spikediff.cli import main
from spikediff.diffusion import NoiseSchedule
from spikediff.models.quant_unet import QuantReLU
from spikediff.snn import SignedIFNeuron, signed_if_sequence, threshold_scale
from spikediff.snn.signed_if import NEGATIVE_SPIKE_MARGIN, signed_if_step
from tests.conftest import randomise_batchnorm

TINY_QANN = spikediff.ModelConfig(arch="qann_unet", ch=32, ch_mult=(1, 2), num_res_blocks=1, img_ch=1, quant_bits=2,
                                  dropout=0.0)


def tiny_qann(seed: int = 0, clip: float = 2.0, all_convs: bool = False, signed: bool = False):
    """A quantised ANN whose clips sit where its (randomised) pre-activations live, so every level is used."""
    torch.manual_seed(seed)
    model_config = replace(TINY_QANN, quant_all_convs=all_convs or signed, quant_signed_residual=signed)
    config = replace(spikediff.get_preset("fmnist-qann-small"), model=model_config)
    model = spikediff.build(config)
    randomise_batchnorm(model)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, QuantReLU):
                m.alpha.fill_(clip)
        for conv in (b.conv2 for _, b in res_blocks(model)):
            conv.weight.normal_(0, 0.05)  # the DDPM init (gain 1e-5) would make every block an identity
        model.tail_conv.weight.normal_(0, 0.05)
    return model.eval(), config


def test_signed_if_hand_checked_sequence():
    # threshold 1, membrane starts at 0.5:
    # t0: 0.5+0.9=1.4 fires +1 -> 0.4 | t1: 0.4-0.8=-0.4 < 0 after a spike: -1 -> 0.6 | t2: 0.8 | t3: 1.8 fires -> 0.8
    x = torch.tensor([0.9, -0.8, 0.2, 1.0])[:, None]
    assert signed_if_sequence(x, 1.0).flatten().tolist() == [1.0, -1.0, 0.0, 1.0]
    # a neuron that has not fired never sends a negative spike, however negative its membrane
    assert signed_if_sequence(torch.full((4, 1), -0.7), 1.0).abs().sum() == 0
    # a spike taken back can be sent again: the count never goes below zero
    x = torch.tensor([0.6, -0.5, -0.5, -0.5, 0.9])[:, None]
    out = signed_if_sequence(x, 1.0).flatten()
    assert out.tolist() == [1.0, -1.0, 0.0, 0.0, 0.0] and (out.cumsum(0) >= 0).all()


def _signed_if_as_stated(x_seq: torch.Tensor, v_threshold: float, symmetric: bool = False,
                         max_count: int | None = None) -> torch.Tensor:
    """The signed IF rule written out step by step in fp32: the oracle of the in-place version."""
    v, count, out = torch.full_like(x_seq[0], v_threshold / 2), torch.zeros_like(x_seq[0]), []
    cap = float("inf") if max_count is None else max_count
    for x in x_seq:
        v = v + x
        pos = ((v >= v_threshold) & (count < cap)).float()
        v = v - pos * v_threshold
        may = count + pos > -cap if symmetric else count + pos > 0
        neg = ((v <= -NEGATIVE_SPIKE_MARGIN) & may).float()
        v = v + neg * v_threshold
        out.append(pos - neg)
        count = count + pos - neg
    return torch.stack(out)


@pytest.mark.parametrize("symmetric, max_count", [(False, None), (True, None), (False, 5), (True, 5)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_signed_if_sequence_is_the_rule_bit_for_bit(dtype, symmetric, max_count):
    x = (torch.randn(7, 4096, generator=torch.Generator().manual_seed(0)) * 0.8).to(dtype)
    spikes = signed_if_sequence(x, 0.6, symmetric, max_count)
    assert spikes.dtype == dtype  # spikes in the input's dtype: bf16 sampling casts nothing back
    expected = _signed_if_as_stated(x.float(), 0.6, symmetric, max_count)
    assert torch.equal(spikes.float(), expected) and expected.min() == -1 and expected.max() == 1
    counts = expected.sum(0)
    assert counts.max() == (max_count or 7) and (counts.min() == -(max_count or 7) if symmetric else counts.min() == 0)
    assert torch.equal(x, (torch.randn(7, 4096, generator=torch.Generator().manual_seed(0)) * 0.8).to(dtype))
    state, steps = {}, []  # one step per call, as a network sampled step by step runs it: the same bits
    for x_t in x:
        steps.append(signed_if_step(x_t, state, 0.6, symmetric, max_count))
    assert torch.equal(torch.stack(steps), spikes)


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("bits, slack", [(2, 1), (3, 1), (3, 2)])
def test_slack_steps_count_the_quantisers_level_for_constant_input(bits, slack, symmetric):
    """T = L + slack steps, threshold alpha * T / L, counts capped at L: a constant input counts the
    L-level quantiser's level, as at T = L."""
    q = QuantReLU(bits, clip=2.0, symmetric=symmetric)
    levels = 2**bits - 1
    steps = levels + slack
    x = torch.linspace(-3.0, 3.0, 601)
    x = x[((x / 2.0 * levels) % 1 - 0.5).abs() > 1e-3]  # away from rounding ties
    neuron = SignedIFNeuron(steps, alpha=2.0 * steps / levels, symmetric=symmetric, max_count=levels)
    count = neuron(x.repeat(steps)).view(steps, -1).sum(0)
    torch.testing.assert_close(2.0 * count / levels, q(x).detach())


def test_a_slack_step_lets_a_neuron_at_the_top_level_catch_up_with_late_input():
    # the input's mean is the clip alpha = 1 (the top level, 3 of 3), but nothing arrives on the first step.
    # T = L = 3, threshold 1: 0.5 | 0.5+1.5 = 2 fires -> 1 | 1+1.5 = 2.5 fires -> 1.5: count 2, a level lost
    late = torch.tensor([0.0, 1.5, 1.5])[:, None]
    assert signed_if_sequence(late, 1.0, symmetric=True).sum() == 2
    # one slack step, T = 4, threshold 4/3, the same mean over 4 steps: 2/3 | 2 fires -> 2/3 | 2 fires | 2 fires
    late = torch.tensor([0.0, 4 / 3, 4 / 3, 4 / 3])[:, None]
    assert signed_if_sequence(late, 4 / 3, symmetric=True, max_count=3).sum() == 3
    # and the cap holds the count at the level however much more arrives
    assert signed_if_sequence(torch.full((4, 1), 5.0), 4 / 3, symmetric=True, max_count=3).sum() == 3


@pytest.mark.parametrize("bits", [1, 2, 3])
def test_spike_count_at_t_equal_levels_is_the_quantiser_for_constant_input(bits):
    q = QuantReLU(bits, clip=2.0)
    levels = 2**bits - 1
    x = torch.linspace(-1.0, 3.0, 401)
    x = x[((x / 2.0 * levels) % 1 - 0.5).abs() > 1e-3]  # away from rounding ties
    neuron = SignedIFNeuron(levels, alpha=2.0)
    rate = neuron(x.repeat(levels)).view(levels, -1).mean(0)
    torch.testing.assert_close(rate * 2.0, q(x).detach())


def test_quantiser_levels_clip_and_straight_through_gradients():
    q = QuantReLU(2, clip=6.0)
    x = torch.tensor([-1.0, 0.9, 1.1, 3.0, 5.2, 7.0], requires_grad=True)
    y = q(x)
    assert y.tolist() == pytest.approx([0.0, 0.0, 2.0, 4.0, 6.0, 6.0])
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 0.0]  # inside the clip, straight through
    assert q.alpha.grad is not None and q.alpha.grad != 0


def _quantiser_as_stated(x: torch.Tensor, alpha: torch.Tensor, levels: int, low: float = 0.0) -> torch.Tensor:
    """The rule written out for autograd: clamp, round with a straight-through gradient, rescale."""
    scaled = (x / alpha).clamp(low, 1.0) * levels
    return (scaled + (scaled.round() - scaled).detach()) * alpha / levels


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("bits", [1, 2, 4])
def test_quantiser_output_and_gradients_are_the_rule_written_out(bits, symmetric):
    gen = torch.Generator().manual_seed(bits)
    x = torch.randn(4, 8, 6, 6, generator=gen) * 2
    low = -1.0 if symmetric else 0.0
    x.view(-1)[:4] = torch.tensor([1.7 * low, 1.7, -0.0 if not symmetric else -1.7, 3.4])  # at the bounds: no gradient
    grad = torch.randn(x.shape, generator=gen)
    results = []
    for quantise in (lambda inp, q: q(inp), lambda inp, q: _quantiser_as_stated(inp, q.alpha, q.levels, low)):
        q = QuantReLU(bits, clip=1.7, symmetric=symmetric)
        inp = x.clone().requires_grad_()
        out = quantise(inp, q)
        out.backward(grad)
        results.append((out.detach(), inp.grad, q.alpha.grad))
    (out, grad_x, grad_alpha), (out_ref, grad_x_ref, grad_alpha_ref) = results
    torch.testing.assert_close(out, out_ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(grad_x, grad_x_ref, rtol=1e-6, atol=1e-6)
    assert grad_x.view(-1)[:4].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert (out.min() < 0) == symmetric
    torch.testing.assert_close(grad_alpha, grad_alpha_ref, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # the inference path (sampling) gives the same values
        assert torch.equal(QuantReLU(bits, clip=1.7, symmetric=symmetric)(x), out)


@pytest.mark.parametrize("bits", [1, 2, 3])
def test_symmetric_neuron_counts_the_symmetric_quantiser_for_constant_input(bits):
    """Negative inputs count down as positive ones count up, from the first step; the plain signed
    neuron stays silent on them."""
    q = QuantReLU(bits, clip=2.0, symmetric=True)
    levels = 2**bits - 1
    x = torch.linspace(-3.0, 3.0, 601)
    x = x[((x / 2.0 * levels) % 1 - 0.5).abs() > 1e-3]  # away from rounding ties
    rate = SignedIFNeuron(levels, alpha=2.0, symmetric=True)(x.repeat(levels)).view(levels, -1).mean(0)
    torch.testing.assert_close(rate * 2.0, q(x).detach())
    assert signed_if_sequence(torch.full((3, 1), -0.7), 1.0, symmetric=True).flatten().tolist() == [-1.0, 0.0, -1.0]


def test_signed_residual_needs_every_conv_quantised():
    config = replace(spikediff.get_preset("fmnist-qann-small"), model=replace(TINY_QANN, quant_signed_residual=True))
    with pytest.raises(ValueError, match="quant_all_convs"):
        spikediff.build(config)


def test_converted_snn_runs_what_time_does_not_change_once(fmnist_batch):
    """The stem and the time embedding's first layer run once per evaluation, not T times; the output is
    the network run on the input repeated over T (to 1e-6), and the energy report counts them once."""
    from spikediff.diffusion import q_sample
    from spikediff.energy.report import ENERGY_MODELS, count_energy, measure_energy
    from spikediff.models.ann_unet import UNet

    qann, config = tiny_qann(signed=True)
    snn, _ = convert(qann, config, spike_steps=5)
    x, t = fmnist_batch[:6], torch.linspace(0, 999, 6).long()
    with torch.no_grad():
        folded = UNet.forward(snn, x.repeat(5, 1, 1, 1), t.repeat(5)).view(5, 6, *x.shape[1:]).mean(0)
        stepwise = snn(x, t)  # without gradients the steps run one after another
    torch.testing.assert_close(stepwise, folded, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(snn(x, t).detach(), folded, rtol=1e-6, atol=1e-6)  # with gradients: folded
    assert all(m.state is None for m in snn.modules() if isinstance(m, SignedIFNeuron))  # no membrane left behind
    report = {layer.name: layer for layer in measure_energy(snn, x[:2], [500], NoiseSchedule.linear()).layers}
    assert report["stem"].dense_macs == x.shape[-1] ** 2 * 32 * 9  # one step's MACs per image: the stem ran once
    assert report["time_embedding.linear1"].dense_macs == 32 * 128
    assert report["time_embedding.linear2"].dense_macs == 5 * 128 * 128  # behind a neuron: every step
    # counted step by step or folded, every layer's counts are the same
    noise = torch.randn(x[:2].shape, generator=torch.Generator().manual_seed(0))
    noisy = q_sample(NoiseSchedule.linear(), x[:2], torch.full((2,), 500), noise)

    def run_folded(_t: int) -> None:
        with torch.enable_grad():
            snn(noisy, torch.full((2,), 500))

    for layer in count_energy(snn, run_folded, [500], 2, ENERGY_MODELS["45nm-fp32"], "folded").layers:
        step = report[layer.name]
        assert (layer.input, layer.steps, layer.weights) == (step.input, step.steps, step.weights), layer.name
        for field in ("dense_macs", "acs", "count_bit_ops", "neurobench_effective", "input_elements"):
            assert getattr(layer, field) == pytest.approx(getattr(step, field), rel=1e-6), (layer.name, field)


def test_model_quant_clip_sets_where_every_quantiser_clips():
    config = replace(spikediff.get_preset("fmnist-qann-small"), model=replace(TINY_QANN, quant_clip=1.5))
    model = spikediff.build(config)
    alphas = [m.alpha.item() for m in model.modules() if isinstance(m, QuantReLU)]
    assert alphas and all(a == 1.5 for a in alphas)
    assert QuantReLU(2, clip=1.5)(torch.tensor([0.2, 0.3, 1.3])).tolist() == [0.0, 0.5, 1.5]  # levels 0, 0.5, 1, 1.5
    with pytest.raises(ValueError, match="quant_clip"):
        QuantReLU(2, clip=0.0)


def test_conversion_folds_the_clip_into_the_next_layer_and_emits_signed_spikes(fmnist_batch):
    qann, config = tiny_qann()
    snn, snn_config = convert(qann, config)
    assert snn_config.model.arch == "converted_snn" and snn.spike_steps == 3  # 2^2 - 1
    q_state, s_state = qann.state_dict(), snn.state_dict()
    for act, consumer in activation_consumers(qann):
        torch.testing.assert_close(s_state[f"{consumer}.weight"], q_state[f"{consumer}.weight"] * 2.0)
        assert float(s_state[f"{act}.alpha"]) == 2.0
    seen = []
    handle = snn.down[0].conv1.register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    with torch.no_grad():
        snn(fmnist_batch[:4], torch.tensor([0, 300, 600, 999]))
    handle.remove()
    spikes = torch.cat(seen)  # one call per spiking step: the network samples step by step
    assert len(seen) == snn.spike_steps and set(spikes.unique().tolist()) <= {-1.0, 0.0, 1.0} and spikes.abs().sum() > 0


@pytest.mark.parametrize("all_convs, signed", [(False, False), (True, False), (True, True)])
def test_converted_snn_approaches_its_ann_as_t_grows(fmnist_batch, all_convs, signed):
    """The SNN's rate converges to the clipped ReLU it codes (the quantised ANN's activation before
    rounding); at T = 2^b - 1 it codes the rounding too. Measured on every block output, with the
    shortcut, down- and up-sampling convolutions behind quantisers too (``model.quant_all_convs``),
    plain or symmetric (``model.quant_signed_residual``)."""
    qann, config = tiny_qann(all_convs=all_convs, signed=signed)
    x, t = fmnist_batch[:16], torch.linspace(0, 999, 16).long()
    clipped = {n: m for n, m in qann.named_modules() if isinstance(m, QuantReLU)}
    errors = {}
    for T in (3, 15, 63):
        snn, _ = convert(qann, config, spike_steps=T)
        errors[T] = block_errors(snn, qann, x, t, unquantised=clipped)
    for name in errors[3]:
        assert errors[63][name] < errors[15][name] < errors[3][name], (name, errors)


def test_conversion_error_finds_no_encoding_error_where_the_input_is_constant(fmnist_batch, monkeypatch):
    """benchmarks/conversion_error.py: the neurons whose input is the same on every step (the time
    embedding's, and the first block's, which reads the stem) code it exactly, so they show no encoding
    error and no drift; deeper neurons read uneven spike-driven input and do show some."""
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from conversion_error import layer_errors

    qann, config = tiny_qann(all_convs=True, signed=True)
    snn, _ = convert(qann, config)
    rows = {r["layer"]: r for r in layer_errors(snn, qann, fmnist_batch[:8], torch.linspace(0, 999, 8).long())}
    assert set(rows) == {n for n, m in snn.named_modules() if isinstance(m, SignedIFNeuron)}
    for constant in ("time_embedding.act", "down.0.act1"):
        assert rows[constant]["encoding_wrong_share"] == 0.0 and rows[constant]["drift"] < 1e-6, rows[constant]
    assert max(r["drift"] for r in rows.values()) > 0.01


def test_conversion_with_a_slack_step(fmnist_batch):
    """``slack_steps=1`` on 2-bit quantisers: T = 4, every threshold alpha * 4/3 (folded into the next
    layer), counts capped at 3; step by step and folded agree; the energy report's quantised baseline
    stays 2-bit (counts up to 3), not the 3 bits that T = 4 would suggest."""
    from spikediff.energy.report import measure_energy
    from spikediff.models.ann_unet import UNet

    qann, config = tiny_qann(signed=True)
    snn, snn_config = convert(qann, config, slack_steps=1)
    assert (snn.spike_steps, snn.count_levels, snn_config.model.slack_steps) == (4, 3, 1)
    for act, _ in activation_consumers(qann):
        neuron = snn.get_submodule(act)
        assert neuron.max_count == 3 and neuron.v_threshold == pytest.approx(2.0 * 4 / 3)
    x, t = fmnist_batch[:6], torch.linspace(0, 999, 6).long()
    with torch.no_grad():
        folded = UNet.forward(snn, x.repeat(4, 1, 1, 1), t.repeat(4)).view(4, 6, *x.shape[1:]).mean(0)
        torch.testing.assert_close(snn(x, t), folded, rtol=1e-6, atol=1e-6)
    rebuilt = spikediff.build(snn_config)  # the saved config rebuilds the same capped network
    rebuilt.load_state_dict(snn.state_dict())
    assert all(m.max_count == 3 for m in rebuilt.modules() if isinstance(m, SignedIFNeuron))
    baseline = measure_energy(snn, x[:2], [500], NoiseSchedule.linear()).conventions()["quantised_ann"]
    assert baseline["bits"] == 2
    with pytest.raises(ValueError, match="slack"):
        convert(qann, config, spike_steps=6, slack_steps=1)


def test_quantising_every_conv_leaves_only_the_stem_and_time_input_fed_by_real_values(fmnist_batch):
    from spikediff.energy.report import measure_energy

    plain, _ = tiny_qann()
    qann, config = tiny_qann(all_convs=True)
    extra = {n for n, m in qann.named_modules() if isinstance(m, QuantReLU)} - {
        n for n, m in plain.named_modules() if isinstance(m, QuantReLU)}
    # by hand, ch 32, ch_mult (1, 2), one block per level: the down-sampling conv, the 32 -> 64 block's
    # shortcut; every up block's shortcut (each takes a concatenated skip) and the up-sampling conv
    assert extra == {"down.1.act", "down.2.shortcut_act", "up.0.shortcut_act", "up.1.shortcut_act", "up.2.act",
                     "up.3.shortcut_act", "up.4.shortcut_act"}
    assert {(a, c) for a, c in activation_consumers(qann)} >= {(n, n.replace("shortcut_act", "shortcut")
                                                               .replace(".act", ".conv")) for n in extra}
    assert plain.state_dict().keys() < qann.state_dict().keys()  # the same weights, plus the new clips
    snn, _ = convert(qann, config)
    report = measure_energy(snn, fmnist_batch[:4], [0, 500, 999], NoiseSchedule.linear(), name="snn")
    real = sorted(layer.name for layer in report.layers if layer.input != "spikes")
    assert real == ["stem", "time_embedding.linear1"], real
    plain_snn, _ = convert(plain, replace(config, model=TINY_QANN))
    plain_report = measure_energy(plain_snn, fmnist_batch[:4], [0, 500, 999], NoiseSchedule.linear(), name="p")
    assert report.macs < 0.2 * plain_report.macs and report.energy_mj < plain_report.energy_mj


def block_errors(snn, qann, x, t, unquantised=None) -> dict[str, float]:
    """MSE between each residual block's output in the SNN (averaged over T) and in the ANN; with
    ``unquantised``, the ANN's quantisers are replaced by the clipped ReLU they round."""
    outputs: dict[str, dict[str, torch.Tensor]] = {"snn": {}, "ann": {}}
    T = snn.spike_steps
    def keep(side: str, name: str, unfold: bool):
        def hook(_m, _a, out):
            outputs[side][name] = out.view(T, len(x), *out.shape[1:]).mean(0) if unfold else out
        return hook

    handles = [b.register_forward_hook(keep("snn", n, True)) for n, b in res_blocks(snn)]
    handles += [b.register_forward_hook(keep("ann", n, False)) for n, b in res_blocks(qann)]
    snn.run_stepwise = False  # the block outputs of every step at once
    saved = {}
    for name, q in (unquantised or {}).items():
        saved[name] = q.forward
        q.forward = lambda v, q=q: v.clamp(min=-q.alpha if q.symmetric else 0).minimum(q.alpha)
    with torch.no_grad():
        snn(x, t)
        qann(x, t)
    for name, q in (unquantised or {}).items():
        q.forward = saved[name]
    snn.run_stepwise = True
    for h in handles:
        h.remove()
    return {n: float((outputs["snn"][n] - outputs["ann"][n]).square().mean()) for n in outputs["snn"]}


def test_blockwise_finetuning_lowers_the_block_errors(fmnist_batch):
    qann, config = tiny_qann()
    snn, _ = convert(qann, config)
    x, t = fmnist_batch[16:32], torch.linspace(0, 999, 16).long()
    before = output_error(snn, qann, x, t)
    history = blockwise_finetune(snn, qann, fmnist_batch[:16], NoiseSchedule.linear(), steps_per_block=30, lr=1e-3,
                                 batch_size=8)
    assert [h["block"] for h in history] == [n for n, _ in res_blocks(snn)]
    assert all(float(snn.state_dict()[f"{a}.alpha"]) == 2.0 for a, _ in activation_consumers(snn))  # fixed
    assert output_error(snn, qann, x, t) < before  # on held-out images


def test_threshold_guidance_reaches_the_signed_neurons():
    qann, config = tiny_qann()
    snn, _ = convert(qann, config)
    with threshold_scale(snn, 0.5):
        assert float(snn.tail_act.alpha) == 1.0
    assert float(snn.tail_act.alpha) == 2.0


def two_training_steps(data_dir) -> list[str]:
    """``spikediff train`` options for a tiny quantised ANN trained for two steps on ``data_dir``."""
    return ["--set", "model.ch_mult=1,2", "--set", "train.batch_size=4", "--set", "train.total_steps=2",
            "--set", "train.sample_every=0", "--set", "train.precision=fp32", "--data-dir", str(data_dir),
            "--no-progress"]


def test_ann2snn_command_round_trip_sample_and_energy(tmp_path, small_fmnist_dir, capsys):
    assert main(["train", "--preset", "fmnist-qann-small", "--out", str(tmp_path / "qann"),
                 *two_training_steps(small_fmnist_dir)]) == 0
    out = tmp_path / "snn"
    assert main(["ann2snn", str(tmp_path / "qann"), str(out), "--spike-steps", "4", "--finetune", "--finetune-steps",
                 "2", "--batch-size", "4", "--num-images", "16", "--data-dir", str(small_fmnist_dir),
                 "--no-progress"]) == 0
    summary = json.loads((out / "conversion.json").read_text())
    assert summary["spike_steps"] == 4 and len(summary["finetune"]["blocks"]) == 8  # 2 down, 2 middle, 4 up
    # an ordinary checkpoint: it loads back to the same outputs
    qann_config = spikediff.load_config(tmp_path / "qann")
    snn = spikediff.load(out)
    assert spikediff.load_config(out).model.arch == "converted_snn"
    again, _ = convert(spikediff.load(tmp_path / "qann"), qann_config, 4)
    x, t = torch.randn(2, 1, 32, 32), torch.tensor([5, 900])
    assert not torch.equal(snn(x, t), again(x, t))  # the fine-tuned weights were saved, not the converted ones
    assert main(["sample", str(out), "--out", str(tmp_path / "samples"), "--num", "2", "--steps", "2",
                 "--batch-size", "2", "--no-progress", "--no-png"]) == 0
    assert main(["energy", str(out), "--num-images", "2", "--data-dir", str(small_fmnist_dir)]) == 0
    energy = json.loads((out / "energy" / "energy.json").read_text())
    assert energy["report"]["totals_per_evaluation"]["acs"] > 0 and 0 < energy["snn_over_ann"] < 2
    # the twin is the quantised ANN, all MACs, even where its quantised inputs happen to be all 0 or 0/1
    assert {layer["input"] for layer in energy["ann_twin"]["layers"]} == {"real"}
    capsys.readouterr()
    assert main(["ann2snn", str(out), str(tmp_path / "again")]) == 1  # an SNN is not a quantised ANN
    assert "qann_unet" in capsys.readouterr().err


def test_a_compiled_converted_snn_fires_as_the_eager_one_with_its_own_thresholds():
    """torch.compile once fired every signed IF neuron with one layer's threshold (relative output
    error 1.5 here): the neuron now runs eagerly inside the compiled graph."""
    qann, config = tiny_qann()
    with torch.no_grad():
        for i, m in enumerate(m for m in qann.modules() if isinstance(m, QuantReLU)):
            m.alpha.fill_(1.0 + 0.37 * i)  # a different threshold in every layer, as after training
    snn, _ = convert(qann, config, 3)
    x = torch.randn(8, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([10, 100, 300, 500, 600, 700, 900, 999])
    with torch.no_grad():
        assert torch.equal(torch.compile(snn)(x, t), snn(x, t))
