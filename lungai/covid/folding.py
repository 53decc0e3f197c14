"""An inference copy of a trained CHS-Net stage with its BatchNorms folded into the convolutions before them.

In eval mode a BatchNorm is a per-channel affine map ``s * y + t`` (``s = gamma / sqrt(var + eps)``,
``t = beta - mean * s``); after a convolution ``y = W x + b`` it is the convolution ``(s W) x + (s b + t)``. Every
``convolution -> BatchNorm`` pair of a RAIU-Net (the DSC branches and the hybrid pooling of each inception
convolution, its 1x1 fusion, the residual shortcut, the attention refinements) becomes one convolution, and a 1x1
depthwise convolution (a per-channel scale) goes into the pointwise convolution after it. Same function to float
rounding, one pass less over every feature map. Used only for inference (:func:`lungai.covid.pipeline.load`):
the trained network is left untouched.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from lungai.covid.blocks import DepthwiseSeparableConv2d, HybridPool2d


def _output_conv(module: nn.Module) -> nn.Conv2d | None:
    """The convolution that produces ``module``'s output, if its output is that convolution's."""
    if isinstance(module, nn.Conv2d):
        return module
    if isinstance(module, DepthwiseSeparableConv2d):
        return module.pointwise
    if isinstance(module, HybridPool2d):
        return module.fuse
    return None


def _fold_into(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> None:
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    shift = norm.bias - norm.running_mean * scale
    bias = shift if conv.bias is None else conv.bias * scale + shift
    conv.weight.mul_(scale.view(-1, 1, 1, 1))
    conv.bias = nn.Parameter(bias)


def fold_batchnorm(network: nn.Module) -> nn.Module:
    """An eval-mode copy of ``network`` with BatchNorms folded (module docstring); ``network`` is not changed."""
    folded = copy.deepcopy(network).eval()
    with torch.no_grad():
        for module in list(folded.modules()):
            if isinstance(module, DepthwiseSeparableConv2d) and module.depthwise.kernel_size == (1, 1):
                module.pointwise.weight.mul_(module.depthwise.weight.view(1, -1, 1, 1))
                module.depthwise = None
            if not isinstance(module, nn.Sequential):
                continue
            for i in range(1, len(module)):
                conv = _output_conv(module[i - 1])
                if isinstance(module[i], nn.BatchNorm2d) and conv is not None:
                    _fold_into(conv, module[i])
                    module[i] = nn.Identity()
    return folded
