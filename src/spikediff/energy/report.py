"""Energy reports: per-layer MACs, ACs, firing rates by diffusion step, energy per evaluation and
per generated image, for any backbone; and the SNN / ANN comparison."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from spikediff.diffusion import NoiseSchedule, mask_tokens, q_sample
from spikediff.energy.counter import OpCounter


@dataclass(frozen=True)
class EnergyModel:
    """Energy per operation in picojoules (Horowitz, ISSCC 2014, 45 nm)."""

    name: str
    e_mac_pj: float
    e_ac_pj: float


ENERGY_MODELS = {
    "45nm-fp32": EnergyModel("45nm-fp32", 4.6, 0.9),  # fp32 mult 3.7 + add 0.9; the papers' constants
    "45nm-fp16": EnergyModel("45nm-fp16", 1.5, 0.4),  # fp16 mult 1.1 + add 0.4
    "45nm-int8": EnergyModel("45nm-int8", 0.23, 0.03),  # int8 mult 0.2 + add 0.03
}


@dataclass
class LayerEnergy:
    """One weight layer, per image and network evaluation (over all its spiking steps), averaged over ts."""

    name: str
    kind: str
    input: str  # "spikes" (AC) or "real" (MAC)
    dense_macs: float  # padding taps included (the field's convention)
    firing_rate: float  # mean over the measured diffusion steps (1.0 for real inputs)
    firing_rate_by_t: dict[int, float]
    macs: float
    acs: float
    energy_pj: float
    steps: float = 1.0  # spiking steps it ran over: T, or 1 where it runs once per evaluation
    weights: int = 0
    input_elements: float = 0.0
    output_elements: float = 0.0
    input_bits: int = 32  # per input element moved: 1 (spikes), 2 (signed spikes) or 32 (real)
    input_sparsity: float = 0.0  # share of exactly-zero input elements
    neurobench_effective: float = 0.0  # NeuroBench's Effective_MACs / _ACs: nonzero x nonzero, no padding
    neurobench_dense: float = 0.0  # NeuroBench's Dense: every tap inside the input, no padding
    count_bit_ops: float = 0.0  # the quantised-ANN baseline's bit-serial adds (spike inputs)


@dataclass
class NeuronEnergy:
    """One spiking neuron layer: its output elements per image and evaluation (all steps) and how often they fire."""

    name: str
    kind: str
    elements: float
    firing_rate: float
    firing_rate_by_t: dict[int, float]


@dataclass
class EnergyReport:
    model: str
    energy_model: EnergyModel
    diffusion_steps_measured: list[int]
    num_images: int
    layers: list[LayerEnergy] = field(default_factory=list)
    neurons: list[NeuronEnergy] = field(default_factory=list)
    spike_steps: int = 1
    # the largest level a neuron sends, where it is not spike_steps: below it with slack steps, above it with the
    # phase code (levels 0..7 in 3 steps)
    count_levels: int | None = None

    @property
    def macs(self) -> float:
        return sum(layer.macs for layer in self.layers)

    @property
    def acs(self) -> float:
        return sum(layer.acs for layer in self.layers)

    @property
    def energy_mj(self) -> float:
        """Per image and network evaluation, in millijoules."""
        return sum(layer.energy_pj for layer in self.layers) * 1e-9

    def per_image_mj(self, sampling_steps: int) -> float:
        """Energy to generate one image with ``sampling_steps`` network evaluations."""
        return self.energy_mj * sampling_steps

    def conventions(self) -> dict[str, dict]:
        """Energy per evaluation by the field's, NeuroBench's, the quantised-ANN and the memory conventions."""
        from spikediff.energy.baselines import conventions

        return conventions(self)

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "energy_model": asdict(self.energy_model),
            "diffusion_steps_measured": self.diffusion_steps_measured,
            "num_images": self.num_images,
            "spike_steps": self.spike_steps,
            "count_levels": self.count_levels or self.spike_steps,
            "totals_per_evaluation": {"macs": self.macs, "acs": self.acs, "energy_mj": self.energy_mj},
            "conventions_per_evaluation": self.conventions(),
            "layers": [asdict(layer) for layer in self.layers],
            "neurons": [asdict(neuron) for neuron in self.neurons],
        }


@torch.no_grad()
def measure_energy(
    model: nn.Module,
    x0: torch.Tensor,
    ts: list[int],
    schedule: NoiseSchedule | None = None,
    energy_model: EnergyModel = ENERGY_MODELS["45nm-fp32"],
    name: str = "model",
    seed: int = 0,
    dense: bool = False,
) -> EnergyReport:
    """Run ``model`` on ``x0`` noised to each diffusion step in ``ts`` (eval mode) and count.

    Firing rates depend on t, so they are measured per t on noisy real images; the per-evaluation
    totals average over the given ts. ``dense`` counts every layer as MACs: for ANNs, whose inputs
    can look like spikes without being any (a quantised ANN's all-zero or 0/1-valued activations).
    """
    schedule = schedule or NoiseSchedule.linear()
    model.eval()
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed)).to(x0)

    def run(t: int) -> None:
        t_batch = torch.full((x0.shape[0],), t, dtype=torch.long, device=x0.device)
        model(q_sample(schedule, x0, t_batch, noise), t_batch)

    return count_energy(model, run, ts, x0.shape[0], energy_model, name, all_macs=dense)


@torch.no_grad()
def measure_spiking_diffusion_energy(
    model: nn.Module, x0: torch.Tensor, ts: list[int], energy_model: EnergyModel = ENERGY_MODELS["45nm-fp32"],
    name: str = "model", seed: int = 0,
) -> tuple[EnergyReport, EnergyReport]:
    """Spiking-Diffusion's two costs: one denoiser evaluation (on the tokens of ``x0`` masked as at
    each absorbing step in ``ts``) and one decoding of tokens into an image (once per image)."""
    model.eval()
    tokens = model.vq.encode(x0)
    u = torch.rand(tokens.shape, generator=torch.Generator().manual_seed(seed)).to(x0.device)

    def run_denoiser(t: int) -> None:
        t_batch = torch.full((x0.shape[0],), t, dtype=torch.long, device=x0.device)
        model.denoiser(mask_tokens(tokens, t_batch, u, model.denoiser.mask_id)[0], t_batch)

    denoiser = count_energy(model.denoiser, run_denoiser, ts, x0.shape[0], energy_model, f"{name}: denoiser")
    decoder = count_energy(model.vq, lambda t: model.vq.decode(tokens), [0], x0.shape[0], energy_model,
                           f"{name}: spike generator + decoder")
    return denoiser, decoder


@torch.no_grad()
def count_energy(model: nn.Module, run, ts: list[int], batch: int, energy_model: EnergyModel,
                 name: str, all_macs: bool = False) -> EnergyReport:
    """Count ``model``'s layers while ``run(t)`` drives it once per ``t`` of ``ts``; per image, averaged over ts."""
    per_t, neurons_per_t, bits_per_t = {}, {}, {}
    spike_steps = 1 if all_macs else getattr(model, "spike_steps", 1)
    for t in ts:
        with OpCounter(model, batch, spike_steps) as counter:
            run(t)
        per_t[t], neurons_per_t[t], bits_per_t[t] = counter.layers, counter.neurons, counter.count_bits
    levels = None if all_macs else getattr(model, "count_levels", None)
    report = EnergyReport(name, energy_model, list(ts), batch, spike_steps=spike_steps,
                          count_levels=levels if levels != spike_steps else None)

    def mean(values) -> float:
        return sum(values) / len(ts)

    for layer_name, first in per_t[ts[0]].items():
        records = [per_t[t][layer_name] for t in ts]
        spikes = not all_macs and all(r.spike_input for r in records)
        dense = mean(r.dense_macs for r in records) / batch
        rates = {t: (r.firing_rate if spikes else 1.0) for t, r in zip(ts, records, strict=True)}
        rate = sum(rates.values()) / len(rates)
        macs, acs = (0.0, rate * dense) if spikes else (dense, 0.0)
        signed = any(r.negative_spikes for r in records)
        report.layers.append(LayerEnergy(
            name=layer_name, kind=first.kind, input="spikes" if spikes else "real", dense_macs=dense,
            firing_rate=rate, firing_rate_by_t=rates, macs=macs, acs=acs,
            energy_pj=macs * energy_model.e_mac_pj + acs * energy_model.e_ac_pj,
            steps=mean(r.steps for r in records), weights=first.weights,
            input_elements=mean(r.input_elements for r in records) / batch,
            output_elements=mean(r.output_elements for r in records) / batch,
            input_bits=(2 if signed else 1) if spikes else 32,
            input_sparsity=mean(r.input_sparsity for r in records),
            neurobench_effective=mean(r.neurobench_effective for r in records) / batch,
            neurobench_dense=mean(r.neurobench_dense for r in records) / batch,
            count_bit_ops=mean(bits_per_t[t].get(layer_name, 0.0) for t in ts) / batch if spikes else 0.0,
        ))
    for neuron_name, first in neurons_per_t[ts[0]].items():
        records = [neurons_per_t[t][neuron_name] for t in ts]
        rates = {t: r.firing_rate for t, r in zip(ts, records, strict=True)}
        report.neurons.append(NeuronEnergy(neuron_name, first.kind, mean(r.elements for r in records) / batch,
                                           sum(rates.values()) / len(rates), rates))
    return report


def ann_twin_report(config, x0: torch.Tensor, ts: list[int], energy_model: EnergyModel,
                    model: nn.Module | None = None) -> EnergyReport:
    """The report of ``config``'s ANN twin (its family's ``ann_twins``). An ANN costs dense MACs
    whatever its weights, so an untrained twin gives its field energy exactly; where the family can
    rebuild the twin's trained weights from ``model`` (a converted SNN's quantised ANN) it does, so that
    NeuroBench's effective counts, which skip the activations' zeros, are the trained network's too."""
    from dataclasses import replace

    from spikediff.families import family_of
    from spikediff.models import build_model

    family = family_of(config)
    if model is not None and family.trained_twin is not None:
        twin, state = family.trained_twin(model, config), "trained"
    else:
        arch = family.ann_twin(config)
        twin = build_model(replace(config.model, arch=arch), config.diffusion.num_steps).to(x0.device)
        state = "untrained"
    return measure_energy(twin, x0, ts, NoiseSchedule.from_config(config.diffusion), energy_model,
                          name=f"ANN twin ({config.name}, {state})", dense=True)
