"""Checkpoints are directories (DESIGN principle 4): ``config.json`` + ``model.safetensors``.

Writes go to a temporary sibling directory that is renamed into place, so a crash never leaves a
half-written checkpoint behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from spikediff.config import Config
from spikediff.models import build_model

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class CheckpointError(RuntimeError):
    """A checkpoint directory that is missing, incomplete or unreadable."""


def build(name_or_config: str | Config) -> nn.Module:
    """The model of a preset name or a ``Config``, freshly initialised."""
    from spikediff.presets import get_preset

    config = get_preset(name_or_config) if isinstance(name_or_config, str) else name_or_config
    return build_model(config.model, config.diffusion.num_steps)


def save(model: nn.Module, config: Config, directory: str | Path, overwrite: bool = False) -> Path:
    """Write ``model`` and ``config`` as a checkpoint directory, atomically."""
    directory = Path(directory)
    if directory.exists() and not overwrite:
        raise FileExistsError(f"{directory} already exists; pass overwrite=True to replace it")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt", "spikediff_config": config.name})
        (tmp / CONFIG_FILE).write_text(config.to_json())
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(directory, old)
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def load_config(directory: str | Path) -> Config:
    """The ``Config`` stored in a checkpoint directory."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory} is not a spikediff checkpoint: {CONFIG_FILE} is missing")
    try:
        return Config.from_json(path.read_text())
    except (json.JSONDecodeError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path} is not a valid spikediff config: {exc}") from exc


def load(directory: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model of a checkpoint directory, weights loaded, in eval mode."""
    config = load_config(directory)
    path = Path(directory) / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory} has no {WEIGHTS_FILE}")
    try:
        state = load_file(str(path), device=str(map_location))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path} is corrupt or truncated ({exc}); restore it or retrain") from exc
    model = build(config)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not match its config {config.name!r}: {exc}") from exc
    return model.eval()
