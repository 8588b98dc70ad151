"""What the fast path's verification tolerances rest on (spikediff/fast_path.py cites this script).

    python benchmarks/fast_path_tolerance.py --sampling-checkpoint RUN [--num 1000]
        [--out benchmarks/results/fast_path_tolerance.json]

1. Agreement of a correct reduced-precision path: bf16 autocast against eager fp32 on one training
   step (loss, gradient norm, gradient cosine; the first batch of real Fashion-MNIST, the family's
   objective) for every CPU preset, and on one sampling evaluation (relative L2 error of the network
   output on noised test images at t = 50, 500, 900) for the presets and for ``--sampling-checkpoint``.
2. What an output error does to the images: ``--num`` samples of ``--sampling-checkpoint`` (DPM-Solver++,
   20 steps, fp32) with every network output perturbed by Gaussian noise of a given relative L2 size,
   scored with the project's classifier features against the FID's seed-to-seed spread at no error (the
   same sampling with seeds 0, 1, 2), and the same samples in bf16 (its real error, seed 0).

A tolerance must pass every correct path of part 1 and refuse an error that part 2 shows moving the FID
by more than its spread.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
from provenance import ROOT, provenance

import spikediff
from spikediff.data import batch_transform, load_dataset, match_channels
from spikediff.diffusion import NoiseSchedule, q_sample
from spikediff.families import family_of
from spikediff.fast_path import gradient_agreement, trial_step
from spikediff.metrics import evaluate_images, score
from spikediff.objectives import dataset_variance
from spikediff.sample import generate

PRESETS = ("fmnist-snn-small", "fmnist-ann-small", "fmnist-qann-small", "fmnist-sdit-small", "sd-vq-fmnist")
ERRORS = (0.01, 0.03, 0.1, 0.3)


def first_batch(config, split: str = "train", n: int = 32) -> torch.Tensor:
    data = load_dataset(config.data, config.model.image_size, split)
    images = data.images[:n] if hasattr(data, "images") else torch.stack([data[i] for i in range(n)])
    return match_channels(batch_transform(images, config.model.image_size, False), config.model.img_ch)


def training_agreement(name: str) -> dict:
    """bf16 against fp32 on the preset's first training step."""
    config = spikediff.get_preset(name)
    torch.manual_seed(0)
    model = spikediff.build(config).train()
    x0 = first_batch(config)
    objective = family_of(config).objective(config, model, lambda: dataset_variance(
        load_dataset(config.data, config.model.image_size, "train"), config))
    draws = objective.draws(x0.shape, torch.Generator().manual_seed(0))
    if config.model.num_classes:
        draws["y"] = torch.arange(len(x0)) % config.model.num_classes

    def loss_fn(net):
        torch.manual_seed(1)  # the same dropout masks on both paths
        return objective.loss(net, x0, draws)

    reference = trial_step(model, model, loss_fn, "fp32", "cpu")
    candidate = trial_step(model, model, loss_fn, "bf16", "cpu")
    (loss_a, grad_a), (loss_b, grad_b) = reference, candidate
    _, figures = gradient_agreement(reference, candidate)
    return {"loss_rel": abs(loss_b - loss_a) / abs(loss_a),
            "grad_norm_rel": abs(grad_b.norm().item() - grad_a.norm().item()) / grad_a.norm().item(),
            "cosine": (grad_a @ grad_b).item() / (grad_a.norm() * grad_b.norm()).item(), "figures": figures}


@torch.no_grad()
def sampling_agreement(model, config) -> dict:
    """bf16 against fp32 on one evaluation of noised test images, per diffusion step."""
    if family_of(config).samples_tokens or not family_of(config).samplers:
        return {}
    model = model.eval()
    x0 = first_batch(config, "test")
    schedule = NoiseSchedule.from_config(config.diffusion)
    out = {}
    for t in (50, 500, 900):
        tt = torch.full((len(x0),), t)
        x = q_sample(schedule, x0, tt, torch.randn(x0.shape, generator=torch.Generator().manual_seed(t)))
        y = (torch.arange(len(x0)) % config.model.num_classes,) if config.model.num_classes else ()
        ref = model(x, tt, *y).float()
        with torch.autocast("cpu", torch.bfloat16):
            cand = model(x, tt, *y).float()
        out[str(t)] = float((cand - ref).norm() / ref.norm())
    return out


class Perturbed(torch.nn.Module):
    """``net`` whose every output gets Gaussian noise of relative L2 size ``error`` (seeded)."""

    def __init__(self, net: torch.nn.Module, error: float, seed: int) -> None:
        super().__init__()
        self.net, self.error, self.gen = net, error, torch.Generator().manual_seed(seed)

    def forward(self, x, t, *args, **kwargs):
        out = self.net(x, t, *args, **kwargs)
        noise = torch.randn(out.shape, generator=self.gen)
        return out + self.error * out.norm() / noise.norm() * noise


def fid_against_error(checkpoint: str, num: int) -> dict:
    config = spikediff.load_config(checkpoint)
    model = spikediff.load(checkpoint)

    def fid(error: float, seed: int, precision: str = "fp32") -> float:
        net = Perturbed(model, error, seed) if error else model
        images = generate(net, config, num, "dpm-solver++", 20, seed=seed, batch_size=100, precision=precision)
        return score(evaluate_images(images, config.data.dataset)["scores"], "FID")

    clean = [fid(0.0, seed) for seed in (0, 1, 2)]
    return {"clean_fids_seeds_0_1_2": clean, "seed_spread_std": statistics.stdev(clean),
            "perturbed_fid_seed_0": {str(e): fid(e, 0) for e in ERRORS}, "bf16_fid_seed_0": fid(0.0, 0, "bf16")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sampling-checkpoint", required=True, help="a trained run (quantised ANN: fast to sample)")
    parser.add_argument("--also", action="append", default=[], help="more trained runs for part 1's sampling")
    parser.add_argument("--num", type=int, default=1000)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fast_path_tolerance.json"))
    args = parser.parse_args()
    result: dict = {**provenance(), "training_bf16_vs_fp32": {}, "sampling_bf16_vs_fp32": {}}
    for name in PRESETS:
        result["training_bf16_vs_fp32"][name] = training_agreement(name)
        config = spikediff.get_preset(name)
        torch.manual_seed(0)
        result["sampling_bf16_vs_fp32"][f"{name} (untrained)"] = sampling_agreement(spikediff.build(config), config)
        print(name, json.dumps(result["training_bf16_vs_fp32"][name]), flush=True)
    for run in [args.sampling_checkpoint, *args.also]:
        result["sampling_bf16_vs_fp32"][run] = sampling_agreement(spikediff.load(run), spikediff.load_config(run))
    print(json.dumps(result["sampling_bf16_vs_fp32"], indent=1), flush=True)
    result["fid_against_output_error"] = fid_against_error(args.sampling_checkpoint, args.num)
    print(json.dumps(result["fid_against_output_error"], indent=1))
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
