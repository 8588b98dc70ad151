"""``spikediff ann2snn``: a quantised-ANN checkpoint in, a converted (optionally fine-tuned) SNN
checkpoint out, with the conversion's error measured before and after fine-tuning."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from spikediff import checkpoint
from spikediff.ann2snn.conversion import convert, output_error
from spikediff.ann2snn.finetune import blockwise_finetune
from spikediff.data import batch_transform, load_dataset
from spikediff.diffusion import NoiseSchedule, q_sample

CONVERSION_FILE = "conversion.json"


def noisy_probe(images: torch.Tensor, schedule: NoiseSchedule, n: int = 32, seed: int = 1234):
    """A fixed batch of noised images (diffusion steps spread over the schedule) for error figures."""
    gen = torch.Generator().manual_seed(seed)
    x0 = images[torch.randperm(len(images), generator=gen)[:n]]
    t = torch.linspace(0, schedule.num_steps - 1, len(x0)).long()
    return q_sample(schedule, x0, t, torch.randn(x0.shape, generator=gen)), t


def ann2snn(
    qann_dir: str | Path,
    out_dir: str | Path,
    spike_steps: int | None = None,
    finetune: bool = False,
    steps_per_block: int = 100,
    lr: float = 1e-3,
    batch_size: int = 32,
    num_images: int = 5000,
    data_dir: str | Path | None = None,
    use_ema: bool | None = None,
    overwrite: bool = False,
    device: torch.device | str = "cpu",
    seed: int = 0,
    on_step: Callable[[], None] | None = None,
    slack_steps: int = 0,
    coding: str = "signed-if",
) -> dict:
    """Convert (and fine-tune on ``num_images`` training images) the quantised ANN in ``qann_dir``,
    save the SNN as an ordinary checkpoint in ``out_dir`` and return the conversion summary.
    ``use_ema``: as :func:`spikediff.checkpoint.load` (None: the EMA weights where the run kept them).
    ``coding``: the neuron (``model.spike_coding``); an integrate-then-fire coding converts exactly, so
    there is nothing to fine-tune."""
    if finetune and coding != "signed-if":
        raise ValueError(f"the {coding!r} code sends the quantised ANN's levels exactly: nothing to fine-tune "
                         "(--finetune tunes the signed IF neurons' SNN)")
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} already exists; pass --overwrite to replace it")
    config = checkpoint.load_config(qann_dir)
    use_ema = checkpoint.uses_ema(qann_dir, use_ema)
    qann = checkpoint.load(qann_dir, map_location=device, use_ema=use_ema)
    snn, snn_config = convert(qann, config, spike_steps, slack_steps, coding)
    schedule = NoiseSchedule.from_config(config.diffusion)
    dataset = load_dataset(config.data, config.model.image_size, "train", data_dir)
    pick = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:num_images]
    images = batch_transform(torch.stack([dataset[int(i)] for i in pick]), config.model.image_size, False)
    x, t = noisy_probe(images, schedule)
    x, t = x.to(device), t.to(device)
    summary = {"qann": str(qann_dir), "ema": use_ema, "quant_bits": config.model.quant_bits,
               "spike_steps": snn.spike_steps, "slack_steps": slack_steps, "spike_coding": coding,
               "output_mse_vs_qann": output_error(snn, qann, x, t),
               "probe": f"{len(x)} {config.data.dataset} training images noised to t in [0, {schedule.num_steps - 1}]"}
    if finetune:
        blocks = blockwise_finetune(snn, qann, images, schedule, steps_per_block, lr, batch_size, seed, on_step)
        snn_config = replace(snn_config, name=snn_config.name + "-ft")
        summary.update(finetune={"steps_per_block": steps_per_block, "lr": lr, "batch_size": batch_size,
                                 "images": len(images), "blocks": blocks},
                       output_mse_after_finetune=output_error(snn, qann, x, t))
    checkpoint.save(snn, snn_config, out_dir, overwrite=overwrite)
    (out_dir / CONVERSION_FILE).write_text(json.dumps(summary, indent=2))
    return summary
