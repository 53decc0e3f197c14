"""2-D U-Net with decoder dropout for Monte Carlo dropout uncertainty (seed 004, Sec. II-A).

The paper's au-net is a 3-D anisotropic U-Net with "a dropout layer with p = 0.25 at each resolution level in
the decoder path". We work on axial 2-D slices (the chest CT has 10 mm slices and 34 of them, too few for a
useful 3-D patch network on CPU), so ``ALUNet`` is a small 2-D U-Net that keeps the paper's two properties that
matter for active learning: BatchNorm + ReLU after every convolution, and dropout (p = 0.25) on the output of
every decoder level. Choices, stated because the paper's figure is not available:

- Dropout is element-wise (the dropout of the paper's ref. 20). Channel-wise ``Dropout2d`` was tried first:
  it drops whole feature maps for a whole slice, so the mean entropy of a slice changed by up to 0.11 nats
  between two 20-sample runs (bench/al), too noisy to rank slices.
- Dropout sits on the decoder feature map of each level (after its convolutions), never on skip connections.
  The lowest decoder level therefore only sees deterministic inputs, and in every other level the skip part
  of the fusion convolution is deterministic too.
- The fusion convolution over ``concat(up, skip)`` is written as the exact sum of two convolutions,
  ``conv_up(up) + conv_skip(skip)`` (the same linear map). That lets MC sampling compute ``conv_skip(skip)``
  once per slice instead of once per sample.

Fast MC dropout (used by ``lungai.al.uncertainty``): a network may provide ``mc_sampler()`` returning an object
with ``encode(x) -> state`` (everything dropout cannot change, once per slice batch) and ``sample(state, k) ->
logits`` (k samples of every slice, sample-major); ``ALUNet`` returns :class:`lungai.al.sampler.ALUNetSampler`.
Any other ``nn.Module`` with dropout layers is sampled with full forward passes.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lungai.architectures import register_architecture
from lungai.blocks import ConvBNReLU, DoubleConv

DEFAULT_DROPOUT = 0.25


def keep_mask(
    shape: tuple[int, ...], p: float, device: torch.device | str = "cpu", dtype: torch.dtype = torch.bool
) -> torch.Tensor:
    """Dropout keep-mask, each element kept with probability ``1 - p``: booleans, or 1 and 0 of ``dtype`` (written
    by the comparison itself, which multiplies into features faster than booleans do).

    Each element compares one field of full-range 64-bit random words: 8-bit fields (eight a word) when ``p`` is a
    multiple of 1/256 (0.25 is), else 16-bit fields (``p`` resolved to 1/65536): an eighth or a quarter of the
    generator calls of one draw per element (random generation was a third of MC sampling time). The fields of
    uniform words are independent and uniform, so the mask is i.i.d. Bernoulli as ``torch.nn.Dropout``'s.
    """
    n = math.prod(shape)
    exact_bytes = float(p * 256).is_integer()
    field, threshold = (torch.uint8, round(p * 256)) if exact_bytes else (torch.int16, round(p * 65536) - 32768)
    per_word = 8 if exact_bytes else 4
    words = torch.empty((n + per_word - 1) // per_word, dtype=torch.int64, device=device).random_(-(2**63), None)
    fields = words.view(field)[:n].view(shape)
    return torch.ge(fields, threshold, out=torch.empty(shape, dtype=dtype, device=device))


class FastDropout(nn.Dropout):
    """Element-wise (inverted) dropout with :func:`keep_mask` masks: same distribution as :class:`torch.nn.Dropout`
    (``p`` resolved to 1/65536), faster on CPU. A subclass of ``nn.Dropout``, so MC-dropout mode finds it and
    checkpoints are unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if self.p >= 1:
            return torch.zeros_like(x)
        return torch.where(keep_mask(x.shape, self.p, x.device), x, 0.0).mul_(1.0 / (1.0 - self.p))


