"""MNIST and Fashion-MNIST from local IDX files, found where users and Debian put them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spikediff.data.idx import read_idx
from spikediff.data.paths import MissingDatasetError, torchvision_cache, user_roots

DATASET_DIRS = {
    "fmnist": ("fashion-mnist", "FashionMNIST"),
    "mnist": ("mnist", "MNIST"),
}
DEBIAN_PACKAGES = {"fmnist": "dataset-fashion-mnist", "mnist": "dataset-mnist"}
_FILES = {"train": "train-{}-idx{}-ubyte", "test": "t10k-{}-idx{}-ubyte"}


def candidate_dirs(dataset: str, data_dir: str | Path | None = None) -> list[Path]:
    """Where the IDX files of ``dataset`` are looked for, in order.

    ``data_dir`` (``--data-dir``) only, when given; else ``$SPIKEDIFF_DATA``, Debian's
    ``/usr/share/datasets/<name>`` and ``~/.cache/torchvision``. Each named folder is tried as itself,
    its ``<name>`` subfolder and torchvision's layout (``<Name>/raw``).
    """
    debian_name, tv_name = DATASET_DIRS[dataset]
    dirs = []
    for root in user_roots(data_dir):
        dirs += [root, root / debian_name, root / tv_name / "raw"]
    if not data_dir:
        dirs += [Path("/usr/share/datasets") / debian_name, torchvision_cache() / tv_name / "raw"]
    return dirs


def _find(directory: Path, split: str, kind: str, ndim: int) -> Path | None:
    stem = _FILES[split].format(kind, ndim)
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def load_mnist_like(
    dataset: str, split: str = "train", data_dir: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 [N, 28, 28], labels uint8 [N])`` of ``dataset`` ("fmnist" | "mnist")."""
    if dataset not in DATASET_DIRS:
        raise ValueError(f"unknown IDX dataset {dataset!r}; expected one of {sorted(DATASET_DIRS)}")
    if split not in _FILES:
        raise ValueError(f"unknown split {split!r}; expected 'train' or 'test'")
    dirs = candidate_dirs(dataset, data_dir)
    for directory in dirs:
        images, labels = _find(directory, split, "images", 3), _find(directory, split, "labels", 1)
        if images and labels:
            return read_idx(images), read_idx(labels)
    raise MissingDatasetError(
        f"{dataset} ({split}) not found; looked in: {', '.join(map(str, dirs))}. Provide it by "
        f"`apt-get install {DEBIAN_PACKAGES[dataset]}`, by putting the IDX files in a folder given as "
        f"--data-dir or $SPIKEDIFF_DATA, or by torchvision's download where a network exists."
    )
