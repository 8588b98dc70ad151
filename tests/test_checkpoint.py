"""Checkpoint directories, configs, and import of the reference SDDPM checkpoints."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

import spikediff
from spikediff.checkpoint import CheckpointError
from spikediff.config import Config, NeuronConfig
from spikediff.reference_checkpoints.sddpm import import_sddpm
from tests.conftest import TINY_SNN, randomise_batchnorm, to_reference_layout


def tiny_config() -> Config:
    return replace(spikediff.get_preset("fmnist-snn-small"), name="tiny", model=TINY_SNN)


def test_config_json_round_trip():
    cfg = replace(tiny_config(), model=replace(TINY_SNN, neuron=NeuronConfig(kind="lif", soft_reset=True)))
    back = Config.from_json(cfg.to_json())
    assert back == cfg and isinstance(back.model.ch_mult, tuple)
    with pytest.raises(ValueError, match="unknown config key"):
        Config.from_dict({"model": {"chanels": 3}})


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    cfg = tiny_config()
    model = spikediff.build(cfg)
    randomise_batchnorm(model)
    model.eval()
    spikediff.save(model, cfg, tmp_path / "ckpt")
    files = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert files == ["checksums.json", "config.json", "model.safetensors"]
    loaded = spikediff.load(tmp_path / "ckpt")
    assert not loaded.training and spikediff.load_config(tmp_path / "ckpt") == cfg
    x, t = torch.randn(2, 1, 32, 32), torch.tensor([1, 600])
    with torch.no_grad():
        assert torch.equal(model(x, t), loaded(x, t))
    with pytest.raises(FileExistsError):
        spikediff.save(model, cfg, tmp_path / "ckpt")


def test_corrupt_or_missing_checkpoint_is_reported(tmp_path):
    cfg = tiny_config()
    spikediff.save(spikediff.build(cfg), cfg, tmp_path / "ckpt")
    weights = tmp_path / "ckpt" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        spikediff.load(tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="config.json is missing"):
        spikediff.load(tmp_path / "nowhere")


def test_an_edited_config_is_caught_by_its_checksum(tmp_path):
    """T=4 weights must not be sampled silently as a T=2 model because someone edited config.json."""
    cfg = tiny_config()
    spikediff.save(spikediff.build(cfg), cfg, tmp_path / "ckpt")
    config_file = tmp_path / "ckpt" / "config.json"
    data = json.loads(config_file.read_text())
    data["model"]["spike_steps"] += 1
    config_file.write_text(json.dumps(data, indent=1))
    with pytest.raises(CheckpointError, match="config.json is corrupt or truncated"):
        spikediff.load(tmp_path / "ckpt")


def test_import_of_reference_layout_gives_same_outputs(tmp_path):
    cfg = replace(tiny_config(), model=replace(TINY_SNN, ch_mult=(1, 2, 2), spike_steps=3))
    model = spikediff.build(cfg)
    randomise_batchnorm(model)
    torch.nn.init.normal_(model.head.conv.weight, std=0.1)  # make the body visible in the output
    model.eval()
    ref_state = to_reference_layout(model.state_dict())
    for name in ("module.conv_identity.weight", "module.downblocks.2.temb_proj.1.weight",
                 "module.downblocks.1.conv.weight", "module.T_output_layer.weight", "module.last_bn.running_var"):
        assert name in ref_state
    torch.save({"net_model": ref_state, "step": 10}, tmp_path / "ref.pt")
    import_sddpm(tmp_path / "ref.pt", tmp_path / "imported", spike_steps=3)
    imported = spikediff.load(tmp_path / "imported")
    assert imported.config.ch_mult == (1, 2, 2) and imported.config.num_res_blocks == 1
    x, t = torch.randn(3, 1, 32, 32), torch.tensor([0, 321, 999])
    with torch.no_grad():
        torch.testing.assert_close(imported(x, t), model(x, t), rtol=0, atol=0)
