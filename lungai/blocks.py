"""Convolution blocks shared by every lungai network; shapes are (B, C, H, W)."""

from __future__ import annotations

from torch import nn


class ConvBNReLU(nn.Sequential):
    """k x k convolution ("same" padding, no bias), batch norm, ReLU: (B, C_in, H, W) -> (B, C_out, H, W)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class DoubleConv(nn.Sequential):
    """Two :class:`ConvBNReLU` (the U-Net level block): (B, C_in, H, W) -> (B, C_out, H, W)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__(
            ConvBNReLU(in_channels, out_channels, kernel_size), ConvBNReLU(out_channels, out_channels, kernel_size)
        )
