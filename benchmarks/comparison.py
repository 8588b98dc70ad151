"""Issue 13's comparison table: every model family trained under one wall-clock budget on this
machine, then sampled, scored and measured the same way.

    python benchmarks/comparison.py [--rows spiking-unet,ann-twin,...] [--budget-minutes 20]
        [--num 10000] [--steps 10] [--session-minutes 170] [--work runs/comparison]
        [--out benchmarks/results/comparison]

``--rows`` defaults to every row but those a later preset supersedes (``converted-snn``, ``sdit``; each
still runs when named).

Protocol, the same for every row: Fashion-MNIST training set, seed 0, the row's preset (batch 32;
the EMA weights where the preset keeps one) trained for ``--budget-minutes`` of wall-clock time (the
step count is whatever the budget reaches; ``train.total_steps`` is lifted so that time is the
limit), then ``--num`` samples with ``--steps`` network evaluations (DPM-Solver++ for the Gaussian
models, the absorbing sampler for Spiking-Diffusion), scored with the project's classifier features
(FID, KID, precision/recall against the training set; not Inception), the class coverage of the
samples (the share the project's classifier assigns to each class), for a class-conditional row
(image i asked for class i mod 10) how often the classifier sees the requested class, energy per image from
``spikediff energy`` (45 nm) and the SNN / ANN ratio where the model has an ANN twin. A guided row (``cfg 2``)
samples another row's trained model with classifier-free guidance: two network evaluations per step, counted
in its energy and its sampler column, and no training of its own. Two-stage rows
split the budget: Spiking-Diffusion half VQ-SVAE, half diffusion; the TSM row fine-tunes the
Spiking U-Net row's result for a quarter budget more; the converted SNN is the quantised ANN row's
model converted with the row's neurons (SDM's signed IF at T = 2^bits - 1, no block-wise fine-tuning, which
lowered recall where it was measured; or the integrate-then-fire phase code of README's quick start, which
converts the converted-snn-signed row's trained network: one training, two conversions); its conversion
time is reported, outside the budget.

The table ranks by FID only the rows whose samples pass as Fashion-MNIST images (recall and every
class's share at least :data:`RANKED_IF`); a row below says so with its reason and is not ranked:
an order among models that all sample noise measures nothing.

Everything is resumable: each stage leaves its result in ``--work`` and a rerun of the same command
skips what is done, continues training runs (exact resume) until their budget is spent and samples in
chunks of 1,000 images; ``--session-minutes`` stops starting new work near the end of a session. A
stage resumed on another machine than the one it started on starts again (minutes of two CPUs do not
add up); rows finished on different machines get a machine column in the table.
Writes ``ROW.json`` per row, ``table.json``, ``table.md`` (with the FID-energy front and the floor: as many real
test images scored the same way, ``real-test-images-N.json``) and a grid per row to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from provenance import provenance  # noqa: E402

import spikediff  # noqa: E402
from spikediff.families import family_of  # noqa: E402
from spikediff.fast_path import cpu_facts  # noqa: E402
from spikediff.metrics import evaluate_images, score, score_key  # noqa: E402
from spikediff.metrics.reference import reference_images  # noqa: E402
from spikediff.sample import class_labels, generate, save_grid  # noqa: E402

CHUNK = 1000
# a row is ranked only when its samples pass as the data: recall (fmnist-classifier, k=3) and the smallest
# class's share of the samples at least these. Rows that sampled noise, black or near-identical images at
# 10 minutes scored recall 0.000-0.006; the weakest rows that drew garments, 0.17 and up.
RANKED_IF = {"recall": 0.1, "smallest_class_share": 0.01}
UNLIMITED = ["--set", "train.total_steps=1000000", "--set", "train.save_every=200", "--set", "train.sample_every=0"]


@dataclass
class Stage:
    """One training run of a row: a preset, its overrides, its share of the budget, where it starts."""

    name: str
    preset: str
    share: float = 1.0
    sets: list[str] = field(default_factory=list)
    init_from: str | None = None  # "ROW/STAGE" of an earlier stage, or of another row


@dataclass
class Row:
    label: str
    stages: list[Stage]
    convert: bool = False  # ann2snn on the last stage
    coding: str = "signed-if"  # the converted SNN's neurons (ann2snn --coding)
    conditional: bool = False
    guidance: float = 1.0  # classifier-free guidance scale of a conditional row's sampling (> 1: two evaluations)
    # the row whose trained model this row uses, sampled at its own guidance or converted with its own
    # neurons; such a row has no stages
    samples: str | None = None
    # run by default; False for a row that a later preset supersedes (kept runnable by name, for the
    # earlier tables in benchmarks/RESULTS.md)
    default: bool = True


def trained(row: str) -> tuple[str, Row]:
    """The row whose stages trained ``row``'s model: itself, or the row it samples at another guidance
    or converts with other neurons."""
    name = ROWS[row].samples or row
    return name, ROWS[name]


ROWS: dict[str, Row] = {
    "spiking-unet": Row("Spiking U-Net (IF, T=2, 28x28)", [Stage("train", "fmnist-snn-small")]),
    "spiking-unet-tsm": Row("Spiking U-Net + TSM (fine-tuned, +1/4 budget)", [
        # eager, as the preset's own 500 steps choose under compile=auto: ~3 min of compilation on one
        # core would eat the whole quarter budget
        Stage("tsm", "fmnist-snn-small-tsm", 0.25, ["train.compile=off"], init_from="spiking-unet/train")]),
    "fsddim-style": Row("Spiking U-Net, FSDDIM options (LIF, mean readout, v-pred, cosine)",
                        [Stage("train", "fmnist-snn-small-fsddim")]),
    "ann-twin": Row("ANN twin (DDPM U-Net)", [Stage("train", "fmnist-ann-small")]),
    # superseded by converted-snn-signed (the same neurons with spikes into every convolution)
    "converted-snn": Row("Converted SNN (3-bit QANN -> signed IF, T=7)",
                         [Stage("train", "fmnist-qann-small")], convert=True, default=False),
    "converted-snn-signed": Row("Converted SNN, spikes into every conv (fmnist-qann-signed-small, T=7)",
                                [Stage("train", "fmnist-qann-signed-small")], convert=True),
    # the converted-snn-signed row's quantised ANN with other neurons: one trained network, two conversions
    "converted-snn-phase": Row("Converted SNN, integrate-then-fire, phase code (fmnist-qann-signed-small, T=3; "
                               "the quick start)", [], convert=True, coding="phase", samples="converted-snn-signed"),
    "spiking-diffusion": Row("Spiking-Diffusion (VQ-SVAE + absorbing, T=4, half-width denoiser)", [
        Stage("vq", "sd-vq-fmnist", 0.5, ["model.spike_steps=4"]),
        Stage("diffusion", "sd-diffusion-fmnist", 0.5, ["model.spike_steps=4", "model.ch=32"],
              init_from="spiking-diffusion/vq")]),
    # superseded by sdit-fast (the CPU levers); it sampled noise at 30 minutes (benchmarks/RESULTS.md)
    "sdit": Row("SDiT (class-conditional, cfg 1)", [Stage("train", "fmnist-sdit-small")], conditional=True,
                default=False),
    "sdit-fast": Row("SDiT, CPU levers + lr 1e-3 (fmnist-sdit-fast-small, cfg 1)",
                     [Stage("train", "fmnist-sdit-fast-small")], conditional=True),
    "sdit-fast-ann": Row("its ANN twin (fmnist-sdit-fast-ann-small, cfg 1)",
                         [Stage("train", "fmnist-sdit-fast-ann-small")], conditional=True),
    # guidance 2 nearly halved SDiT's FID at 60 minutes and raised its class agreement 0.65 -> 0.85
    # (benchmarks/RESULTS.md, "SDiT at its best guidance"): the same two models, sampled guided
    "sdit-fast-cfg2": Row("SDiT, fmnist-sdit-fast-small, cfg 2 (the sdit-fast row's model)", [], conditional=True,
                          guidance=2.0, samples="sdit-fast"),
    "sdit-fast-ann-cfg2": Row("its ANN twin, cfg 2 (the sdit-fast-ann row's model)", [], conditional=True,
                              guidance=2.0, samples="sdit-fast-ann"),
}


class Session:
    """The wall-clock left in this invocation: stages start only when they can make progress."""

    def __init__(self, minutes: float) -> None:
        self.deadline = time.monotonic() + minutes * 60

    def minutes_left(self) -> float:
        return (self.deadline - time.monotonic()) / 60


def cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "spikediff", *args], check=True)


def train_stage(row: str, stage: Stage, args, session: Session) -> bool:
    """Train until the stage's budget is spent (resuming earlier pieces); True when it is."""
    run = args.work / row / stage.name
    ledger = args.work / row / f"{stage.name}.budget.json"
    here = cpu_facts()
    spent = json.loads(ledger.read_text()) if ledger.is_file() else {"minutes": 0.0, "machine": here}
    if spent.get("machine") != here:
        print(f"{row}/{stage.name}: started on {spent.get('machine')}, this is {here}: training it again here",
              flush=True)
        shutil.rmtree(run, ignore_errors=True)
        spent = {"minutes": 0.0, "machine": here}
    used = spent["minutes"]
    budget = args.budget_minutes * stage.share
    if used >= budget - 0.05:
        return True
    piece = min(budget - used, session.minutes_left() - 1)
    if piece < min(1.0, budget - used):  # too little of the session left to make progress
        return False
    cmd = ["train", "--out", str(run), "--max-minutes", f"{piece:.2f}", "--no-progress",
           *UNLIMITED, *[a for s in stage.sets for a in ("--set", s)]]
    if (run / "checkpoints").is_dir():  # a later piece: the run's own config (train refuses --preset here)
        cmd.append("--resume")
    else:
        cmd += ["--preset", stage.preset]
        if stage.init_from:
            cmd += ["--init-from", str(args.work / stage.init_from)]
    tic = time.monotonic()
    cli(*cmd)
    ledger.parent.mkdir(parents=True, exist_ok=True)
    ledger.write_text(json.dumps({"minutes": used + (time.monotonic() - tic) / 60, "machine": here}))
    return used + (time.monotonic() - tic) / 60 >= budget - 0.05


