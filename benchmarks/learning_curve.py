"""Quality per CPU-minute: train a preset against the wall clock and score it at given minutes.

    python benchmarks/learning_curve.py --preset fmnist-snn-small --label snn --minutes 10,20,30 \
        [--set train.ema_decay=0.999 --set train.ema_warmup=true] [--weights model,ema,ema-live-bn] \
        [--num 500] [--steps 20] [--out benchmarks/results/learning_curve]

Training runs in segments up to each point (``spikediff.train`` with ``--max-minutes`` of the
segment, resumed exactly; fast-path measurement and any compilation count, as a user pays them), so
the minutes are wall-clock minutes of this machine. At every point each weight set is sampled with
the same noise (``--sampler``, default DPM-Solver++, ``--steps`` evaluations, seed 0; in the
precision ``spikediff sample`` would choose, or ``--sampling-precision``; each point records the
path) and scored against the Fashion-MNIST training set with the project's classifier features (FID,
KID, precision, recall; not Inception), plus the class histogram of the samples (the classifier's
predictions) and a grid. Weight sets:
``model`` (raw), ``ema`` (the EMA with BatchNorm statistics of its own), ``ema-live-bn`` (the EMA
weights with the live model's BatchNorm statistics: what the EMA did before it kept its own).

``--at-steps`` puts the points at step counts instead (each segment trains to that step): the
comparison of two recipes then does not depend on what else the machine was running, and the
minutes column is what the segments took here. Every point also gets the held-out loss: the
epsilon error of the network on 512 Fashion-MNIST test images at 512 evenly spread diffusion steps
with fixed noise (eval mode), a low-variance measure to read beside the sampled scores, and the same
error by eighths of the diffusion steps (``heldout_loss_by_t``, low noise first): a model can trail
another mostly at high noise (the global layout) or at low noise (the detail).

``--convert T`` (a quantised-ANN preset, ``fmnist-qann-small``) also scores, at every point and for
every weight set, the T-step SNN that ``spikediff ann2snn`` converts it to: the ANN-to-SNN route's
curve, whose minutes are the quantised ANN's training (the conversion takes seconds, recorded per row).
``--convert-at`` limits that to some of the points: sampling a converted SNN costs 4-12x its quantised
ANN (measured at T=3 and T=7: the signed-IF layers run T steps), so a curve may score the network at
every point and its SNN only where the comparison is made.

Writes ``LABEL.json`` and ``LABEL/`` (points, grids); ``--plot`` draws FID against minutes (with
``--at-steps``: against steps) for every label in ``--out``. ``--extend`` continues LABEL's run in
``--work`` to later points (say ``--minutes 60`` after a 30-minute curve) and appends them to
``LABEL.json``: a 60-minute point then costs the 30 minutes it adds, not a new run from scratch.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from provenance import provenance

import spikediff
from spikediff.ann2snn import ann2snn
from spikediff.checkpoint import (
    EMA_FILE,
    WEIGHTS_FILE,
    build,
    load_config,
    load_trainer_state,
    load_weights,
    resolve,
)
from spikediff.config import Config, apply_overrides
from spikediff.data import batch_transform, load_dataset, match_channels
from spikediff.diffusion import NoiseSchedule, q_sample, to_x0_eps
from spikediff.diffusion.schedule import gather
from spikediff.families import family_of
from spikediff.metrics import evaluate_images, score
from spikediff.sample import class_labels, generate, save_grid
from spikediff.train import train


def weights(ckpt: Path, which: str) -> torch.nn.Module:
    """The network of checkpoint ``ckpt`` with weight set ``which`` (see the module docstring)."""
    model = build(load_config(ckpt))
    if which == "model":
        load_weights(model, ckpt / WEIGHTS_FILE)
        return model
    load_weights(model, ckpt / EMA_FILE)
    if which == "ema-live-bn":
        live = build(load_config(ckpt))
        load_weights(live, ckpt / WEIGHTS_FILE)
        with torch.no_grad():
            for (_, b), (_, live_b) in zip(model.named_buffers(), live.named_buffers(), strict=True):
                b.copy_(live_b)
    return model


@torch.no_grad()
def heldout_errors(model: torch.nn.Module, config: Config, count: int = 512) -> torch.Tensor:
    """The squared epsilon error of each of the first ``count`` test images (or all of a smaller test split),
    image ``i`` noised to the ``i``-th of ``count`` evenly spread diffusion steps: ``[count]``, in order of the
    step (see the module docstring)."""
    test_set = load_dataset(config.data, config.model.image_size, "test")
    count = min(count, len(test_set))
    images = torch.stack([test_set[i] for i in range(count)])
    x0 = match_channels(batch_transform(images, config.model.image_size, False), config.model.img_ch)
    schedule = NoiseSchedule.from_config(config.diffusion)
    t = torch.linspace(0, schedule.num_steps - 1, count).long()
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    x_t = q_sample(schedule, x0, t, noise)
    model.eval()
    errors = []
    for part in torch.arange(count).split(128):
        out = model(x_t[part], t[part])[:, : x0.shape[1]]
        _, eps = to_x0_eps(config.diffusion.prediction, out.float(), x_t[part], gather(schedule.alphas_cumprod,
                                                                                         t[part], x0[part]))
        errors.append((eps - noise[part]).square().flatten(1).mean(1))
    return torch.cat(errors)


def heldout_summary(errors: torch.Tensor) -> dict:
    """The held-out loss of :func:`heldout_errors`'s per-image errors, and the same by eighths of the diffusion
    steps, low noise first: where a model's error is, not only how large."""
    return {"heldout_loss": round(errors.mean().item(), 5),
            "heldout_loss_by_t": [round(part.mean().item(), 5) for part in errors.tensor_split(8)]}


