"""What reproducing the papers' Fashion-MNIST numbers would take: the preset, its training images, the
network's multiply-accumulates counted on the built model, the compute of training and of the
paper's evaluation protocol, and a GPU-hour estimate from that compute.

    python benchmarks/reproduction_cost.py [--gpu-tflops 50] [--out benchmarks/results/reproduction_cost]

The MACs are counted (``spikediff.energy.counter``, every layer dense, all spiking steps, per image);
training compute is 3 x forward (forward + backward) x 2 FLOP per MAC x training images, sampling compute
2 FLOP per MAC x samples x network evaluations. The GPU hours divide that by ``--gpu-tflops`` of
sustained throughput: an assumption, not a measurement, and a lower bound for SNNs, whose neuron
updates are element-wise work that MACs do not count.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from provenance import provenance

from spikediff.checkpoint import build
from spikediff.energy.report import ENERGY_MODELS, count_energy
from spikediff.families import family_of
from spikediff.presets import get_preset


@dataclass
class Protocol:
    """A paper's Fashion-MNIST result and the evaluation behind it."""

    paper: str
    presets: list[str]  # trained in this order (Spiking-Diffusion: VQ-SVAE, then diffusion)
    published_fid: float | None
    fid_protocol: str
    samples: int
    evaluations: int  # network evaluations per sample


PROTOCOLS = [
    Protocol("SDDPM (WACV 2024)", ["sddpm-fmnist"], 21.38, "Inception, 50k samples, DDPM 1000 steps", 50_000, 1000),
    Protocol("Spiking-Diffusion (2023)", ["sd-vq-fmnist", "sd-diffusion-fmnist"], 91.98,
             "Inception, 1,280 samples, absorbing 49 steps", 1280, 49),
    Protocol("SDiT (2024)", ["sdit-fmnist"], None,
             "Inception; the summary gives no Fashion-MNIST figure; DDPM 250 steps, x2 for guidance", 50_000, 500),
]


def forward_macs(name: str) -> float:
    """Dense MACs of one training forward per image, counted on the preset's freshly built model."""
    config = get_preset(name)
    torch.manual_seed(0)
    model = build(config).train()
    m = config.model
    x = torch.rand(2, m.img_ch, m.image_size, m.image_size) * 2 - 1
    # the family's training loss runs the forward exactly as training does (a token model encodes
    # every batch with its frozen VQ-SVAE, then denoises)
    objective = family_of(config).objective(config, model, lambda: 1.0)
    draws = objective.draws(x.shape, torch.Generator().manual_seed(0))
    if m.num_classes:
        draws["y"] = torch.zeros(2, dtype=torch.long)
    report = count_energy(model, lambda _: objective.loss(model, x, draws), [0], 2, ENERGY_MODELS["45nm-fp32"], name,
                          all_macs=True)
    return sum(layer.dense_macs for layer in report.layers)


def denoiser_macs(name: str) -> float:
    """Dense MACs of one Spiking-Diffusion sampling evaluation per image: its sampler runs the denoiser
    alone (the VQ-SVAE decodes once per image); Gaussian samplers evaluate the training forward."""
    config = get_preset(name)
    model = build(config).eval()
    tokens = torch.zeros(2, config.model.image_size // 4, config.model.image_size // 4, dtype=torch.long)
    run = lambda _: model.denoiser(tokens, torch.ones(2, dtype=torch.long))  # noqa: E731
    report = count_energy(model.denoiser, run, [0], 2, ENERGY_MODELS["45nm-fp32"], name, all_macs=True)
    return sum(layer.dense_macs for layer in report.layers)


def joined(stages: list[dict], key: str, fmt: str) -> str:
    return " + ".join(format(s[key], fmt) for s in stages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu-tflops", type=float, default=50.0, help="assumed sustained TFLOP/s of one GPU")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/reproduction_cost"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for p in PROTOCOLS:
        stages = []
        for name in p.presets:
            config = get_preset(name)
            images = config.train.total_steps * config.train.batch_size
            macs = forward_macs(name)
            stages.append({"preset": name, "params": sum(x.numel() for x in build(config).parameters()
                                                         if x.requires_grad),
                           "train_steps": config.train.total_steps, "batch": config.train.batch_size,
                           "train_images": images, "forward_gmacs_per_image": macs / 1e9,
                           "train_pflop": 6 * macs * images / 1e15})
        last = get_preset(p.presets[-1])
        eval_macs = (denoiser_macs(p.presets[-1]) if family_of(last).samples_tokens
                     else stages[-1]["forward_gmacs_per_image"] * 1e9)
        train_pflop = sum(s["train_pflop"] for s in stages)
        sample_pflop = 2 * eval_macs * p.samples * p.evaluations / 1e15
        rows.append({"paper": p.paper, "published_fid_fmnist": p.published_fid, "fid_protocol": p.fid_protocol,
                     "stages": stages, "sampling_gmacs_per_evaluation": eval_macs / 1e9,
                     "train_pflop": train_pflop, "sample_pflop": sample_pflop,
                     "gpu_hours_estimate": (train_pflop + sample_pflop) * 1e15 / (args.gpu_tflops * 1e12) / 3600})
    meta = {**provenance(), "gpu_tflops_assumed": args.gpu_tflops}
    (args.out / "reproduction_cost.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = ["| paper | published FID (FMNIST) | protocol | preset(s) | trainable params | training images | "
             f"forward GMAC / image | train PFLOP | evaluation PFLOP | GPU-hours at {args.gpu_tflops:g} TFLOP/s "
             "(estimate) |", "|---" * 10 + "|"]
    for r in rows:
        s = r["stages"]
        fid = "-" if r["published_fid_fmnist"] is None else f"{r['published_fid_fmnist']:g}"
        lines.append(f"| {r['paper']} | {fid} | {r['fid_protocol']} | {joined(s, 'preset', 's')} | "
                     f"{joined(s, 'params', ',')} | {joined(s, 'train_images', ',')} | "
                     f"{joined(s, 'forward_gmacs_per_image', '.3f')} | {r['train_pflop']:.1f} | "
                     f"{r['sample_pflop']:.1f} | {r['gpu_hours_estimate']:.1f} |")
    (args.out / "reproduction_cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
