"""Dataclass configs, serialised to JSON beside the weights (docs/architecture.md, Rules).

One ``Config`` describes a whole run: the network (``ModelConfig``), the Gaussian diffusion
(``DiffusionConfig``), the data (``DataConfig``) and the optimisation (``TrainConfig``). Presets in
``presets.py`` are just named ``Config`` values.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from spikediff.ranges import (
    COUNT,
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    OPEN_FRACTION,
    POSITIVE,
    SEED,
    Range,
)

LR_DECAYS = ("constant", "cosine")
# converted_snn's neurons: SDM's signed IF, and the integrate-then-fire codes of spikediff.snn.count_coded
SPIKE_CODINGS = ("signed-if", "count", "phase")
BELOW_ONE = Range(False, 0, 1, open_high=True)  # a probability that 1 would make "always"
# The valid values of every numeric config field, checked when a config is made (``--set``, a preset, a
# config.json); a tuple's entries are each checked. A None is allowed where the field's type allows it.
RANGES: dict[str, Range] = {
    "model.image_size": COUNT, "model.img_ch": COUNT, "model.ch": COUNT, "model.ch_mult": COUNT,
    "model.num_res_blocks": COUNT, "model.dropout": BELOW_ONE, "model.attn_levels": NON_NEGATIVE_INT,
    "model.spike_steps": COUNT, "model.slack_steps": NON_NEGATIVE_INT, "model.quant_bits": Range(True, 1, 8),
    "model.quant_clip": POSITIVE,
    "model.codebook_size": COUNT, "model.latent_ch": COUNT, "model.neuron.v_threshold": POSITIVE,
    "model.neuron.v_reset": Range(False), "model.neuron.alpha": POSITIVE, "model.neuron.tau": Range(False, 1),
    "model.membrane_decay": Range(False, 0, 1, open_low=True), "model.depth": COUNT, "model.patch_size": COUNT,
    "model.num_classes": NON_NEGATIVE_INT, "model.class_dropout": BELOW_ONE,
    "diffusion.num_steps": COUNT, "diffusion.beta_start": OPEN_FRACTION, "diffusion.beta_end": OPEN_FRACTION,
    "diffusion.min_snr_gamma": POSITIVE,
    "train.batch_size": COUNT, "train.lr": POSITIVE, "train.weight_decay": NON_NEGATIVE,
    "train.warmup_steps": NON_NEGATIVE_INT, "train.grad_clip": NON_NEGATIVE,  # 0: no clipping
    "train.ema_decay": OPEN_FRACTION, "train.total_steps": COUNT, "train.seed": SEED, "train.grad_accum": COUNT,
    "train.ema_bn_batches": COUNT, "train.keep_checkpoints": COUNT, "train.log_every": COUNT,
    "train.save_every": COUNT, "train.sample_every": NON_NEGATIVE_INT,  # 0: no sample grids
    "train.sample_num": COUNT, "train.sample_steps": COUNT,
}


def check_ranges(config: Any, prefix: str) -> None:
    """Every field of the config section ``config`` (called ``prefix``) that :data:`RANGES` declares, checked."""
    for f in dataclasses.fields(config):
        key, value = f"{prefix}.{f.name}", getattr(config, f.name)
        if key not in RANGES or value is None:
            continue
        for item in value if isinstance(value, tuple) else (value,):
            RANGES[key].check(item, key)
# train.total_steps of a run that its time budget ends (``spikediff train --max-minutes`` without an explicit
# step count): a cap no run reaches, so the preset's step count does not end a budgeted run early
UNCAPPED_STEPS = 10**9


@dataclass(frozen=True)
class NeuronConfig:
    """Spiking-neuron dynamics. Defaults are the SDDPM neuron: IF, threshold 1, hard reset to 0,
    reset kept in the graph, ATan surrogate (alpha 2)."""

    kind: str = "if"  # "if" | "lif"
    v_threshold: float = 1.0
    v_reset: float = 0.0
    soft_reset: bool = False  # subtract the threshold instead of resetting to v_reset
    detach_reset: bool = False
    surrogate: str = "atan"  # "atan" | "sigmoid"
    alpha: float | None = None  # surrogate sharpness; None = 2 (atan) / 4 (sigmoid)
    tau: float = 2.0  # LIF only
    decay_input: bool = True  # LIF only

    def __post_init__(self) -> None:
        check_ranges(self, "model.neuron")
        if not self.v_reset < self.v_threshold:
            raise ValueError(f"model.neuron.v_reset ({self.v_reset}) must be below v_threshold ({self.v_threshold})")


@dataclass(frozen=True)
class ModelConfig:
    """A backbone: ``arch`` picks it, the rest sizes it (names follow the DDPM U-Net)."""

    # "spiking_unet" | "ann_unet" | "qann_unet" | "converted_snn" (ANN-to-SNN) | "vq_svae" | "spiking_diffusion"
    # | "sdit" | "ann_sdit" (SDiT's ANN twin)
    arch: str = "spiking_unet"
    image_size: int = 32
    img_ch: int = 3
    ch: int = 128  # base width; sdit: the hidden size
    ch_mult: tuple[int, ...] = (1, 2, 2, 4)
    num_res_blocks: int = 2
    dropout: float = 0.1
    attn_levels: tuple[int, ...] = ()  # ann_unet: levels whose res blocks get attention
    spike_steps: int = 4  # spiking_unet, converted_snn: the papers' T
    quant_bits: int = 2  # qann_unet, converted_snn: b of the b-bit quantised ReLU (SDM's ANN-to-SNN)
    # qann_unet: initial clip (alpha) of every quantised ReLU; 6 is SDM's reference. Adam moves alpha by
    # about the learning rate per step, so on a short run the clip stays near where it starts
    quant_clip: float = 6.0
    # qann_unet, converted_snn: quantisers (signed IF neurons once converted) also in front of the 1x1 shortcut,
    # down- and up-sampling convolutions, which otherwise take the real-valued residual stream: the converted
    # network then feeds spikes to every convolution but the stem (the residual stream's negative part is
    # clipped there, so the network learns a different function)
    quant_all_convs: bool = False
    # qann_unet, converted_snn, with quant_all_convs: those residual-stream quantisers symmetric (levels -L..L,
    # converted to signed IF neurons that fire -1 for negative input), so the stream's sign reaches the convs
    quant_signed_residual: bool = False
    # converted_snn: spiking steps beyond the quantiser's 2^b - 1 levels (T = levels + slack_steps). Every
    # neuron's count is capped at the levels and its threshold scaled by T / levels, so a constant input
    # still counts the quantiser's level, while a neuron at the top level has slack_steps steps in which it
    # may miss a spike (its input arrived late) and still reach it
    slack_steps: int = 0
    # converted_snn: the neuron that replaces each quantiser. "signed-if": SDM's signed IF, firing while its
    # input arrives (T = levels + slack_steps). "count" / "phase": integrate-then-fire, sending the quantiser's
    # level of its whole input exactly, as that many spikes over T = levels steps ("count") or as the level's
    # binary digits over T = quant_bits steps ("phase", a spike on step t worth 2^(bits-1-t) levels)
    spike_coding: str = "signed-if"
    codebook_size: int = 128  # vq_svae, spiking_diffusion: K codes (Spiking-Diffusion)
    latent_ch: int = 16  # vq_svae, spiking_diffusion: width of a code vector
    neuron: NeuronConfig = field(default_factory=NeuronConfig)
    membrane_decay: float = 0.8  # spiking_unet: decay of the membrane output layer
    readout: str = "membrane"  # spiking_unet: "membrane" (SDDPM) | "mean" over T (FSDDIM-style)
    tsm: bool = False  # spiking_unet: SDM's Temporal-wise Spiking Mechanism (per-step scale on each Conv2d)
    depth: int = 4  # sdit: blocks = depth // 2 in, 1 middle, depth // 2 out (with long skips)
    patch_size: int = 2  # sdit
    learn_sigma: bool = False  # sdit: also output the reverse variance (IDDPM hybrid loss), as SDiT's reference
    # sdit levers (not the paper's; measured in benchmarks/RESULTS.md's SDiT sections): the reconstruction
    # gate's output zero-initialised, so each block starts as the identity (DiT's adaLN-Zero gates); the
    # condition added to every token at every block through a zero-initialised linear, beside its leading
    # token; the WKV scan run both ways over the tokens
    zero_gate: bool = False
    condition_every_block: bool = False
    two_way_scan: bool = False
    # sdit levers that show the tokens the image's grid: the patch tokens' token shift from their left, right,
    # upper and lower neighbours (Vision-RWKV's quad shift), and position embeddings started at DiT's 2D sin-cos
    grid_shift: bool = False
    sincos_positions: bool = False
    # sdit lever: the output 3x3 conv also reads the noisy input (weights zero at start)
    input_skip: bool = False
    # class conditioning (spiking_unet, ann_unet, sdit): 0 = unconditional; labels are dropped to a
    # learned "null" class with probability class_dropout in training, for classifier-free guidance
    num_classes: int = 0
    class_dropout: float = 0.1

    def __post_init__(self) -> None:
        check_ranges(self, "model")
        if self.spike_coding not in SPIKE_CODINGS:
            raise ValueError(f"model.spike_coding must be one of {SPIKE_CODINGS}, got {self.spike_coding!r}")


@dataclass(frozen=True)
class DiffusionConfig:
    """The Gaussian diffusion: DDPM's linear schedule over 1000 steps and epsilon prediction by default."""

    num_steps: int = 1000
    schedule: str = "linear"  # "linear" | "cosine"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    prediction: str = "eps"  # "eps" | "v" | "x0"
    min_snr_gamma: float | None = None  # Min-SNR-gamma loss weighting (e.g. 5); None = DDPM's uniform weights
    # spiking_diffusion's absorbing-state diffusion over latent tokens ("num_steps" = the token count):
    absorbing_loss: str = "reweighted_elbo"  # "reweighted_elbo" (weight 1 - t/N, the reference's) | "elbo" (1/t)

    def __post_init__(self) -> None:
        check_ranges(self, "diffusion")
        if not self.beta_start < self.beta_end:
            raise ValueError(f"diffusion.beta_start ({self.beta_start}) must be below beta_end ({self.beta_end})")


