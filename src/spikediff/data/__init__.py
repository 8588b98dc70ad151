"""Datasets and transforms."""

from spikediff.data.datasets import DATASETS, InMemoryImages, batch_transform, load_dataset
from spikediff.data.idx import read_idx
from spikediff.data.mnist import MissingDatasetError, load_mnist_like
from spikediff.data.transforms import to_model_range

__all__ = [
    "DATASETS",
    "InMemoryImages",
    "MissingDatasetError",
    "batch_transform",
    "load_dataset",
    "load_mnist_like",
    "read_idx",
    "to_model_range",
]
