"""Integrate-then-fire neurons (``count`` and ``phase`` codes): the spikes they send, the exact conversion,
the one-pass shortcut, their energy counts against hand counts, and the ``ann2snn --coding`` command."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

import spikediff
from spikediff.ann2snn import convert
from spikediff.cli import main
from spikediff.diffusion import NoiseSchedule
from spikediff.energy.baselines import verdicts
from spikediff.energy.report import measure_energy
from spikediff.models.quant_unet import QuantReLU
from spikediff.snn import SignedIFNeuron, signed_if_sequence, threshold_scale
from spikediff.snn.count_coded import CountCodedNeuron, encode, step_weights
from tests.test_ann2snn import tiny_qann, two_training_steps


def test_spike_trains_by_hand():
    assert encode(torch.tensor([5.0, -6.0, 0.0]), "phase", 7).T.tolist() == [[1, 0, 1], [-1, -1, 0], [0, 0, 0]]
    assert encode(torch.tensor([3.0, -1.0]), "count", 7).T.tolist() == [[1, 1, 1, 0, 0, 0, 0], [-1, 0, 0, 0, 0, 0, 0]]
    assert step_weights("phase", 7).tolist() == [4.0, 2.0, 1.0] and step_weights("count", 3).tolist() == [1.0] * 3


@pytest.mark.parametrize("coding", ["count", "phase"])
@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_every_level_is_sent_and_read_back_exactly(coding, bits):
    levels = 2**bits - 1
    level = torch.arange(-levels, levels + 1, dtype=torch.float32)
    spikes = encode(level, coding, levels)
    assert set(spikes.unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert torch.equal((spikes * step_weights(coding, levels)[:, None]).sum(0), level)
    if coding == "phase":  # one spike per set bit: the bit-serial ANN's work
        assert spikes.abs().sum(0).tolist() == [bin(int(v)).count("1") for v in level.abs()]


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("coding", ["count", "phase"])
def test_the_neuron_sends_the_quantisers_level_of_its_whole_input(coding, symmetric):
    """Constant input, input arriving all on the last step, or uneven input with the same weighted sum:
    the same level, the quantiser's."""
    quantiser = QuantReLU(3, clip=2.0, symmetric=symmetric).eval()
    neuron = CountCodedNeuron(7, coding, symmetric=symmetric, alpha=2.0)
    T, w = neuron.spike_steps, neuron.weights.view(-1, 1)
    x = torch.linspace(-3, 3, 241) + 0.003  # off the levels' midpoints, where float sums may round either way
    with torch.no_grad():
        wanted = quantiser(x) * 7 / 2.0
    late = torch.zeros(T, len(x))
    late[-1] = x * w.sum() / w[-1]  # everything on the last step, worth the same weighted sum
    uneven = torch.rand(T, len(x), generator=torch.Generator().manual_seed(0)) * 4 - 2
    uneven[-1] += (x * w.sum() - (uneven * w).sum(0)) / w[-1]  # arbitrary steps, the same weighted sum
    for x_seq in (x.repeat(T, 1), late, uneven):
        spikes = neuron(x_seq.reshape(-1)).view(T, -1)
        torch.testing.assert_close((spikes * w).sum(0), wanted)


def test_the_signed_if_neuron_loses_the_levels_of_late_input_that_count_coding_keeps():
    x = torch.linspace(0, 2, 81)
    late = torch.zeros(7, len(x))
    late[-1] = x * 7
    counted = CountCodedNeuron(7, "count", alpha=2.0)(late.reshape(-1)).view(7, -1).sum(0)
    with torch.no_grad():
        torch.testing.assert_close(counted, QuantReLU(3, clip=2.0)(x) * 7 / 2.0)
    fired = signed_if_sequence(late, 2.0).sum(0)
    assert (fired <= counted).all() and (fired < counted).sum() > len(x) // 2  # one spike at most, on the last step


