"""Building blocks of RAIU-Net (seed 003, Sec. 3.1 and 3.2). Shapes are ``(N, C, H, W)``.

Choices where the paper is ambiguous (each is tested in ``Testing/test_covid_networks.py``):

- Kernel sizes. Sec. 1.4 lists "2x2, 3x3, 5x5" DSCs, Sec. 3.1.2 and Eq. 3 say 1x1, 3x3, 5x5.
  We follow Eq. 3 (1x1, 3x3, 5x5): odd kernels keep "same" padding symmetric.
- Hybrid pooling inside the inception convolution must keep the spatial size to be concatenated
  with the convolution branches, so there it runs "same": 3x3 stride-1 max pooling in parallel
  with the spectral low-pass (:func:`spectral_lowpass2d`). Between stages it runs "valid":
  2x2 max pooling in parallel with spectral pooling to half size. Both fuse by a 1x1 convolution.
- Residual inception block: ``IC2(IC1(x)) + BN(DSC3x3(x))`` followed by ReLU (Fig. 7).
- SSD attention (Sec. 3.2, Eqs. 8-12) as the text gives it: global spectral pooling
  (:func:`lungai.covid.spectral.global_spectral_pool`) makes both descriptors, over the spatial
  axes for the depth descriptor ``A_d`` and over the channel axis for the spatial descriptor
  ``A_s``. The activations are the paper's: the SCNN of Eq. 8 is "two blocks of 1x1 ReLU
  activated convolutions" (so ``A_d`` is non-negative and unbounded, not a sigmoid gate), ``gamma``
  of Eq. 10 is BN + ReLU, Eq. 11 is a "ReLU activated 1x1 convolution" inside the sigmoid
  ``sigma``, and each refinement (Eqs. 9, 12) is the paper's ``K * (.)`` of Eq. 4, a 1x1
  convolution + BN + ReLU (Sec. 3.2: "ReLU activated 1x1 convolution and BN").
  Consequences we keep rather than repair: ``A_s = sigmoid(non-negative)`` lies in [0.5, 1), so
  the spatial gate can at most halve a pixel's features.
- Where the paper is silent: the gating signal ``F_i^l`` of Eq. 10 is the coarser decoder feature
  about to be upsampled at that level (as in attention gates, ref. [22]) and the intermediate
  depth ``p`` of Eqs. 10-11 is the gate's channel count; ``Up`` is bilinear; the second SCNN
  convolution starts with bias 1 so that ``A_d`` starts near 1 for every channel instead of
  switching about half the channels off at initialisation (a ReLU gate at 0 has no gradient).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lungai.blocks import ConvBNReLU, DoubleConv
from lungai.covid.spectral import global_spectral_pool, spectral_lowpass2d, spectral_pool2d

__all__ = [
    "DepthwiseSeparableConv2d",
    "DoubleConv",
    "HybridPool2d",
    "InceptionConv",
    "ResidualInceptionBlock",
    "SSDAttention",
    "SpectralDepthAttention",
    "SpectralSpatialAttention",
    "max_pool_2x2",
    "max_pool_3x3_same",
]

SPATIAL_AXES = (-2, -1)
CHANNEL_AXIS = (1,)


class DepthwiseSeparableConv2d(nn.Module):
    """Depthwise ``k x k`` convolution then pointwise 1x1 (Eq. 5). ``(N, Cin, H, W) -> (N, Cout, H, W)``.

    A 1x1 depthwise convolution is a per-channel scale; it is computed as one (PyTorch's CPU
    grouped convolution takes a slow per-group path for 1x1 kernels), with the same parameters.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(
            in_channels, in_channels, kernel_size, padding=kernel_size // 2, groups=in_channels, bias=False
        )
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.depthwise is None:  # a 1x1 depthwise scale folded into the pointwise weights (lungai.covid.folding)
            return self.pointwise(x)
        if self.depthwise.kernel_size == (1, 1):
            return self.pointwise(x * self.depthwise.weight.view(1, -1, 1, 1))
        return self.pointwise(self.depthwise(x))