def trained_run(row: str, args) -> Path:
    """The training run whose model ``row`` samples or converts: the last stage of its trained row."""
    source, spec = trained(row)
    return args.work / source / spec.stages[-1].name


def final_checkpoint(row: str, args) -> Path:
    """What ``row`` samples: its own conversion of the trained model when it converts, else that model."""
    return args.work / row / "converted" if ROWS[row].convert else trained_run(row, args)


def convert(row: str, args) -> dict:
    out = args.work / row / "converted"
    if not (out / "conversion.json").is_file():
        tic = time.monotonic()
        cli("ann2snn", str(trained_run(row, args)), str(out), "--coding", ROWS[row].coding)
        (out / "conversion_seconds.json").write_text(json.dumps({"seconds": time.monotonic() - tic}))
    return json.loads((out / "conversion_seconds.json").read_text())


def row_sampler(config) -> str:
    """One sampler for every Gaussian row (DPM-Solver++), the absorbing sampler for token models."""
    return "absorbing" if family_of(config).samples_tokens else "dpm-solver++"


def longest_chunk_seconds(parts: Path) -> float:
    """The longest a chunk in ``parts`` took (0 before the first): what the next one is expected to take."""
    return max((float(np.load(p)["seconds"]) for p in parts.glob("part_*.npz")), default=0.0)


