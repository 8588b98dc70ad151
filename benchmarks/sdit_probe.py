"""What SDiT's patch tokens see (issue 39), measured on a run or an untrained preset, on test images:

- every LIF neuron layer's firing rate, block by block;
- the swap test: the relative change of a patch token's features (the last block's output) when every
  other patch of its image is replaced by another test image's, for the first, middle and last patch
  (0 means the token is denoised alone; the scan and token shift look backwards in raster order, so
  early patches see little of the others);
- the step and class sensitivity: the relative change of the patch features when t moves to
  ``--t-other`` or the class to the next one.

    python benchmarks/sdit_probe.py RUN_OR_PRESET [--num 16] [--t 500] [--t-other 100] [--out FILE]

Relative changes are ``||f(x') - f(x)|| / ||f(x)||`` per token, averaged over the images.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from provenance import provenance
from torch import nn

import spikediff
from spikediff.data import batch_transform, load_dataset, match_channels
from spikediff.energy import OpCounter


def patch_features(model: nn.Module, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """The last block's output for the patch tokens, ``[B, grid^2, dim]`` (the condition token dropped)."""
    kept = {}
    handle = model.blocks()[-1].register_forward_hook(lambda m, a, out: kept.__setitem__("h", out))
    with torch.no_grad():
        model(x, t, y)
    handle.remove()
    return kept["h"][:, 1:].float()


def relative_change(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """Per token ``[grid^2]``: the mean over images of ``||after - before|| / ||before||``."""
    return ((after - before).norm(dim=-1) / before.norm(dim=-1).clamp_min(1e-12)).mean(0)


def swap_others(x: torch.Tensor, other: torch.Tensor, token: int, patch: int, grid: int) -> torch.Tensor:
    """``other``'s images with patch ``token`` (raster order) taken from ``x``."""
    row, col = divmod(token, grid)
    swapped = other.clone()
    rows, cols = slice(row * patch, (row + 1) * patch), slice(col * patch, (col + 1) * patch)
    swapped[..., rows, cols] = x[..., rows, cols]
    return swapped


def probe(model: nn.Module, x: torch.Tensor, other: torch.Tensor, t: int, t_other: int,
          y: torch.Tensor | None) -> dict:
    """The measurements of the module docstring for ``model`` on images ``x`` (``other``: the swap's donors)."""
    model.eval()
    steps = torch.full((len(x),), t, dtype=torch.long)
    base = patch_features(model, x, steps, y)
    grid, patch = model.grid, model.config.patch_size
    tokens = {"first": 0, "middle": grid * grid // 2, "last": grid * grid - 1}
    swap = {}
    for name, token in tokens.items():
        swapped = patch_features(model, swap_others(x, other, token, patch, grid), steps, y)
        swap[name] = float(relative_change(base, swapped)[token])
    result = {"swap_the_other_patches": swap,
              "step_change": float(relative_change(base, patch_features(model, x, torch.full_like(steps, t_other),
                                                                        y)).mean())}
    if y is not None:
        result["class_change"] = float(relative_change(
            base, patch_features(model, x, steps, (y + 1) % model.config.num_classes)).mean())
    with OpCounter(model, len(x)) as counter, torch.no_grad():
        model(x, steps, y)
    result["firing_rates"] = {name: round(n.firing_rate, 4) for name, n in counter.neurons.items()}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", help="a run directory, or a preset name (untrained)")
    parser.add_argument("--num", type=int, default=16)
    parser.add_argument("--t", type=int, default=500)
    parser.add_argument("--t-other", type=int, default=100)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if Path(args.target).is_dir():
        config, model = spikediff.load_config(args.target), spikediff.load(args.target)
    else:
        config, model = spikediff.get_preset(args.target), spikediff.build(args.target)
    images = load_dataset(config.data, config.model.image_size, "test")
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[: 2 * args.num]
    batch = match_channels(batch_transform(torch.stack([images[int(i)] for i in pick]), config.model.image_size,
                                           False), config.model.img_ch)
    y = torch.arange(args.num) % config.model.num_classes if config.model.num_classes else None
    result = {"target": args.target, "num_images": args.num, "t": args.t, "t_other": args.t_other,
              **probe(model, batch[: args.num], batch[args.num:], args.t, args.t_other, y), "meta": provenance()}
    print(json.dumps({k: v for k, v in result.items() if k != "meta"}, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
