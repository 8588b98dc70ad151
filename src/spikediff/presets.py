"""Named configurations: every paper setting spikediff claims, and CPU-sized ones for this machine.

Paper presets follow the SDDPM paper and its code: the reference SDDPM code's optimiser (Adam 2e-4, grad clip 1, no EMA,
no warmup — the reference defines warmup but never applies it) and the paper's batch of 128.
"""

from __future__ import annotations

from dataclasses import replace

from spikediff.config import Config, DataConfig, DiffusionConfig, ModelConfig, NeuronConfig, TrainConfig

_SDDPM = ModelConfig(arch="spiking_unet", ch=128, ch_mult=(1, 2, 2, 4), num_res_blocks=2, spike_steps=4)
_PAPER_TRAIN = TrainConfig(batch_size=128, lr=2e-4, grad_clip=1.0, total_steps=500_000)
_GREY = {"img_ch": 1}

# CPU-sized models and their short-budget recipe, chosen on learning curves (benchmarks/RESULTS.md, "The short-budget
# recipe"): Fashion-MNIST at its own 28x28 (23% fewer pixels than the papers' 32), no dropout, an EMA whose window
# grows with the run (decay min(0.999, (1 + s) / (10 + s)), BatchNorm statistics recomputed for the averaged weights),
# which sampling, metrics and energy use by default, and Min-SNR-5 loss weights. The Spiking U-Net runs T = 2
# spiking steps: a step costs half of T = 4's, so 30 minutes on 2 cores see twice the images.
_SMALL = dict(ch=32, ch_mult=(1, 2, 2), num_res_blocks=1, img_ch=1, image_size=28, dropout=0.0)
_SMALL_TRAIN = TrainConfig(
    batch_size=32, lr=1e-3, warmup_steps=100, grad_clip=1.0, total_steps=2000, save_every=250, sample_every=500,
    sample_sampler="dpm-solver++", sample_steps=20,  # the quick start's sampler: grids cost training time
    precision="auto", ema_decay=0.999, ema_warmup=True,
)


def _paper(name: str, dataset: str, flip: bool, **model) -> Config:
    return Config(
        name=name,
        model=replace(_SDDPM, **model),
        diffusion=DiffusionConfig(),
        data=DataConfig(dataset=dataset, random_flip=flip),
        train=_PAPER_TRAIN,
    )


_SMALL_SNN = ModelConfig(arch="spiking_unet", spike_steps=2, **_SMALL)
_SMALL_DIFFUSION = DiffusionConfig(min_snr_gamma=5.0)
_FMNIST = DataConfig(dataset="fmnist", random_flip=False)

# Spiking-Diffusion (Liu et al. 2023, Arktis2022/Spiking-Diffusion): LIF (tau 2, hard reset, ATan), T 16,
# 28x28, codebook 128 x 16, AdamW 1e-3 with weight decay 1e-3, batch 32, no clipping; 100 epochs of
# VQ-SVAE then 200 of diffusion (1875 steps each).
_SD_NEURON = NeuronConfig(kind="lif", tau=2.0)
_SD_MODEL = ModelConfig(arch="vq_svae", image_size=28, img_ch=1, spike_steps=16, neuron=_SD_NEURON,
                        codebook_size=128, latent_ch=16, ch=64, ch_mult=(1, 2, 4, 8, 4), dropout=0.0)
_SD_TRAIN = TrainConfig(batch_size=32, lr=1e-3, optimizer="adamw", weight_decay=1e-3, grad_clip=0.0,
                        total_steps=100 * 1875, save_every=5000, sample_every=0)


