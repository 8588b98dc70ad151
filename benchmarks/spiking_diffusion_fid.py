"""Spiking-Diffusion on Fashion-MNIST (issue 11): reconstruction error of the VQ-SVAE, FID
(fmnist-classifier) at 1,280 samples (the paper's count) and at ``--num`` samples, energy per image;
optionally the same sample-quality figures for a Spiking U-Net checkpoint beside it.

    python benchmarks/spiking_diffusion_fid.py VQ_RUN DIFFUSION_RUN --num 10000 --steps 49 \
        --temperature 1.0 [--unet benchmarks/checkpoints/fmnist-snn-small --unet-steps 20 --unet-num 1280]

The 1,280-sample figure scores the first 1,280 of the same seeded samples. FIDs use the project's
classifier features against the Fashion-MNIST training set (not Inception; the paper's FIDs use
torchvision's Inception and an SVD "square root", so neither is comparable). Writes
spiking_diffusion.json, a markdown table and sample grids to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from provenance import provenance

import spikediff
from spikediff.cli import main as cli
from spikediff.data import batch_transform, load_dataset
from spikediff.metrics import evaluate_images, score, score_key
from spikediff.sample import generate, save_grid

PAPER_COUNT = 1280


def fid_rows(ckpt: Path, label: str, num: int, steps: int, args, **kwargs) -> list[dict]:
    config = spikediff.load_config(ckpt)
    model = spikediff.load(ckpt)
    tic = time.perf_counter()
    images = generate(model, config, num, kwargs.pop("sampler"), steps, args.seed, args.batch_size, "cpu",
                      precision=args.precision, **kwargs)
    seconds = time.perf_counter() - tic
    save_grid(images[:64], args.out / f"grid-{label}.png")
    rows = []
    for n in sorted({min(PAPER_COUNT, num), num}):
        scores = evaluate_images(images[:n], config.data.dataset, "classifier")["scores"]
        rows.append({"model": label, "steps": steps, "num_samples": n, "sampling_seconds_all": round(seconds, 1),
                     **scores})
        print(json.dumps(rows[-1]), flush=True)
    return rows


@torch.no_grad()
def reconstruction(vq_ckpt: Path, num: int = 1000) -> dict:
    """Mean squared error of test images through the VQ-SVAE, in the model's [-1, 1] range."""
    config = spikediff.load_config(vq_ckpt)
    model = spikediff.load(vq_ckpt)
    data = load_dataset(config.data, config.model.image_size, "test")
    x = batch_transform(torch.stack([data[i] for i in range(num)]), config.model.image_size, False)
    recon = torch.cat([model.decode(model.encode(x[i : i + 250])) for i in range(0, num, 250)])
    train = load_dataset(config.data, config.model.image_size, "train")
    mean = batch_transform(torch.stack([train[i] for i in range(10_000)]), config.model.image_size, False).mean(0)
    return {"test_images": num, "mse": float((recon - x).square().mean()),
            "mse_of_the_mean_training_image": float((mean - x).square().mean()),
            "codes_used": int(model.encode(x).unique().numel()), "codebook_size": config.model.codebook_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("vq", type=Path)
    parser.add_argument("diffusion", type=Path)
    parser.add_argument("--num", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=49)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--unet", type=Path, help="a Spiking U-Net checkpoint to score beside it")
    parser.add_argument("--unet-steps", type=int, default=20)
    parser.add_argument("--unet-num", type=int, default=PAPER_COUNT)
    parser.add_argument("--unet-only", action="store_true",
                        help="keep the Spiking-Diffusion figures already in --out and (re)score only --unet")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/spiking_diffusion"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.unet_only:
        if not args.unet:
            parser.error("--unet-only needs --unet")
        result = json.loads((args.out / "spiking_diffusion.json").read_text())
        rows = [r for r in result["rows"] if r["model"] == "spiking-diffusion"]
    else:
        diffusion = spikediff.checkpoint.resolve(args.diffusion)
        result = {"reconstruction": reconstruction(spikediff.checkpoint.resolve(args.vq))}
        print(json.dumps(result["reconstruction"]), flush=True)
        rows = fid_rows(diffusion, "spiking-diffusion", args.num, args.steps, args, sampler="absorbing",
                        temperature=args.temperature)
        assert cli(["energy", str(diffusion), "--steps", str(args.steps), "--out", str(args.out / "energy")]) == 0
        result["energy"] = json.loads((args.out / "energy" / "energy.json").read_text())["energy_per_image_mj"]
    if args.unet:
        unet = spikediff.checkpoint.resolve(args.unet)
        rows += fid_rows(unet, "spiking-unet", args.unet_num, args.unet_steps, args, sampler="ddim", fold_bn=True,
                         compile="auto")
        energy_dir = args.out / "energy-unet"
        assert cli(["energy", str(unet), "--steps", str(args.unet_steps), "--out", str(energy_dir)]) == 0
        result["energy_unet"] = json.loads((energy_dir / "energy.json").read_text())["energy_per_image_mj"]
    result["rows"] = rows
    result.setdefault("meta_spiking_diffusion", result.get("meta"))
    result["meta"] = provenance()
    (args.out / "spiking_diffusion.json").write_text(json.dumps(result, indent=2))
    fid_key = score_key(rows[0], "FID")
    lines = [f"| model | sampler steps | samples | {fid_key} | precision | recall | energy per image (mJ) |",
             "|---" * 7 + "|"]
    for r in rows:
        prec = score(r, "precision")
        rec = score(r, "recall")
        energy = result["energy"] if r["model"] == "spiking-diffusion" else result.get("energy_unet")
        lines.append(f"| {r['model']} | {r['steps']} | {r['num_samples']} | {r[fid_key]:.1f} | {prec:.3f} | "
                     f"{rec:.3f} | {energy:.3f} |")
    (args.out / "spiking_diffusion.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
