"""Where a converted SNN departs from its quantised ANN, neuron layer by neuron layer (issue 38).

    python benchmarks/conversion_error.py SNN_DIR [--num 32] [--out FILE]

SNN_DIR is a ``spikediff ann2snn`` output (its ``conversion.json`` names the quantised ANN). Both
networks read the same noised training images (diffusion steps spread over the schedule, the probe
``ann2snn`` reports its output error on); the SNN runs step by step, as it samples. For each signed-IF
layer and the quantiser it replaced (the same module name):

- ``drift``: relative L2 distance of the neuron's output ``alpha * count / T`` from the quantiser's
  output in the ANN: what reaches the next layer, the errors of all earlier layers included;
- ``encoding``: the share of elements whose spike count differs from the quantiser's level of the
  time-mean of the neuron's *own* input, and the mean size of that difference in levels: what the order
  in which the input arrived over the T steps cost, earlier layers' errors excluded (a constant input
  is encoded exactly);
- ``saturated``: the share of elements at the largest count (+-T, or +-L with slack steps), where a
  late input cannot be caught up with one spike per step (unless slack steps leave room).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from provenance import provenance

import spikediff
from spikediff.ann2snn.pipeline import CONVERSION_FILE, noisy_probe
from spikediff.data import batch_transform, load_dataset
from spikediff.diffusion import NoiseSchedule
from spikediff.models.quant_unet import QuantReLU
from spikediff.snn import SignedIFNeuron


def record(model: torch.nn.Module, kind: type, x: torch.Tensor, t: torch.Tensor) -> dict[str, dict]:
    """Per ``kind`` layer: the sum of its inputs and of its outputs over every call of one forward pass
    (one call per spiking step for the SNN, one in all for the ANN)."""
    seen: dict[str, dict] = {}

    def hook(name):
        def fn(_module, inputs, output):
            rec = seen.setdefault(name, {"input": 0.0, "output": 0.0})
            rec["input"] = rec["input"] + inputs[0].double()
            rec["output"] = rec["output"] + output.double()
        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if isinstance(m, kind)]
    try:
        with torch.no_grad():
            model.eval()(x, t)
    finally:
        for h in handles:
            h.remove()
    return seen


def layer_errors(snn: torch.nn.Module, qann: torch.nn.Module, x: torch.Tensor, t: torch.Tensor) -> list[dict]:
    """The rows of the module docstring, one per signed-IF layer of ``snn``, in the order they first ran."""
    T = snn.spike_steps
    L = snn.count_levels  # T, or fewer with slack steps (the threshold is then alpha * T / L)
    spiking, quantised = record(snn, SignedIFNeuron, x, t), record(qann, QuantReLU, x, t)
    neurons = dict(snn.named_modules())
    rows = []
    quantisers = dict(qann.named_modules())
    for name, rec in spiking.items():
        neuron, quantiser = neurons[name], quantisers[name]
        alpha = float(quantiser.alpha.detach())  # the clip; the neuron's threshold is alpha * T / L
        count = rec["output"]
        with torch.no_grad():  # the ANN's own quantiser, on the time-mean of the neuron's input, in levels
            level = (quantiser(rec["input"] / T) / alpha * L).round()
        ann = quantised[name]["output"]
        off = (count - level).abs()
        rows.append({
            "layer": name, "symmetric": neuron.symmetric,
            "drift": float((alpha * count / L - ann).norm() / ann.norm().clamp_min(1e-12)),
            "encoding_wrong_share": float((off > 0).double().mean()), "encoding_levels_off": float(off.mean()),
            "saturated": float((count.abs() == L).double().mean()),
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("snn_dir", type=Path)
    parser.add_argument("--num", type=int, default=32)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    conversion = json.loads((args.snn_dir / CONVERSION_FILE).read_text())
    snn = spikediff.load(args.snn_dir)
    qann = spikediff.checkpoint.load(conversion["qann"], use_ema=conversion["ema"])
    config = spikediff.load_config(args.snn_dir)
    dataset = load_dataset(config.data, config.model.image_size, "train")
    images = batch_transform(torch.stack([dataset[i] for i in range(4 * args.num)]), config.model.image_size, False)
    x, t = noisy_probe(images, NoiseSchedule.from_config(config.diffusion), args.num)
    T = snn.spike_steps
    rows = layer_errors(snn, qann, x, t)
    with torch.no_grad():
        mse = float((snn(x, t) - qann(x, t)).square().mean())
    print(f"{args.snn_dir}: T={T}, {len(x)} noised images, output MSE against the quantised ANN {mse:.5f}")
    print(f"{'layer':34s} {'sym':>3s} {'drift':>7s} {'enc wrong':>9s} {'levels off':>10s} {'saturated':>9s}")
    for r in rows:
        sym = "y" if r["symmetric"] else ""
        print(f"{r['layer']:34s} {sym:>3s} {r['drift']:7.3f} {r['encoding_wrong_share']:9.3f} "
              f"{r['encoding_levels_off']:10.3f} {r['saturated']:9.3f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"snn": str(args.snn_dir), "spike_steps": T, "images": len(x),
                                        "output_mse": mse, "layers": rows, "meta": provenance()}, indent=2))


if __name__ == "__main__":
    main()
