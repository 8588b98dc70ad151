"""Where datasets are looked for, shared by every loader."""

from __future__ import annotations

import os
from pathlib import Path


class MissingDatasetError(FileNotFoundError):
    """No copy of a dataset was found; the message lists every way to provide one."""


def user_roots(data_dir: str | Path | None = None) -> list[Path]:
    """The folder a user names: ``--data-dir`` alone when given, else ``$SPIKEDIFF_DATA`` (if set).

    A named folder is the only place looked in: a folder without the dataset is an error naming it,
    never a silent fallback to another copy (which would train or score on data the user did not pick).
    """
    if data_dir:
        root = Path(data_dir)
        if not root.is_dir():
            raise MissingDatasetError(f"--data-dir {root} is not a directory")
        return [root]
    env = os.environ.get("SPIKEDIFF_DATA")
    return [Path(env)] if env else []


def torchvision_cache() -> Path:
    """Where torchvision's downloads go by default (read at call time: it follows ``$HOME``)."""
    return Path.home() / ".cache" / "torchvision"
