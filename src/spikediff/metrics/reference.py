"""Reference features of a dataset split, cached per dataset, split, extractor (and its weights
hash) and resolution, with the recipe stored beside them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from spikediff.config import DataConfig
from spikediff.data import load_dataset, to_model_range, to_uint8
from spikediff.metrics.extractors import FeatureExtractor

MAX_REFERENCE_FEATURES = 10_000  # kept for KID and precision/recall; FID statistics use the whole split


def cache_dir() -> Path:
    root = os.environ.get("SPIKEDIFF_CACHE") or Path.home() / ".cache" / "spikediff"
    return Path(root) / "reference"


def reference_images(dataset: str, split: str, image_size: int, data_dir: str | Path | None = None) -> torch.Tensor:
    """The split's images exactly as training sees them (resized to ``image_size``), as uint8."""
    ds = load_dataset(DataConfig(dataset=dataset, random_flip=False), image_size, split, data_dir)
    if hasattr(ds, "images"):
        return torch.cat([to_uint8(to_model_range(ds.images[i : i + 5000], image_size))
                          for i in range(0, len(ds), 5000)])
    return torch.stack([ds[i] for i in range(len(ds))])


def reference_stats(
    extractor: FeatureExtractor, dataset: str, split: str = "train", image_size: int = 32,
    data_dir: str | Path | None = None, progress: bool = False,
) -> dict[str, np.ndarray]:
    """``mu``, ``sigma`` (whole split) and up to 10k ``features`` (seeded subset), cached."""
    info = extractor.describe()
    key = f"{dataset}-{split}-{info['extractor']}-{info['weights_sha256'][:12]}-{image_size}px"
    path = cache_dir() / f"{key}.npz"
    if path.is_file():
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    images = reference_images(dataset, split, image_size, data_dir)
    features, _ = extractor(images, progress=progress)
    pick = np.sort(np.random.default_rng(0).permutation(len(features))[:MAX_REFERENCE_FEATURES])
    stats = {"mu": features.mean(0), "sigma": np.cov(features, rowvar=False), "features": features[pick]}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **stats)
    os.replace(tmp, path)
    recipe = {**info, "dataset": dataset, "split": split, "num_images": len(features),
              "num_features_kept": len(pick), "image_size": image_size}
    path.with_suffix(".json").write_text(json.dumps(recipe, indent=2))
    return stats
