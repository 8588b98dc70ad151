"""Evaluate generated images against a dataset: FID, KID, IS (or its classifier analogue) and
precision/recall, with the protocol recorded next to the numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from spikediff.data import STORED_SIZES, class_names
from spikediff.metrics.extractors import ClassifierFeatures, make_extractor
from spikediff.metrics.reference import reference_stats
from spikediff.metrics.scores import frechet_distance, gaussian_stats, inception_score, kid, precision_recall


def to_uint8_images(arr: np.ndarray, source: str | Path) -> tuple[np.ndarray, str | None]:
    """``arr`` (N x H x W [x C]) as uint8 NHWC, and a note saying any conversion made: float images in
    [0, 1] or [-1, 1] are scaled to 0..255 explicitly (a plain cast would score them as black); anything
    else that is not uint8, or not 3-D / 4-D, is an error naming ``source``."""
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4 or arr.shape[-1] not in (1, 3):
        raise ValueError(f"{source}: expected images N x H x W or N x H x W x C (C = 1 or 3), got shape "
                         f"{tuple(arr.shape)}")
    if len(arr) < 2:
        raise ValueError(f"{source}: holds {len(arr)} image(s); scoring needs at least 2")
    if arr.dtype == np.uint8:
        return arr, None
    if np.issubdtype(arr.dtype, np.floating) and np.isfinite(arr).all():
        low, high = float(arr.min()), float(arr.max())
        if low >= 0.0 and high <= 1.0:
            return np.rint(arr * 255).astype(np.uint8), f"{source}: float images in [0, 1], scaled to 0..255"
        if low >= -1.0 and high <= 1.0:
            return np.rint((arr + 1) * 127.5).astype(np.uint8), f"{source}: float images in [-1, 1], scaled to 0..255"
        raise ValueError(f"{source}: float images span [{low:.3g}, {high:.3g}]; expected uint8, or floats in "
                         "[0, 1] or [-1, 1]")
    raise ValueError(f"{source}: images of dtype {arr.dtype}; expected uint8, or floats in [0, 1] or [-1, 1]")


def load_images(path: str | Path, notes: list[str] | None = None) -> torch.Tensor:
    """uint8 ``[N, C, H, W]`` from a ``.npz`` (key ``images`` or ``arr_0``, NHWC) or a folder of PNGs;
    conversions made (see :func:`to_uint8_images`) are appended to ``notes``."""
    path = Path(path)
    if path.is_dir() and (path / "samples.npz").is_file():
        path = path / "samples.npz"
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                key = "images" if "images" in data.files else "arr_0"
                if key not in data.files:
                    raise ValueError(f"{path} has no 'images' or 'arr_0' array")
                arr = data[key]
        except (OSError, ValueError) as exc:
            if "has no 'images'" in str(exc):
                raise
            raise ValueError(f"{path} is not a readable .npz of images ({type(exc).__name__})") from exc
    elif path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".png" and p.name != "grid.png")
        if not files:
            raise FileNotFoundError(f"{path} holds no samples.npz and no PNG images")
        arrays = [np.asarray(Image.open(f)) for f in files]
        arrays = [a[..., None] if a.ndim == 2 else a for a in arrays]
        sizes = {a.shape for a in arrays}
        if len(sizes) > 1:
            raise ValueError(f"{path}: PNGs of different sizes {sorted(sizes)}; expected one size")
        arr = np.stack(arrays)
    else:
        raise FileNotFoundError(f"{path}: expected a .npz file or a directory of samples")
    arr, note = to_uint8_images(arr, path)
    if note and notes is not None:
        notes.append(note)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2)))


def score_key(row: dict, name: str) -> str:
    """The key of the ``name`` score ("FID", "KID", "precision", "recall", ...) in a result row: it carries
    the extractor's label (``"FID (fmnist-classifier)"``), which a table's header shows."""
    return next(k for k in row if k.split(" (")[0] == name)


def score(row: dict, name: str) -> float:
    """The ``name`` score of a result row (see :func:`score_key`), so tables look it up by name alone."""
    return row[score_key(row, name)]


def class_coverage(logits: np.ndarray, dataset: str) -> dict:
    """The share of the samples that ``dataset``'s classifier assigns to each class, and the smallest.

    FID folds class coverage into one number: a generator that draws only shirts and bags can score
    a fair FID while a user sees three classes missing, so the scores name the coverage beside it.
    """
    counts = np.bincount(logits.argmax(1), minlength=logits.shape[1])
    names = class_names(dataset, logits.shape[1])
    return {"shares": {name: round(c / len(logits), 4) for name, c in zip(names, counts.tolist(), strict=True)},
            "smallest": names[int(counts.argmin())], "smallest_share": round(int(counts.min()) / len(logits), 4)}


def class_agreement(logits: np.ndarray, requested: np.ndarray, dataset: str) -> dict:
    """How often ``dataset``'s classifier sees the class each sample was asked for: overall and per
    requested class. A class-conditional model can score a fair FID while ignoring its labels (it draws
    every class, just not the one asked for); this is the measure of the conditioning itself."""
    predicted = logits.argmax(1)
    names = class_names(dataset, logits.shape[1])
    per_class = {names[k]: round(float((predicted[requested == k] == k).mean()), 4)
                 for k in sorted(set(requested.tolist()))}
    return {"overall": round(float((predicted == requested).mean()), 4), "per_class": per_class}


def evaluate_images(
    images: torch.Tensor, dataset: str, features: str = "classifier", split: str = "train",
    inception_weights: str | Path | None = None, data_dir: str | Path | None = None, kid_subset: int = 1000,
    progress: bool = False, resize: bool = True, requested_classes: torch.Tensor | None = None,
) -> dict:
    """Scores of ``images`` (uint8 ``[N, C, H, W]``) against ``dataset``'s ``split``.

    Images must be square. At another size than the dataset is stored at, the reference images are
    resized to theirs, as a model trained on the resized data saw them (the SDDPM presets train
    Fashion-MNIST at 32x32), and the protocol's ``sample_size`` says so; ``resize=False`` (``spikediff
    evaluate`` without ``--resize``, for arrays of unknown origin) refuses them instead.

    The FID label names the extractor — "FID (fmnist-classifier)" is never Inception FID. With the
    project's dataset classifier the result also holds ``classes``, the samples' class coverage
    (:func:`class_coverage`) and, given the class each image was asked for (``requested_classes``,
    a conditional model's labels), the classifier's agreement with it (:func:`class_agreement`);
    Inception's ImageNet classes are not the dataset's, so it has neither.
    """
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"expected uint8 images [N, C, H, W], got {tuple(images.shape)} {images.dtype}")
    if len(images) < 2:
        raise ValueError(f"scoring needs at least 2 images, got {len(images)}")
    image_size = images.shape[-1]
    if images.shape[-2] != image_size:
        raise ValueError(f"images are {images.shape[-2]}x{image_size}; scoring needs square images")
    stored = STORED_SIZES.get(dataset)
    if stored and image_size != stored and not resize:
        raise ValueError(f"images are {image_size}x{image_size}, {dataset}'s are {stored}x{stored}: pass --resize to "
                         f"score them against {dataset} resized to {image_size}x{image_size} (as a model trained at "
                         "that size saw it)")
    extractor = make_extractor(features, dataset, inception_weights)
    ref = reference_stats(extractor, dataset, split, image_size, data_dir, progress)
    feats, logits = extractor(images, progress=progress)
    mu, sigma = gaussian_stats(feats)
    kid_mean, kid_std = kid(ref["features"], feats, subset_size=min(kid_subset, len(feats)))
    is_mean, is_std = inception_score(logits)
    # k-NN radii shrink as a set grows, so precision/recall compare equal-sized sets (Kynkäänniemi et al.)
    n_pr = min(len(ref["features"]), len(feats))
    precision, recall = precision_recall(ref["features"][:n_pr], feats[:n_pr])
    label = extractor.name
    coverage = {}
    if isinstance(extractor, ClassifierFeatures):
        coverage["classes"] = class_coverage(logits, dataset)
        if requested_classes is not None:
            coverage["class_agreement"] = class_agreement(logits, np.asarray(requested_classes), dataset)
    return {
        "scores": {
            f"FID ({label})": frechet_distance(ref["mu"], ref["sigma"], mu, sigma),
            f"KID ({label})": kid_mean,
            f"KID std ({label})": kid_std,
            f"IS ({label})": is_mean,
            f"IS std ({label})": is_std,
            f"precision ({label}, k=3)": precision,
            f"recall ({label}, k=3)": recall,
        },
        "protocol": {
            **extractor.describe(),
            "num_samples": len(images),
            "sample_size": f"{images.shape[1]}x{image_size}x{image_size}" + (
                f" (the reference resized from {stored}x{stored})" if stored and stored != image_size else ""),
            "reference": f"{dataset} {split} split (FID statistics over all of it; KID and precision/recall "
                         f"over {len(ref['features'])} of its images)",
            "kid": f"unbiased MMD^2, cubic polynomial kernel, 100 subsets of {min(kid_subset, len(feats))}",
            "precision_recall": f"k=3 manifolds of {n_pr} reference and {n_pr} generated images",
        },
        **coverage,
    }