def max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, 2)`` as the maximum of four strided views (the same numbers, several times faster on a
    CPU). ``(N, C, H, W) -> (N, C, H // 2, W // 2)``."""
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    top = torch.maximum(x[..., 0:h:2, 0:w:2], x[..., 0:h:2, 1:w:2])
    return torch.maximum(top, torch.maximum(x[..., 1:h:2, 0:w:2], x[..., 1:h:2, 1:w:2]))


def max_pool_3x3_same(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, 3, stride=1, padding=1)`` as a running maximum over rows then columns of shifted views
    (max is separable; the same numbers, over 10x faster than PyTorch's stride-1 pooling on a CPU).
    ``(N, C, H, W) -> (N, C, H, W)``."""
    padded = F.pad(x, (1, 1, 1, 1), value=float("-inf"))
    rows = torch.maximum(torch.maximum(padded[..., :-2, :], padded[..., 1:-1, :]), padded[..., 2:, :])
    return torch.maximum(torch.maximum(rows[..., :-2], rows[..., 1:-1]), rows[..., 2:])


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
        self.max_pool = max_pool_2x2 if mode == "valid" else max_pool_3x3_same
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
        self.fuse = ConvBNReLU(4 * out_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [*self.branches, self.pool]
        if torch.is_grad_enabled():
            return self.fuse(torch.cat([branch(x) for branch in branches], dim=1))
        # Without autograd each branch's final ReLU writes straight into its channels of the fusion input: the same
        # numbers without the concatenation's copy (7 % of CHS-Net's CPU time, bench/e2e).
        c = self.fuse[0].in_channels // len(branches)
        features = x.new_empty(x.shape[0], c * len(branches), *x.shape[2:])
        for i, branch in enumerate(branches):
            *linear, _relu = branch
            y = x
            for layer in linear:
                y = layer(y)
            torch.clamp_min(y, 0.0, out=features[:, i * c : (i + 1) * c])
        return self.fuse(features)


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


class SpectralDepthAttention(nn.Module):
    """Spectral depth attention (Sec. 3.2.1, Eqs. 8-9). ``(N, p, m, n) -> (N, p, m, n)``.

    Eq. 8: ``A_d = ReLU(K_p * ReLU(K_{p/2} * P_gsp(F)))``, ``(N, p, 1, 1)``, ``P_gsp`` over the
    spatial axes. Eq. 9: ``F_d = ReLU(BN(K_p * (A_d . F)))``.
    """

    def __init__(self, channels: int, band: int = 3) -> None:
        super().__init__()
        self.band = band
        hidden = max(1, channels // 2)
        self.squeeze = nn.Conv2d(channels, hidden, 1)
        self.excite = nn.Conv2d(hidden, channels, 1)
        nn.init.ones_(self.excite.bias)
        self.refine = ConvBNReLU(channels, channels, 1)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """Depth descriptor ``A_d`` (Eq. 8): ``(N, p, 1, 1)``, non-negative."""
        pooled = global_spectral_pool(x, SPATIAL_AXES, self.band)
        return F.relu(self.excite(F.relu(self.squeeze(pooled))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.refine(self.attention(x) * x)


class SpectralSpatialAttention(nn.Module):
    """Spectral spatial attention (Sec. 3.2.2, Eqs. 10-12).

    ``skip`` ``(N, Cs, 2m, 2n)`` (the depth-attended ``F_d^{l-1}``) and ``gate`` ``(N, p, m, n)``
    (``F_i^l``) -> ``(N, Cs, 2m, 2n)``:

    - Eq. 10: ``gamma = ReLU(BN(K_{2x2, stride 2} * skip + K_1 * gate))``, ``(N, p, m, n)``;
    - Eq. 11: ``A_s = Up(sigmoid(P_gsp(ReLU(K_1 * gamma))))``, ``(N, 1, 2m, 2n)``, ``P_gsp``
      over the channel axis (the p -> 1 reduction the spatial descriptor needs);
    - Eq. 12: ``F_s = ReLU(BN(K_1 * (A_s . skip)))``.
    """

    def __init__(self, skip_channels: int, gate_channels: int, band: int = 3) -> None:
        super().__init__()
        self.band = band
        self.skip_down = nn.Conv2d(skip_channels, gate_channels, 2, stride=2, bias=False)
        self.gate_proj = nn.Conv2d(gate_channels, gate_channels, 1, bias=False)
        self.gamma = nn.Sequential(nn.BatchNorm2d(gate_channels), nn.ReLU(inplace=True))
        self.descriptor = nn.Conv2d(gate_channels, gate_channels, 1)
        self.refine = ConvBNReLU(skip_channels, skip_channels, 1)

    def attention(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """Spatial descriptor ``A_s`` (Eq. 11): ``(N, 1, 2m, 2n)`` in [0.5, 1)."""
        gamma = self.gamma(self.skip_down(skip) + self.gate_proj(gate))
        pooled = global_spectral_pool(F.relu(self.descriptor(gamma)), CHANNEL_AXIS, self.band)
        return F.interpolate(torch.sigmoid(pooled), size=skip.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        return self.refine(self.attention(skip, gate) * skip)


class SSDAttention(nn.Module):
    """SSD skip connection (Sec. 3.2): depth attention on the skip, then spatial attention gated
    by the coarser decoder feature. ``skip (N, Cs, 2m, 2n), gate (N, Cg, m, n) -> (N, Cs, 2m, 2n)``."""

    def __init__(self, skip_channels: int, gate_channels: int, band: int = 3) -> None:
        super().__init__()
        self.depth = SpectralDepthAttention(skip_channels, band)
        self.spatial = SpectralSpatialAttention(skip_channels, gate_channels, band)

    def forward(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.depth(skip), gate)
