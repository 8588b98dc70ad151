"""Generation loops: batched, seeded sampling from any backbone, and writing images to disk."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image
from torch import nn

from spikediff.config import Config
from spikediff.data.transforms import to_uint8
from spikediff.diffusion import (
    SAMPLERS,
    ClassGuided,
    Denoiser,
    NoiseSchedule,
    estimate_gamma,
    sample_absorbing,
    sampling_timesteps,
)
from spikediff.families import family_of
from spikediff.fast_path import Decision, FastPath, agree_across_ranks, choose_sampling_path
from spikediff.models.folding import fold_batchnorm
from spikediff.snn import threshold_scale

GAMMA_FILE = "analytic_gamma.json"


@torch.no_grad()
def generate(
    model: nn.Module,
    config: Config,
    num: int,
    sampler: str = "ddim",
    steps: int = 50,
    seed: int = 0,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    on_step: Callable[[int], None] | None = None,
    threshold: float = 1.0,
    precision: str = "fp32",
    fold_bn: bool = False,
    compile: str | bool = "off",
    classes: int | Sequence[int] | torch.Tensor | None = None,
    guidance: float = 1.0,
    first: int = 0,
    on_fast_path: Callable[[Decision], None] | None = None,
    **sampler_kwargs,
) -> torch.Tensor:
    """``num`` images as uint8 ``[N, C, H, W]``: images ``first .. first + num - 1`` of the sequence
    that ``seed`` defines (so a long sampling run can be done, and resumed, in pieces).

    The initial noise of every image comes from one generator seeded with ``seed``, and the sampler's
    own draws for the batch starting at image ``i`` from a generator seeded with ``(seed, i)``; so
    the images do not depend on how batches are spread over processes. Under torch.distributed
    (torchrun) the batches are dealt out to the ranks and gathered: every rank returns all images.
    ``on_step`` is called after every network evaluation (for progress bars). The model is put in
    eval mode (BatchNorm running statistics). ``threshold`` scales every neuron's threshold during
    sampling only (threshold guidance). ``precision`` ("fp32", "bf16": autocast with fp32 membranes,
    or "auto") and ``compile`` ("on", "off" or "auto") choose the fast path; "auto" measures the
    candidates on the first batch and verifies the choice against eager fp32 (see
    :mod:`spikediff.fast_path`; ``on_fast_path`` receives the decision). ``fold_bn`` samples with a
    copy whose BatchNorms are folded into the convs before them (same function up to rounding). A
    compiled network recompiles for a last batch smaller than ``batch_size``: choose ``num`` a
    multiple of it.

    A class-conditional model samples image ``i`` of class ``classes`` (one label for all, or one
    per image); by default class ``i mod num_classes``, so every class is equally represented and a
    grid with ``num_classes`` columns shows one class per column. ``guidance`` is the
    classifier-free guidance scale (1 = conditional, one evaluation per step; otherwise two). DDPM
    sampling of a model that learns its variance uses that variance unless ``variance`` says otherwise.
    """
    family = family_of(config)
    family.check_sampler(sampler, config.model.arch)
    latent = family.samples_tokens
    labels = class_labels(config, num, classes, guidance, first)
    if sampler == "ddpm":
        sampler_kwargs.setdefault("variance", default_variance(config))
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()
    if fold_bn:
        model = fold_batchnorm(model)
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    evaluations = -(-num // (batch_size * world)) * steps
    schedule = NoiseSchedule.from_config(config.diffusion)
    m = config.model
    noise = torch.randn(first + num, m.img_ch, m.image_size, m.image_size,
                        generator=torch.Generator().manual_seed(seed))[first:]
    if latent:
        # the absorbing sampler's token denoiser is not measured: "auto" is fp32, bf16 only where asked for
        fast = Decision(FastPath("bf16" if precision == "bf16" else "fp32", False), model, [])
    else:
        fast = _choose_path(model, config, noise[:batch_size], labels, guidance, device, precision, compile,
                            evaluations, threshold, fold_bn)
    if on_fast_path:
        on_fast_path(fast)
    model = fast.model
    callback = (lambda i, t, x: on_step(1)) if on_step else None
    mine = {}
    with threshold_scale(model, threshold), fast.context(device):
        for start in range(rank * batch_size, num, world * batch_size):
            generator = torch.Generator().manual_seed(seed * 1_000_003 + first + start + 1)
            if latent:
                n = len(noise[start : start + batch_size])
                tokens = sample_absorbing(model.denoiser, (n, *model.latent_shape), model.denoiser.mask_id, steps,
                                          generator=generator, device=device, callback=callback, **sampler_kwargs)
                x = model.vq.decode(tokens)
            else:
                net = model
                if labels is not None:
                    net = ClassGuided(model, labels[start : start + batch_size].to(device), guidance, m.num_classes)
                x = SAMPLERS[sampler](
                    denoiser_of(net, config),
                    schedule,
                    noise[start : start + batch_size].to(device),
                    steps,
                    generator=generator,
                    callback=callback,
                    **sampler_kwargs,
                )
            mine[start] = to_uint8(x.float()).cpu()
    if world > 1:
        parts: list[dict] = [{} for _ in range(world)]
        dist.all_gather_object(parts, mine)
        mine = {k: v for part in parts for k, v in part.items()}
    return torch.cat([mine[k] for k in sorted(mine)])


def _choose_path(model: nn.Module, config: Config, noise: torch.Tensor, labels: torch.Tensor | None,
                 guidance: float, device: torch.device, precision: str, compile: str | bool, evaluations: int,
                 threshold: float, fold_bn: bool) -> Decision:
    """The fast path of a sampling run, probed with the first batch as the sampler will call the
    network (``ClassGuided`` doubles a guided batch and adds the null label), at the middle diffusion
    step; every rank of a torchrun takes the same path."""
    x = noise.to(device)
    t = torch.full((len(x),), config.diffusion.num_steps // 2, device=device, dtype=torch.long)
    extra: tuple[torch.Tensor, ...] = ()
    if labels is not None:
        y = labels[: len(x)].to(device)
        if guidance != 1.0:
            x, t, y = torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, torch.full_like(y, config.model.num_classes)])
        extra = (y,)
    shape = sampling_shape(config, len(x), fold_bn)
    family = family_of(config)
    with threshold_scale(model, threshold):
        fast = choose_sampling_path(model, x, t, device, precision, compile, evaluations, shape,
                                    *extra, prior=family.compile_prior.get("sample"))
    return agree_across_ranks(fast, model, device)


def denoiser_of(net: nn.Module, config: Config) -> Denoiser:
    """``net`` as the samplers see it: with its config's prediction type and variance output."""
    return Denoiser(net, config.diffusion.prediction, config.model.learn_sigma)


