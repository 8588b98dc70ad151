"""The energy of a model as a whole, ready to print and save: what ``spikediff energy`` reports.

:func:`measure_model` drives the network with noisy test images of its dataset at a few diffusion
steps (or, for a model that samples latent tokens, masked tokens and one decoding), counts every
layer, and, where its family names one, measures its ANN twin the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from spikediff.config import Config
from spikediff.data import batch_transform, load_dataset, match_channels
from spikediff.diffusion import NoiseSchedule
from spikediff.energy.baselines import verdicts
from spikediff.energy.report import (
    ENERGY_MODELS,
    EnergyReport,
    ann_twin_report,
    measure_energy,
    measure_spiking_diffusion_energy,
)
from spikediff.families import family_of


@dataclass
class EnergyRun:
    """A model's report (per network evaluation), its decoder's (token models) and its ANN twin's."""

    report: EnergyReport
    sampling_steps: int
    inputs: str
    decoder: EnergyReport | None = None
    ann: EnergyReport | None = None

    @property
    def per_image_mj(self) -> float:
        """Energy to generate one image: ``sampling_steps`` evaluations (+ one decoding)."""
        return self.report.per_image_mj(self.sampling_steps) + (self.decoder.energy_mj if self.decoder else 0.0)

    def to_dict(self) -> dict:
        result = {"report": self.report.to_dict(), "sampling_steps": self.sampling_steps,
                  "energy_per_image_mj": self.per_image_mj, "inputs": self.inputs}
        if self.decoder:
            result["decoder"] = self.decoder.to_dict()
        if self.ann:
            result["ann_twin"] = self.ann.to_dict()
            result["snn_over_ann"] = self.report.energy_mj / self.ann.energy_mj
        if self.report.spike_steps > 1 or self.ann:
            result["verdicts"] = verdicts(self.report, self.ann)
        return result


def default_steps(config: Config) -> list[int]:
    """Diffusion steps spread over the schedule (masking steps 1..N for a token model)."""
    n = config.diffusion.num_steps
    return [1, n // 4, n // 2, 3 * n // 4, n] if family_of(config).samples_tokens else [0, n // 4, n // 2, n - 1]


def measure_model(
    model: nn.Module, config: Config, label: str, *, ts: list[int] | None = None, sampling_steps: int | None = None,
    num_images: int = 32, dataset: str | None = None, energy_model: str = "45nm-fp32", with_ann: bool = True,
    data_dir: str | Path | None = None,
) -> EnergyRun:
    """Count ``model`` on ``num_images`` test images of ``dataset`` (default: the config's) at
    diffusion steps ``ts`` (default :func:`default_steps`); energy per image at ``sampling_steps``
    evaluations (default: every diffusion step)."""
    family = family_of(config)
    if not family.samplers:
        raise ValueError(f"energy measures generators; {family.not_a_generator}")
    low, high = (1, config.diffusion.num_steps) if family.samples_tokens else (0, config.diffusion.num_steps - 1)
    ts = ts or default_steps(config)
    if bad := [t for t in ts if not low <= t <= high]:
        raise ValueError(f"--t {','.join(map(str, bad))}: this model's diffusion steps run from {low} to {high}")
    data = replace(config.data, dataset=dataset) if dataset else config.data
    images = load_dataset(data, config.model.image_size, "test", data_dir)
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:num_images]
    x0 = match_channels(batch_transform(torch.stack([images[int(i)] for i in pick]), config.model.image_size, False),
                        config.model.img_ch)
    costs = ENERGY_MODELS[energy_model]
    steps = sampling_steps or config.diffusion.num_steps
    if family.samples_tokens:
        report, decoder = measure_spiking_diffusion_energy(model, x0, ts, costs, name=label)
        return EnergyRun(report, steps, f"the tokens of {len(x0)} {data.dataset} test images, masked as at t in {ts}",
                         decoder=decoder)
    report = measure_energy(model, x0, ts, NoiseSchedule.from_config(config.diffusion), costs, name=label,
                            dense=family.counts_as_ann(config))
    ann = ann_twin_report(config, x0, ts, costs, model) if with_ann and family.ann_twin(config) else None
    return EnergyRun(report, steps, f"{len(x0)} {data.dataset} test images noised to t in {ts}", ann=ann)


def save_run(run: EnergyRun, out: str | Path) -> Path:
    """``energy.json``, ``energy_by_layer.png`` and ``firing_rates.png`` in ``out``."""
    from spikediff.energy.plots import plot_energy_by_layer, plot_firing_rates

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "energy.json").write_text(json.dumps(run.to_dict(), indent=2))
    plot_energy_by_layer(run.report, out / "energy_by_layer.png")
    plot_firing_rates(run.report, out / "firing_rates.png")
    return out / "energy.json"
