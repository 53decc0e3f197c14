"""Building blocks of UGS-Net (seed 001, Sec. III) as small ``nn.Module``s; shapes are (B, C, H, W)."""

from __future__ import annotations

import math

import numpy as np
import torch
from skimage.filters import gabor_kernel
from torch import nn
from torch.nn import functional as F


class DoubleConv(nn.Sequential):
    """(3x3 conv, BN, ReLU) x 2: (B, C_in, H, W) -> (B, C_out, H, W)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class UpConv(nn.Sequential):
    """Nearest 2x upsampling + 3x3 conv, BN, ReLU: (B, C_in, H, W) -> (B, C_out, 2H, 2W)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class AttentionGate(nn.Module):
    """Additive attention gate of Attention U-Net (Oktay et al. 2018), F_int = C / 2.

    ``forward(gate, skip)``: gate and skip (B, C, H, W) -> skip scaled by a (B, 1, H, W) map in [0, 1].
    """

    def __init__(self, channels: int):
        super().__init__()
        inner = max(channels // 2, 1)
        self.gate = nn.Sequential(nn.Conv2d(channels, inner, 1), nn.BatchNorm2d(inner))
        self.skip = nn.Sequential(nn.Conv2d(channels, inner, 1), nn.BatchNorm2d(inner))
        self.psi = nn.Sequential(nn.Conv2d(inner, 1, 1), nn.BatchNorm2d(1), nn.Sigmoid())

    def forward(self, gate: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return skip * self.psi(F.relu(self.gate(gate) + self.skip(skip)))


class SelfAttention2d(nn.Module):
    """Spatial self-attention A(.) of the FAAB (SAGAN form, as in the public V1 code).

    Query and key are 1x1 projections to max(C / 8, 1) channels, value to C; softmax over the keys;
    output ``gamma * attended + x`` with the learnable scalar gamma initialised to 0 (starts as identity).
    Choice: keys and values are average-pooled by ``pool`` (default 8: 64 keys on a 64 x 64 map, as
    non-local blocks subsample phi and g). Full-resolution attention (``pool=1``, the V1 code) builds a
    4096 x 4096 matrix per sample and per block and made one CPU training step 40-100x slower.
    (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, pool: int = 8):
        super().__init__()
        inner = max(channels // 8, 1)
        self.query = nn.Conv2d(channels, inner, 1)
        self.key = nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.pool = nn.AvgPool2d(pool) if pool > 1 else nn.Identity()
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        pooled = self.pool(x)
        q = self.query(x).flatten(2).transpose(1, 2)  # (B, HW, C')
        k = self.key(pooled).flatten(2)  # (B, C', HW / pool^2)
        attention = torch.softmax(torch.bmm(q, k), dim=-1)  # (B, HW, HW / pool^2)
        v = self.value(pooled).flatten(2)  # (B, C, HW / pool^2)
        out = torch.bmm(v, attention.transpose(1, 2)).view(b, c, h, w)
        return self.gamma * out + x


def gabor_bank(
    orientations: int = 4, kernel_size: int = 7, frequency: float = 0.25, sigma: float = 2.0
) -> torch.Tensor:
    """Real parts of ``orientations`` Gabor kernels (skimage.filters.gabor_kernel), cropped or padded to
    ``kernel_size`` and normalised to zero mean and unit L1 norm: tensor (orientations, k, k)."""
    kernels = []
    for i in range(orientations):
        kernel = np.real(gabor_kernel(frequency, theta=math.pi * i / orientations, sigma_x=sigma, sigma_y=sigma))
        pad = kernel_size - kernel.shape[0]
        if pad > 0:
            kernel = np.pad(kernel, ((pad // 2, pad - pad // 2),) * 2)
        elif pad < 0:
            start = -pad // 2
            kernel = kernel[start : start + kernel_size, start : start + kernel_size]
        kernel = kernel - kernel.mean()
        kernels.append(kernel / np.abs(kernel).sum())
    return torch.tensor(np.stack(kernels), dtype=torch.float32)


class GaborFilter(nn.Module):
    """Feature-aware filter Gamma for R_Uni and R_LC: a real Gabor bank (Luan et al., seed 001 ref. [21]).

    Each channel is filtered by ``orientations`` fixed Gabor kernels (a depthwise convolution, not trained:
    edge and texture responses at 0, 45, 90, 135 degrees), then a learnable 1x1 convolution mixes the
    C * orientations responses back to C channels. The public V1 code used an all-ones 1x1 "Gabor" (a
    plain 1x1 convolution); a real bank gives the boundary/texture preference the paper describes.
    (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, orientations: int = 4, kernel_size: int = 7):
        super().__init__()
        bank = gabor_bank(orientations, kernel_size)
        self.channels = channels
        self.register_buffer("weight", bank.repeat(channels, 1, 1).unsqueeze(1))  # (C*O, 1, k, k)
        self.mix = nn.Sequential(
            nn.Conv2d(channels * orientations, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True)
        )

    def responses(self, x: torch.Tensor) -> torch.Tensor:
        """Fixed Gabor responses (B, C * orientations, H, W)."""
        return F.conv2d(x, self.weight, padding=self.weight.shape[-1] // 2, groups=self.channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(self.responses(x))


def otsu_thresholds(x: torch.Tensor, bins: int = 64) -> torch.Tensor:
    """Otsu's threshold (Otsu 1979) of every (B, C) map of ``x`` (B, C, H, W), computed on a ``bins``-bin
    histogram between the map's min and max; returns (B, C, 1, 1). No gradient (a threshold is a choice)."""
    with torch.no_grad():
        flat = x.detach().flatten(2).float()  # (B, C, N)
        low = flat.min(-1, keepdim=True).values
        high = flat.max(-1, keepdim=True).values
        width = (high - low).clamp_min(1e-12)
        index = ((flat - low) / width * bins).long().clamp(0, bins - 1)
        hist = torch.zeros(*flat.shape[:2], bins, device=x.device).scatter_add_(-1, index, torch.ones_like(flat))
        centres = low + (torch.arange(bins, device=x.device) + 0.5) / bins * width  # (B, C, bins)
        weight0 = hist.cumsum(-1)
        weight1 = hist.sum(-1, keepdim=True) - weight0
        mass0 = (hist * centres).cumsum(-1)
        mean0 = mass0 / weight0.clamp_min(1e-12)
        mean1 = ((hist * centres).sum(-1, keepdim=True) - mass0) / weight1.clamp_min(1e-12)
        between = weight0 * weight1 * (mean0 - mean1) ** 2  # threshold after bin i
        best = between.argmax(-1, keepdim=True)
        threshold = low + (best + 1).float() / bins * width  # upper edge of the last class-0 bin
    return threshold.unsqueeze(-1)


class OtsuFilter(nn.Module):
    """Feature-aware filter Gamma for R_HC: a real per-map Otsu split (seed 001 ref. [22]) made soft.

    For each channel map the Otsu threshold t is computed (no gradient); the output keeps the map where it
    exceeds t: ``x * sigmoid((x - t) / (temperature * std(x)))``, so high-response (high-confidence) regions
    pass and the rest is suppressed, while gradients still flow through x. The public V1 code instead
    quantised the detached map at +-0.5 without computing any threshold. (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, temperature: float = 0.1, bins: int = 64):
        super().__init__()
        self.temperature = temperature
        self.bins = bins

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        threshold = otsu_thresholds(x, self.bins)
        scale = x.detach().flatten(2).std(-1).clamp_min(1e-6)[..., None, None] * self.temperature
        return x * torch.sigmoid((x - threshold) / scale)


class FeatureAwareAttentionBlock(nn.Module):
    """FAAB, seed 001 Eq. (1): R'_z = concat(R_z, Gamma(A(R_z))). (B, C, H, W) -> (B, 2C, H, W)."""

    def __init__(self, channels: int, feature_filter: nn.Module, attention_pool: int = 8):
        super().__init__()
        self.attention = SelfAttention2d(channels, attention_pool)
        self.filter = feature_filter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.filter(self.attention(x))], dim=1)