def sampling_defaults(config: Config, sampler: str | None = None, steps: int | None = None) -> tuple[str, int]:
    """``(sampler, steps)`` with the model family's defaults filled in (DDIM-50 for Gaussian models,
    absorbing diffusion over every token for Spiking-Diffusion)."""
    family = family_of(config)
    return sampler or family.default_sampler, steps or family.default_steps(config)


def sampler_options(
    model: nn.Module, config: Config, sampler: str, steps: int, *, eta: float = 0.0, temperature: float = 1.0,
    variance: str | None = None, threshold: float = 1.0, checkpoint_dir: str | Path | None = None,
    data_dir: str | Path | None = None, weights: str = "model",
) -> dict:
    """The keyword arguments ``sampler`` takes in :func:`generate`: DDIM's ``eta``, the absorbing
    sampler's ``temperature``, DDPM's ``variance``, or Analytic-DPM's gamma (estimated once per
    threshold and weight set, cached beside the checkpoint, see :func:`analytic_gamma`)."""
    if sampler == "absorbing":
        return {"temperature": temperature}
    if sampler == "ddim":
        return {"eta": eta}
    if sampler == "ddpm":
        return {"variance": variance} if variance else {}
    if sampler == "analytic-dpm":
        return {"gamma": analytic_gamma(model, config, steps, checkpoint_dir, threshold=threshold, data_dir=data_dir,
                                        weights=weights)}
    return {}


def default_variance(config: Config) -> str:
    """DDPM's reverse variance unless asked otherwise: the model's own where it learns one, else fixedlarge
    (pytorch-ddpm's and SDDPM's choice)."""
    return "learned" if config.model.learn_sigma else "fixedlarge"


def sampling_shape(config: Config, batch: int, fold_bn: bool) -> dict:
    """What a sampling evaluation's speed depends on, as the fast-path cache's key."""
    return {"model": asdict(config.model), "batch": batch, "fold_bn": fold_bn}


