"""Neuron dynamics against hand-computed sequences."""

from __future__ import annotations

import math

import pytest
import torch

from spikediff.config import NeuronConfig
from spikediff.models import build_model
from spikediff.snn import IFNeuron, LIFNeuron, make_neuron, spike, spiking_neurons, threshold_scale
from tests.conftest import TINY_SNN


def seq(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).view(-1, 1)


def test_if_hard_reset_sequence():
    # v: 0.6, 1.2 -> fire, reset to 0; 0.6, 1.2 -> fire
    out = IFNeuron()(seq(0.6, 0.6, 0.6, 0.6))
    assert out.flatten().tolist() == [0, 1, 0, 1]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_spike_is_u_at_or_above_zero_in_us_dtype(dtype):
    """The arithmetic Heaviside (sign + 1, clamped) fires exactly where ``u >= 0``: at 0 and -0.0, at the
    smallest magnitudes either side, at the infinities, and on random membranes."""
    edges = torch.tensor([0.0, -0.0, 1e-30, -1e-30, float("inf"), float("-inf"), 1.0, -1.0])
    u = torch.cat([edges, torch.randn(1000, generator=torch.Generator().manual_seed(0))]).to(dtype)
    out = spike(u)
    assert out.dtype == dtype
    assert torch.equal(out, (u >= 0).to(dtype))
    assert out[:6].tolist() == [1.0, 1.0, 1.0, 0.0, 1.0, 0.0]


def test_if_fires_at_exact_threshold_and_resets_to_v_reset():
    out = IFNeuron(NeuronConfig(v_reset=-0.5))(seq(1.5, 1.0, 0.4))
    # the membrane starts at v_reset: -0.5+1.5 = 1.0 fires (u = 0), v -> -0.5; 0.5 no; 0.9 no
    assert out.flatten().tolist() == [1, 0, 0]


def test_if_soft_reset_subtracts_threshold():
    # v: 0.7; 1.4 fire -> 0.4; 1.1 fire -> 0.1; 0.8
    out = IFNeuron(NeuronConfig(soft_reset=True))(seq(0.7, 0.7, 0.7, 0.7))
    assert out.flatten().tolist() == [0, 1, 1, 0]


def test_lif_decay_input_sequence():
    # tau 2: v = v + (x - v) / 2 ; x = 1.5: 0.75, 1.125 fire -> 0, 0.75, 1.125 fire
    out = LIFNeuron(NeuronConfig(kind="lif", tau=2.0))(seq(1.5, 1.5, 1.5, 1.5))
    assert out.flatten().tolist() == [0, 1, 0, 1]


def test_lif_without_input_decay():
    # v = v - v / 2 + x ; x = 0.6: 0.6, 0.9, 1.05 fire -> 0, 0.6
    out = LIFNeuron(NeuronConfig(kind="lif", decay_input=False))(seq(0.6, 0.6, 0.6, 0.6))
    assert out.flatten().tolist() == [0, 0, 1, 0]


@pytest.mark.parametrize("u", [-0.7, 0.0, 0.2, 1.3])
def test_atan_surrogate_gradient(u):
    x = torch.tensor([u], requires_grad=True)
    spike(x, "atan", 2.0).sum().backward()
    expected = 2.0 / 2 / (1 + (math.pi / 2 * 2.0 * u) ** 2)
    assert x.grad.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("alpha", [1.0, 4.0])
def test_sigmoid_surrogate_gradient(alpha):
    x = torch.tensor([0.3], requires_grad=True)
    spike(x, "sigmoid", alpha).sum().backward()
    s = 1 / (1 + math.exp(-alpha * 0.3))
    assert x.grad.item() == pytest.approx(alpha * s * (1 - s), rel=1e-6)


def sg(u: float) -> float:
    return 1.0 / (1 + (math.pi * u) ** 2)  # ATan, alpha 2


@pytest.mark.parametrize("detach", [False, True])
def test_reset_gradient_flows_unless_detached(detach):
    # x = [1.2, 0.3]: step 1 fires (u = 0.2), hard reset; step 2: v = 0.3, u = -0.7.
    # d s2 / d x1 = sg(-0.7) * d v1' / d x1 with v1' = (1 - s1) x1: -x1 * sg(0.2) unless detached.
    x = torch.tensor([[1.2], [0.3]], requires_grad=True)
    out = IFNeuron(NeuronConfig(detach_reset=detach))(x)
    assert out.flatten().tolist() == [1, 0]
    out[1].sum().backward()
    expected = 0.0 if detach else sg(-0.7) * (-1.2 * sg(0.2))
    assert x.grad[0].item() == pytest.approx(expected, rel=1e-5, abs=1e-12)
    assert x.grad[1].item() == pytest.approx(sg(-0.7), rel=1e-6)


def test_neurons_are_stateless_between_calls():
    n = IFNeuron()
    x = torch.rand(4, 3, 5) * 1.5
    first = n(x)
    n(torch.full((4, 3, 5), 0.9))  # would leave charge behind in a stateful neuron
    assert torch.equal(n(x), first)


def test_make_neuron_rejects_unknown_kind():
    with pytest.raises(ValueError, match="unknown neuron"):
        make_neuron(NeuronConfig(kind="izhikevich"))


def test_threshold_scale_changes_and_restores_every_neuron():
    model = build_model(TINY_SNN)
    neurons = spiking_neurons(model)
    assert len(neurons) > 5
    with threshold_scale(model, 0.997):
        assert all(n.v_threshold == pytest.approx(0.997) for n in neurons)
    assert all(n.v_threshold == 1.0 for n in neurons)
    with pytest.raises(RuntimeError), threshold_scale(model, 1.5):
        raise RuntimeError("boom")
    assert all(n.v_threshold == 1.0 for n in neurons)


def test_threshold_scale_one_is_identity_and_lower_threshold_spikes_more():
    torch.manual_seed(0)
    model = build_model(TINY_SNN).eval()
    x, t = torch.randn(2, 1, 32, 32), torch.tensor([5, 700])
    with torch.no_grad():
        base = model(x, t)
        with threshold_scale(model, 1.0):
            same = model(x, t)
        counts = {}
        for scale in (0.8, 1.0):
            total = []
            neurons = spiking_neurons(model)
            hooks = [n.register_forward_hook(lambda m, i, o, total=total: total.append(o.sum())) for n in neurons]
            with threshold_scale(model, scale):
                model(x, t)
            for h in hooks:
                h.remove()
            counts[scale] = sum(total)
    assert torch.equal(base, same)
    assert counts[0.8] > counts[1.0]
