"""U-Net with non-local blocks at intermediate scales and two heads (seed 002, Section III.A, Fig. 1).

The encoder's features at 1/4, 1/8 and 1/16 of the input size (the last is the bottleneck) pass through one
non-local block each (:mod:`lungai.nlb.blocks`) before they feed the decoder (skip connections) and, for the
bottleneck, the classification head. The paper's Fig. 1 shows attention modules on intermediate
representations at several scales without stating which; this is our choice, fixed for all variants, so
variants differ only in the block.

Heads:
* classification: global average and max pooling of the attended bottleneck -> dropout -> linear -> one logit
  (neoplasm present);
* segmentation: the U-Net decoder -> 1 x 1 convolution -> one logit per pixel (neoplasm region). Its bias starts at
  the logit of :data:`SEG_PRIOR` (focal-loss style prior initialisation, Lin et al. 2017, Sec. 4.1): a neoplasm
  covers well under 1 % of a slice, and a head starting at probability 0.5 everywhere spent a short training run
  unlearning it (the 3-epoch model of the previous release still marked 99.98 % of normal pixels at its threshold).

Levels are :class:`lungai.blocks.DoubleConv` (3 x 3 convolution, batch norm, ReLU, twice). Batch norm, not group
norm: group norm normalises every image's own statistics away, and the globally pooled classification features then
hardly differed between images (the classifier stayed at the class prior in our runs). Default widths are small
(8-16-32-64-128, about 0.5 M parameters) for the CPU budget; inputs are 192 x 192 (:mod:`lungai.nlb.framing`), other
sizes are padded to a multiple of 16 and cropped back.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from lungai.architectures import register_architecture
from lungai.blocks import DoubleConv
from lungai.nlb.blocks import BLOCK_TYPES, make_block

SEG_PRIOR = 0.01  # starting segmentation probability of every pixel


class UpBlock(nn.Module):
    """Bilinear x2 upsampling, concatenation with the skip features, :class:`lungai.blocks.DoubleConv`."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = DoubleConv(in_channels + skip_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([x, skip], dim=1))


class NLBUNet(nn.Module):
    """U-Net (Fig. 1) with a non-local block of type ``block_type`` at the levels ``attention_levels``.

    Args:
        block_type: one of :data:`lungai.nlb.blocks.BLOCK_TYPES`.
        widths: channels per level; level i works at 1 / 2**i of the input size, the last is the bottleneck.
        grid: n of the n x n token grid of the grid blocks.
        attention_levels: encoder levels that get a block (default: the last three, i.e. 1/4, 1/8, 1/16 for
            five levels).
        dropout: before the classification layer.

    ``forward(x)``: x (B, in_channels, H, W) in [0, 1] -> dict with ``class_logit`` (B,) and ``seg_logits``
    (B, 1, H, W).
    """

    def __init__(
        self,
        block_type: str = "symmetry_localized",
        in_channels: int = 1,
        widths: tuple[int, ...] = (8, 16, 32, 64, 128),
        grid: int = 4,
        attention_levels: tuple[int, ...] | None = None,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if block_type not in BLOCK_TYPES:
            raise ValueError(f"unknown block type {block_type!r}; expected one of {', '.join(BLOCK_TYPES)}")
        widths = tuple(widths)
        if attention_levels is None:
            attention_levels = tuple(range(max(0, len(widths) - 3), len(widths)))
        if any(not 0 <= level < len(widths) for level in attention_levels):
            raise ValueError(f"attention_levels {attention_levels} outside 0..{len(widths) - 1}")
        self.block_type = block_type
        self.in_channels = in_channels
        self.multiple = 2 ** (len(widths) - 1)
        self.encoders = nn.ModuleList(
            DoubleConv(c_in, c_out) for c_in, c_out in zip((in_channels,) + widths[:-1], widths)
        )
        self.blocks = nn.ModuleList(
            make_block(block_type if level in attention_levels else "none", width, grid)
            for level, width in enumerate(widths)
        )
        self.decoders = nn.ModuleList(
            UpBlock(widths[i + 1], widths[i], widths[i]) for i in reversed(range(len(widths) - 1))
        )
        self.seg_head = nn.Conv2d(widths[0], 1, 1)
        nn.init.constant_(self.seg_head.bias, math.log(SEG_PRIOR / (1 - SEG_PRIOR)))
        self.class_head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * widths[-1], 1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h, w = x.shape[-2:]
        x = F.pad(x, (0, -w % self.multiple, 0, -h % self.multiple))
        skips = []
        for level, (encoder, block) in enumerate(zip(self.encoders, self.blocks)):
            if level > 0:
                x = F.max_pool2d(x, 2)
            x = block(encoder(x))
            skips.append(x)
        pooled = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
        class_logit = self.class_head(pooled).squeeze(1)
        for decoder, skip in zip(self.decoders, reversed(skips[:-1])):
            x = decoder(x, skip)
        return {"class_logit": class_logit, "seg_logits": self.seg_head(x)[:, :, :h, :w]}


@register_architecture("nlb_unet")
def build_nlb_unet(**config) -> NLBUNet:
    """Factory for the architecture registry; ``config`` holds :class:`NLBUNet` keyword arguments."""
    config = dict(config)
    for key in ("widths", "attention_levels"):
        if config.get(key) is not None:
            config[key] = tuple(config[key])
    return NLBUNet(**config)
