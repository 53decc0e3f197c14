"""Inference-only MC-dropout sampler of a trained :class:`~lungai.al.networks.ALUNet` (seed 004, Sec. II-C).

The same distribution as ``n`` forward passes in MC-dropout mode (eval BatchNorm, sampling dropout), with the
work that dropout cannot change done once per slice instead of once per sample:

- ``encode`` runs the encoder and the lowest decoder level (no dropout before its output), and every later
  level's deterministic fusion term: ``BN(conv_up(up(x)) + conv_skip(skip))`` is linear up to the ReLU, so the
  skip half, the transposed convolution's bias pushed through ``conv_up`` and BatchNorm's shift are one constant
  map per slice.
- ``sample`` runs only the stochastic rest for ``k`` samples of every slice at once. Each level's
  ``conv_up(up(.))`` (2x2 stride-2 transposed convolution, then 3x3 convolution) is one 3x3 convolution on the
  coarse grid with four times the output channels followed by a pixel shuffle (an exact identity, also at the
  borders), which CPUs run far faster than two thin convolutions on the fine grid. BatchNorm scales and the
  dropout rescaling ``1 / (1 - p)`` are folded into the next convolution's weights, masks are applied in place,
  and tensors are channels-last (measured in bench/al: 8-channel convolutions run about twice as fast).

Folding changes float rounding only (about 1e-6 of the logits), never the sampled distribution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lungai.al.networks import ALUNet, keep_mask

_CHANNELS_LAST = torch.channels_last


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval BatchNorm as ``scale * x + shift`` per channel."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def _dropout_p(layer: nn.Module) -> float:
    return float(getattr(layer, "p", 0.0))


def subpixel_kernel(up: nn.ConvTranspose2d, conv: nn.Conv2d) -> torch.Tensor:
    """``conv(up(x) - up.bias) == pixel_shuffle(conv2d(x, K, padding=1), 2)``: K (4 * c_out, c_in, 3, 3).

    Built by pushing unit impulses through the two real layers, so it cannot disagree with them: output pixel
    ``(2i + a, 2j + b)`` only sees coarse pixels ``i - 1 .. i + 1`` and ``j - 1 .. j + 1``.
    """
    c_in = up.in_channels
    n = 9 * c_in
    impulses = F.pad(torch.eye(n, dtype=up.weight.dtype, device=up.weight.device).view(n, c_in, 3, 3), (1, 1, 1, 1))
    response = F.conv2d(F.conv_transpose2d(impulses, up.weight, stride=2), conv.weight, padding=1)
    # response[c * 9 + di * 3 + dj, q, 4 + a, 4 + b] = K[q * 4 + a * 2 + b, c, di, dj]
    k = response[:, :, 4:6, 4:6].reshape(c_in, 3, 3, conv.out_channels, 2, 2)
    return k.permute(3, 4, 5, 0, 1, 2).reshape(4 * conv.out_channels, c_in, 3, 3)


class _Level(nn.Module):
    """One decoder level above the lowest, folded for sampling (weights only, no state)."""

    def __init__(self, decoder: nn.Module, input_scale: float):
        super().__init__()
        scale, shift = _bn_affine(decoder.fuse_norm[0])
        kernel = subpixel_kernel(decoder.up, decoder.conv_up) * scale.repeat_interleave(4).view(-1, 1, 1, 1)
        c_out = decoder.conv_up.out_channels  # output channels reordered from q * 4 + a * 2 + b to (a * 2 + b) * c + q
        kernel = kernel.view(c_out, 4, *kernel.shape[1:]).transpose(0, 1).reshape(kernel.shape)
        self.register_buffer("kernel", (kernel * input_scale).contiguous(memory_format=_CHANNELS_LAST))
        self.register_buffer("fuse_scale", scale.view(1, -1, 1, 1))
        self.register_buffer("fuse_shift", shift.view(1, -1, 1, 1))
        conv_scale, conv_shift = _bn_affine(decoder.conv[1])
        conv_weight = decoder.conv[0].weight * conv_scale.view(-1, 1, 1, 1)
        self.register_buffer("conv_weight", conv_weight.contiguous(memory_format=_CHANNELS_LAST))
        self.register_buffer("conv_bias", conv_shift)
        self.p = _dropout_p(decoder.dropout)
        self.decoder = decoder  # for the per-slice constant (unfolded layers, run once per slice)

    def constant(self, skip: torch.Tensor) -> torch.Tensor:
        """Per-slice deterministic part of the fused pre-activation: BN of ``conv_skip(skip) + conv_up(bias)``."""
        d = self.decoder
        bias_map = d.up.bias.view(1, -1, 1, 1).expand(1, -1, *skip.shape[-2:])
        term = d.conv_skip(skip) + d.conv_up(bias_map)
        return (term * self.fuse_scale + self.fuse_shift).contiguous(memory_format=_CHANNELS_LAST)

    def forward(self, x: torch.Tensor, constant: torch.Tensor, k: int, dropout: bool) -> torch.Tensor:
        """(k * b, c_in, h, w) dropped input, (b, c, 2h, 2w) constant -> (k * b, c, 2h, 2w) dropped output."""
        y = _pixel_shuffle(F.conv2d(x, self.kernel, padding=1))
        y.view(k, -1, *y.shape[1:]).add_(constant)
        y = F.conv2d(y.relu_(), self.conv_weight, self.conv_bias, padding=1).relu_()
        return _drop_(y, self.p, dropout)


def _pixel_shuffle(y: torch.Tensor) -> torch.Tensor:
    """``(N, 4c, h, w)`` with channel ``(a * 2 + b) * c + q`` -> ``(N, c, 2h, 2w)`` with ``out[:, q, 2i + a, 2j + b]
    = y[:, (a * 2 + b) * c + q, i, j]``: a pixel shuffle whose sub-pixel index is the slow channel index, so on the
    channels-last layout it moves whole ``c``-channel pixels (one copy, 3x faster than ``F.pixel_shuffle`` there)."""
    n, channels, h, w = y.shape
    c = channels // 4
    if y.is_contiguous(memory_format=torch.channels_last):
        pixels = y.permute(0, 2, 3, 1).reshape(n, h, w, 2, 2, c).permute(0, 1, 3, 2, 4, 5)
        return pixels.reshape(n, 2 * h, 2 * w, c).permute(0, 3, 1, 2)
    return y.view(n, 2, 2, c, h, w).permute(0, 3, 4, 1, 5, 2).reshape(n, c, 2 * h, 2 * w)


def _drop_(x: torch.Tensor, p: float, dropout: bool) -> torch.Tensor:
    """Zero elements of (N, C, H, W) ``x`` with probability ``p``, in place, without the ``1 / (1 - p)`` rescaling
    (folded into the next layer's weights); ``dropout=False`` multiplies by the keep probability instead, which
    gives eval-mode (no dropout) outputs."""
    if p > 0:
        physical = x.permute(0, 2, 3, 1) if x.is_contiguous(memory_format=_CHANNELS_LAST) else x
        physical.mul_(keep_mask(physical.shape, p, x.device, x.dtype) if dropout else 1.0 - p)
    return x


class ALUNetSampler(nn.Module):
    """MC-dropout sampling of a trained :class:`ALUNet` with its current weights (build a new one after training).

    ``encode`` (B, C_in, H, W) -> per-slice state; ``sample(state, k)`` -> logits (k * B, C_out, H, W), sample
    major (rows ``s * B .. s * B + B - 1`` are sample ``s``). ``dropout=False`` gives the deterministic network
    (eval-mode ``forward``), which is how the folding is tested.
    """

    def __init__(self, net: ALUNet):
        super().__init__()
        if not isinstance(net, ALUNet):
            raise TypeError(f"ALUNetSampler needs an ALUNet, got {type(net).__name__}")
        self.net = net
        probabilities = [_dropout_p(d.dropout) for d in net.decoders]
        self.first_p = probabilities[0]
        with torch.no_grad():
            self.levels = nn.ModuleList(
                _Level(d, 1.0 / (1.0 - p)) for d, p in zip(net.decoders[1:], probabilities[:-1])
            )
            head_weight = net.head.weight / (1.0 - probabilities[-1])
        self.register_buffer("head_weight", head_weight.contiguous(memory_format=_CHANNELS_LAST))
        self.register_buffer("head_bias", net.head.bias.detach().clone())

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Deterministic state of a slice batch: the lowest decoder level's output and each level's constant."""
        net = self.net
        *skips, bottleneck = net._encode(x)
        skips = skips[::-1]
        first = net.decoders[0].features(bottleneck, net.decoders[0].skip_term(skips[0]))
        constants = (level.constant(skip) for level, skip in zip(self.levels, skips[1:]))
        return (first.contiguous(memory_format=_CHANNELS_LAST), *constants)

    def sample(self, state: tuple[torch.Tensor, ...], k: int, dropout: bool = True) -> torch.Tensor:
        """Logits of ``k`` MC samples of every slice in ``state``."""
        first, *constants = state
        x = first.expand(k, *first.shape).reshape(k * first.shape[0], *first.shape[1:])
        x = _drop_(x.contiguous(memory_format=_CHANNELS_LAST), self.first_p, dropout)
        for level, constant in zip(self.levels, constants):
            x = level(x, constant, k, dropout)
        return F.conv2d(x, self.head_weight, self.head_bias)