@dataclass(frozen=True)
class Sampling:
    """How every point is sampled: the same noise (seed 0), sampler, evaluations, count and precision."""

    num: int
    sampler: str
    steps: int
    precision: str = "auto"

    def describe(self) -> str:
        """The protocol as a curve's meta records it (a pinned precision is part of it)."""
        pinned = "" if self.precision == "auto" else f", {self.precision}"
        return f"{self.sampler} {self.steps} steps, seed 0{pinned}"


def score_point(ckpt: Path, which: str, sampling: Sampling, grid: Path) -> dict:
    config = load_config(ckpt)
    model = weights(ckpt, which)  # built once: the held-out loss leaves it as loaded (no_grad, eval)
    errors = heldout_errors(model, config)
    chosen = []
    tic = time.perf_counter()
    images = generate(model, config, sampling.num, sampling.sampler, sampling.steps, seed=0,
                      batch_size=100, precision=sampling.precision, fold_bn=True, on_fast_path=chosen.append)
    sample_s = time.perf_counter() - tic
    save_grid(images[:100], grid, 10)
    requested = class_labels(config, sampling.num, None)  # what generate asked a conditional model for
    result = evaluate_images(images, config.data.dataset, "classifier", requested_classes=requested)
    agreement = result.get("class_agreement")  # the share of samples the classifier puts in their requested class
    return {
        "weights": which, **heldout_summary(errors),
        **{k: round(score(result["scores"], k), 4) for k in ("FID", "KID", "precision", "recall")},
        "classes": result["classes"]["shares"], "smallest_class_share": result["classes"]["smallest_share"],
        **({"class_agreement": agreement} if agreement else {}),
        "sample_seconds": round(sample_s, 1), "sampling_path": str(chosen[0].path),
    }


def score_converted(ckpt: Path, which: str, spike_steps: int, sampling: Sampling, grid: Path) -> dict:
    """:func:`score_point` of the SNN that weight set ``which`` of the quantised ANN in ``ckpt`` converts to."""
    snn_dir = ckpt.parent / f"{ckpt.name}-{which}-snn-t{spike_steps}"
    tic = time.perf_counter()
    summary = ann2snn(ckpt, snn_dir, spike_steps, use_ema=which == "ema", overwrite=True)
    seconds = round(time.perf_counter() - tic, 1)
    row = score_point(snn_dir, "model", sampling, grid)
    return {**row, "weights": which, "converted": {"spike_steps": spike_steps, "seconds": seconds,
                                                    "output_mse_vs_qann": round(summary["output_mse_vs_qann"], 6)}}


def _curve_name(row: dict) -> str:
    """The weight set a row scored, and the SNN it was converted to, if any."""
    converted = row.get("converted")
    return row["weights"] + (f", as SNN T={converted['spike_steps']}" if converted else "")


def _config(meta: dict) -> Config:
    """The configuration a curve trained: its preset with its ``--set`` overrides."""
    return apply_overrides(spikediff.get_preset(meta["preset"]), meta.get("overrides", []))


