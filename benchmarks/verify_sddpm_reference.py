"""Check that a checkpoint of the reference SDDPM code, imported with ``spikediff convert sddpm``,
gives the reference model's outputs (and, with ``--sdm``, the same for the SDM TSM model and
``spikediff convert sdm``, given a checkout of AndyCao1125/SDM).

Needs a checkout of AndyCao1125/SDDPM (only its ``model/`` folder is imported, nothing is copied)
and SpikingJelly 0.0.0.0.14, the version the reference pins:

    pip install --no-deps spikingjelly==0.0.0.0.14
    python benchmarks/verify_sddpm_reference.py --reference-repo PATH/TO/SDDPM [--full]
    python benchmarks/verify_sddpm_reference.py --reference-repo PATH/TO/SDM --sdm [--full]

It builds the reference ``Spk_UNet`` with random weights and perturbed BatchNorm statistics, saves
it as the reference does (``{'net_model': state_dict}``), imports the file, and compares outputs in
eval mode (fp32) on the same inputs; ``--full`` uses the paper's CIFAR-10 size instead of a small one.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

import spikediff
from spikediff.reference_checkpoints.sddpm import import_sddpm
from spikediff.reference_checkpoints.sdm import import_sdm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-repo", type=Path, required=True)
    parser.add_argument("--full", action="store_true", help="paper size (ch 128, [1,2,2,4], 2 blocks)")
    parser.add_argument("--spike-steps", type=int, default=4)
    parser.add_argument("--sdm", action="store_true", help="the repository is AndyCao1125/SDM: check TSM")
    args = parser.parse_args()

    from spikingjelly.activation_based import functional

    if args.sdm:  # the reference models, imported from their own checkouts
        sys.path.insert(0, str(args.reference_repo / "SDM"))
        from TSM import Spk_UNet_TSM as Spk_UNet
    else:
        sys.path.insert(0, str(args.reference_repo))
        from model.SpikingUNet import Spk_UNet

    torch.manual_seed(0)
    if args.full:
        ch, ch_mult, nrb, img_ch = 128, [1, 2, 2, 4], 2, 3
    else:
        ch, ch_mult, nrb, img_ch = 32, [1, 2, 2], 1, 1
    ref = Spk_UNet(T=1000, ch=ch, ch_mult=ch_mult, attn=[], num_res_blocks=nrb, dropout=0.1,
                   timestep=args.spike_steps, img_ch=img_ch)
    for m in ref.modules():  # non-trivial BN statistics and affine parameters, so eval mode is tested
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
    for name, p in ref.named_parameters():
        if name.endswith("tsmp"):
            p.data.uniform_(0.5, 1.5)  # SDM: non-trivial per-step scales
    # The tail conv starts at gain 1e-5, which would hide the whole body behind the head's bias path.
    tail = ref.tail_conv.tsmconv if args.sdm else ref.tail_conv
    torch.nn.init.xavier_uniform_(tail.weight)
    with tempfile.TemporaryDirectory() as tmp:
        torch.save({"net_model": ref.state_dict()}, Path(tmp) / "ref.pt")
        if args.sdm:
            import_sdm(Path(tmp) / "ref.pt", Path(tmp) / "ours")
        else:
            import_sddpm(Path(tmp) / "ref.pt", Path(tmp) / "ours", spike_steps=args.spike_steps)
        ours = spikediff.load(Path(tmp) / "ours")
    ref.eval()
    x = torch.randn(4, img_ch, 32, 32) * 1.5
    t = torch.tensor([0, 10, 500, 999])
    with torch.no_grad():
        y_ref = ref(x, t)
        functional.reset_net(ref)
        y_ours = ours(x, t)
    diff = (y_ref - y_ours).abs().max().item()
    scale = y_ref.abs().max().item()
    params = sum(p.numel() for p in ours.parameters())
    print(f"config ch={ch} ch_mult={ch_mult} num_res_blocks={nrb} T={args.spike_steps} params={params}")
    print(f"max |reference - spikediff| = {diff:.3e} (output max {scale:.3e})")
    ok = torch.allclose(y_ref, y_ours, rtol=1e-4, atol=1e-5 * max(scale, 1e-3))
    print("MATCH" if ok else "MISMATCH")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
