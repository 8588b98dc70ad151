"""Import the reference SDM code's TSM checkpoints (AndyCao1125/SDM, ``Spk_UNet_TSM``).

Their layout is the SDDPM one with every Conv2d wrapped as ``<name>.tsmconv`` and a per-step scale
``<name>.tsmp`` of shape ``[T, 1, 1, 1, 1]``; T is read off that shape.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import torch

from spikediff.checkpoint import save
from spikediff.presets import get_preset
from spikediff.reference_checkpoints.sddpm import (
    infer_architecture,
    load_imported,
    read_reference_state,
    rename_reference_keys,
    require_unet_keys,
)


def unwrap_tsm_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``x.tsmconv.weight -> x.weight``, ``x.tsmp [T,1,1,1,1] -> x.tsm_p [T]``."""
    out = {}
    for key, value in state.items():
        if key.endswith(".tsmp"):
            out[key[: -len("tsmp")] + "tsm_p"] = value.reshape(-1)
        else:
            out[re.sub(r"\.tsmconv\.", ".", key)] = value
    return out


def import_sdm(
    path: str | Path, out_dir: str | Path, image_size: int = 32, base_preset: str = "sddpm-cifar10",
    key: str = "net_model", overwrite: bool = False,
) -> Path:
    """Convert a reference SDM TSM checkpoint into a spikediff checkpoint directory (``tsm=True``)."""
    state = require_unet_keys(rename_reference_keys(unwrap_tsm_keys(read_reference_state(path, key))), path, key)
    scales = [v for k, v in state.items() if k.endswith("tsm_p")]
    if not scales:
        raise ValueError(f"{path} has no TSM scales ('tsmp'); import it with `spikediff convert sddpm`")
    base = get_preset(base_preset)
    model_cfg = replace(base.model, tsm=True, spike_steps=int(scales[0].numel()), image_size=image_size,
                        **infer_architecture(state))
    config = replace(base, name=f"imported-sdm:{Path(path).name}", model=model_cfg,
                     diffusion=replace(base.diffusion, num_steps=int(state["time_embedding.table"].shape[0])))
    return save(load_imported(config, state, path), config, out_dir, overwrite=overwrite)
