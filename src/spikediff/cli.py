"""The ``spikediff`` command: argument parsing and printing only, each command a thin library call."""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import torch

from spikediff import checkpoint
from spikediff.config import SPIKE_CODINGS, UNCAPPED_STEPS, Config, apply_overrides
from spikediff.families import all_samplers
from spikediff.option_rules import given_options, refuse_ignored
from spikediff.precision import COMPILE_MODES, PRECISIONS
from spikediff.presets import DESCRIPTIONS, PRESETS, get_preset
from spikediff.ranges import COUNT, FRACTION, NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, SEED
from spikediff.snn import spiking_neurons
from spikediff.train.distributed import default_device, device_problem, init_distributed, shutdown


def device_name(text: str) -> str:
    """argparse type: a torch device this machine has (``cpu``, ``cuda``, ``cuda:1`` ...)."""
    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {text!r}") from None
    if why := device_problem(device):
        raise argparse.ArgumentTypeError(why)
    return text


def step_list(text: str) -> list[int]:
    """argparse type: comma-separated diffusion steps, e.g. ``0,250,500,999``, each a whole number >= 0."""
    try:
        return [NON_NEGATIVE_INT.parse(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers >= 0 (diffusion steps), got "
                                         f"{text!r}") from None


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (argparse prints the usage first), exit status 2,
    and whose every (sub)command takes ``--debug``: show the traceback of an error instead of one line."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                          help="on an error, show the full traceback instead of one line")

    def error(self, message: str) -> None:  # type: ignore[override]
        command = self.prog.removeprefix("spikediff").strip()
        self.exit(2, f"spikediff: error: {command + ': ' if command else ''}{message} (see `{self.prog} --help`)\n")


def _model_summary(model: torch.nn.Module) -> str:
    lines = []
    for name, child in model.named_children():
        n = sum(p.numel() for p in child.parameters())
        lines.append(f"  {name:<16} {type(child).__name__:<24} {n:>12,d} params")
    return "\n".join(lines)


def cmd_presets(args: argparse.Namespace) -> None:
    width = max(map(len, PRESETS))
    for name in PRESETS:
        print(f"{name:<{width}}  {DESCRIPTIONS[name]}")


def cmd_info(args: argparse.Namespace) -> None:
    if args.preset:
        config, model = get_preset(args.preset), checkpoint.build(args.preset)
    else:
        config, model = checkpoint.load_config(args.target), checkpoint.load(args.target, use_ema=False)
    n = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(config.to_json())
    print(f"parameters: {n:,d} ({n / 2**20:.2f} M as the papers count, / 2^20); trainable: {trainable:,d}")
    print(_model_summary(model))


def _sets(assignments: list[str] | None, key: str) -> bool:
    """Whether ``--set`` assigns ``key``."""
    return any(a.split("=", 1)[0].strip() == key for a in assignments or [])


def cmd_train(args: argparse.Namespace) -> None:
    from spikediff.train import train
    from spikediff.train.trainer import check_resumable

    out = Path(args.out)
    if args.resume:  # the newest checkpoint's config, which its checksum covers (the run folder's copy is a record)
        check_resumable(out)
        config = checkpoint.load_config(out)
    else:
        if not args.preset:
            raise ValueError("train needs --preset NAME (or --resume with an existing --out)")
        config = get_preset(args.preset)
    config = apply_overrides(config, args.set or [])
    if args.max_minutes and not args.resume and not _sets(args.set, "train.total_steps"):
        print(f"--max-minutes {args.max_minutes:g}: the time is the budget (the preset's {config.train.total_steps:,} "
              "steps do not end the run; --set train.total_steps=N caps it)", flush=True)
        config = replace(config, train=replace(config.train, total_steps=UNCAPPED_STEPS))
    result = train(
        config,
        out,
        resume=args.resume,
        overwrite=args.overwrite,
        data_dir=args.data_dir,
        max_minutes=args.max_minutes,
        device=args.device,
        init_from=args.init_from,
        progress=not args.no_progress,
    )
    why = " (time limit)" if result.stopped_early else ""
    print(f"stopped at step {result.step}{why}; last loss {result.loss:.4f}; checkpoint in {checkpoint.resolve(out)}")


def cmd_sample(args: argparse.Namespace) -> None:
    from tqdm.auto import tqdm

    from spikediff.sample import default_variance, generate, save_samples

    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise FileExistsError(f"{out} is not empty; choose another --out or pass --overwrite")
    d, device = init_distributed(torch.device(args.device) if args.device else None)  # torchrun shards sampling
    config = checkpoint.load_config(args.checkpoint)
    use_ema = checkpoint.uses_ema(args.checkpoint, args.ema)
    model = checkpoint.load(args.checkpoint, map_location=device, use_ema=use_ema)
    sampler, steps, extra = _sampling(args, model, config, use_ema)
    batches = -(-args.num // (args.batch_size * d.world))
    chosen = []

    def on_fast_path(decision) -> None:
        chosen.append(decision)
        if d.main:
            print(decision.describe(), flush=True)

    with tqdm(total=batches * steps, unit="nfe", disable=args.no_progress or not d.main) as bar:
        images = generate(model, config, args.num, sampler, steps, args.seed, args.batch_size, device,
                          on_step=bar.update, threshold=args.threshold, precision=args.precision,
                          fold_bn=args.fold_bn, compile=args.compile, classes=args.classes, guidance=args.cfg,
                          on_fast_path=on_fast_path, **extra)
    if not d.main:
        shutdown(d)
        return
    per_class = config.model.num_classes if config.model.num_classes and args.classes is None else None
    save_samples(images, out, individual=not args.no_png, nrow=per_class)
    shown = {k: v for k, v in extra.items() if k != "gamma"}
    if sampler == "ddpm":
        shown.setdefault("variance", default_variance(config))
    meta = {"checkpoint": str(args.checkpoint), "num": args.num, "sampler": sampler, "steps": steps,
            "ranks": d.world, "seed": args.seed, "ema": use_ema, "threshold": args.threshold,
            "fast_path": str(chosen[0].path), "fold_bn": args.fold_bn, **shown}
    if config.model.num_classes:
        meta.update({"classes": "i mod num_classes" if args.classes is None else args.classes, "cfg": args.cfg})
    (out / "sampling.json").write_text(json.dumps(meta, indent=2))
    print(f"wrote {args.num} images ({sampler}, {steps} steps) to {out}")
    if args.evaluate:
        from spikediff.sample import class_labels

        _evaluate_and_report(images, args, out / f"metrics-{args.features}.json", {"sampling": meta},
                             dataset=args.dataset or config.data.dataset,
                             requested=class_labels(config, args.num, args.classes, args.cfg))
    shutdown(d)


def _evaluate_and_report(images, args: argparse.Namespace, out_json: Path, extra: dict | None = None,
                         dataset: str | None = None, requested: torch.Tensor | None = None) -> None:
    """Score ``images``, print and save the result; ``requested``: the class each image was asked for."""
    from spikediff.metrics import evaluate_images

    result = evaluate_images(images, dataset or args.dataset, args.features, args.split, args.inception_weights,
                             args.data_dir, progress=not args.no_progress, resize=getattr(args, "resize", True),
                             requested_classes=requested)
    if extra:
        result["protocol"].update(extra)
    width = max(map(len, result["scores"]))
    for name, value in result["scores"].items():
        print(f"{name:<{width}}  {value:.4f}")
    p = result["protocol"]
    print(f"({p['num_samples']} samples of {p['sample_size']} vs {p['reference']}; extractor {p['extractor']} "
          f"sha256 {p['weights_sha256'][:12]})")
    if "classes" in result:
        shares = result["classes"]["shares"]
        print(f"classes the {p['extractor']} sees in the samples: "
              + ", ".join(f"{name} {share:.1%}" for name, share in shares.items()))
    if "class_agreement" in result:
        agreement = result["class_agreement"]
        print(f"the {p['extractor']} sees the requested class in {agreement['overall']:.1%} of the samples: "
              + ", ".join(f"{name} {share:.0%}" for name, share in agreement["per_class"].items()))
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(result, indent=2))
    print(f"wrote {out_json}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from spikediff.metrics import load_images

    notes: list[str] = []
    images = load_images(args.samples, notes)
    for note in notes:
        print(note, file=sys.stderr)
    if args.num is not None:
        if args.num > len(images):
            raise ValueError(f"--num {args.num} but {args.samples} holds only {len(images)} images")
        images = images[: args.num]
    src = Path(args.samples)
    default = (src if src.is_dir() else src.parent) / f"metrics-{args.features}.json"
    _evaluate_and_report(images, args, Path(args.out) if args.out else default,
                         {"samples": str(src), **({"conversion": notes} if notes else {})})


def cmd_energy(args: argparse.Namespace) -> None:
    from spikediff.energy.run import measure_model, save_run

    if args.preset:
        config, model, label = get_preset(args.preset), checkpoint.build(args.preset), f"{args.preset} (untrained)"
        out = Path(args.out or f"energy-{args.preset}")
    elif args.target:
        use_ema = checkpoint.uses_ema(args.target, args.ema)
        config, model = checkpoint.load_config(args.target), checkpoint.load(args.target, use_ema=use_ema)
        label = f"{args.target} ({'EMA' if use_ema else 'raw'} weights)"
        out = Path(args.out or Path(args.target) / "energy")
    else:
        raise ValueError("energy needs a checkpoint directory or --preset NAME")
    run = measure_model(model, config, label, ts=args.t, sampling_steps=args.steps, num_images=args.num_images,
                        dataset=args.dataset, energy_model=args.energy_model, with_ann=not args.no_ann,
                        data_dir=args.data_dir)
    report = run.report
    if run.decoder:
        print(f"{run.decoder.model}: {run.decoder.energy_mj:.4f} mJ per image")
    print(f"{'layer':<28} {'input':<6} {'rate':>6} {'MMAC':>9} {'MAC':>10} {'AC':>10} {'nJ':>9}")
    for layer in report.layers:
        print(f"{layer.name:<28} {layer.input:<6} {layer.firing_rate:>6.3f} {layer.dense_macs / 1e6:>9.2f} "
              f"{layer.macs / 1e6:>9.2f}M {layer.acs / 1e6:>9.2f}M {layer.energy_pj / 1e3:>9.2f}")
    print(f"{label}: {report.macs / 1e9:.4f} GMAC + {report.acs / 1e9:.4f} GAC = {report.energy_mj:.4f} mJ per "
          f"evaluation ({report.energy_model.name}); {run.per_image_mj:.3f} mJ per image at {run.sampling_steps} "
          "steps")
    if run.ann:
        print(f"{run.ann.model}: {run.ann.macs / 1e9:.4f} GMAC = {run.ann.energy_mj:.4f} mJ per evaluation; "
              f"SNN / ANN energy = {report.energy_mj / run.ann.energy_mj:.3f}")
    for convention, row in report.conventions().items():
        value = (f"{row['energy_mj_bit_serial']:.4f} mJ bit-serial, {row['energy_mj_dense']:.4f} dense, "
                 f"{row['memory_mj']:.4f} memory" if convention == "quantised_ann" else f"{row['energy_mj']:.4f} mJ")
        print(f"  {convention:<14} {value} per evaluation: {row['charges']}")
    for v in run.to_dict().get("verdicts", []):
        print(f"  against {v['against']}, {v['convention']}: {v['snn_mj']:.4f} vs {v['other_mj']:.4f} mJ = "
              f"{v['ratio']:.2f}x, the SNN {v['outcome']}")
    print(f"wrote {save_run(run, out)}, energy_by_layer.png, firing_rates.png")


def _sampling(args: argparse.Namespace, model: torch.nn.Module, config: Config, use_ema: bool,
              threshold: float | None = None) -> tuple[str, int, dict]:
    """The sampler, step count and sampler options that the command line asks for."""
    from spikediff.sample import sampler_options, sampling_defaults

    sampler, steps = sampling_defaults(config, args.sampler, args.steps)
    refuse_ignored(args.command, args, {"sampler": sampler, "spiking": bool(spiking_neurons(model))})
    options = sampler_options(model, config, sampler, steps, eta=args.eta, temperature=args.temperature,
                              variance=args.variance, threshold=args.threshold if threshold is None else threshold,
                              checkpoint_dir=checkpoint.resolve(args.checkpoint), data_dir=args.data_dir,
                              weights="ema" if use_ema else "model")
    return sampler, steps, options


def cmd_tg_sweep(args: argparse.Namespace) -> None:
    from spikediff.metrics import score, score_key
    from spikediff.sample import sampling_defaults
    from spikediff.threshold_sweep import parse_thresholds, threshold_sweep

    config = checkpoint.load_config(args.checkpoint)
    device = args.device or default_device()
    use_ema = checkpoint.uses_ema(args.checkpoint, args.ema)
    model = checkpoint.load(args.checkpoint, map_location=device, use_ema=use_ema)
    sampler, steps = sampling_defaults(config, args.sampler, args.steps)

    def show(row: dict) -> None:
        fid_key = score_key(row, "FID")
        print(f"threshold {row['threshold']:.4f}: {fid_key} = {row[fid_key]:.4f}", flush=True)

    rows = threshold_sweep(model, config, parse_thresholds(args.thresholds), args.num, sampler, steps,
                           lambda threshold: _sampling(args, model, config, use_ema, threshold)[2],
                           dataset=args.dataset, features=args.features, split=args.split,
                           inception_weights=args.inception_weights, data_dir=args.data_dir, seed=args.seed,
                           batch_size=args.batch_size, device=device, precision=args.precision,
                           fold_bn=args.fold_bn, compile=args.compile, on_row=show)
    fid_key = score_key(rows[0], "FID")
    base = next((r[fid_key] for r in rows if r["threshold"] == 1.0), None)
    print(f"\n{'threshold':>9}  {fid_key:>24}  {'change vs 1.0':>13}  precision  recall")
    for r in rows:
        change = f"{(r[fid_key] - base) / base * 100:+.1f}%" if base else "n/a"
        prec = score(r, "precision")
        rec = score(r, "recall")
        print(f"{r['threshold']:>9.4f}  {r[fid_key]:>24.4f}  {change:>13}  {prec:9.3f}  {rec:6.3f}")
    out = Path(args.out) if args.out else checkpoint.resolve(args.checkpoint).parent / "tg_sweep.json"
    protocol = {"num": args.num, "sampler": sampler, "steps": steps, "seed": args.seed,
                "features": args.features, "checkpoint": str(args.checkpoint)}
    out.write_text(json.dumps({"protocol": protocol, "rows": rows}, indent=2))
    print(f"wrote {out}")


def cmd_bench(args: argparse.Namespace) -> None:
    from spikediff.bench import bench_sample, bench_train

    config = apply_overrides(get_preset(args.preset), args.set or [])
    overrides = {"precision": args.precision, "compile": args.compile, "grad_checkpointing": args.grad_checkpointing}
    config = replace(config, train=replace(config.train, **overrides))
    batch = args.batch or config.train.batch_size
    if args.what == "train":
        result = bench_train(config, batch, args.repeats, args.warmup, args.budget_minutes)
    else:
        result = bench_sample(config, batch, args.repeats, args.warmup, args.precision, args.fold_bn, args.compile,
                              args.evaluations)
    print(json.dumps(result) if args.json else
          f"{args.what} {config.name} batch {batch}: {result['images_per_s']} images/s, {result['ms_per_step']} ms per "
          f"{'step' if args.what == 'train' else 'evaluation'}, peak memory {result['peak_memory_mb']} MB "
          f"({result['device']}, {result['threads']} threads, {result.get('fast_path', args.precision)}"
          f"{', compiled' if args.compile == 'on' else ''}{', checkpointing' if args.grad_checkpointing else ''}"
          f"{', BN folded' if args.fold_bn else ''})")


def cmd_convert(args: argparse.Namespace) -> None:
    if args.source == "sddpm":
        from spikediff.reference_checkpoints.sddpm import import_sddpm

        out = import_sddpm(args.input, args.out_dir, spike_steps=args.spike_steps, image_size=args.image_size,
                           base_preset=args.preset, key=args.key, overwrite=args.overwrite)
    else:
        from spikediff.reference_checkpoints.sdm import import_sdm

        out = import_sdm(args.input, args.out_dir, image_size=args.image_size, base_preset=args.preset,
                         key=args.key, overwrite=args.overwrite)
    print(f"imported {args.input} -> {out}")


def cmd_ann2snn(args: argparse.Namespace) -> None:
    from tqdm.auto import tqdm

    from spikediff.ann2snn import ann2snn

    steps = args.finetune_steps * _count_res_blocks(args.qann_dir) if args.finetune else 0
    with tqdm(total=steps, unit="step", disable=args.no_progress or not steps) as bar:
        summary = ann2snn(args.qann_dir, args.out_dir, args.spike_steps, args.finetune, args.finetune_steps, args.lr,
                          args.batch_size, args.num_images, args.data_dir, args.ema, args.overwrite,
                          args.device or default_device(), args.seed, on_step=bar.update,
                          slack_steps=args.slack_steps, coding=args.coding)
    print(f"converted {args.qann_dir} ({summary['quant_bits']}-bit) -> {args.out_dir}: {args.coding} neurons, "
          f"T={summary['spike_steps']}, "
          f"output MSE vs the quantised ANN {summary['output_mse_vs_qann']:.5f}"
          + (f", after fine-tuning {summary['output_mse_after_finetune']:.5f}" if args.finetune else ""))


def _count_res_blocks(qann_dir: str) -> int:
    from spikediff.ann2snn import res_blocks

    return len(res_blocks(checkpoint.build(checkpoint.load_config(qann_dir))))


def cmd_train_classifier(args: argparse.Namespace) -> None:
    from spikediff.metrics.classifier import packaged_weights, save_classifier, train_classifier

    out = Path(args.out) if args.out else packaged_weights(args.dataset)
    model, acc = train_classifier(args.dataset, epochs=args.epochs, seed=args.seed, data_dir=args.data_dir,
                                  progress=not args.no_progress)
    save_classifier(model, out)
    print(f"{args.dataset} classifier: test accuracy {acc:.4f}; weights written to {out}")


def _add_weights_arg(p: argparse.ArgumentParser, verb: str) -> None:
    p.add_argument("--ema", action=argparse.BooleanOptionalAction, default=None,
                   help=f"{verb} the EMA weights (--no-ema: the raw ones; default: the EMA where the run kept one)")


def _add_sampler_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sampler", choices=all_samplers(),
                   help="default: ddim (absorbing for Spiking-Diffusion models)")
    p.add_argument("--steps", type=COUNT, help="number of network evaluations (default 50; the token count for "
                   "absorbing diffusion)")
    p.add_argument("--temperature", type=POSITIVE, default=1.0, help="absorbing diffusion: softmax temperature")
    p.add_argument("--eta", type=FRACTION, default=0.0, help="DDIM noise (0 = deterministic)")
    p.add_argument("--variance", choices=["fixedlarge", "fixedsmall", "learned"],
                   help="DDPM variance (default: learned for models that predict it, else fixedlarge)")
    p.add_argument("--threshold", type=POSITIVE, default=1.0,
                   help="threshold guidance: scale every neuron's threshold at sampling (0.997 = SDDPM's best)")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--batch-size", type=COUNT, default=64)
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help="bf16: autocast (membranes stay fp32); "
                   "auto (default): the faster of fp32 and bf16, measured on the first batch and verified")
    p.add_argument("--fold-bn", action=argparse.BooleanOptionalAction, default=True,
                   help="fold BatchNorm into the convs for sampling (exact up to rounding; default on)")
    p.add_argument("--compile", choices=COMPILE_MODES, default="auto", help="torch.compile the network; auto "
                   "(default): where the evaluations repay the compile time; verified against eager fp32")
    _add_remeasure_arg(p)