def sample_chunks(ckpt: Path, parts: Path, args, session: Session, guidance: float = 1.0) -> bool:
    """Sample ``--num`` images into ``parts`` in chunks of ``CHUNK``, each on the fast path that
    ``spikediff sample`` takes (measured and verified against eager fp32; recorded with the chunk). A
    chunk starts only when the session has 1.5x the longest chunk so far left; the first chunk of a row
    has no timing yet and starts with a minute left."""
    parts.mkdir(parents=True, exist_ok=True)
    model, last = None, longest_chunk_seconds(parts)
    for first in range(0, args.num, CHUNK):
        part = parts / f"part_{first:06d}.npz"
        if part.is_file():
            continue
        if session.minutes_left() < max(1.0, 1.5 * last / 60):
            return False
        if model is None:
            config = spikediff.load_config(ckpt)
            model = spikediff.load(ckpt).eval()
        chosen = []
        tic = time.monotonic()
        images = generate(model, config, min(CHUNK, args.num - first), row_sampler(config), args.steps, seed=0,
                          batch_size=250, device="cpu", precision="auto", compile="auto",
                          fold_bn=not family_of(config).samples_tokens, first=first, on_fast_path=chosen.append,
                          guidance=guidance)
        seconds = time.monotonic() - tic
        print(chosen[0].describe(), flush=True)
        last = max(last, seconds)
        np.savez_compressed(part, images=images.numpy(), seconds=seconds, path=str(chosen[0].path))
    return True


