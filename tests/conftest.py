"""Shared fixtures: tiny model configs and a real Fashion-MNIST batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spikediff.config import ModelConfig
from spikediff.data import load_mnist_like, to_model_range

TINY_SNN = ModelConfig(arch="spiking_unet", ch=32, ch_mult=(1, 2), num_res_blocks=1, img_ch=1, spike_steps=2)
TINY_ANN = ModelConfig(arch="ann_unet", ch=32, ch_mult=(1, 2), num_res_blocks=1, img_ch=1)


@pytest.fixture(scope="session")
def fmnist_batch() -> torch.Tensor:
    """32 real Fashion-MNIST training images, 32x32 in [-1, 1] (the papers' transform)."""
    images, _ = load_mnist_like("fmnist", "train")
    pick = np.random.default_rng(0).choice(len(images), 32, replace=False)
    return to_model_range(torch.from_numpy(images[np.sort(pick)].copy()), 32)
