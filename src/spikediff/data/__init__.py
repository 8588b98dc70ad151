"""Datasets and transforms."""

from spikediff.data.idx import read_idx
from spikediff.data.mnist import MissingDatasetError, load_mnist_like
from spikediff.data.transforms import to_model_range

__all__ = ["MissingDatasetError", "load_mnist_like", "read_idx", "to_model_range"]
