"""Inference-time folding of BatchNorm into the convolution before it (the fast sampling path).

In eval mode ``BN(conv(x)) = a * conv(x) + c`` per channel, so the conv's weights and bias can
absorb ``a`` and ``c`` and the BatchNorm pass disappears. Blocks declare their (conv, bn) pairs in
``conv_bn_pairs``. TSM convs are left alone: their per-step scale sits between conv and BN.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    conv.weight.mul_(scale.view(-1, *([1] * (conv.weight.dim() - 1))))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    new_bias = (bias - bn.running_mean) * scale + bn.bias
    if conv.bias is None:
        conv.bias = nn.Parameter(new_bias)
    else:
        conv.bias.copy_(new_bias)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with every declared conv -> BN pair folded; ``model`` is untouched."""
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        for conv_name, bn_name in getattr(module, "conv_bn_pairs", ()):
            conv, bn = getattr(module, conv_name), getattr(module, bn_name)
            if hasattr(conv, "tsm_p") or not isinstance(bn, nn.BatchNorm2d):
                continue
            fold_conv_bn(conv, bn)
            setattr(module, bn_name, nn.Identity())
    return folded
