"""CIFAR-10 from its python batches (``cifar-10-batches-py``), the format torchvision downloads."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from spikediff.data.paths import MissingDatasetError, torchvision_cache, user_roots

_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
_TEST = ["test_batch"]


def candidate_dirs(data_dir: str | Path | None = None) -> list[Path]:
    """``--data-dir`` only, when given; else ``$SPIKEDIFF_DATA`` and torchvision's cache (each as the
    folder itself or its ``cifar-10-batches-py``)."""
    roots = user_roots(data_dir) + ([] if data_dir else [torchvision_cache()])
    return [d for root in roots for d in (root, root / "cifar-10-batches-py")]


def load_cifar10(split: str = "train", data_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 [N, 3, 32, 32], labels uint8 [N])``."""
    names = {"train": _TRAIN, "test": _TEST}[split]
    dirs = candidate_dirs(data_dir)
    for directory in dirs:
        if all((directory / n).is_file() for n in names):
            images, labels = [], []
            for n in names:
                with open(directory / n, "rb") as f:
                    batch = pickle.load(f, encoding="latin1")
                images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                labels.append(np.asarray(batch["labels"], dtype=np.uint8))
            return np.concatenate(images), np.concatenate(labels)
    raise MissingDatasetError(
        f"cifar10 ({split}) not found; looked in: {', '.join(map(str, dirs))}. Provide it by extracting "
        "cifar-10-python.tar.gz into a folder given as --data-dir or $SPIKEDIFF_DATA, or by torchvision's "
        "download where a network exists."
    )
