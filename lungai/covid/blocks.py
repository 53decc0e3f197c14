"""Building blocks of RAIU-Net (seed 003, Sec. 3.1 and 3.2). Shapes are ``(N, C, H, W)``.

Choices where the paper is ambiguous (each is tested in ``Testing/test_covid_networks.py``):

- Kernel sizes. Sec. 1.4 lists "2x2, 3x3, 5x5" DSCs, Sec. 3.1.2 and Eq. 3 say 1x1, 3x3, 5x5.
  We follow Eq. 3 (1x1, 3x3, 5x5): odd kernels keep "same" padding symmetric.
- Hybrid pooling inside the inception convolution must keep the spatial size to be concatenated
  with the convolution branches, so there it runs "same": 3x3 stride-1 max pooling in parallel
  with the spectral low-pass (:func:`spectral_lowpass2d`). Between stages it runs "valid":
  2x2 max pooling in parallel with spectral pooling to half size. Both fuse by a 1x1 convolution.
- Residual inception block: ``IC2(IC1(x)) + BN(DSC3x3(x))`` followed by ReLU (Fig. 7).
- Depth attention: the paper's SCNN has "two blocks of 1x1 ReLU activated convolutions" (Eq. 8).
  An unbounded ReLU gate can switch channels off for good or blow them up, so the second
  activation is a sigmoid (as in squeeze-and-excitation / CBAM); the first stays ReLU.
- Spatial attention: the gating signal ``F_i^l`` of Eq. 10 is the coarser decoder feature that
  is about to be upsampled at that level (as in attention gates, ref. 22), and the intermediate
  depth of Eq. 10 is the gate's channel count ``p``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lungai.covid.spectral import global_spectral_pool2d, spectral_lowpass2d, spectral_pool2d


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 1) -> nn.Sequential:
    """Standard convolution + BN + ReLU, "same" padding."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class DepthwiseSeparableConv2d(nn.Module):
    """Depthwise ``k x k`` convolution then pointwise 1x1 (Eq. 5). ``(N, Cin, H, W) -> (N, Cout, H, W)``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(
            in_channels, in_channels, kernel_size, padding=kernel_size // 2, groups=in_channels, bias=False
        )
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class HybridPool2d(nn.Module):
    """Hybrid pooling (Sec. 3.1.1): max and spectral pooling in parallel, fused by a 1x1 convolution.

    ``valid`` (between stages): ``(N, C, H, W) -> (N, out, H // 2, W // 2)``.
    ``same`` (inside the inception convolution): ``(N, C, H, W) -> (N, out, H, W)``.
    ``spectral=False`` drops the spectral branch (max pooling only; the ablation without HP).
    """

    def __init__(
        self, in_channels: int, out_channels: int | None = None, *, mode: str = "valid", spectral: bool = True
    ) -> None:
        super().__init__()
        if mode not in ("valid", "same"):
            raise ValueError(f"hybrid pooling mode must be 'valid' or 'same', not {mode!r}")
        out_channels = out_channels or in_channels
        self.mode = mode
        self.spectral = spectral
        self.max_pool = nn.MaxPool2d(2) if mode == "valid" else nn.MaxPool2d(3, stride=1, padding=1)
        branches = 2 if spectral else 1
        self.fuse = nn.Conv2d(branches * in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = [self.max_pool(x)]
        if self.spectral:
            if self.mode == "valid":
                pooled.append(spectral_pool2d(x, (x.shape[-2] // 2, x.shape[-1] // 2)))
            else:
                pooled.append(spectral_lowpass2d(x, 0.5))
        return self.fuse(torch.cat(pooled, dim=1))


class InceptionConv(nn.Module):
    """Inception convolution (Eq. 3, Fig. 9). ``(N, Cin, H, W) -> (N, Cout, H, W)``.

    Parallel DSC 1x1, 3x3, 5x5 and "same" hybrid pooling, each BN + ReLU, concatenated and fused
    by 1x1 convolution + BN + ReLU.
    """

    def __init__(self, in_channels: int, out_channels: int, *, spectral: bool = True) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(
                DepthwiseSeparableConv2d(in_channels, out_channels, k),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
            )
            for k in (1, 3, 5)
        )
        self.pool = nn.Sequential(
            HybridPool2d(in_channels, out_channels, mode="same", spectral=spectral),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )
        self.fuse = conv_bn_relu(4 * out_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [branch(x) for branch in self.branches] + [self.pool(x)]
        return self.fuse(torch.cat(features, dim=1))


class ResidualInceptionBlock(nn.Module):
    """RIB (Sec. 3.1, Fig. 7): ``ReLU(IC2(IC1(x)) + BN(DSC3x3(x)))``. ``(N, Cin, H, W) -> (N, Cout, H, W)``."""

    def __init__(self, in_channels: int, out_channels: int, *, spectral: bool = True) -> None:
        super().__init__()
        self.inception = nn.Sequential(
            InceptionConv(in_channels, out_channels, spectral=spectral),
            InceptionConv(out_channels, out_channels, spectral=spectral),
        )
        self.shortcut = nn.Sequential(
            DepthwiseSeparableConv2d(in_channels, out_channels, 3), nn.BatchNorm2d(out_channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.inception(x) + self.shortcut(x))


class DoubleConv(nn.Module):
    """Baseline U-Net block (BU in Tables 4-5): two standard 3x3 convolutions, each BN + ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn_relu(in_channels, out_channels, 3), conv_bn_relu(out_channels, out_channels, 3)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class SpectralDepthAttention(nn.Module):
    """Spectral depth attention (Sec. 3.2.1, Eqs. 8-9). ``(N, C, H, W) -> (N, C, H, W)``.

    ``A_d = sigmoid(K1 * ReLU(K1/2 * P_gsp(F)))``; ``F_d = ReLU(BN(K1 * (A_d * F)))``.
    """

    def __init__(self, channels: int, band: int = 3) -> None:
        super().__init__()
        self.band = band
        hidden = max(1, channels // 2)
        self.descriptor = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1), nn.Sigmoid()
        )
        self.refine = conv_bn_relu(channels, channels, 1)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """Depth descriptor ``A_d``: ``(N, C, 1, 1)`` in (0, 1)."""
        return self.descriptor(global_spectral_pool2d(x, self.band))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.refine(self.attention(x) * x)