def measure(row: str, spec: Row, args) -> dict:
    source, trained_spec = trained(row)
    ckpt = spikediff.checkpoint.resolve(final_checkpoint(row, args))
    config = spikediff.load_config(ckpt)
    loaded = [np.load(p) for p in sorted((args.work / row / "samples").glob("part_*.npz"))]
    images = torch.from_numpy(np.concatenate([p["images"] for p in loaded]))
    # a chunk that compiled paid the compilation: time the others when there are any
    timed = loaded[1:] if len(loaded) > 1 else loaded
    seconds, timed_images = sum(float(p["seconds"]) for p in timed), sum(len(p["images"]) for p in timed)
    save_grid(images[:100], args.out / f"grid-{row}.png", 10)
    energy_dir = args.work / row / "energy"
    cli("energy", str(ckpt), "--steps", str(args.steps), "--out", str(energy_dir))
    energy = json.loads((energy_dir / "energy.json").read_text())
    evaluations_per_step = 1 if spec.guidance == 1.0 else 2  # guided: the conditional and unconditional model
    model = spikediff.load(ckpt)
    logs = []
    for stage in trained_spec.stages:
        log = args.work / source / stage.name / "log.jsonl"
        logs += [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    rates = [r["images_per_s"] for r in logs if "images_per_s" in r]
    # a conditional row sampled image i of class i mod num_classes (generate's default): the classifier's agreement
    requested = class_labels(config, len(images), None)
    scored = evaluate_images(images, config.data.dataset, "classifier", requested_classes=requested)
    return {
        "row": row, "model": spec.label, "checkpoint": str(ckpt), "arch": config.model.arch,
        "params_trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "budget_minutes": args.budget_minutes * sum(s.share for s in trained_spec.stages),
        "train_steps": {s.name: int(spikediff.checkpoint.resolve(args.work / source / s.name).name.split("_")[-1])
                        for s in trained_spec.stages},
        "train_images_per_s_median": round(statistics.median(rates), 2) if rates else None,
        "sampler": row_sampler(config),
        "steps": args.steps, "guidance": spec.guidance, "network_evaluations": args.steps * evaluations_per_step,
        "num_samples": len(images), "sampling_images_per_s": round(timed_images / seconds, 2),
        # parts written before the paths were recorded were compiled without verification
        "sampling_paths": sorted({str(p["path"]) if "path" in p else "compiled, not verified" for p in loaded}),
        "energy_per_image_mj": energy["energy_per_image_mj"] * evaluations_per_step,
        "snn_over_ann": energy.get("snn_over_ann"),
        "conditional": spec.conditional, **scored["scores"], "classes": scored["classes"],
        **({"class_agreement": scored["class_agreement"]} if "class_agreement" in scored else {}),
    }


def budget_cell(r: dict, rows: list[dict]) -> str:
    """Minutes and steps of a row's training, counting those of the row it starts from (TSM)."""
    runs = [r]
    source, spec = trained(r["row"])
    start = spec.stages[0].init_from
    if start and start.split("/")[0] != source:
        runs.insert(0, next(x for x in rows if x["row"] == start.split("/")[0]))
    minutes = " + ".join(f"{x['budget_minutes']:g}" for x in runs)
    steps = " + ".join(str(s) for x in runs for s in x["train_steps"].values())
    return f"{minutes} min ({steps})"


def unranked_because(r: dict) -> str | None:
    """Why row ``r``'s samples do not pass as the dataset's images, or None when they do (see RANKED_IF)."""
    recall, classes = score(r, "recall"), r.get("classes")
    if recall < RANKED_IF["recall"]:
        return (f"recall {recall:.3f} < {RANKED_IF['recall']}: its samples cover almost none of the data "
                "(noise, blank or near-identical images)")
    if classes is None:
        return "no class coverage recorded (measured before the table kept it): rerun its measurement"
    if classes["smallest_share"] < RANKED_IF["smallest_class_share"]:
        return (f"class {classes['smallest']} gets {classes['smallest_share']:.1%} of the samples "
                f"(< {RANKED_IF['smallest_class_share']:.0%}): it does not draw every class")
    return None


def machine_name(r: dict) -> str:
    """The CPU a row was measured on, short: its model name and whether it has AVX512-BF16."""
    machine = r["meta"]["machine"]
    return machine["model"] + (" (AVX512-BF16)" if "avx512_bf16" in machine["flags"].split() else "")


def real_floor(num: int, out: Path) -> dict:
    """The scores of ``num`` real test images under the table's protocol (the same features, against the
    training set's statistics): what a model that drew the data itself would score at this sample count,
    not 0. Computed once per ``--out``."""
    path = out / f"real-test-images-{num}.json"
    if not path.is_file():
        images = reference_images("fmnist", "test", 28)[:num]
        path.write_text(json.dumps(evaluate_images(images, "fmnist", "classifier")["scores"], indent=2))
    return json.loads(path.read_text())


def table(rows: list[dict], floor: dict | None = None) -> str:
    """The rows that draw the data ranked by FID, then the rows that do not, each with its reason;
    a machine column when the rows were measured on different machines (a budget of minutes buys a
    different step count on each); the FID-energy front; the floor of real images (:func:`real_floor`)."""
    fid = score_key(rows[0], "FID")
    kid = next(k for k in rows[0] if k.startswith("KID ("))
    machines = len({machine_name(r) for r in rows}) > 1
    header = (f"| rank | model | params | budget (steps) | train img/s | sampler (NFE) | samples | {fid} | KID | "
              "precision | recall | smallest class | class agreement | energy / image (45 nm) | SNN/ANN | "
              "sample img/s (path) |"
              + (" machine |" if machines else ""))
    lines = [header, "|---" * header.count(" |") + "|"]
    why = {r["row"]: unranked_because(r) for r in rows}
    ranked = sorted((r for r in rows if why[r["row"]] is None), key=lambda r: r[fid])
    unranked = [r for r in rows if why[r["row"]] is not None]
    for rank, r in enumerate(ranked + unranked, 1):
        ratio = f"{r['snn_over_ann']:.2f}" if r["snn_over_ann"] is not None else "-"
        classes = r.get("classes")
        smallest = f"{classes['smallest']} {classes['smallest_share']:.1%}" if classes else "-"
        path = f" ({', '.join(r['sampling_paths'])})" if r.get("sampling_paths") else ""
        agreement = f"{r['class_agreement']['overall']:.3f}" if "class_agreement" in r else "-"
        evaluations = r.get("network_evaluations", r["steps"])  # guided rows evaluate twice per step
        lines.append(f"| {rank if rank <= len(ranked) else 'not ranked'} | {r['model']} | {r['params_trainable']:,} | "
                     f"{budget_cell(r, rows)} | {r['train_images_per_s_median']} | {r['sampler']} ({evaluations}) | "
                     f"{r['num_samples']:,} | {r[fid]:.1f} | {r[kid]:.2f} | {score(r, 'precision'):.3f} | "
                     f"{score(r, 'recall'):.3f} | {smallest} | {agreement} | {r['energy_per_image_mj']:.3f} mJ | "
                     f"{ratio} | "
                     f"{r['sampling_images_per_s']:.1f}{path} |" + (f" {machine_name(r)} |" if machines else ""))
    reasons = [f"- {r['model']}: not ranked, {why[r['row']]}" for r in unranked]
    best = sorted(front(rows), key=lambda r: r["energy_per_image_mj"])
    on_front = ", ".join(f"{r['row']} ({r[fid]:.1f}, {r['energy_per_image_mj']:.3f} mJ)" for r in best)
    front_line = f"FID-energy front (the ranked rows no other ranked row beats on both): {on_front or 'none'}"
    if floor is not None:
        front_line += (f"\n\nThe floor: {rows[0]['num_samples']:,} real test images score {fid} {floor[fid]:.1f}, "
                       f"recall {score(floor, 'recall'):.3f}.")
    return "\n".join(lines + [""] + reasons + ([""] if reasons else []) + [front_line]) + "\n"


def front(rows: list[dict], cost: str = "energy_per_image_mj") -> list[dict]:
    """The ranked rows that no other ranked row beats on both FID and ``cost`` (lower is better on both)."""
    fid = score_key(rows[0], "FID")
    ranked = [r for r in rows if unranked_because(r) is None]

    def beats(o: dict, r: dict) -> bool:
        return o[fid] <= r[fid] and o[cost] <= r[cost] and (o[fid], o[cost]) != (r[fid], r[cost])

    return [r for r in ranked if not any(beats(o, r) for o in ranked)]


def plot(rows: list[dict], budget_minutes: float, path: Path) -> None:
    """FID against energy per image, sampling speed and training speed: one point per row; on the energy
    panel the front (:func:`front`) is joined by a line."""
    fid = score_key(rows[0], "FID")
    panels = [("energy_per_image_mj", "energy per image, mJ (45 nm)"),
              ("sampling_images_per_s", "sampling images/s"), ("train_images_per_s_median", "training images/s")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), sharey=True)
    for ax, (key, label) in zip(axes, panels, strict=True):
        for r in rows:
            ax.scatter(r[key], r[fid], s=30)
            ax.annotate(r["row"], (r[key], r[fid]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel(label)
    best = sorted(front(rows), key=lambda r: r["energy_per_image_mj"])
    axes[0].plot([r["energy_per_image_mj"] for r in best], [r[fid] for r in best], "k--", lw=1, label="front")
    if best:
        axes[0].legend(fontsize=8)
    axes[0].set_ylabel(f"{fid}, {rows[0]['num_samples']:,} samples")
    fig.suptitle(f"Fashion-MNIST, {budget_minutes:g} min of training per model on this CPU, "
                 f"{rows[0]['steps']} network evaluations per sample")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_grids(rows: list[dict], out: Path) -> None:
    """Every row's grid of samples in one figure, for the README."""
    cols = 4
    fig, axes = plt.subplots(-(-len(rows) // cols), cols, figsize=(4 * cols, 4.4 * -(-len(rows) // cols)),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, r in zip(axes.flat, rows, strict=False):
        ax.imshow(plt.imread(out / f"grid-{r['row']}.png"), cmap="gray")
        fid = score(r, "FID")
        ax.set_title(f"{r['row']}\nFID {fid:.0f}, {budget_cell(r, rows)}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "grids.png", dpi=100, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(row for row, spec in ROWS.items() if spec.default))
    parser.add_argument("--budget-minutes", type=float, default=20.0)
    parser.add_argument("--num", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--session-minutes", type=float, default=170.0)
    parser.add_argument("--work", type=Path, default=Path("runs/comparison"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/comparison"))
    args = parser.parse_args()
    unknown = set(args.rows.split(",")) - set(ROWS)
    if unknown:
        parser.error(f"unknown rows {sorted(unknown)}; expected some of {list(ROWS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    session = Session(args.session_minutes)
    for row in args.rows.split(","):
        spec = ROWS[row]
        measured = args.out / f"{row}.json"
        source, trained_spec = trained(row)
        if measured.is_file():
            budget = json.loads(measured.read_text())["budget_minutes"]
            if abs(budget - args.budget_minutes * sum(s.share for s in trained_spec.stages)) > 1e-6:
                parser.error(f"{measured} was measured at a {budget:g}-minute budget: give this budget its own "
                             "--out and --work")
            continue
        if not all(train_stage(source, stage, args, session) for stage in trained_spec.stages):
            print(f"{row}: training continues in the next invocation", flush=True)
            break
        extra = convert(row, args) if spec.convert else {}
        ckpt = spikediff.checkpoint.resolve(final_checkpoint(row, args))
        if not sample_chunks(ckpt, args.work / row / "samples", args, session, spec.guidance):
            print(f"{row}: sampling continues in the next invocation", flush=True)
            break
        result = measure(row, spec, args) | ({"conversion_seconds": extra["seconds"]} if extra else {})
        result["meta"] = provenance()
        (args.out / f"{row}.json").write_text(json.dumps(result, indent=2))
        print(json.dumps(result), flush=True)
    done = [json.loads((args.out / f"{r}.json").read_text()) for r in ROWS if (args.out / f"{r}.json").is_file()]
    if done:
        (args.out / "table.json").write_text(json.dumps(done, indent=2))
        (args.out / "table.md").write_text(table(done, real_floor(args.num, args.out)))
        plot(done, args.budget_minutes, args.out / "fid_vs_cost.png")
        plot_grids(done, args.out)
        print((args.out / "table.md").read_text())


if __name__ == "__main__":
    main()