def _add_remeasure_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--remeasure", action="store_true", help="time the fast-path candidates again instead of reading "
                   "their cached timings (as $SPIKEDIFF_REMEASURE=1 does); the new timings are cached")


def _add_metric_args(p: argparse.ArgumentParser, dataset_required: bool) -> None:
    p.add_argument("--dataset", required=dataset_required, help="reference dataset (default for sample: the run's)")
    p.add_argument("--features", choices=["classifier", "inception"], default="classifier",
                   help="the project's dataset classifier (default) or Inception-v3 from a weights file")
    p.add_argument("--split", choices=["train", "test"], default="train", help="reference split")
    p.add_argument("--inception-weights", metavar="PATH", help="pt_inception-2015-12-05-6726825d.pth (or "
                   "$SPIKEDIFF_INCEPTION_WEIGHTS)")
    if not any(a.dest == "data_dir" for a in p._actions):
        p.add_argument("--data-dir")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="spikediff", description="Spiking neural network diffusion models.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("presets", help="list the named configurations")
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("info", help="print a config, its parameter count and a model summary")
    p.add_argument("target", nargs="?", help="checkpoint or run directory")
    p.add_argument("--preset")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("train", help="train a model from a preset")
    p.add_argument("--preset", help=f"one of: {', '.join(PRESETS)}")
    p.add_argument("--out", required=True, help="run directory (config, log.jsonl, samples/, checkpoint/)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value, e.g. train.lr=1e-4")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    p.add_argument("--init-from", metavar="CKPT_DIR", help="start from these weights (e.g. a plain SNN for TSM)")
    p.add_argument("--max-minutes", type=POSITIVE, help="stop (with a checkpoint) after this much wall time")
    p.add_argument("--data-dir", help="the folder holding the dataset, the only place looked in "
                   "(default: $SPIKEDIFF_DATA, then the usual places)")
    p.add_argument("--device", type=device_name, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--no-progress", action="store_true")
    _add_remeasure_arg(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="generate images from a checkpoint")
    p.add_argument("checkpoint", help="checkpoint or run directory")
    p.add_argument("--out", required=True)
    p.add_argument("--num", "--num-samples", dest="num", type=COUNT, default=64,
                   help="number of images (write --num-samples under torchrun: its options start with --num)")
    _add_sampler_args(p)
    _add_weights_arg(p, "sample")
    p.add_argument("--class", dest="classes", type=NON_NEGATIVE_INT,
                   help="class-conditional models: sample this class (default: class i mod num_classes for image i)")
    p.add_argument("--cfg", type=NON_NEGATIVE, default=1.0,
                   help="classifier-free guidance scale (1 = conditional only; > 1 doubles the evaluations)")
    p.add_argument("--device", type=device_name)
    p.add_argument("--no-png", action="store_true", help="write only samples.npz and grid.png")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--evaluate", action="store_true", help="then score the samples (see `evaluate`)")
    _add_metric_args(p, dataset_required=False)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("tg-sweep", help="threshold guidance: sample and score each threshold, one seed set")
    p.add_argument("checkpoint", help="checkpoint or run directory")
    p.add_argument("--thresholds", default="0.995:1.005:0.001", help="start:stop:step (inclusive) or a,b,c")
    p.add_argument("--num", type=COUNT, default=1000)
    p.add_argument("--out", help="JSON file (default: tg_sweep.json beside the checkpoint)")
    p.add_argument("--device", type=device_name)
    _add_sampler_args(p)
    _add_weights_arg(p, "sample")
    _add_metric_args(p, dataset_required=False)
    p.set_defaults(func=cmd_tg_sweep)

    p = sub.add_parser("evaluate", help="FID, KID, IS and precision/recall of generated images")
    p.add_argument("samples", help="a samples.npz (NHWC uint8) or a directory of PNGs / holding samples.npz")
    p.add_argument("--num", type=COUNT, help="score only the first N images")
    p.add_argument("--out", help="JSON file (default: metrics-<features>.json beside the samples)")
    p.add_argument("--resize", action="store_true", help="images at another size than the dataset's: score them "
                   "against the dataset resized to theirs (without it they are refused)")
    p.add_argument("--no-progress", action="store_true")
    _add_metric_args(p, dataset_required=True)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("train-classifier", help="(re)train the dataset classifier used for classifier FID")
    p.add_argument("--dataset", default="fmnist", choices=["fmnist", "mnist", "kmnist", "letters", "cifar10"])
    p.add_argument("--out", help="weights file (default: the one shipped in the package)")
    p.add_argument("--epochs", type=COUNT, default=6)
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--data-dir")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train_classifier)

    p = sub.add_parser("energy", help="per-layer MAC/AC counts, firing rates and energy; SNN vs ANN twin")
    p.add_argument("target", nargs="?", help="checkpoint or run directory")
    p.add_argument("--preset", help="measure an untrained preset instead of a checkpoint")
    p.add_argument("--dataset", help="images whose noisy versions drive the network (default: the config's)")
    p.add_argument("--t", type=step_list, help="diffusion steps at which firing rates are measured (default "
                   "0,250,500,999; for Spiking-Diffusion, masking steps 1..N spread over N)")
    p.add_argument("--num-images", type=COUNT, default=32)
    p.add_argument("--steps", type=COUNT, help="sampler steps, for the energy per generated image (default: the "
                   "model's diffusion steps, 1000 or the token count)")
    p.add_argument("--energy-model", default="45nm-fp32", choices=["45nm-fp32", "45nm-fp16", "45nm-int8"])
    p.add_argument("--no-ann", action="store_true", help="skip the ANN twin comparison")
    _add_weights_arg(p, "measure")
    p.add_argument("--out", help="output directory (default: CKPT_DIR/energy or ./energy-PRESET)")
    p.add_argument("--data-dir")
    p.set_defaults(func=cmd_energy)

    p = sub.add_parser("bench", help="images/s, ms per step and peak memory of training or sampling")
    p.add_argument("what", choices=["train", "sample"])
    p.add_argument("--preset", required=True)
    p.add_argument("--batch", type=COUNT, help="default: the preset's batch size")
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto (default): the path train/sample would choose, measured and verified")
    p.add_argument("--compile", choices=COMPILE_MODES, default="auto",
                   help="auto (default): as train/sample would choose")
    p.add_argument("--budget-minutes", type=POSITIVE, default=30.0,
                   help="the training run that --compile auto decides for (default: the quick start's 30)")
    p.add_argument("--evaluations", type=COUNT, default=400, help="the sampling run that --compile auto "
                   "decides for, in batch evaluations (default: the quick start's 400, 20 batches x 20 steps)")
    p.add_argument("--grad-checkpointing", action="store_true", help="recompute blocks in backward (train)")
    p.add_argument("--fold-bn", action="store_true", help="fold BatchNorm into convs (sample)")
    _add_remeasure_arg(p)
    p.add_argument("--repeats", type=COUNT, default=5)
    p.add_argument("--warmup", type=NON_NEGATIVE_INT, default=2)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("ann2snn", help="convert a quantised ANN (e.g. --preset fmnist-qann-small) to an SNN (SDM)")
    p.add_argument("qann_dir", help="checkpoint or run directory of a qann_unet model")
    p.add_argument("out_dir", help="where the SNN checkpoint goes (sample, evaluate and energy take it)")
    p.add_argument("--spike-steps", type=COUNT, help="T of --coding signed-if (default 2^bits - 1, plus "
                   "--slack-steps); the other codings run their own T")
    p.add_argument("--slack-steps", type=NON_NEGATIVE_INT, default=0,
                   help="steps beyond the 2^bits - 1 levels, counts capped at the levels: a neuron at the top "
                   "level may then miss that many spikes while its input arrives")
    p.add_argument("--coding", choices=SPIKE_CODINGS, default="signed-if",
                   help="the neurons: signed-if (SDM's, fire as the input arrives; T = 2^bits - 1 + slack), "
                   "count (integrate-then-fire, the levels exactly as spike counts over T = 2^bits - 1) or phase "
                   "(integrate-then-fire, the levels' binary digits over T = bits steps)")
    p.add_argument("--finetune", action="store_true", help="block-wise fine-tuning against the ANN (MSE)")
    p.add_argument("--finetune-steps", type=COUNT, default=100, help="steps per residual block")
    p.add_argument("--lr", type=POSITIVE, default=1e-3, help="fine-tuning learning rate (Adam)")
    p.add_argument("--batch-size", type=COUNT, default=32)
    p.add_argument("--num-images", type=COUNT, default=5000, help="training images used for fine-tuning")
    _add_weights_arg(p, "convert")
    p.add_argument("--data-dir")
    p.add_argument("--device", type=device_name)
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_ann2snn)

    p = sub.add_parser("convert", help="import another codebase's checkpoint")
    conv = p.add_subparsers(dest="source", required=True)
    s = conv.add_parser("sddpm", help="a reference SDDPM (AndyCao1125/SDDPM) .pt file")
    s.add_argument("input", help="torch file holding {'net_model': state_dict}")
    s.add_argument("out_dir")
    s.add_argument("--spike-steps", type=COUNT, default=4, help="T the model was trained with (not in the file)")
    s.add_argument("--image-size", type=COUNT, default=32)
    s.add_argument("--preset", default="sddpm-cifar10", help="preset for everything not read off the weights")
    s.add_argument("--key", default="net_model", help="entry of the file to import (e.g. ema_model)")
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(func=cmd_convert)
    s = conv.add_parser("sdm", help="a reference SDM TSM (AndyCao1125/SDM) .pt file; T is read off it")
    s.add_argument("input", help="torch file holding {'net_model': state_dict} with tsmconv/tsmp names")
    s.add_argument("out_dir")
    s.add_argument("--image-size", type=COUNT, default=32)
    s.add_argument("--preset", default="sddpm-cifar10", help="preset for everything not read off the weights")
    s.add_argument("--key", default="net_model")
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(func=cmd_convert)
    return parser


