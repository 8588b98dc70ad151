"""Import the reference SDDPM code's checkpoints (AndyCao1125/SDDPM, ``Spk_UNet``).

Those are torch files holding ``{'net_model': state_dict}`` (keys may carry DataParallel's
``module.`` prefix). Module names differ from ours only by a fixed renaming, so import is a key
rename plus an architecture read off the weight shapes; the spiking steps T and the image size are
not stored in the weights and must be given.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from dataclasses import replace
from pathlib import Path

import torch

from spikediff.checkpoint import build, save
from spikediff.config import Config
from spikediff.presets import get_preset

# (reference pattern, our replacement), applied in order to each key.
_RENAMES: list[tuple[str, str]] = [
    (r"^time_embedding\.timembedding\.0\.weight$", "time_embedding.table"),
    (r"^time_embedding\.timembedding\.1\.", "time_embedding.linear1."),
    (r"^time_embedding\.timembedding\.3\.", "time_embedding.linear2."),
    (r"^conv\.", "stem.conv_in."),
    (r"^bn\.", "stem.bn_in."),
    (r"^conv_identity\.", "stem.conv_out."),
    (r"^bn_identity\.", "stem.bn_out."),
    (r"^downblocks\.", "down."),
    (r"^middleblocks\.", "middle."),
    (r"^upblocks\.", "up."),
    (r"\.temb_proj\.1\.", ".temb_proj."),
    (r"^tail_bn\.", "head.bn."),
    (r"^tail_conv\.", "head.conv."),
    (r"^T_output_layer\.", "head.temporal_conv."),
    (r"^last_bn\.", "head.temporal_bn."),
]


def rename_reference_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Reference ``Spk_UNet`` key names -> ``SpikingUNet`` key names."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        for pattern, repl in _RENAMES:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


def infer_architecture(state: dict[str, torch.Tensor]) -> dict:
    """``ch``, ``img_ch``, ``ch_mult`` and ``num_res_blocks`` read off renamed weight shapes."""
    ch, img_ch = state["stem.conv_in.weight"].shape[:2]
    blocks: dict[int, str] = {}
    for key in state:
        m = re.match(r"^down\.(\d+)\.(conv1|conv)\.weight$", key)
        if m:
            blocks[int(m.group(1))] = m.group(2)
    levels, current = [], []
    for index in sorted(blocks):
        if blocks[index] == "conv1":
            current.append(state[f"down.{index}.conv2.weight"].shape[0])
        else:
            levels.append(current)
            current = []
    levels.append(current)
    if not levels[0] or any(len(lv) != len(levels[0]) for lv in levels):
        raise ValueError("checkpoint does not have the Spiking U-Net's down-path layout")
    return {
        "ch": int(ch),
        "img_ch": int(img_ch),
        "ch_mult": tuple(int(lv[0]) // int(ch) for lv in levels),
        "num_res_blocks": len(levels[0]),
    }


# Keys every reference Spiking U-Net has once renamed; their absence means another kind of file.
REQUIRED_KEYS = ("time_embedding.table", "stem.conv_in.weight")


def read_reference_state(path: str | Path, key: str = "net_model") -> dict[str, torch.Tensor]:
    """The state dict inside a reference checkpoint file (or the file itself if it is one).

    Read with ``weights_only``: a file holding pickled Python objects beyond tensors and plain
    containers is refused (unpickling it could run code), and said so in one line.
    """
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "global" not in str(exc).lower():  # no class or function to refuse: the bytes are no checkpoint
            raise ValueError(f"{path} is not a torch checkpoint file (it does not unpickle)") from exc
        raise ValueError(f"{path} holds Python objects besides tensors; refused, since loading it could run code "
                         "(save the state dict alone with torch.save({'net_model': model.state_dict()}, ...))") from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"{path} is not a torch checkpoint file ({reason})") from exc
    if isinstance(obj, dict) and key in obj:
        obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        entries = f"; its entries: {sorted(map(str, obj))[:8]} (pick one with --key)" if isinstance(obj, dict) else ""
        raise ValueError(f"{path} holds no '{key}' state dict of tensors{entries}")
    return obj


def require_unet_keys(state: dict[str, torch.Tensor], path: str | Path, key: str) -> dict[str, torch.Tensor]:
    """``state`` (renamed) if it is a reference Spiking U-Net's; another network's weights are refused."""
    if missing := [k for k in REQUIRED_KEYS if k not in state]:
        raise ValueError(f"{path} ('{key}') is not a reference Spiking U-Net: it lacks {missing} "
                         f"(its first keys: {list(state)[:4]})")
    return state


def load_imported(config: Config, state: dict[str, torch.Tensor], path: str | Path) -> torch.nn.Module:
    """The model of ``config`` with ``state`` loaded; a mismatch names the first differing keys."""
    model = build(config)
    try:
        result = model.load_state_dict(state, strict=False)
        problems = f"missing {result.missing_keys[:4]}, unexpected {result.unexpected_keys[:4]}"
    except RuntimeError as exc:  # a shape differs
        result, problems = None, str(exc).splitlines()[1].strip() if "\n" in str(exc) else str(exc)
    if result is None or result.missing_keys or result.unexpected_keys:
        raise ValueError(f"{path} does not fit a Spiking U-Net of the layout read off it: {problems} "
                         "(is --preset right?)")
    return model


def import_sddpm(
    path: str | Path,
    out_dir: str | Path,
    spike_steps: int = 4,
    image_size: int = 32,
    base_preset: str = "sddpm-cifar10",
    key: str = "net_model",
    overwrite: bool = False,
) -> Path:
    """Convert a reference SDDPM checkpoint into a spikediff checkpoint directory."""
    state = require_unet_keys(rename_reference_keys(read_reference_state(path, key)), path, key)
    base = get_preset(base_preset)
    num_steps = int(state["time_embedding.table"].shape[0])
    model_cfg = replace(base.model, spike_steps=spike_steps, image_size=image_size, **infer_architecture(state))
    config: Config = replace(
        base,
        name=f"imported-sddpm:{Path(path).name}",
        model=model_cfg,
        diffusion=replace(base.diffusion, num_steps=num_steps),
    )
    return save(load_imported(config, state, path), config, out_dir, overwrite=overwrite)