class SpectralSpatialAttention(nn.Module):
    """Spectral spatial attention (Sec. 3.2.2, Eqs. 10-12).

    ``skip`` ``(N, Cs, 2m, 2n)`` (depth-attended ``F_d^{l-1}``), ``gate`` ``(N, Cg, m, n)`` (``F_i^l``)
    -> ``(N, Cs, 2m, 2n)``: ``gamma = ReLU(BN(K2x2,s2 * skip + K1 * gate))``,
    ``A_s = Up(sigmoid(K1 * gamma))`` (one channel), ``F_s = BN(K1 * (A_s * skip))``.
    """

    def __init__(self, skip_channels: int, gate_channels: int) -> None:
        super().__init__()
        self.skip_down = nn.Conv2d(skip_channels, gate_channels, 2, stride=2, bias=False)
        self.gate_proj = nn.Conv2d(gate_channels, gate_channels, 1, bias=False)
        self.gamma = nn.Sequential(nn.BatchNorm2d(gate_channels), nn.ReLU(inplace=True))
        self.to_map = nn.Sequential(nn.Conv2d(gate_channels, 1, 1), nn.Sigmoid())
        self.refine = nn.Sequential(
            nn.Conv2d(skip_channels, skip_channels, 1, bias=False), nn.BatchNorm2d(skip_channels)
        )

    def attention(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """Spatial descriptor ``A_s``: ``(N, 1, 2m, 2n)`` in (0, 1)."""
        gamma = self.gamma(self.skip_down(skip) + self.gate_proj(gate))
        return F.interpolate(self.to_map(gamma), size=skip.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        return self.refine(self.attention(skip, gate) * skip)


class SSDAttention(nn.Module):
    """SSD skip connection (Sec. 3.2): depth attention on the skip, then spatial attention gated
    by the coarser decoder feature. ``skip (N, Cs, 2m, 2n), gate (N, Cg, m, n) -> (N, Cs, 2m, 2n)``."""

    def __init__(self, skip_channels: int, gate_channels: int, band: int = 3) -> None:
        super().__init__()
        self.depth = SpectralDepthAttention(skip_channels, band)
        self.spatial = SpectralSpatialAttention(skip_channels, gate_channels)

    def forward(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.depth(skip), gate)
