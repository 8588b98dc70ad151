"""Architecture facts of the papers (parameter counts, layer layout) and the model contract."""

from __future__ import annotations

import pytest
import torch

import spikediff
from spikediff.models import SpikingUNet, build_model
from spikediff.snn import spiking_neurons
from tests.conftest import TINY_ANN, TINY_SNN


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.slow
def test_paper_parameter_counts():
    snn = spikediff.build("sddpm-cifar10")
    assert n_params(snn) == 66_696_413
    assert f"{n_params(snn) / 2**20:.2f}" == "63.61"  # the paper's "63.61 M"
    ann = spikediff.build("ddpm-cifar10")
    assert n_params(ann) == 67_602_691
    assert f"{n_params(ann) / 2**20:.2f}" == "64.47"
    # SDM's quantised ANN: the reference ANN2SNN/model.py UNet(ch 128, [1,2,2,2], 2 blocks, bit 2) counts
    # 34,292,295 with GroupNorm; BatchNorm has the same affine parameters, one clip per quantiser
    qann = spikediff.build("sdm-qann-cifar10-b2")
    assert n_params(qann) == 34_292_295


def test_spiking_unet_layout():
    model = spikediff.build("sddpm-cifar10")
    assert isinstance(model, SpikingUNet)
    # 4 levels x 2 res blocks + 3 downsamples; 4 levels x 3 res blocks + 3 upsamples; 2 middle
    assert len(model.down) == 11 and len(model.up) == 15 and len(model.middle) == 2
    assert model.head.temporal_conv.weight.shape == (3, 3, 3, 3, 1)
    assert not model.time_embedding.table.requires_grad
    assert model.head.conv.weight.abs().max() < 1e-4  # tail gain 1e-5
    # no attention anywhere; every neuron is an IF neuron with threshold 1
    assert not any("attn" in name for name, _ in model.named_modules())
    assert {type(n).__name__ for n in spiking_neurons(model)} == {"IFNeuron"}


@pytest.mark.parametrize("config", [TINY_SNN, TINY_ANN], ids=["snn", "ann"])
def test_model_contract_shapes(config):
    model = build_model(config)
    x, t = torch.randn(3, 1, 32, 32), torch.tensor([0, 1, 999])
    assert model(x, t).shape == x.shape


def test_spiking_unet_passes_only_spikes_between_layers():
    model = build_model(TINY_SNN)
    seen = []
    for n in spiking_neurons(model):
        n.register_forward_hook(lambda m, i, o: seen.append(o))
    model(torch.randn(2, 1, 32, 32), torch.tensor([3, 400]))
    assert len(seen) == len(spiking_neurons(model))
    for s in seen:
        assert s.shape[0] == TINY_SNN.spike_steps
        assert set(s.unique().tolist()) <= {0.0, 1.0}


def test_the_output_depends_on_the_image_the_step_and_each_image_alone():
    """The network reads x and t (a model that ignored either would still be 'deterministic'), and one
    image's output does not depend on the others in its batch (eval mode: no batch statistics)."""
    torch.manual_seed(123)
    model = build_model(TINY_SNN).eval()
    x, t = torch.randn(2, 1, 32, 32), torch.tensor([10, 900])
    with torch.no_grad():
        out = model(x, t)
        assert (model(x, t.flip(0)) - out).abs().max() > 1e-6  # t matters
        assert (model(torch.randn_like(x), t) - out).abs().max() > 1e-6  # x matters
        alone = model(x[:1], t[:1])
    assert torch.allclose(alone, out[:1], atol=1e-6)


def test_no_state_leaks_between_calls():
    torch.manual_seed(0)
    model = build_model(TINY_SNN).eval()
    x1, x2 = torch.randn(2, 1, 32, 32), torch.randn(2, 1, 32, 32) * 3
    t = torch.tensor([10, 900])
    with torch.no_grad():
        first = model(x1, t)
        model(x2, t)
        assert torch.equal(model(x1, t), first)


def test_membrane_output_layer_weights():
    from spikediff.models.spiking_unet import MembraneOutputLayer

    h = torch.ones(4, 1, 1)
    h[0] = 2.0
    out = MembraneOutputLayer(0.8)(h)
    assert out.item() == pytest.approx(2 * 0.8**3 + 0.8**2 + 0.8 + 1)
