"""Checkpoints are directories (docs/architecture.md, Rules): ``config.json`` + ``model.safetensors``, and
for training ``ema.safetensors`` and ``trainer_state.pt`` (optimizer, lr schedule, step).

Writes go to a temporary sibling directory that is renamed into place, so a crash never leaves a
half-written checkpoint behind, and ``checksums.json`` (SHA-256 of every file) is verified on load,
so a damaged file is reported, never half-loaded. A training run keeps its last few checkpoints in
``checkpoints/step_NNNNNNN/``; every loader accepts the run directory (meaning its newest checkpoint)
or a checkpoint directory itself. The trainer state holds no RNG states: the trainer seeds every
step's draws from (seed, step), so the step number is all a resumed run needs.
"""

from __future__ import annotations

import hashlib
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
EMA_FILE = "ema.safetensors"
TRAINER_STATE_FILE = "trainer_state.pt"
CHECKSUMS_FILE = "checksums.json"
RUN_CHECKPOINTS = "checkpoints"


class CheckpointError(RuntimeError):
    """A checkpoint directory that is missing, incomplete or unreadable."""


def build(name_or_config: str | Config) -> nn.Module:
    """The model of a preset name or a ``Config``, freshly initialised."""
    from spikediff.presets import get_preset

    config = get_preset(name_or_config) if isinstance(name_or_config, str) else name_or_config
    return build_model(config.model, config.diffusion.num_steps)


def _tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}


def save(
    model: nn.Module,
    config: Config,
    directory: str | Path,
    overwrite: bool = False,
    ema: nn.Module | None = None,
    trainer_state: dict | None = None,
) -> Path:
    """Write ``model`` and ``config`` (and optionally EMA weights and trainer state) as a checkpoint
    directory, atomically."""
    directory = Path(directory)
    if directory.exists() and not overwrite:
        raise FileExistsError(f"{directory} already exists; pass --overwrite (overwrite=True) to replace it")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    tmp.chmod(0o755)
    try:
        save_file(_tensors(model), str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        if ema is not None:
            save_file(_tensors(ema), str(tmp / EMA_FILE), metadata={"format": "pt"})
        if trainer_state is not None:
            torch.save(trainer_state, tmp / TRAINER_STATE_FILE)
        (tmp / CONFIG_FILE).write_text(config.to_json())
        sums = {f.name: sha256_file(f) for f in sorted(tmp.iterdir())}
        (tmp / CHECKSUMS_FILE).write_text(json.dumps(sums, indent=1))
        _fsync_dir(tmp)
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(directory, old)
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, directory)
    except (SafetensorError, RuntimeError) as exc:  # how safetensors and torch.save report a failed write
        shutil.rmtree(tmp, ignore_errors=True)
        raise OSError(f"could not write the checkpoint {directory} ({exc}); check the free space and permissions "
                      f"of {directory.parent}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def _fsync_dir(directory: Path) -> None:
    """Flush a directory's files and entries to disk, so the rename that follows publishes complete files."""
    for f in directory.iterdir():
        with open(f, "rb") as handle:
            os.fsync(handle.fileno())
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path) -> None:
    """Check ``path`` against its directory's ``checksums.json`` (if it has one)."""
    sums_file = path.parent / CHECKSUMS_FILE
    if not sums_file.is_file():
        return
    expected = json.loads(sums_file.read_text()).get(path.name)
    if expected is not None and sha256_file(path) != expected:
        raise CheckpointError(f"{path} is corrupt or truncated (checksum mismatch); {_older_hint(path.parent)}")


def run_checkpoints(run_dir: str | Path) -> list[Path]:
    """The complete checkpoints of a run, oldest first (temporary directories of a write that never
    finished are not among them)."""
    root = Path(run_dir) / RUN_CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted(d for d in root.iterdir() if d.is_dir() and d.name.startswith("step_") and (d / CONFIG_FILE).exists())


def _older_hint(checkpoint_dir: Path) -> str:
    older = [d for d in run_checkpoints(checkpoint_dir.parent.parent) if d != checkpoint_dir]
    if older:
        return f"older checkpoints to use instead: {', '.join(str(d) for d in older)}"
    return "no older checkpoint exists"


def resolve(directory: str | Path) -> Path:
    """The checkpoint directory itself, or the newest checkpoint of a training run directory."""
    directory = Path(directory)
    if not (directory / WEIGHTS_FILE).exists():
        found = run_checkpoints(directory)
        if found:
            return found[-1]
    return directory


