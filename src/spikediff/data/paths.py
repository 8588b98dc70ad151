"""Where datasets are looked for, shared by every loader."""

from __future__ import annotations

import os
from pathlib import Path


class MissingDatasetError(FileNotFoundError):
    """No copy of a dataset was found; the message lists every way to provide one."""


def user_roots(data_dir: str | Path | None = None) -> list[Path]:
    """The folders a user names: ``--data-dir`` first, then ``$SPIKEDIFF_DATA``."""
    return [Path(p) for p in (data_dir, os.environ.get("SPIKEDIFF_DATA")) if p]


def torchvision_cache() -> Path:
    """Where torchvision's downloads go by default (read at call time: it follows ``$HOME``)."""
    return Path.home() / ".cache" / "torchvision"
