"""Observers of image quality: feature extractors, FID / KID / IS / precision-recall, evaluation."""

from spikediff.metrics.evaluate import evaluate_images, load_images, score, score_key
from spikediff.metrics.scores import fid, frechet_distance, gaussian_stats, inception_score, kid, precision_recall

__all__ = [
    "evaluate_images",
    "fid",
    "frechet_distance",
    "gaussian_stats",
    "inception_score",
    "kid",
    "load_images",
    "precision_recall",
    "score",
    "score_key",
]
