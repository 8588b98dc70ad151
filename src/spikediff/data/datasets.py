"""One entry point for every dataset: uint8 images in, model-range batches out.

Datasets return uint8 ``[C, H, W]`` at their stored size; :func:`batch_transform` resizes a whole
batch at once, scales it to [-1, 1] and flips it where the preset says (CIFAR-10 only in SDDPM).
"""

from __future__ import annotations

from pathlib import Path

import torch

from spikediff.config import DataConfig
from spikediff.data.cifar10 import load_cifar10
from spikediff.data.folder import FOLDER_NAMES, find_image_folder
from spikediff.data.mnist import DATASET_DIRS, load_mnist_like
from spikediff.data.transforms import to_model_range

DATASETS = (*DATASET_DIRS, "cifar10", *FOLDER_NAMES)
# the size each dataset's images are stored at (the folder datasets are resized as they are read)
STORED_SIZES = {"mnist": 28, "fmnist": 28, "kmnist": 28, "letters": 28, "cifar10": 32}


class InMemoryImages(torch.utils.data.Dataset):
    """A uint8 image tensor ``[N, C, H, W]`` with its labels."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        self.images = images if images.dim() == 4 else images.unsqueeze(1)
        self.labels = labels

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]


def load_dataset(
    config: DataConfig, image_size: int, split: str = "train", data_dir: str | Path | None = None
) -> torch.utils.data.Dataset:
    """The dataset ``config.dataset`` names, as uint8 images (see the module docstring)."""
    name = config.dataset
    if name in DATASET_DIRS:
        images, labels = load_mnist_like(name, split, data_dir)
    elif name == "cifar10":
        images, labels = load_cifar10(split, data_dir)
    elif name in FOLDER_NAMES:
        if split != "train":
            raise ValueError(f"{name} is read from one folder of images: it has only a 'train' split here")
        return find_image_folder(name, image_size, data_dir)
    else:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    return InMemoryImages(torch.from_numpy(images.copy()), torch.from_numpy(labels.astype("int64")))


def batch_transform(
    images: torch.Tensor, image_size: int, random_flip: bool, generator: torch.Generator | None = None
) -> torch.Tensor:
    """uint8 batch -> float ``[B, C, size, size]`` in [-1, 1], horizontally flipped at random if asked."""
    x = to_model_range(images, image_size)
    if random_flip:
        flip = torch.rand(x.shape[0], generator=generator) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1).to(x.device), x.flip(-1), x)
    return x