def prune(run_dir: str | Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints of a run, and the temporary directories of
    writes that a crash interrupted (the trainer writes one checkpoint at a time)."""
    for old in run_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    root = Path(run_dir) / RUN_CHECKPOINTS
    for stale in root.glob(".step_*") if root.is_dir() else []:
        shutil.rmtree(stale, ignore_errors=True)


def load_config(directory: str | Path) -> Config:
    """The ``Config`` stored in a checkpoint (or run) directory, checked against its checksum like the
    weights: a config edited after saving (say ``spike_steps``) would run the weights as another model."""
    directory = resolve(directory)
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory} is not a spikediff checkpoint: {CONFIG_FILE} is missing")
    verify(path)
    try:
        return Config.from_json(path.read_text())
    except (json.JSONDecodeError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path} is not a valid spikediff config: {exc}") from exc


def load_weights(
    model: nn.Module, path: Path, map_location: str | torch.device = "cpu", missing_ok: tuple[str, ...] = ()
) -> nn.Module:
    """Load a safetensors file into ``model``; a corrupt file or a mismatch is a ``CheckpointError``.

    Parameters whose names end with one of ``missing_ok`` may be absent from the file and keep their
    initial values: that is how a plain Spiking U-Net starts a TSM model (``tsm_p`` = 1).
    """
    if not path.is_file():
        raise CheckpointError(f"{path.parent} has no {path.name}")
    verify(path)
    try:
        state = load_file(str(path), device=str(map_location))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path} is corrupt or truncated ({exc}); restore it or retrain") from exc
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not (missing_ok and k.endswith(missing_ok))]
    unexpected = [k for k in state if k not in expected]
    reshaped = [f"{k} {tuple(v.shape)} vs {tuple(expected[k].shape)}" for k, v in state.items()
                if k in expected and v.shape != expected[k].shape]
    if missing or unexpected or reshaped:
        parts = [f"{len(keys)} {what} (e.g. {', '.join(keys[:2])})"
                 for what, keys in (("missing", missing), ("unexpected", unexpected), ("of another shape", reshaped))
                 if keys]
        raise CheckpointError(f"{path} holds {_weights_owner(path)}, which does not fit the model it is loaded into: "
                              f"{'; '.join(parts)} tensors")
    model.load_state_dict(state, strict=False)
    return model


def _weights_owner(path: Path) -> str:
    """What a weights file's own ``config.json`` says it is, for a mismatch message."""
    try:
        m = json.loads((path.parent / CONFIG_FILE).read_text())["model"]
        return (f"the weights of a {m['arch']} (ch {m['ch']}, ch_mult {m['ch_mult']}, T {m.get('spike_steps')}, "
                f"image {m['image_size']}) per its {CONFIG_FILE}")
    except (OSError, ValueError, KeyError, TypeError):
        return "weights without a readable config beside them"


def uses_ema(directory: str | Path, use_ema: bool | None = None) -> bool:
    """Whether :func:`load` takes the EMA weights: ``None`` means "the EMA where the run kept one".

    The CPU presets keep an EMA because it samples better than the raw weights on their learning
    curves (``benchmarks/RESULTS.md``), so sampling, metrics and energy default to it.
    """
    return (resolve(directory) / EMA_FILE).is_file() if use_ema is None else use_ema


def load(directory: str | Path, map_location: str | torch.device = "cpu", use_ema: bool | None = None) -> nn.Module:
    """Rebuild the model of a checkpoint (or run) directory, weights loaded, in eval mode.

    ``use_ema`` True loads the EMA weights (an error if the run kept none), False the raw ones, None
    the EMA where there is one (:func:`uses_ema`).
    """
    directory = resolve(directory)
    model = build(load_config(directory))
    load_weights(model, directory / (EMA_FILE if uses_ema(directory, use_ema) else WEIGHTS_FILE), map_location)
    return model.to(map_location).eval()


def load_trainer_state(directory: str | Path) -> dict:
    """Optimizer state, lr schedule state and step, saved by the trainer."""
    path = resolve(directory) / TRAINER_STATE_FILE
    if not path.is_file():
        raise CheckpointError(f"{path.parent} has no {TRAINER_STATE_FILE}: it cannot be resumed")
    verify(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for a damaged pickle
        raise CheckpointError(f"{path} is corrupt or truncated ({exc})") from exc
