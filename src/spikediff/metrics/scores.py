"""Sample-quality scores over any features: FID, KID, Inception Score, improved precision/recall.

All in float64 with NumPy/SciPy, following the standard definitions (Heusel et al. 2017; Bińkowski
et al. 2018; Salimans et al. 2016; Kynkäänniemi et al. 2019), so that numbers computed here over
Inception features are comparable with pytorch-fid / torch-fidelity.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import torch


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of ``features [N, D]``, in float64."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need a [N >= 2, D] feature array, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))``, the FID formula.

    As pytorch-fid does, a singular product gets ``eps`` added to both diagonals, and a negligible
    imaginary part of the matrix square root (numerical noise) is dropped.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape:
        raise ValueError("the two feature sets have different dimensions")
    with warnings.catch_warnings():  # a near-singular product is handled just below, as pytorch-fid does
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"imaginary component {np.max(np.abs(covmean.imag))} in the FID square root")
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def fid(features1: np.ndarray, features2: np.ndarray) -> float:
    """FID between two feature sets."""
    return frechet_distance(*gaussian_stats(features1), *gaussian_stats(features2))


def kid(features1: np.ndarray, features2: np.ndarray, num_subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance: unbiased MMD^2 with ``k(x, y) = (x.y / d + 1)^3``, mean and std
    over random subsets (without replacement within a subset), as torch-fidelity computes it."""
    f1, f2 = np.asarray(features1, np.float64), np.asarray(features2, np.float64)
    m = min(subset_size, len(f1), len(f2))
    if m < 2:
        raise ValueError("KID needs at least 2 samples in each set")
    d = f1.shape[1]
    rng = np.random.default_rng(seed)
    values = np.empty(num_subsets)
    for i in range(num_subsets):
        x = f1[rng.choice(len(f1), m, replace=False)]
        y = f2[rng.choice(len(f2), m, replace=False)]
        kxx, kyy, kxy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
        values[i] = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.mean()
    return float(values.mean()), float(values.std())


def inception_score(logits: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """``exp(E_x KL(p(y|x) || p(y)))`` per split, mean and std (Salimans et al.)."""
    logits = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    scores = []
    for part in torch.chunk(logits, min(splits, len(logits))):
        logp = torch.log_softmax(part, dim=1)
        logp_y = torch.logsumexp(logp, dim=0) - np.log(len(part))
        scores.append(torch.exp((logp.exp() * (logp - logp_y)).sum(1).mean()).item())
    return float(np.mean(scores)), float(np.std(scores))


def _kth_neighbour_radii(f: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    radii = []
    for start in range(0, len(f), chunk):
        d = torch.cdist(f[start : start + chunk], f)
        radii.append(d.kthvalue(k + 1, dim=1).values)  # +1: the point itself is at distance 0
    return torch.cat(radii)


def _coverage(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int) -> float:
    inside = []
    for start in range(0, len(points), chunk):
        d = torch.cdist(points[start : start + chunk], centres)
        inside.append((d <= radii[None, :]).any(dim=1))
    return torch.cat(inside).double().mean().item()


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3, chunk: int = 1024) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN manifolds, k = 3.

    Precision: the share of generated samples inside the real manifold (union of balls reaching
    each real sample's k-th neighbour); recall: the share of real samples inside the generated one.
    """
    r = torch.as_tensor(np.asarray(real), dtype=torch.float64)
    f = torch.as_tensor(np.asarray(fake), dtype=torch.float64)
    if min(len(r), len(f)) <= k:
        raise ValueError(f"precision/recall needs more than k={k} samples in each set")
    r_radii, f_radii = _kth_neighbour_radii(r, k, chunk), _kth_neighbour_radii(f, k, chunk)
    return _coverage(f, r, r_radii, chunk), _coverage(r, f, f_radii, chunk)
