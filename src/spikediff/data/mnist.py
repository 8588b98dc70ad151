"""MNIST, Fashion-MNIST, KMNIST and EMNIST-Letters from local IDX files, found where users, Debian and
torchvision put them.

EMNIST stores each image transposed (column-major, as the NIST originals were scanned) and labels
its letters 1-26; they are read upright and labelled 0-25 (a-z), so every dataset here has labels
0..K-1 and a class-conditional model needs no offset.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spikediff.data.idx import read_idx
from spikediff.data.paths import MissingDatasetError, torchvision_cache, user_roots

DATASET_DIRS = {
    "fmnist": ("fashion-mnist", "FashionMNIST"),
    "mnist": ("mnist", "MNIST"),
    "kmnist": ("kmnist", "KMNIST"),
    "letters": ("emnist", "EMNIST"),
}
DEBIAN_PACKAGES = {"fmnist": "dataset-fashion-mnist", "mnist": "dataset-mnist"}
_MNIST_FILES = {"train": "train-{}-idx{}-ubyte", "test": "t10k-{}-idx{}-ubyte"}
_FILES = {name: _MNIST_FILES for name in ("fmnist", "mnist", "kmnist")} | {
    "letters": {"train": "emnist-letters-train-{}-idx{}-ubyte", "test": "emnist-letters-test-{}-idx{}-ubyte"},
}


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


def _find(directory: Path, dataset: str, split: str, kind: str, ndim: int) -> Path | None:
    stem = _FILES[dataset][split].format(kind, ndim)
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def load_mnist_like(
    dataset: str, split: str = "train", data_dir: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 [N, 28, 28], labels uint8 [N])`` of ``dataset`` (a key of :data:`DATASET_DIRS`),
    upright and labelled from 0 (see the module docstring)."""
    if dataset not in DATASET_DIRS:
        raise ValueError(f"unknown IDX dataset {dataset!r}; expected one of {sorted(DATASET_DIRS)}")
    if split not in _MNIST_FILES:
        raise ValueError(f"unknown split {split!r}; expected 'train' or 'test'")
    dirs = candidate_dirs(dataset, data_dir)
    for directory in dirs:
        images = _find(directory, dataset, split, "images", 3)
        labels = _find(directory, dataset, split, "labels", 1)
        if images and labels:
            if dataset == "letters":
                return np.ascontiguousarray(read_idx(images).transpose(0, 2, 1)), read_idx(labels) - 1
            return read_idx(images), read_idx(labels)
    debian = f"`apt-get install {DEBIAN_PACKAGES[dataset]}`, " if dataset in DEBIAN_PACKAGES else ""
    raise MissingDatasetError(
        f"{dataset} ({split}) not found; looked in: {', '.join(map(str, dirs))}. Provide it by {debian}"
        f"putting the IDX files ({_FILES[dataset][split].format('images', 3)}[.gz] and its labels) in a folder "
        "given as --data-dir or $SPIKEDIFF_DATA, or by torchvision's download where a network exists."
    )