def distinct_thresholds(qann: torch.nn.Module) -> None:
    """A different clip, not a power of two, in every quantiser (as after training): a neuron reading
    another layer's threshold, or a clip folded into a weight with rounding, shows."""
    with torch.no_grad():
        for i, m in enumerate(m for m in qann.modules() if isinstance(m, QuantReLU)):
            m.alpha.fill_(1.3 + 0.37 * i)


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("bits", [2, 3])
@pytest.mark.parametrize("coding", ["count", "phase"])
def test_conversion_is_exact_and_the_shortcut_is_the_simulation(fmnist_batch, coding, bits, signed):
    """In float64 (where no level sits within rounding of a boundary) the T-step simulation, the one-pass
    shortcut and the quantised ANN give the same prediction; every spike-fed layer of the simulation
    sees -1 / 0 / 1 on each of its T steps."""
    qann, config = tiny_qann(signed=signed)
    config = replace(config, model=replace(config.model, quant_bits=bits))
    ann = spikediff.build(config)
    ann.load_state_dict(qann.state_dict())
    distinct_thresholds(ann)
    ann = ann.double().eval()
    snn, snn_config = convert(ann, config, coding=coding)
    assert snn.spike_steps == snn_config.model.spike_steps == (bits if coding == "phase" else 2**bits - 1)
    x, t = fmnist_batch[:6].double(), torch.linspace(0, 999, 6).long()
    seen = []
    handle = snn.down[0].conv1.register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    with torch.no_grad():
        reference, shortcut = ann(x, t), snn(x, t)
        snn.simulate_spikes = True
        simulated = snn(x, t)
    handle.remove()
    torch.testing.assert_close(shortcut, reference, rtol=0, atol=1e-9)
    torch.testing.assert_close(simulated, reference, rtol=0, atol=1e-9)
    spikes = seen[-1]
    assert spikes.shape[0] == snn.spike_steps * 6 and set(spikes.unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert spikes.abs().sum() > 0


@pytest.mark.parametrize("coding", ["count", "phase"])
def test_energy_counts_the_spikes_sent_against_hand_counts(fmnist_batch, coding):
    """The energy report simulates the spikes (not the shortcut): the output convolution's accumulates
    are its input spikes times its fan-out (``img_ch x 9`` per spike); with the phase code a level costs
    its set bits, so the field's figure is the bit-serial quantised-ANN baseline's exactly."""
    qann, config = tiny_qann(signed=True)
    config = replace(config, model=replace(config.model, quant_bits=3))
    ann = spikediff.build(config)
    ann.load_state_dict(qann.state_dict())
    snn, _ = convert(ann.eval(), config, coding=coding)
    x = fmnist_batch[:4]
    levels = []
    handle = snn.tail_act.register_forward_hook(lambda m, a, out: levels.append(out))
    report = measure_energy(snn, x, [500], NoiseSchedule.linear())
    handle.remove()
    assert not snn.simulate_spikes  # put back
    spikes = float(levels[0].abs().sum())
    assert spikes > 0
    tail = {layer.name: layer for layer in report.layers}["tail_conv"]
    assert tail.input == "spikes" and tail.acs == pytest.approx(spikes * 9 / len(x), rel=1e-6)
    quantised = report.conventions()["quantised_ann"]
    assert quantised["bits"] == 3
    outcome = {(v["against"], v["convention"]): v["outcome"] for v in verdicts(report, None)}
    if coding == "phase":
        assert report.energy_mj == pytest.approx(quantised["energy_mj_bit_serial"], rel=1e-9)
        assert outcome["itself as a 3-bit ANN", "bit-serial"] == "ties"
    else:
        assert report.energy_mj > quantised["energy_mj_bit_serial"]
        assert outcome["itself as a 3-bit ANN", "bit-serial"] == "loses"


def test_threshold_guidance_reaches_integrate_then_fire_neurons(fmnist_batch):
    qann, config = tiny_qann(signed=True)
    snn, _ = convert(qann, config, coding="phase")
    x, t = fmnist_batch[:2], torch.tensor([100, 800])
    with torch.no_grad():
        plain = snn(x, t)
        with threshold_scale(snn, 0.8):
            assert float(snn.tail_act.alpha) == pytest.approx(1.6)
            guided = snn(x, t)
    assert float(snn.tail_act.alpha) == 2.0 and not torch.equal(plain, guided)


def test_conversion_refuses_slack_and_another_t_for_exact_codes():
    qann, config = tiny_qann()
    with pytest.raises(ValueError, match="neither another T nor slack"):
        convert(qann, config, slack_steps=1, coding="count")
    with pytest.raises(ValueError, match="neither another T nor slack"):
        convert(qann, config, spike_steps=3, coding="phase")  # 2 bits: T = 2
    with pytest.raises(ValueError, match="spike coding"):
        convert(qann, config, coding="burst")
    snn, _ = convert(qann, config)
    neurons = [m for m in snn.modules() if isinstance(m, SignedIFNeuron | CountCodedNeuron)]
    assert neurons and all(isinstance(m, SignedIFNeuron) for m in neurons)  # the default: SDM's neuron


@pytest.mark.slow
@pytest.mark.parametrize("coding", ["count", "phase"])
def test_a_compiled_integrate_then_fire_snn_gives_the_eager_prediction(coding):
    """Unlike the signed IF neuron, these neurons are traced by torch.compile, in the shortcut (how the
    network samples) and in the simulation: both compiled, with a different threshold in every layer,
    match the eager network."""
    qann, config = tiny_qann(signed=True)
    distinct_thresholds(qann)
    snn, _ = convert(qann, config, coding=coding)
    x = torch.randn(4, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([10, 300, 700, 999])
    compiled = torch.compile(snn)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x, t), snn(x, t), rtol=1e-5, atol=1e-5)
        snn.simulate_spikes = True
        torch.testing.assert_close(compiled(x, t), snn(x, t), rtol=1e-5, atol=1e-5)