@dataclass(frozen=True)
class DataConfig:
    """Which dataset, at which size; ``random_flip`` is on for CIFAR-10 only in the papers."""

    dataset: str = "cifar10"
    random_flip: bool = True


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation. Defaults are the reference SDDPM run: Adam 2e-4, batch 32, clip 1, no EMA."""

    batch_size: int = 32
    lr: float = 2e-4
    optimizer: str = "adam"  # "adam" | "adamw"
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_decay: str = "constant"  # "constant" | "cosine": after warmup, cosine from lr to 0 at total_steps
    grad_clip: float = 1.0
    ema_decay: float | None = None
    total_steps: int = 500_000
    seed: int = 0
    # "fp32" | "bf16" (autocast, neuron membranes stay fp32) | "auto" (the faster on the first batch, verified)
    precision: str = "fp32"
    # torch.compile: "on" | "off" | "auto" (where the run's budget repays the compilation; docs/fast_paths.md)
    compile: str = "auto"
    grad_checkpointing: bool = False  # recompute each block in backward: less activation memory
    grad_accum: int = 1  # micro-batches per step (per rank)
    ema_warmup: bool = False  # EMA decay min(decay, (1 + step) / (10 + step)), as in many DDPM codebases
    # BatchNorm statistics of the EMA weights: "recompute" them on the last ema_bn_batches training
    # batches before each checkpoint and sample grid, or "average" them like the weights
    ema_batchnorm: str = "recompute"
    ema_bn_batches: int = 8
    sync_bn: bool = False  # SyncBatchNorm across ranks (CUDA only: torch's SyncBatchNorm needs GPUs)
    keep_checkpoints: int = 3  # the newest K checkpoints of a run are kept
    log_every: int = 10  # steps between JSONL log lines
    save_every: int = 5000  # steps between checkpoints (and one at the end, always)
    sample_every: int = 5000  # steps between sample grids; 0 = never
    sample_num: int = 64  # images in a training sample grid
    sample_sampler: str = "ddim"
    sample_steps: int = 50

    def __post_init__(self) -> None:
        if isinstance(self.compile, bool):  # configs saved before "auto" existed held a bool
            object.__setattr__(self, "compile", "on" if self.compile else "off")
        check_ranges(self, "train")
        if self.lr_decay == "none":  # the name "constant" had before this release (--set reads none as None)
            object.__setattr__(self, "lr_decay", "constant")
        if self.lr_decay not in LR_DECAYS:
            raise ValueError(f"train.lr_decay must be one of {LR_DECAYS}, got {self.lr_decay!r}")


@dataclass(frozen=True)
class Config:
    """A whole run; ``name`` is the preset it came from (or a user's label)."""

    name: str = "custom"
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        return from_dict(cls, data)

    @classmethod
    def from_json(cls, text: str) -> Config:
        return cls.from_dict(json.loads(text))


# What a resumed run cannot change: the network, its diffusion and its data define what the saved weights
# mean, the optimizer what its saved state means; a run with or without an EMA keeps (or lacks) its EMA file
RESUME_FIXED = ("model.", "diffusion.", "data.", "train.optimizer")


def flat(config: Any, prefix: str = "") -> dict[str, Any]:
    """Every leaf of a config as ``{"section.key": value}``."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            out.update(flat(value, f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = value
    return out


def resume_changes(saved: Config, requested: Config) -> dict[str, list]:
    """``{key: [saved, requested]}`` for the training-schedule values a resumed run changes; a change to
    what the checkpoint's weights or optimizer state mean (:data:`RESUME_FIXED`, the EMA on or off) is a
    ``ValueError`` naming the first such key."""
    old, new = flat(saved), flat(requested)
    changes = {k: [old[k], new[k]] for k in old if k != "name" and old[k] != new[k]}
    for key, (was, now) in changes.items():
        if key.startswith(RESUME_FIXED) or (key == "train.ema_decay" and (was is None) != (now is None)):
            raise ValueError(f"cannot resume with {key}={now!r}: the checkpoint was trained with {was!r}, and a "
                             "resumed run keeps its model, diffusion, data, optimizer and EMA (train into a new --out)")
    return changes


def from_dict(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """Rebuild dataclass ``cls`` from plain JSON data, recursing into nested configs.

    Unknown keys are an error that names the valid ones, so a typo in a config file or a ``--set``
    never passes silently; missing keys take the defaults, so older config files keep loading.
    """
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown config key(s) {sorted(where + k for k in unknown)}; valid: {sorted(names)}")
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ValueError(f"config key {where + key!r} must be a mapping, got {value!r}")
            value = from_dict(hint, value, where=f"{where}{key}.")
        elif typing.get_origin(hint) is tuple and isinstance(value, list | tuple):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


def _parse_value(text: str, hint: Any, key: str) -> Any:
    """A ``--set`` value as the type its field declares (JSON syntax for lists, ``none`` for None)."""
    optional = isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint)
    if text.lower() in ("none", "null"):
        if not optional:
            raise ValueError(f"--set {key}: this key cannot be none")
        return None
    base = next(a for a in typing.get_args(hint) if a is not type(None)) if optional else hint
    origin = typing.get_origin(base)
    try:
        if origin is tuple:
            value = json.loads(text if text.startswith("[") else f"[{text}]")
            return tuple(int(v) for v in value)
        if base is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return text.lower() in ("true", "1")
        if base is int:
            return int(float(text)) if float(text).is_integer() else int(text)
        if base is float:
            return float(text)
        return text
    except (ValueError, json.JSONDecodeError, TypeError, OverflowError):
        raise ValueError(f"--set {key}={text}: expected a value of type {getattr(base, '__name__', base)}") from None


def apply_overrides(config: Config, assignments: list[str]) -> Config:
    """Apply ``key=value`` strings such as ``train.lr=1e-4`` or ``model.ch_mult=1,2,2`` to ``config``."""
    for assignment in assignments:
        if "=" not in assignment:
            raise ValueError(f"--set expects key=value, got {assignment!r}")
        key, text = assignment.split("=", 1)
        path = key.strip().split(".")
        config = _replace_path(config, path, text.strip(), key)
    return config


def _replace_path(obj: Any, path: list[str], text: str, key: str) -> Any:
    names = {f.name for f in dataclasses.fields(obj)}
    if path[0] not in names:
        raise ValueError(f"--set {key}: unknown key {path[0]!r}; valid here: {', '.join(sorted(names))}")
    hint = typing.get_type_hints(type(obj))[path[0]]
    current = getattr(obj, path[0])
    if dataclasses.is_dataclass(current):
        if len(path) == 1:
            raise ValueError(f"--set {key}: {path[0]!r} is a group; set one of its keys, e.g. {key}.<name>")
        return dataclasses.replace(obj, **{path[0]: _replace_path(current, path[1:], text, key)})
    if len(path) > 1:
        raise ValueError(f"--set {key}: {path[0]!r} has no sub-keys")
    return dataclasses.replace(obj, **{path[0]: _parse_value(text, hint, key)})
