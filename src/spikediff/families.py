"""Model families: everything the rest of spikediff needs to know about a kind of model, in one place.

A family groups the architectures (``model.arch`` values) that train, sample and are measured the
same way: how a run starts from another run's weights (``--init-from``), its training objective,
which samplers apply and which is the default, the ANN its energy is compared with, and whether
``compile="auto"`` may compile it. Training, sampling, energy and the CLI ask :func:`family_of`
instead of testing architecture names, so adding a family means adding a ``Family`` here and its
backbone to :mod:`spikediff.models` (see ``docs/architecture.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from spikediff.ann2snn.conversion import quantised_ann_of
from spikediff.checkpoint import WEIGHTS_FILE, load_config, load_weights, resolve
from spikediff.config import Config
from spikediff.diffusion import SAMPLERS
from spikediff.objectives import Objective, absorbing_objective, gaussian_objective, vq_objective

InitFrom = Callable[[nn.Module, Config, Path, torch.device], None]


def _load_all_weights(model: nn.Module, config: Config, init_dir: Path, device: torch.device) -> None:
    """Start from another run's weights; a plain Spiking U-Net starts a TSM model (its per-step
    scales ``tsm_p`` keep their initial 1.0)."""
    load_weights(model, resolve(init_dir) / WEIGHTS_FILE, device, missing_ok=("tsm_p",))


# The model fields a Spiking-Diffusion denoiser shares with the VQ-SVAE whose codes it learns.
VQ_FIELDS = ("image_size", "img_ch", "spike_steps", "neuron", "codebook_size", "latent_ch")


def _load_vq_stage(model: nn.Module, config: Config, init_dir: Path, device: torch.device) -> None:
    """The second Spiking-Diffusion stage starts from a trained first stage (VQ-SVAE), rebuilt from
    its own config: the two configs must agree on the fields the stages share."""
    vq_config = load_config(init_dir)
    if vq_config.model.arch not in VQ_STAGE.archs:
        raise ValueError(f"--init-from {init_dir} is a {vq_config.model.arch} run; expected a vq_svae run")
    differ = [f for f in VQ_FIELDS if getattr(config.model, f) != getattr(vq_config.model, f)]
    if differ:
        raise ValueError(f"model.{', model.'.join(differ)} differ from the VQ-SVAE run {init_dir} "
                         f"({', '.join(f'{f}={getattr(vq_config.model, f)}' for f in differ)}): set them the same")
    load_weights(model.vq, resolve(init_dir) / WEIGHTS_FILE, device)


@dataclass(frozen=True)
class Family:
    """One kind of model (see the module docstring)."""

    name: str
    archs: tuple[str, ...]
    objective: Callable[[Config, nn.Module, Callable[[], float]], Objective]
    samplers: tuple[str, ...] = tuple(SAMPLERS)  # empty: not a generator
    default_sampler: str = "ddim"
    default_steps: Callable[[Config], int] = lambda config: 50
    not_a_generator: str = ""  # why sampling it makes no sense, and what to sample instead
    init_from: InitFrom = _load_all_weights
    needs_init_from: str = ""  # non-empty: a fresh run must start from --init-from; the message says which
    dense_archs: tuple[str, ...] = ()  # counted as ANNs by the energy report (every operation a MAC)
    ann_twins: dict[str, str] = field(default_factory=dict)  # arch -> the ANN arch its energy is compared with
    # (model, config) -> the twin with trained weights where the model determines them (a converted SNN's quantised
    # ANN); None: the twin is measured untrained, which gives its dense counts exactly but not its zeros
    trained_twin: Callable[[nn.Module, Config], nn.Module] | None = None
    # kind ("train" | "sample") -> (compile seconds, speed-up) compile="auto" assumes for it until measured on
    # the machine; absent: spikediff.fast_path.PRIOR
    compile_prior: dict[str, tuple[float, float]] = field(default_factory=dict)
    samples_tokens: bool = False  # sampled as discrete latent tokens, then decoded (Spiking-Diffusion)

    def counts_as_ann(self, config: Config) -> bool:
        """Whether the energy report counts ``config``'s model as an ANN (every operation a MAC)."""
        return config.model.arch in self.dense_archs

    def ann_twin(self, config: Config) -> str | None:
        """The architecture ``config``'s model is compared with for energy (None: no comparison)."""
        return self.ann_twins.get(config.model.arch)

    def check_sampler(self, sampler: str, arch: str) -> None:
        if not self.samplers:
            raise ValueError(self.not_a_generator)
        if sampler not in self.samplers:
            raise ValueError(f"sampler {sampler!r} does not apply to {arch}; expected one of {sorted(self.samplers)}")