# Expected failures: bad values, missing or unreadable files, I/O (permissions, a file where a directory
# should be, a full disk), a corrupt checkpoint, a diverged run. Each ends as one line and exit status 1.
USER_ERRORS = (KeyError, ValueError, OSError, checkpoint.CheckpointError, FloatingPointError)


def one_line(exc: BaseException) -> str:
    """An expected failure as one line: the path and a fix for the usual I/O errors, else the message."""
    if isinstance(exc, OSError) and exc.filename and not isinstance(exc, FileNotFoundError | FileExistsError):
        fixes = {errno.EACCES: "permission denied: pick a folder you can write, or change its permissions",
                 errno.EROFS: "read-only file system: pick a folder on a writable disk",
                 errno.ENOSPC: "no space left on the device: free some, or pick a folder on another disk",
                 errno.ENOTDIR: "a file stands where a folder is needed: pick another path"}
        if exc.errno in fixes:
            return f"{exc.filename}: {fixes[exc.errno]}"
    message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return "; ".join(line.strip() for line in message.splitlines() if line.strip())


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    """The parser of subcommand ``command``."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.given = given_options(_subparser(parser, args.command), args)
    if args.command == "info" and not (args.target or args.preset):
        print("spikediff: error: info needs a checkpoint directory or --preset NAME", file=sys.stderr)
        return 2
    if getattr(args, "remeasure", False):
        os.environ["SPIKEDIFF_REMEASURE"] = "1"  # read where the fast path looks up its cache
    try:
        refuse_ignored(args.command, args)
        args.func(args)
    except USER_ERRORS as exc:
        if getattr(args, "debug", False):
            raise
        print(f"spikediff: error: {one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("spikediff: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