def _spiking_diffusion(dataset: str, steps_per_epoch: int = 1875, flip: bool = False, **model) -> dict[str, Config]:
    """Both stages on ``dataset``: 100 epochs of VQ-SVAE, then 200 of absorbing diffusion over its
    ``(size / 4)^2`` tokens (one more token masked per diffusion step)."""
    data = DataConfig(dataset=dataset, random_flip=flip)
    vq = replace(_SD_MODEL, **model)
    tokens = (vq.image_size // 4) ** 2
    return {
        f"sd-vq-{dataset}": Config(name=f"sd-vq-{dataset}", model=vq, data=data,
                                   train=replace(_SD_TRAIN, total_steps=100 * steps_per_epoch)),
        f"sd-diffusion-{dataset}": Config(
            name=f"sd-diffusion-{dataset}", model=replace(vq, arch="spiking_diffusion"),
            diffusion=DiffusionConfig(num_steps=tokens), data=data,
            train=replace(_SD_TRAIN, total_steps=200 * steps_per_epoch, sample_every=5000,
                          sample_sampler="absorbing", sample_steps=tokens),
        ),
    }


# SDiT (Wang et al. 2024, foolLain/SDiT's train.py): 28x28 inputs (CIFAR-10 resized to 28), grey repeated to 3
# channels, patch 2, LIF (tau 2, threshold 1, ATan) over T = 4, 10 classes with label dropout 0.1;
# AdamW 1e-4 (torch's default weight decay 0.01), batch 256, no clipping, no EMA, 1600 epochs;
# sampled with 250 DDPM steps.
_SDIT_MODEL = ModelConfig(arch="sdit", image_size=28, img_ch=3, ch=384, depth=4, patch_size=2, spike_steps=4,
                          neuron=_SD_NEURON, num_classes=10, class_dropout=0.1, dropout=0.0)
_SDIT_TRAIN = TrainConfig(batch_size=256, lr=1e-4, optimizer="adamw", weight_decay=0.01, grad_clip=0.0,
                          sample_sampler="ddpm", sample_steps=250, save_every=5000, sample_every=5000, sample_num=100)


def _sdit(dataset: str, steps_per_epoch: int, **model) -> Config:
    return Config(name=f"sdit-{dataset}", model=replace(_SDIT_MODEL, **model),
                  data=DataConfig(dataset=dataset, random_flip=False),
                  train=replace(_SDIT_TRAIN, total_steps=1600 * steps_per_epoch))


PRESETS: dict[str, Config] = {
    "sddpm-cifar10": _paper("sddpm-cifar10", "cifar10", True),
    "sddpm-cifar10-t8": _paper("sddpm-cifar10-t8", "cifar10", True, spike_steps=8),
    "sddpm-mnist": _paper("sddpm-mnist", "mnist", False, **_GREY),
    "sddpm-fmnist": _paper("sddpm-fmnist", "fmnist", False, **_GREY),
    "sddpm-celeba": _paper("sddpm-celeba", "celeba", True, image_size=64),
    "sddpm-lsun-bedroom": _paper("sddpm-lsun-bedroom", "lsun-bedroom", True, image_size=64),
    "ddpm-cifar10": _paper("ddpm-cifar10", "cifar10", True, arch="ann_unet"),
    # SDM: TSM fine-tuning of a trained Spiking U-Net (train --init-from the plain checkpoint).
    "sdm-tsm-cifar10-t8": _paper("sdm-tsm-cifar10-t8", "cifar10", True, spike_steps=8, tsm=True),
    "fmnist-snn-small": Config(name="fmnist-snn-small", model=_SMALL_SNN, diffusion=_SMALL_DIFFUSION, data=_FMNIST,
                               train=_SMALL_TRAIN),
    "fmnist-snn-small-tsm": Config(
        name="fmnist-snn-small-tsm",
        model=replace(_SMALL_SNN, tsm=True),
        diffusion=_SMALL_DIFFUSION,
        data=_FMNIST,
        train=replace(_SMALL_TRAIN, lr=2e-4, warmup_steps=0, total_steps=500),
    ),
    # FSDDIM-style options (mil-tokyo/FSDDIM): LIF, mean-over-T readout, v-prediction, cosine schedule.
    "fmnist-snn-small-fsddim": Config(
        name="fmnist-snn-small-fsddim",
        model=replace(_SMALL_SNN, neuron=NeuronConfig(kind="lif", tau=2.0), readout="mean"),
        diffusion=DiffusionConfig(schedule="cosine", prediction="v"),
        data=_FMNIST,
        train=_SMALL_TRAIN,
    ),
    "fmnist-ann-small": Config(
        name="fmnist-ann-small", model=ModelConfig(arch="ann_unet", **_SMALL), diffusion=_SMALL_DIFFUSION,
        data=_FMNIST, train=_SMALL_TRAIN,
    ),
    # SDM's ANN-to-SNN path: train the quantised ANN, then `spikediff ann2snn RUN OUT [--finetune]`.
    "sdm-qann-cifar10-b2": Config(
        name="sdm-qann-cifar10-b2",
        model=ModelConfig(arch="qann_unet", ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2, quant_bits=2),
        data=DataConfig(dataset="cifar10", random_flip=True),
        train=TrainConfig(batch_size=128, lr=2e-4, warmup_steps=5000, grad_clip=1.0, ema_decay=0.9999,
                          total_steps=800_000),
    ),
    "fmnist-qann-small": Config(
        # clip 2, not the reference's 6: BatchNorm feeds each quantiser about unit variance, so a clip of 6 rounds
        # most of it to 0, and a short run moves the clip too slowly to recover. 3 bits, not SDM's 2: the same
        # training speed, a better network and a closer T=7 conversion, for 2.3x the SNN's sampling time
        # (benchmarks/RESULTS.md, "Three bits")
        name="fmnist-qann-small", model=ModelConfig(arch="qann_unet", quant_bits=3, quant_clip=2.0, **_SMALL),
        diffusion=_SMALL_DIFFUSION, data=_FMNIST, train=_SMALL_TRAIN,
    ),
    # The converted SNN's real-valued layers (shortcuts, down- and up-sampling) cost 90% of its energy run T = 7
    # times as MACs: quantisers in front of them too, symmetric because the residual stream they read is signed,
    # so that after conversion spikes feed every convolution but the stem (benchmarks/RESULTS.md, issue 38)
    "fmnist-qann-signed-small": Config(
        name="fmnist-qann-signed-small",
        model=ModelConfig(arch="qann_unet", quant_bits=3, quant_clip=2.0, quant_all_convs=True,
                          quant_signed_residual=True, **_SMALL),
        diffusion=_SMALL_DIFFUSION, data=_FMNIST, train=_SMALL_TRAIN,
    ),
    **_spiking_diffusion("fmnist"),
    **_spiking_diffusion("mnist"),
    # The reference trains KMNIST and EMNIST-Letters exactly as MNIST (its --dataset_name picks only the loader);
    # Letters has 124,800 training images: 3,900 steps of 32 per epoch.
    **_spiking_diffusion("kmnist"),
    **_spiking_diffusion("letters", steps_per_epoch=124_800 // 32),
    # CIFAR-10 is not in the reference's training script (its unused CIFAR loader flips, resizes to 28x28
    # and keeps RGB, while the model is built for 1 channel): here the same networks on 32x32x3, so 8x8 = 64
    # tokens, flipped as the loader would; 1,562 steps per epoch.
    **_spiking_diffusion("cifar10", steps_per_epoch=50_000 // 32, flip=True, image_size=32, img_ch=3),
    "sdit-mnist": _sdit("mnist", 60_000 // 256),
    "sdit-fmnist": _sdit("fmnist", 60_000 // 256),
    "sdit-cifar10": _sdit("cifar10", 50_000 // 256, ch=512, depth=8),
    "fmnist-sdit-small": Config(
        name="fmnist-sdit-small",
        model=replace(_SDIT_MODEL, img_ch=1, ch=128, patch_size=4),
        data=_FMNIST,
        train=replace(_SMALL_TRAIN, optimizer="adamw", lr=5e-4, weight_decay=0.01, sample_steps=50, sample_num=100,
                      ema_decay=None, ema_warmup=False),  # the EMA is not measured on SDiT yet
    ),
}
# SDiT's ANN twin at the small preset's sizes and recipe: what the transformer learns without its spikes
PRESETS["fmnist-sdit-ann-small"] = replace(PRESETS["fmnist-sdit-small"], name="fmnist-sdit-ann-small",
                                           model=replace(PRESETS["fmnist-sdit-small"].model, arch="ann_sdit"))
# SDiT with the CPU-budget levers, not the paper's design: each block's
# reconstruction gate starts as the identity (zero-initialised, DiT's adaLN-Zero idea), the time and class
# condition is added to every token of every block (the paper: one leading token, whose WKV weight fades
# along the raster), and the time-mix scans both ways (the paper: backwards in raster order only); with the
# U-Net small presets' Min-SNR weighting and EMA.
PRESETS["fmnist-sdit-cpu-small"] = replace(
    PRESETS["fmnist-sdit-small"], name="fmnist-sdit-cpu-small",
    model=replace(PRESETS["fmnist-sdit-small"].model, zero_gate=True, condition_every_block=True, two_way_scan=True),
    diffusion=_SMALL_DIFFUSION,
    train=replace(PRESETS["fmnist-sdit-small"].train, ema_decay=0.999, ema_warmup=True),
)
PRESETS["fmnist-sdit-cpu-ann-small"] = replace(PRESETS["fmnist-sdit-cpu-small"], name="fmnist-sdit-cpu-ann-small",
                                               model=replace(PRESETS["fmnist-sdit-cpu-small"].model, arch="ann_sdit"))
# fmnist-sdit-cpu-small with the lever that lowered its held-out loss most at equal steps (benchmarks/RESULTS.md,
# "The learning rate: SDiT draws garments"): the U-Net small presets' learning rate, 1e-3 instead of 5e-4
PRESETS["fmnist-sdit-fast-small"] = replace(
    PRESETS["fmnist-sdit-cpu-small"], name="fmnist-sdit-fast-small",
    train=replace(PRESETS["fmnist-sdit-cpu-small"].train, lr=1e-3))
PRESETS["fmnist-sdit-fast-ann-small"] = replace(PRESETS["fmnist-sdit-fast-small"], name="fmnist-sdit-fast-ann-small",
                                                model=replace(PRESETS["fmnist-sdit-fast-small"].model, arch="ann_sdit"))

DESCRIPTIONS: dict[str, str] = {
    "sddpm-cifar10": "SDDPM paper, CIFAR-10 32x32, Spiking U-Net T=4 (66,696,413 params)",
    "sddpm-cifar10-t8": "SDDPM paper, CIFAR-10 32x32, Spiking U-Net T=8",
    "sddpm-mnist": "SDDPM paper, MNIST resized to 32x32, 1 channel, T=4",
    "sddpm-fmnist": "SDDPM paper, Fashion-MNIST resized to 32x32, 1 channel, T=4",
    "sddpm-celeba": "SDDPM paper, CelebA 64x64, T=4",
    "sddpm-lsun-bedroom": "SDDPM paper, LSUN bedroom 64x64, T=4",
    "ddpm-cifar10": "ANN twin of sddpm-cifar10: DDPM U-Net, GroupNorm+Swish, middle attention (67,602,691)",
    "sdm-tsm-cifar10-t8": "SDM: Spiking U-Net T=8 with TSM, fine-tuned from a plain sddpm model (--init-from)",
    "fmnist-snn-small": "CPU-sized Spiking U-Net for Fashion-MNIST 28x28 (ch 32, [1,2,2], 1 res block, T=2, EMA)",
    "fmnist-snn-small-tsm": "fmnist-snn-small with SDM's TSM, to fine-tune from a fmnist-snn-small run (--init-from)",
    "fmnist-snn-small-fsddim": "fmnist-snn-small with FSDDIM's options: LIF, mean over T, v-prediction, cosine",
    "fmnist-ann-small": "ANN twin of fmnist-snn-small (same sizes and recipe)",
    "sdm-qann-cifar10-b2": "SDM ANN-to-SNN, CIFAR-10: 2-bit quantised-ReLU DDPM U-Net as the reference's "
    "(ch 128, [1,2,2,2], 2 blocks, no attention), BatchNorm for GroupNorm (see models/quant_unet.py)",
    "fmnist-qann-small": "3-bit quantised ANN (clip init 2) for ANN-to-SNN at T=7 on Fashion-MNIST "
    "(fmnist-snn-small's sizes)",
    "fmnist-qann-signed-small": "fmnist-qann-small with quantisers in front of every convolution, symmetric on "
    "the residual stream: its SNN feeds spikes to every convolution but the stem; the quick start's first stage "
    "(then ann2snn --coding phase)",
    "sd-vq-fmnist": "Spiking-Diffusion stage 1: VQ-SVAE (LIF, T=16, 7x7 tokens of a 128 x 16 codebook), 100 epochs",
    "sd-diffusion-fmnist": "Spiking-Diffusion stage 2: absorbing diffusion over the VQ tokens (--init-from the VQ run)",
    "sd-vq-mnist": "sd-vq-fmnist on MNIST",
    "sd-diffusion-mnist": "sd-diffusion-fmnist on MNIST",
    "sd-vq-kmnist": "sd-vq-fmnist on KMNIST", "sd-diffusion-kmnist": "sd-diffusion-fmnist on KMNIST",
    "sd-vq-letters": "sd-vq-fmnist on EMNIST-Letters (26 classes, 100 epochs of 3,900 steps)",
    "sd-diffusion-letters": "sd-diffusion-fmnist on EMNIST-Letters",
    "sd-vq-cifar10": "Spiking-Diffusion stage 1 on CIFAR-10 32x32x3 (8x8 tokens; not in the reference's script)",
    "sd-diffusion-cifar10": "stage 2 on CIFAR-10: absorbing diffusion over 64 tokens (--init-from sd-vq-cifar10)",
    "sdit-mnist": "SDiT paper, MNIST 28x28 as RGB: hidden 384, depth 4, patch 2, LIF T=4, class-conditional "
    "(11,662,393 trainable params: the reference's count without its learned-variance head)",
    "sdit-fmnist": "SDiT paper, Fashion-MNIST: as sdit-mnist",
    "sdit-cifar10": "SDiT paper, CIFAR-10 resized to 28x28: hidden 512, depth 8 (36,045,645 trainable params)",
    "fmnist-sdit-small": "CPU-sized class-conditional SDiT for Fashion-MNIST (hidden 128, depth 4, patch 4, grey)",
    "fmnist-sdit-ann-small": "ANN twin of fmnist-sdit-small: the same transformer, real mixer outputs for LIF rates",
    "fmnist-sdit-cpu-small": "fmnist-sdit-small with the CPU-budget levers (not the paper's): identity-initialised "
    "gates, the condition on every token, a two-way scan, Min-SNR 5, EMA",
    "fmnist-sdit-cpu-ann-small": "ANN twin of fmnist-sdit-cpu-small",
    "fmnist-sdit-fast-small": "fmnist-sdit-cpu-small with learning rate 1e-3 (not the paper's 1e-4 nor the small "
                              "preset's 5e-4): what lowered its held-out loss most at equal steps",
    "fmnist-sdit-fast-ann-small": "ANN twin of fmnist-sdit-fast-small",
}


def get_preset(name: str) -> Config:
    """The preset called ``name``; an unknown name lists the valid ones."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; available: {', '.join(PRESETS)}")
    return PRESETS[name]