def test_ann2snn_coding_command(tmp_path, small_fmnist_dir, capsys):
    assert main(["train", "--preset", "fmnist-qann-signed-small", "--out", str(tmp_path / "qann"),
                 *two_training_steps(small_fmnist_dir)]) == 0
    out = tmp_path / "snn"
    assert main(["ann2snn", str(tmp_path / "qann"), str(out), "--coding", "phase", "--data-dir",
                 str(small_fmnist_dir)]) == 0
    summary = json.loads((out / "conversion.json").read_text())
    assert summary["spike_coding"] == "phase" and summary["spike_steps"] == 3  # 3-bit preset: T = 3
    assert summary["output_mse_vs_qann"] < 1e-8
    assert spikediff.load_config(out).model.spike_coding == "phase"
    assert main(["sample", str(out), "--out", str(tmp_path / "samples"), "--num", "2", "--steps", "2",
                 "--batch-size", "2", "--no-progress", "--no-png"]) == 0
    assert main(["energy", str(out), "--num-images", "2", "--data-dir", str(small_fmnist_dir)]) == 0
    energy = json.loads((out / "energy" / "energy.json").read_text())
    assert energy["report"]["spike_steps"] == 3 and energy["report"]["count_levels"] == 7
    assert energy["report"]["totals_per_evaluation"]["acs"] > 0
    capsys.readouterr()
    for refused in (["--slack-steps", "1"], ["--finetune"]):
        assert main(["ann2snn", str(tmp_path / "qann"), str(tmp_path / "other"), "--coding", "count", *refused]) == 1
        assert "--coding signed-if" in capsys.readouterr().err


@pytest.mark.parametrize("coding, slack", [("phase", 0), ("signed-if", 1)])
def test_the_energy_twin_of_a_converted_snn_is_its_trained_quantised_ann(fmnist_batch, coding, slack):
    """Undoing the conversion gives back the quantised ANN (weights and clips, slack steps' scaled thresholds
    too), and the energy report's twin is that trained network: its NeuroBench counts, which skip the
    activations' zeros, are those of the network converted, not of random weights."""
    from spikediff.ann2snn.conversion import quantised_ann_of
    from spikediff.energy.report import ENERGY_MODELS, ann_twin_report

    qann, config = tiny_qann(signed=True)
    distinct_thresholds(qann)
    snn, snn_config = convert(qann, config, slack_steps=slack, coding=coding)
    back = quantised_ann_of(snn, snn_config)
    x, t = fmnist_batch[:4], torch.tensor([0, 300, 600, 999])
    with torch.no_grad():
        torch.testing.assert_close(back(x, t), qann(x, t), rtol=1e-5, atol=1e-5)
    costs = ENERGY_MODELS["45nm-fp32"]
    twin = ann_twin_report(snn_config, x, [500], costs, snn)
    direct = measure_energy(qann, x, [500], NoiseSchedule.linear(), dense=True)
    assert "trained" in twin.model and "untrained" not in twin.model
    neurobench = direct.conventions()["neurobench"]["energy_mj"]
    assert twin.conventions()["neurobench"]["energy_mj"] == pytest.approx(neurobench, rel=1e-6)
    untrained = ann_twin_report(snn_config, x, [500], costs)
    assert "untrained" in untrained.model and untrained.energy_mj == pytest.approx(direct.energy_mj, rel=1e-9)
