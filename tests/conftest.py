"""Shared fixtures: tiny model configs, a real Fashion-MNIST batch and a tiny Fashion-MNIST folder."""

from __future__ import annotations

import gzip
import os
import re
import tempfile

import numpy as np
import pytest
import torch

from spikediff.config import ModelConfig
from spikediff.data import load_mnist_like, to_model_range

# Caches (fast-path timings, reference statistics) go to a directory of this test session, never the
# user's: the tests neither read timings of the user's runs nor leave theirs behind. Set at import, so
# subprocesses started by tests inherit it.
os.environ["SPIKEDIFF_CACHE"] = tempfile.mkdtemp(prefix="spikediff-test-cache-")

TINY_SNN = ModelConfig(arch="spiking_unet", ch=32, ch_mult=(1, 2), num_res_blocks=1, img_ch=1, spike_steps=2)
TINY_ANN = ModelConfig(arch="ann_unet", ch=32, ch_mult=(1, 2), num_res_blocks=1, img_ch=1)


@pytest.fixture(scope="session")
def fmnist_batch() -> torch.Tensor:
    """32 real Fashion-MNIST training images, 32x32 in [-1, 1] (the papers' transform)."""
    images, _ = load_mnist_like("fmnist", "train")
    pick = np.random.default_rng(0).choice(len(images), 32, replace=False)
    return to_model_range(torch.from_numpy(images[np.sort(pick)].copy()), 32)


def write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def small_fmnist_dir(tmp_path, monkeypatch):
    """A 64-image Fashion-MNIST in its own folder, so the whole evaluation runs on it quickly."""
    images, labels = load_mnist_like("fmnist", "train")
    for prefix in ("train", "t10k"):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images[:64])
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", labels[:64])
    monkeypatch.setenv("SPIKEDIFF_CACHE", str(tmp_path / "cache"))
    return tmp_path


def randomise_batchnorm(model: torch.nn.Module) -> None:
    """Non-trivial BN statistics, so that eval-mode outputs depend on every buffer."""
    gen = torch.Generator().manual_seed(5)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)


# The reference Spk_UNet's module names (AndyCao1125/SDDPM, model/SpikingUNet.py), written out here
# independently of the converter's own table so that a mistake in either shows up.
_TO_REFERENCE = [
    (r"^time_embedding\.table$", "time_embedding.timembedding.0.weight"),
    (r"^time_embedding\.linear1\.", "time_embedding.timembedding.1."),
    (r"^time_embedding\.linear2\.", "time_embedding.timembedding.3."),
    (r"^stem\.conv_in\.", "conv."),
    (r"^stem\.bn_in\.", "bn."),
    (r"^stem\.conv_out\.", "conv_identity."),
    (r"^stem\.bn_out\.", "bn_identity."),
    (r"^down\.", "downblocks."),
    (r"^middle\.", "middleblocks."),
    (r"^up\.", "upblocks."),
    (r"\.temb_proj\.", ".temb_proj.1."),
    (r"^head\.bn\.", "tail_bn."),
    (r"^head\.conv\.", "tail_conv."),
    (r"^head\.temporal_conv\.", "T_output_layer."),
    (r"^head\.temporal_bn\.", "last_bn."),
]


def to_reference_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for pattern, repl in _TO_REFERENCE:
            key = re.sub(pattern, repl, key)
        out["module." + key] = value.clone()  # the reference trains under DataParallel
    return out
