"""Operation counts and energy: hand-set networks with known spikes, the ANN twin's 6.35 GMAC, and the
The energy convention's split of the Spiking U-Net's layers into MAC and AC layers."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import spikediff
from spikediff.cli import main
from spikediff.energy import ENERGY_MODELS, OpCounter, measure_energy
from spikediff.models import build_model
from spikediff.snn import IFNeuron
from tests.conftest import TINY_SNN, randomise_batchnorm


class HandSet(nn.Module):
    """conv1 (real input, 1 -> 2 channels, 1x1) -> IF neuron (T = 2) -> conv2 (spikes, 2 -> 1, 1x1).

    With x = 0.6 everywhere: channel 0 gets 2 * 0.6 = 1.2 and fires at both steps, channel 1 gets
    0.6, charges to 1.2 and fires at the second step only: 3 spikes of 4 per pixel -> rate 0.75.
    """

    spike_steps = 2

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 1, bias=False)
        self.neuron = IFNeuron()
        self.conv2 = nn.Conv2d(2, 1, 1, bias=False)
        with torch.no_grad():
            self.conv1.weight.copy_(torch.tensor([2.0, 1.0]).view(2, 1, 1, 1))
            self.conv2.weight.fill_(1.0)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = self.conv1(x).unsqueeze(0).repeat(2, 1, 1, 1, 1)  # [T=2, B, 2, H, W]
        s = self.neuron(h)
        return self.conv2(s.flatten(0, 1)).view(2, *x.shape).sum(0)


def test_hand_set_network_counts_exactly():
    model = HandSet()
    x = torch.full((3, 1, 4, 4), 0.6)
    with OpCounter(model) as counter:
        model(x, torch.zeros(3, dtype=torch.long))
    c1, c2 = counter.layers["conv1"], counter.layers["conv2"]
    assert not c1.spike_input and c1.dense_macs == 3 * 16 * 2  # 2 outputs per pixel, 1 input each
    assert c2.spike_input and c2.dense_macs == 2 * 3 * 16 * 2  # T x B x pixels x 2 inputs
    assert c2.input_nonzeros == 3 * 3 * 16 and c2.firing_rate == pytest.approx(0.75)


def test_hand_set_network_energy_report():
    model = HandSet()
    # at t = 0 the noise is ~1% of x, far too little to move any membrane across the threshold
    report = measure_energy(model, torch.full((3, 1, 4, 4), 0.6), [0], name="hand-set", seed=0)
    layers = {layer.name: layer for layer in report.layers}
    assert layers["conv1"].input == "real" and layers["conv1"].macs == 32  # per image
    assert layers["conv2"].input == "spikes" and layers["conv2"].dense_macs == 64
    assert layers["conv2"].firing_rate == pytest.approx(0.75)
    assert layers["conv2"].acs == pytest.approx(48)
    e = ENERGY_MODELS["45nm-fp32"]
    assert report.energy_mj == pytest.approx((32 * e.e_mac_pj + layers["conv2"].acs * e.e_ac_pj) * 1e-9)


def test_neurobench_counts_skip_padding_zero_inputs_and_zero_weights():
    """A 3x3 conv (padding 1) on a 4x4 image: 16 x 9 = 144 taps by the field's count; inside the
    image, per axis 2 + 3 + 3 + 2 = 10 taps, so 100 (NeuroBench's Dense). The centre weight is 0 (16
    taps fewer) and pixel (0, 0) is 0: read by outputs (0, 1), (1, 0), (1, 1) through nonzero weights
    (output (0, 0) reads it through the centre): 100 - 16 - 3 = 81 effective operations."""
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=True)
    with torch.no_grad():
        conv.weight.fill_(0.5)
        conv.weight[0, 0, 1, 1] = 0.0
    x = torch.full((1, 1, 4, 4), 0.3)
    x[0, 0, 0, 0] = 0.0
    with OpCounter(conv, batch=1) as counter:
        conv(x)
    layer = counter.layers[""]
    assert layer.dense_macs == 144 and layer.neurobench_dense == 100 and layer.neurobench_effective == 81
    assert layer.input_sparsity == pytest.approx(1 / 16)


def test_fair_baselines_of_the_hand_set_network():
    """Per image: conv2 reads T x 2 channels x 16 pixels = 64 spike inputs, 48 of them spikes (the field:
    48 ACs). Its quantised-ANN twin has ceil(log2(T + 1)) = 2-bit activations: counts 2 (binary 10) and 1
    (01), one set bit each: 32 bit-serial adds; dense, 2 bits x 32 MACs = 64 adds. conv1 (real input)
    runs once in both: 32 MACs. Memory in bits: conv1 reads 2 fp32 weights once (64), 16 fp32 inputs
    (512), writes 32 fp32 outputs (1,024); the neuron reads and writes a 32-bit membrane for each of its
    64 outputs (4,096); conv2 reads its 2 weights at each of 2 steps (128), 64 one-bit spikes (64) and
    writes 32 outputs (1,024): 6,912. As a quantised ANN conv2 reads its weights once (64), 32 two-bit
    activations (64), writes 16 outputs (512): 1,600 + 640 = 2,240 bits."""
    from spikediff.energy.baselines import SRAM_PJ_PER_BIT, memory_bits

    report = measure_energy(HandSet(), torch.full((3, 1, 4, 4), 0.6), [0], name="hand-set", seed=0)
    layers = {layer.name: layer for layer in report.layers}
    assert layers["conv2"].count_bit_ops == 32 and layers["conv2"].steps == 2 and layers["conv1"].steps == 1
    assert report.neurons[0].name == "neuron" and report.neurons[0].firing_rate == pytest.approx(0.75)
    assert memory_bits(report) == 6912 and memory_bits(report, quantised_bits=2) == 2240
    e = report.energy_model
    conventions = report.conventions()
    quantised = conventions["quantised_ann"]
    assert quantised["bits"] == 2
    assert quantised["energy_mj_bit_serial"] == pytest.approx((32 * e.e_mac_pj + 32 * e.e_ac_pj) * 1e-9)
    assert quantised["energy_mj_dense"] == pytest.approx((32 * e.e_mac_pj + 64 * e.e_ac_pj) * 1e-9)
    assert conventions["memory"]["energy_mj"] == pytest.approx(6912 * SRAM_PJ_PER_BIT * 1e-9)
    # 1x1 convs have no padding taps and these weights no zeros: NeuroBench counts what the field counts
    assert conventions["neurobench"]["energy_mj"] == pytest.approx(report.energy_mj)


@pytest.mark.slow
def test_ann_twin_of_the_paper_costs_6_35_gmac_and_29_2_mj():
    model = spikediff.build("ddpm-cifar10")
    report = measure_energy(model, torch.zeros(1, 3, 32, 32), [500], name="ddpm-cifar10")
    assert report.acs == 0
    assert round(report.macs / 1e9, 2) == 6.35
    assert report.energy_mj == pytest.approx(29.2, abs=0.05)  # the paper's 29.23 mJ
    assert report.per_image_mj(1000) == pytest.approx(1000 * report.energy_mj)


def test_spiking_unet_layers_split_as_in_spec():
    """The energy convention: real-valued inputs (MAC) for the stem conv, 1x1 shortcuts, head convs and the time
    MLPs; spikes (AC) for conv_identity, res-block convs, down and up convs."""
    model = build_model(TINY_SNN)
    randomise_batchnorm(model)  # trained-like statistics: no real-valued layer sees an all-zero input
    report = measure_energy(model, torch.rand(2, 1, 32, 32) * 2 - 1, [10, 900])
    kinds = {layer.name: layer.input for layer in report.layers}
    real = {n for n, k in kinds.items() if k == "real"}
    spikes = {n for n, k in kinds.items() if k == "spikes"}
    assert {"stem.conv_in", "head.conv", "head.temporal_conv", "time_embedding.linear1"} <= real
    assert all(n.endswith(("shortcut", "temb_proj")) or n.startswith(("stem.conv_in", "head", "time_embedding"))
               for n in real)
    assert "stem.conv_out" in spikes
    assert all(n.endswith(("conv1", "conv2", ".conv", "stem.conv_out")) for n in spikes)
    assert {"down.1.conv", "up.2.conv"} <= spikes  # downsample and upsample
    assert all(0 <= layer.firing_rate <= 1 for layer in report.layers)


def test_energy_command_writes_report_and_plots(tmp_path):
    out = tmp_path / "energy"
    assert main(["energy", "--preset", "fmnist-snn-small", "--num-images", "4", "--t", "0,999",
                 "--steps", "50", "--out", str(out)]) == 0
    result = json.loads((out / "energy.json").read_text())
    assert result["report"]["diffusion_steps_measured"] == [0, 999]
    assert result["energy_per_image_mj"] == pytest.approx(50 * result["report"]["totals_per_evaluation"]["energy_mj"])
    assert 0 < result["snn_over_ann"] < 1
    for png in ("energy_by_layer.png", "firing_rates.png"):
        assert (out / png).stat().st_size > 10_000