GAUSSIAN_UNET = Family(
    name="gaussian-unet", archs=("spiking_unet", "ann_unet"),
    objective=lambda config, model, variance: gaussian_objective(config),
    dense_archs=("ann_unet",),
    # the DDPM U-Net of the same sizes is the Spiking U-Net's ANN twin
    ann_twins={"spiking_unet": "ann_unet"},
)
QUANTISED = Family(
    name="quantised-ann-to-snn", archs=("qann_unet", "converted_snn"),
    objective=lambda config, model, variance: gaussian_objective(config),
    dense_archs=("qann_unet",),
    # a converted SNN is compared with the quantised ANN it was converted from, rebuilt from its weights
    ann_twins={"converted_snn": "qann_unet"},
    trained_twin=quantised_ann_of,
    # compiling fuses the quantisers' element-wise passes, which eager runs one by one through memory: a
    # fmnist-qann-signed-small training step on a 2-core Xeon compiled cold in ~60 s for 1.75x over eager bf16
    # (1.25x in fp32); the default prior (3 min for 1.15x) never let a 30-minute run try it
    compile_prior={"train": (90.0, 1.5)},
)
VQ_STAGE = Family(
    name="spiking-diffusion-vq", archs=("vq_svae",),
    objective=lambda config, model, variance: vq_objective(variance()),
    samplers=(), default_sampler="",
    not_a_generator="a VQ-SVAE is the first stage of Spiking-Diffusion, not a generator: train the second stage "
                    "on it (--preset sd-diffusion-fmnist --init-from THIS_RUN) and sample that",
)
TOKEN_DIFFUSION = Family(
    name="spiking-diffusion", archs=("spiking_diffusion",),
    objective=lambda config, model, variance: absorbing_objective(config, model),
    samplers=("absorbing",), default_sampler="absorbing", default_steps=lambda config: config.diffusion.num_steps,
    init_from=_load_vq_stage,
    needs_init_from="the spiking-diffusion stage trains over a trained VQ-SVAE's codes: pass --init-from the run "
                    "of its first stage (e.g. --preset sd-vq-fmnist)",
    samples_tokens=True,
)
SDIT = Family(
    name="sdit", archs=("sdit", "ann_sdit"),
    objective=lambda config, model, variance: gaussian_objective(config),
    dense_archs=("ann_sdit",),
    # the same transformer without its LIF neurons: every layer costs what it costs in SDiT, whose spikes
    # are averaged before any weight layer, so the ratio shows how much the convention credits it
    ann_twins={"sdit": "ann_sdit"},
    # compiling fuses the many small element-wise operations of its neurons, token shifts and gates, which set
    # its eager pace: a fmnist-sdit-cpu-small training step on a 2-core Xeon compiled in ~1.5 min for ~2x over
    # eager bf16 (its WKV is a matrix product, so nothing is unrolled over the tokens)
    compile_prior={"train": (120.0, 1.8)},
)

FAMILIES: tuple[Family, ...] = (GAUSSIAN_UNET, QUANTISED, VQ_STAGE, TOKEN_DIFFUSION, SDIT)
_BY_ARCH = {arch: family for family in FAMILIES for arch in family.archs}


def family_of(config_or_arch: Config | str) -> Family:
    """The family of a config (or an architecture name)."""
    arch = config_or_arch if isinstance(config_or_arch, str) else config_or_arch.model.arch
    if arch not in _BY_ARCH:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {sorted(_BY_ARCH)}")
    return _BY_ARCH[arch]


def all_samplers() -> list[str]:
    """Every sampler some family uses: the CLI's choices."""
    return sorted({s for family in FAMILIES for s in family.samplers})
