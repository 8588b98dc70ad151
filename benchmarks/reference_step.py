"""Time the reference SDDPM implementation's training step and network evaluation on this machine.

The faithful baseline of issue 6: the reference repository's own ``Spk_UNet`` (imported from a
checkout given by ``--reference-repo``; nothing of it is copied here) with SpikingJelly 0.0.0.0.14
IF neurons, multi-step mode, torch backend, eager, reset with ``functional.reset_net`` after every
call as the reference training loop does. Same optimiser, loss and shapes as ``spikediff bench``.

    pip install --no-deps spikingjelly==0.0.0.0.14
    python benchmarks/reference_step.py --reference-repo PATH/TO/SDDPM --what train --batch 32
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reference-repo", type=Path, required=True)
    parser.add_argument("--what", choices=["train", "sample"], default="train")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    sys.path.insert(0, str(args.reference_repo))
    from model.SpikingUNet import Spk_UNet
    from spikingjelly.activation_based import functional

    torch.manual_seed(0)
    model = Spk_UNet(T=1000, ch=32, ch_mult=[1, 2, 2], attn=[], num_res_blocks=1, dropout=0.1, timestep=4, img_ch=1)
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    abar = torch.cumprod(1 - betas, 0)
    x0 = torch.rand(args.batch, 1, 32, 32) * 2 - 1
    opt = torch.optim.Adam(model.parameters(), lr=2e-4)

    def train_step() -> None:
        t = torch.randint(1000, (args.batch,))
        noise = torch.randn_like(x0)
        a = abar[t].float().view(-1, 1, 1, 1)
        loss = torch.nn.functional.mse_loss(model(a.sqrt() * x0 + (1 - a).sqrt() * noise, t), noise)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        functional.reset_net(model)

    @torch.no_grad()
    def evaluate() -> None:
        model(torch.randn_like(x0), torch.full((args.batch,), 500))
        functional.reset_net(model)

    fn = train_step if args.what == "train" else evaluate
    model.train(args.what == "train")
    for _ in range(args.warmup):
        fn()
    times = []
    for _ in range(args.repeats):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    ms = statistics.median(times) * 1000
    print(json.dumps({"kind": args.what, "preset": "reference SDDPM (SpikingJelly 0.0.0.0.14)", "batch": args.batch,
                      "threads": torch.get_num_threads(), "ms_per_step": round(ms, 1),
                      "images_per_s": round(args.batch / ms * 1000, 2),
                      "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


if __name__ == "__main__":
    main()
