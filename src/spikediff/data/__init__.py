"""Datasets and transforms."""

from spikediff.data.classes import CLASS_NAMES, class_names
from spikediff.data.datasets import DATASETS, STORED_SIZES, InMemoryImages, batch_transform, load_dataset
from spikediff.data.idx import read_idx
from spikediff.data.mnist import load_mnist_like
from spikediff.data.paths import MissingDatasetError
from spikediff.data.transforms import match_channels, to_model_range, to_uint8

__all__ = [
    "STORED_SIZES",
    "CLASS_NAMES",
    "DATASETS",
    "InMemoryImages",
    "MissingDatasetError",
    "batch_transform",
    "class_names",
    "load_dataset",
    "load_mnist_like",
    "match_channels",
    "read_idx",
    "to_model_range",
    "to_uint8",
]
