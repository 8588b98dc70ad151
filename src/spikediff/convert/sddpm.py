"""Import the reference SDDPM code's checkpoints (AndyCao1125/SDDPM, ``Spk_UNet``).

Those are torch files holding ``{'net_model': state_dict}`` (keys may carry DataParallel's
``module.`` prefix). Module names differ from ours only by a fixed renaming, so import is a key
rename plus an architecture read off the weight shapes; the spiking steps T and the image size are
not stored in the weights and must be given.
"""

from __future__ import annotations

import re
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


def read_reference_state(path: str | Path, key: str = "net_model") -> dict[str, torch.Tensor]:
    """The state dict inside a reference checkpoint file (or the file itself if it is one)."""
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and key in obj:
        obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} holds no '{key}' state dict of tensors")
    return obj


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
    state = rename_reference_keys(read_reference_state(path, key))
    base = get_preset(base_preset)
    num_steps = int(state["time_embedding.table"].shape[0])
    model_cfg = replace(base.model, spike_steps=spike_steps, image_size=image_size, **infer_architecture(state))
    config: Config = replace(
        base,
        name=f"imported-sddpm:{Path(path).name}",
        model=model_cfg,
        diffusion=replace(base.diffusion, num_steps=num_steps),
    )
    model = build(config)
    model.load_state_dict(state)
    return save(model, config, out_dir, overwrite=overwrite)
