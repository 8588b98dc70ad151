"""torch.distributed for training launched by torchrun (one process per GPU, or several CPU
processes over gloo): who am I, and a few collective helpers that are no-ops in one process."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


def default_device() -> torch.device:
    """The first GPU if there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def device_problem(device: torch.device) -> str | None:
    """Why this machine cannot run on ``device`` (no CUDA GPU, or not that many), or None."""
    if device.type != "cuda":
        return None
    if not torch.cuda.is_available():
        return f"{device}: torch sees no CUDA GPU on this machine; use cpu"
    if device.index is not None and device.index >= torch.cuda.device_count():
        return f"{device}: this machine has {torch.cuda.device_count()} CUDA GPU(s)"
    return None


def init_distributed(device: torch.device | None) -> tuple[Dist, torch.device]:
    """Join the process group torchrun describes in the environment (``WORLD_SIZE`` > 1), picking the
    local GPU on CUDA and gloo on the CPU; a plain launch is a world of one."""
    if device is not None and (why := device_problem(device)):
        raise ValueError(f"--device {why}")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist(), device or default_device()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, local), device


def mean_over_ranks(value: float, d: Dist, device: torch.device) -> float:
    if not d.enabled:
        return value
    v = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(v)
    return v.item() / d.world


def all_ranks(flag: bool, d: Dist, device: torch.device) -> bool:
    """True only if ``flag`` holds on every rank (one all-reduce; a plain ``flag`` in one process)."""
    if not d.enabled:
        return flag
    v = torch.tensor([0.0 if flag else 1.0], device=device)
    dist.all_reduce(v, op=dist.ReduceOp.MAX)
    return v.item() == 0.0


def ranks_in_sync(model: torch.nn.Module, d: Dist, device: torch.device) -> bool:
    """True if every rank holds the same parameters (compared by a float64 checksum)."""
    if not d.enabled:
        return True
    total = torch.zeros(2, dtype=torch.float64, device=device)
    total[0] = sum(p.detach().double().sum() for p in model.parameters())
    total[1] = sum(p.detach().double().square().sum() for p in model.parameters())
    gathered = [torch.zeros_like(total) for _ in range(d.world)]
    dist.all_gather(gathered, total)
    return all(torch.equal(g, gathered[0]) for g in gathered)


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def shutdown(d: Dist) -> None:
    """Wait for every rank, then leave the process group, so no rank exits while another still
    talks to it."""
    if d.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