class DecoderBlock(nn.Module):
    """Up-sample, fuse with the skip connection, convolve, dropout.

    ``x`` (B, c_in, H, W) and ``skip`` (B, c_skip, 2H, 2W) -> (B, c_out, 2H, 2W). The fusion
    ``conv_up(up) + conv_skip(skip)`` equals one 3x3 convolution over ``concat(up, skip)``.
    """

    def __init__(self, c_in: int, c_skip: int, c_out: int, dropout: float):
        super().__init__()
        self.up = nn.ConvTranspose2d(c_in, c_out, 2, stride=2)
        self.conv_up = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.conv_skip = nn.Conv2d(c_skip, c_out, 3, padding=1, bias=False)
        self.fuse_norm = nn.Sequential(nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))
        self.conv = ConvBNReLU(c_out, c_out)
        self.dropout = FastDropout(dropout) if dropout > 0 else nn.Identity()

    def skip_term(self, skip: torch.Tensor) -> torch.Tensor:
        """The deterministic part of the fusion: ``conv_skip(skip)``."""
        return self.conv_skip(skip)

    def features(self, x: torch.Tensor, skip_term: torch.Tensor) -> torch.Tensor:
        """Decoder features before dropout."""
        return self.conv(self.fuse_norm(self.conv_up(self.up(x)) + skip_term))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.features(x, self.skip_term(skip)))


class ALUNet(nn.Module):
    """2-D U-Net with dropout at every decoder level, for MC-dropout active learning.

    (B, in_channels, H, W) -> logits (B, out_channels, H, W); H and W must be divisible by
    ``2 ** (len(channels) - 1)``. One output channel means a sigmoid foreground probability, more mean softmax.
    ``input_size`` is the square slice size the network was trained on (slices are resized to it, see
    :mod:`lungai.al.data`); it is part of the config so a checkpoint carries its own preprocessing.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        channels: tuple[int, ...] = (8, 16, 32, 64),
        dropout: float = DEFAULT_DROPOUT,
        input_size: int = 128,
    ):
        super().__init__()
        if input_size % 2 ** (len(channels) - 1):
            raise ValueError(f"input_size {input_size} must be divisible by {2 ** (len(channels) - 1)}")
        self.input_size = input_size
        self.config = {
            "in_channels": in_channels,
            "out_channels": out_channels,
            "channels": list(channels),
            "dropout": dropout,
            "input_size": input_size,
        }  # rebuilds this network (checkpoints)
        if len(channels) < 2:
            raise ValueError("ALUNet needs at least two levels (channels of length >= 2)")
        self.encoders = nn.ModuleList()
        c_prev = in_channels
        for c in channels:
            self.encoders.append(DoubleConv(c_prev, c))
            c_prev = c
        self.pool = nn.MaxPool2d(2)
        # decoders[0] works at the lowest resolution, decoders[-1] at full resolution
        self.decoders = nn.ModuleList(
            DecoderBlock(channels[i + 1], channels[i], channels[i], dropout) for i in reversed(range(len(channels) - 1))
        )
        self.head = nn.Conv2d(channels[0], out_channels, 1)

    def _encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        skips = []
        for i, encoder in enumerate(self.encoders):
            x = encoder(x if i == 0 else self.pool(x))
            skips.append(x)
        return skips  # last entry: bottleneck

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *skips, x = self._encode(x)
        for decoder, skip in zip(self.decoders, reversed(skips)):
            x = decoder(x, skip)
        return self.head(x)

    def mc_sampler(self) -> nn.Module:
        """Fast MC-dropout sampler with this network's current weights (see :mod:`lungai.al.sampler`)."""
        from lungai.al.sampler import ALUNetSampler

        return ALUNetSampler(self)


@register_architecture("al_unet")
def build_al_unet(
    in_channels: int = 1,
    out_channels: int = 1,
    channels=(8, 16, 32, 64),
    dropout: float = DEFAULT_DROPOUT,
    input_size: int = 128,
) -> ALUNet:
    """Registry factory for :class:`ALUNet` (config keys are the constructor's arguments)."""
    return ALUNet(in_channels, out_channels, tuple(channels), dropout, input_size)
