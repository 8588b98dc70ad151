"""Training orchestration."""

from spikediff.train.ema import EMA
from spikediff.train.trainer import TrainResult, train

__all__ = ["EMA", "TrainResult", "train"]