def class_labels(config: Config, num: int, classes: int | Sequence[int] | torch.Tensor | None,
                 guidance: float = 1.0, first: int = 0) -> torch.Tensor | None:
    """The label of each of ``num`` images from image ``first`` on (see :func:`generate`); None for an
    unconditional model, which refuses classes and guidance."""
    if not config.model.num_classes and guidance != 1.0:
        raise ValueError(f"{config.name} is unconditional (model.num_classes = 0): guidance needs a class-conditional "
                         "model")
    k = config.model.num_classes
    if not k:
        if classes is not None:
            raise ValueError(f"{config.name} is unconditional (model.num_classes = 0): it cannot sample a class")
        return None
    if guidance != 1.0 and config.model.class_dropout == 0:
        raise ValueError("classifier-free guidance needs the unconditional prediction, which a model trained with "
                         "model.class_dropout = 0 never learned: sample with guidance 1")
    if classes is None:
        return (torch.arange(num) + first) % k
    labels = torch.as_tensor(classes, dtype=torch.long).flatten()
    labels = labels.expand(num).clone() if labels.numel() == 1 else labels
    if len(labels) != num or labels.min() < 0 or labels.max() >= k:
        raise ValueError(f"classes must be one label or {num} labels in 0..{k - 1}, got {classes}")
    return labels


def analytic_gamma(
    model: nn.Module, config: Config, steps: int, cache_dir: str | Path | None = None, num_images: int = 256,
    threshold: float = 1.0, data_dir: str | Path | None = None, seed: int = 0, weights: str = "model",
) -> list[float]:
    """Analytic-DPM's ``E ||eps_theta(x_t, t)||^2 / d`` at the ``steps`` sampling steps, estimated on
    ``num_images`` training images and cached per step in ``cache_dir/analytic_gamma.json`` (it
    depends on the weights and on the threshold, so the cache lives with the checkpoint, keyed by
    ``weights`` ("model" or "ema") and threshold)."""
    from spikediff.data import batch_transform, load_dataset, match_channels

    ts = sampling_timesteps(config.diffusion.num_steps, steps)
    path = Path(cache_dir) / GAMMA_FILE if cache_dir else None
    cache = json.loads(path.read_text()) if path and path.is_file() else {}
    key = f"weights={weights}, threshold={threshold}, images={num_images}, seed={seed}"
    known = cache.setdefault(key, {})
    todo = [t for t in ts if str(t) not in known]
    if todo:
        device = next(model.parameters()).device
        dataset = load_dataset(config.data, config.model.image_size, "train", data_dir)
        pick = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:num_images]
        x0 = match_channels(batch_transform(torch.stack([dataset[int(i)] for i in pick]), config.model.image_size,
                                            False), config.model.img_ch)
        model.eval()
        gen = torch.Generator().manual_seed(seed)
        schedule = NoiseSchedule.from_config(config.diffusion)
        with threshold_scale(model, threshold):
            for t in todo:
                chunks = [x0[i : i + 64].to(device) for i in range(0, len(x0), 64)]
                values = [estimate_gamma(denoiser_of(model, config), schedule, c, [t], gen)[0] for c in chunks]
                known[str(t)] = sum(v * len(c) for v, c in zip(values, chunks, strict=True)) / len(x0)
        if path:
            path.write_text(json.dumps(cache, indent=1))
    return [known[str(t)] for t in ts]


def image_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 2) -> np.ndarray:
    """uint8 ``[N, C, H, W]`` -> one uint8 ``[H', W', C]`` grid with white padding."""
    n, c, h, w = images.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    grid = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i, img in enumerate(images.numpy()):
        r, col = divmod(i, nrow)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[top : top + h, left : left + w] = img.transpose(1, 2, 0)
    return grid


def _png(array: np.ndarray, path: Path) -> None:
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(path)


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> Path:
    """A PNG grid of uint8 images, ``nrow`` per row (default: square); a class-conditional model's
    default labels (``i mod num_classes``) put one class per column when ``nrow = num_classes``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _png(image_grid(images, nrow), path)
    return path


def save_samples(images: torch.Tensor, out_dir: str | Path, individual: bool = True, nrow: int | None = None) -> Path:
    """Write ``samples.npz`` (key ``images``: uint8 NHWC, the layout FID tools read), ``grid.png``
    of the first 64 (``nrow`` per row) and, if ``individual``, one PNG per image."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out_dir / "samples.npz", images=images.permute(0, 2, 3, 1).numpy())
    save_grid(images[:64], out_dir / "grid.png", nrow)
    if individual:
        width = max(5, len(str(len(images))))
        for i, img in enumerate(images.numpy()):
            _png(img.transpose(1, 2, 0), out_dir / f"{i:0{width}d}.png")
    return out_dir
