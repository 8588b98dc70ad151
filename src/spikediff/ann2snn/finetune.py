"""Block-wise fine-tuning of a converted SNN against its quantised ANN (SDM, Cao et al. 2024).

Block by block, from the input to the output, each residual block of the SNN is trained so that its
output averaged over T matches the ANN block's output (MSE), given the SNN's own input to the block
(so each block learns to undo the error of the blocks before it, which were tuned first). Gradients
reach the block's weights through the signed IF neurons' straight-through rate gradient; thresholds
and BatchNorm statistics stay fixed, as in the reference. The time embedding, the stem and the output
layer are not tuned (the reference tunes neither the embedding nor the head, nor the tail).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from spikediff.diffusion import NoiseSchedule, q_sample
from spikediff.models.ann_unet import ResBlock
from spikediff.models.quant_unet import ConvertedSNN


class _Captured(Exception):
    """Stops a forward pass once the hooked block has been reached."""


def _block_io(model: nn.Module, block: nn.Module, x: torch.Tensor, t: torch.Tensor, want: str):
    """Run ``model`` only as far as ``block``; return its inputs (``want="inputs"``) or output."""
    seen: dict = {}

    def pre_hook(_m, args):
        seen["inputs"] = tuple(a.detach() for a in args)
        if want == "inputs":
            raise _Captured

    def hook(_m, _args, output):
        seen["output"] = output.detach()
        raise _Captured

    handle = block.register_forward_pre_hook(pre_hook) if want == "inputs" else block.register_forward_hook(hook)
    try:
        with torch.no_grad():
            model(x, t)
    except _Captured:
        pass
    finally:
        handle.remove()
    return seen[want]


def res_blocks(model: nn.Module) -> list[tuple[str, ResBlock]]:
    """The residual blocks in the order the forward pass runs them (down, middle, up)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, ResBlock)]


def blockwise_finetune(
    snn: ConvertedSNN,
    qann: nn.Module,
    images: torch.Tensor,
    schedule: NoiseSchedule,
    steps_per_block: int = 100,
    lr: float = 1e-3,
    batch_size: int = 32,
    seed: int = 0,
    on_step: Callable[[], None] | None = None,
) -> list[dict]:
    """Tune ``snn`` in place; ``images`` are training images in [-1, 1], noised to random diffusion
    steps for every batch. Returns, per block, its MSE on the first and the last batches."""
    device = next(snn.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    qann.eval()
    snn.eval()  # as the reference: no dropout; gradients still flow (BatchNorm is frozen either way)
    ann_blocks = dict(res_blocks(qann))
    history = []
    T = snn.spike_steps
    snn.run_stepwise = False  # a block's inputs are read, and trained on, folded over the T steps
    try:
        for name, block in res_blocks(snn):
            params = [p for p in block.parameters() if p.requires_grad]
            opt = torch.optim.Adam(params, lr=lr)
            losses = []
            for _ in range(steps_per_block):
                pick = torch.randint(len(images), (batch_size,), generator=gen)
                x0 = images[pick].to(device)
                t = torch.randint(schedule.num_steps, (batch_size,), generator=gen).to(device)
                x = q_sample(schedule, x0, t, torch.randn(x0.shape, generator=gen).to(device))
                target = _block_io(qann, ann_blocks[name], x, t, "output")
                h, temb = _block_io(snn, block, x, t, "inputs")
                out = block(h, temb)
                rate = out.view(T, batch_size, *out.shape[1:]).mean(0)
                loss = (rate - target).square().mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
                if on_step:
                    on_step()
            history.append({"block": name, "mse_first": losses[0], "mse_last": losses[-1]} if losses else
                           {"block": name})
    finally:
        snn.run_stepwise = True
    return history