def plot(out: Path, x: str = "minutes") -> None:
    """FID against minutes, or (``x="step"``) against training images seen, one line per curve;
    line style by model family (solid: spiking, dashed: ANN)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.set_prop_cycle(color=plt.get_cmap("tab20").colors)
    threads, samples = set(), set()
    for path in sorted(out.glob("*.json")):
        data = json.loads(path.read_text())
        if "points" not in data:  # another result kept beside the curves
            continue
        rows, meta = data["points"], data["meta"]
        machine = meta.get("machine")  # a dict since benchmarks/provenance.py; earlier curves kept a string
        threads.add(machine["threads"] if isinstance(machine, dict) else meta.get("threads", "?"))
        samples.add(meta["samples_per_point"])
        config = _config(meta)
        scale = config.train.batch_size / 1000 if x == "step" else 1
        for name in sorted({_curve_name(r) for r in rows}):
            curve = [r for r in rows if _curve_name(r) == name]
            spiking = "converted" in curve[0] or not family_of(config).counts_as_ann(config)
            pts = [(r[x] * scale, r["FID"]) for r in curve]
            ax.plot(*zip(*pts, strict=True), marker="o", linestyle="-" if spiking else "--",
                    linewidth=2.2 if spiking else 1.2, label=f"{path.stem} ({name})")
    ax.set_xlabel("training images seen (thousands)" if x == "step" else
                  f"training wall-clock minutes (threads per run: {', '.join(map(str, sorted(threads, key=str)))})")
    ax.set_ylabel(f"FID (fmnist-classifier features), {' / '.join(map(str, sorted(samples)))} samples")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    name = "fid_vs_steps.png" if x == "step" else "fid_vs_minutes.png"
    fig.savefig(out / name, dpi=120)
    print(f"wrote {out / name}")


def _earlier_curve(args: argparse.Namespace, parser: argparse.ArgumentParser, points: list,
                    config: Config, sampling: Sampling) -> dict:
    """The curve ``--extend`` continues (``{"meta": ..., "points": ...}``), after checking that the
    new points measure the same thing (preset, overrides, points in minutes or steps, weight sets,
    sampler, sample count) further along the same run, which must stand where the curve's last point left it."""
    path, run = args.out / f"{args.label}.json", args.work / args.label
    if not path.is_file() or not run.is_dir():
        parser.error(f"--extend needs {path} and the run {run} of an earlier curve")
    if config.train.lr_decay != "constant":
        parser.error("--extend: a decaying learning rate ends where the earlier curve ended; extend constant-lr runs")
    earlier = json.loads(path.read_text())
    meta, rows = earlier["meta"], earlier["points"]
    same = {"preset": (meta.get("preset"), args.preset), "overrides": (meta.get("overrides", []), args.set),
            "points in": (meta.get("points_in", "minutes"), "steps" if args.at_steps else "minutes"),
            "weights": ({r["weights"] for r in rows}, set(args.weights.split(","))),
            "samples_per_point": (meta.get("samples_per_point"), args.num),
            "sampler": (meta.get("sampler"), sampling.describe()),
            "convert": (meta.get("convert"), args.convert)}
    for key, (was, now) in same.items():
        if was != now:
            parser.error(f"--extend: {key} was {was!r}, now {now!r}: that would be another curve")
    last = max(r["step" if args.at_steps else "minutes"] for r in rows)
    if min(points) <= last:
        parser.error(f"--extend: the new points must come after the last one ({last})")
    trained, scored = load_trainer_state(run)["step"], max(r["step"] for r in rows)
    if trained != scored:
        parser.error(f"--extend: the run in {run} is at step {trained}, the curve's last point at {scored} "
                     "(an extension that stopped before it was scored?): start the curve again")
    return earlier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset")
    parser.add_argument("--label")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--minutes", default="10,20,30", help="cumulative training minutes of the points")
    parser.add_argument("--at-steps", help="points at these cumulative step counts instead of minutes")
    parser.add_argument("--weights", default="model", help="comma-separated: model, ema, ema-live-bn")
    parser.add_argument("--num", type=int, default=500, help="samples per point and weight set")
    parser.add_argument("--sampler", default="dpm-solver++", help="the sampler of every point")
    parser.add_argument("--steps", type=int, default=20, help="the sampler's network evaluations")
    parser.add_argument("--sampling-precision", choices=["auto", "fp32", "bf16"], default="auto",
                        help="auto: the fast path `spikediff sample` chooses (recorded per point)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/learning_curve"))
    parser.add_argument("--work", type=Path, default=Path("runs/learning_curve"))
    parser.add_argument("--plot", action="store_true", help="only draw the plot of every label in --out")
    parser.add_argument("--extend", action="store_true",
                        help="continue LABEL's run in --work to later points, keeping LABEL.json's points")
    parser.add_argument("--convert", type=int, metavar="T",
                        help="also score each weight set converted to a T-step SNN (a qann_unet preset)")
    parser.add_argument("--convert-at", help="the points (minutes or steps, as the points are given) at which "
                        "--convert scores the SNN; default every point")
    args = parser.parse_args()
    if args.plot:
        plot(args.out, "step" if args.at_steps else "minutes")
        return
    config = apply_overrides(spikediff.get_preset(args.preset), args.set)
    if args.convert and (config.model.arch != "qann_unet" or "ema-live-bn" in args.weights.split(",")):
        parser.error("--convert needs a quantised-ANN preset (model.arch qann_unet) and weight sets model / ema")
    at_steps = [int(s) for s in args.at_steps.split(",")] if args.at_steps else None
    if at_steps and len(at_steps) > 1 and config.train.lr_decay != "constant":
        parser.error("a decaying learning rate ends at total_steps: give one --at-steps point per run")
    run, points_dir = args.work / args.label, args.out / args.label
    points_dir.mkdir(parents=True, exist_ok=True)
    points = at_steps or [float(m) for m in args.minutes.split(",")]
    convert_at = set(points) if args.convert_at is None else {float(p) for p in args.convert_at.split(",")}
    if args.convert_at and (not args.convert or not convert_at <= set(points)):
        parser.error(f"--convert-at needs --convert and points among {points}")
    sampling = Sampling(args.num, args.sampler, args.steps, args.sampling_precision)
    earlier = _earlier_curve(args, parser, points, config, sampling) if args.extend else {"meta": {}, "points": []}
    rows = earlier["points"]
    minutes = max((r["minutes"] for r in rows), default=0.0)
    for i, point in enumerate(points):
        tic = time.monotonic()
        steps = {"train.total_steps": point if at_steps else 10_000_000}
        result = train(apply_overrides(config, [f"{k}={v}" for k, v in steps.items()]), run,
                       resume=i > 0 or args.extend, overwrite=i == 0 and not args.extend,
                       max_minutes=None if at_steps else point - minutes, progress=False)
        segment_s = round(time.monotonic() - tic, 1)
        minutes = minutes + segment_s / 60 if at_steps else point
        name = f"step{point}" if at_steps else f"{point:g}min"
        ckpt = args.work / f"{args.label}-{name}"
        shutil.rmtree(ckpt, ignore_errors=True)
        shutil.copytree(resolve(run), ckpt)
        # 3 decimals, so that a segment of a few seconds (the tests') still moves the recorded clock
        at = {"minutes": round(minutes, 3), "step": result.step, "train_seconds_segment": segment_s}
        for which in args.weights.split(","):
            scored = [score_point(ckpt, which, sampling, points_dir / f"{name}-{which}.png")]
            if args.convert and point in convert_at:
                scored.append(score_converted(ckpt, which, args.convert, sampling,
                                              points_dir / f"{name}-{which}-snn-t{args.convert}.png"))
            for row in scored:
                rows.append({**at, **row})
                print(json.dumps(rows[-1]), flush=True)
    meta = {**provenance(), "preset": args.preset, "overrides": args.set,
            "points_in": "steps" if at_steps else "minutes",
            "sampler": sampling.describe(),
            "samples_per_point": args.num, "features": "fmnist-classifier (not Inception)", "convert": args.convert,
            "fast_path": json.loads((run / "fast_path.json").read_text())}
    if earlier["meta"]:  # the extended curve keeps what its earlier segments recorded
        meta = {**earlier["meta"], **meta, "earlier_commands": [*earlier["meta"].get("earlier_commands", []),
                                                                earlier["meta"].get("command")]}
    (args.out / f"{args.label}.json").write_text(json.dumps({"meta": meta, "points": rows}, indent=1))
    plot(args.out, "step" if at_steps else "minutes")


if __name__ == "__main__":
    main()
