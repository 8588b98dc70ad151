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
