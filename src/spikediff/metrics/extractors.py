"""Feature extractors for the scores: the project's dataset classifier, or Inception-v3 from a file.

Each takes uint8 images ``[N, C, H, W]`` and returns float64 features (for FID, KID,
precision/recall) and logits (for the Inception Score or its classifier analogue), and describes
itself (name, weights hash, resizing) for the protocol written beside every result.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from spikediff.checkpoint import sha256_file
from spikediff.data import to_model_range
from spikediff.metrics.classifier import IMAGE_SIZE, load_classifier, packaged_weights

INCEPTION_ENV = "SPIKEDIFF_INCEPTION_WEIGHTS"
INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"


class FeatureExtractor:
    """Base: subclasses set ``name``, ``weights``, ``resizing`` and implement ``_batch``."""

    name: str
    weights: Path
    resizing: str

    def _batch(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def __call__(self, images: torch.Tensor, batch_size: int = 200, progress: bool = False):
        """``(features [N, D], logits [N, K])`` as float64 NumPy arrays."""
        feats, logits = [], []
        with torch.no_grad():
            for start in tqdm(range(0, len(images), batch_size), disable=not progress, desc=self.name, unit="batch"):
                f, lg = self._batch(images[start : start + batch_size])
                feats.append(f.double().numpy())
                logits.append(lg.double().numpy())
        return np.concatenate(feats), np.concatenate(logits)

    def describe(self) -> dict:
        return {"extractor": self.name, "weights": self.weights.name, "weights_sha256": sha256_file(self.weights),
                "resizing": self.resizing}


class ClassifierFeatures(FeatureExtractor):
    """Penultimate (256-d) features of the project's classifier for ``dataset``."""

    def __init__(self, dataset: str, weights: str | Path | None = None) -> None:
        self.weights = Path(weights) if weights else packaged_weights(dataset)
        if not self.weights.is_file():
            raise FileNotFoundError(
                f"no {dataset} classifier at {self.weights}; train one with `spikediff train-classifier "
                f"--dataset {dataset}` or use --features inception"
            )
        self.name = f"{dataset}-classifier"
        self.resizing = f"bilinear to {IMAGE_SIZE}x{IMAGE_SIZE} if needed, then [-1, 1]"
        self.model = load_classifier(self.weights)
        self.img_ch = self.model.body[0].weight.shape[1]

    def _batch(self, images: torch.Tensor):
        if images.shape[1] == 3 and self.img_ch == 1:  # a grey dataset modelled as RGB (SDiT's presets)
            images = images.float().mean(1, keepdim=True).round().to(torch.uint8)
        if images.shape[1] != self.img_ch:
            raise ValueError(f"{self.name} expects {self.img_ch}-channel images, got {images.shape[1]} channels")
        return self.model(to_model_range(images, IMAGE_SIZE))


def find_inception_weights(path: str | Path | None = None) -> Path:
    """``path``, else ``$SPIKEDIFF_INCEPTION_WEIGHTS``; a clear error says how to get the file."""
    candidate = path or os.environ.get(INCEPTION_ENV)
    if candidate and Path(candidate).is_file():
        return Path(candidate)
    where = f"{candidate} does not exist; " if candidate else ""
    raise FileNotFoundError(
        f"{where}Inception-v3 FID weights are needed: download {INCEPTION_FILE} (pytorch-fid's release) or "
        "torch-fidelity's weights-inception-2015-12-05-6726825d.pth on a machine with a network, copy it here "
        f"and pass --inception-weights PATH or set ${INCEPTION_ENV}; or use --features classifier"
    )


class InceptionFeatures(FeatureExtractor):
    """torch-fidelity's TF-compatible Inception-v3 (2048-d pool features, unbiased logits) from a file.

    Grey images are repeated to 3 channels; torch-fidelity resizes to 299x299 itself, bilinearly,
    as the TensorFlow original does.
    """

    def __init__(self, weights: str | Path | None = None) -> None:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        self.weights = find_inception_weights(weights)
        self.name = "inception-v3"
        self.resizing = "grey repeated to RGB; torch-fidelity's TF-compatible bilinear resize to 299x299"
        self.model = FeatureExtractorInceptionV3(
            "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(self.weights)
        )

    def _batch(self, images: torch.Tensor):
        if images.shape[1] == 1:
            images = images.repeat(1, 3, 1, 1)
        return self.model(images.to(torch.uint8))


def make_extractor(kind: str, dataset: str, inception_weights: str | Path | None = None) -> FeatureExtractor:
    if kind == "classifier":
        return ClassifierFeatures(dataset)
    if kind == "inception":
        return InceptionFeatures(inception_weights)
    raise ValueError(f"unknown feature extractor {kind!r}; expected 'classifier' or 'inception'")
