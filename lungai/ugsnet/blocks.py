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


class NearestUpsampleConv2d(nn.Conv2d):
    """3x3 convolution (padding 1, no bias) of the 2x nearest-upsampled input, computed at the input resolution.

    Each output pixel (2i + a, 2j + b) sees a 2 x 2 neighbourhood of input pixels, so the 3x3 kernel folds into
    four 2 x 2 phase kernels (rows and columns of the kernel that fall on the same input pixel are summed):
    16 instead of 36 multiply-adds per input pixel and channel pair, the same output to float rounding. The four
    phase maps are interleaved by one ``pixel_shuffle`` (and a crop, a view), not four strided copies whose
    backward passes zero-fill and add four full-size gradients (bench/ugsnet/cost.md).
    (B, C_in, H, W) -> (B, C_out, 2H, 2W).
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, 3, padding=1, bias=False)

    def phase_kernels(self) -> torch.Tensor:
        """(C_out * 4, C_in, 2, 2) in ``pixel_shuffle`` order (o, p, q): the kernel of the map shifted by one
        output pixel, whose row phase p = 0 is the odd output rows 2i - 1 (kernel rows 0, 1 on input row i - 1,
        row 2 on row i) and p = 1 the even rows 2i (row 0 on input row i - 1, rows 1, 2 on row i); columns alike."""
        fold = self.weight.new_tensor([[[1, 1, 0], [0, 0, 1]], [[1, 0, 0], [0, 1, 1]]])  # (phase, offset, tap)
        kernels = torch.einsum("pry,oiyx,qcx->opqirc", fold, self.weight, fold)
        return kernels.reshape(4 * self.out_channels, self.in_channels, 2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        phases = F.conv2d(F.pad(x, (1, 1, 1, 1)), self.phase_kernels())  # (B, 4 C_out, H + 1, W + 1)
        # one interleaving copy: the phases form the output shifted by one pixel, (B, C_out, 2H + 2, 2W + 2)
        return F.pixel_shuffle(phases, 2)[:, :, 1 : 2 * h + 1, 1 : 2 * w + 1]


class UpConv(nn.Sequential):
    """Nearest 2x upsampling + 3x3 conv, BN, ReLU: (B, C_in, H, W) -> (B, C_out, 2H, 2W).

    The upsampling and the conv are one :class:`NearestUpsampleConv2d`; the modules are named 1-3 as when an
    ``nn.Upsample`` came first, so trained weights keep their keys.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.add_module("1", NearestUpsampleConv2d(in_channels, out_channels))
        self.add_module("2", nn.BatchNorm2d(out_channels))
        self.add_module("3", nn.ReLU(inplace=True))


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


# Scores per chunk of queries: 2 ** 19 floats (2 MB) stay in cache and amortise the Python loop over chunks.
ATTENTION_CHUNK_SCORES = 2**19


class _ChunkedAttention(torch.autograd.Function):
    """softmax(q^T k * scale) v^T per sample, in chunks of queries, channel-first: q (B, d, N), k (B, d, M),
    v (B, C, M) -> (B, C, N). The (N x M) score matrix is never held whole: each chunk of queries gets its
    (n x M) scores, softmax and product with v; backward recomputes the chunk's softmax (as FlashAttention,
    Dao et al. 2022) and forms the exact gradients from it. Same result as the explicit matrix to float
    rounding. On one CPU thread, 4096 tokens, batch 8: forward 4.9x (d = 1, C = 4) and 2.9x (d = 4, C = 32)
    faster than ``F.scaled_dot_product_attention``, forward + backward 6.7x and 2.3x (its fused kernel is made
    for wide heads); the product with v is taken as v p^T, the layout the output map needs, 3x faster than
    ``p @ v`` for C = 4."""

    @staticmethod
    def forward(ctx, q, k, v, scale, chunk):
        q, v = q.contiguous(), v.contiguous()
        keys = (k * scale).contiguous()  # the scale folded into the keys: (q^T k) * scale to float rounding
        out = v.new_empty(v.shape[0], v.shape[1], q.shape[2])
        for b in range(q.shape[0]):
            for start in range(0, q.shape[2], chunk):
                queries = q[b, :, start : start + chunk]
                probabilities = torch.softmax(queries.t() @ keys[b], dim=-1)  # (n, M)
                out[b, :, start : start + chunk] = v[b] @ probabilities.t()
        ctx.save_for_backward(q, keys, v, out)
        ctx.scale, ctx.chunk = scale, chunk
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, keys, v, out = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        # softmax backward: dS = P * (dP - rowsum(dP * P)) and rowsum(dP * P) = sum_c dO * O per query
        row_dot = (grad_out * out).sum(1)  # (B, N)
        grad_q, grad_k, grad_v = torch.empty_like(q), torch.zeros_like(keys), torch.zeros_like(v)
        for b in range(q.shape[0]):
            for start in range(0, q.shape[2], ctx.chunk):
                stop = start + ctx.chunk
                queries, grad_chunk = q[b, :, start:stop], grad_out[b, :, start:stop]
                probabilities = torch.softmax(queries.t() @ keys[b], dim=-1)  # (n, M), as in forward
                grad_v[b].addmm_(grad_chunk, probabilities)  # dV = dO P
                grad_scores = (grad_chunk.t() @ v[b]).sub_(row_dot[b, start:stop, None]).mul_(probabilities)
                grad_q[b, :, start:stop] = keys[b] @ grad_scores.t()  # scores = q^T (k * scale)
                grad_k[b].addmm_(queries, grad_scores, alpha=ctx.scale)
        return grad_q, grad_k, grad_v, None, None


def chunked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(q^T k * scale) applied to v, one head, channel-first: q (B, d, N), k (B, d, M), v (B, C, M) ->
    (B, C, N), i.e. out[b, :, i] = sum_j softmax_j(q_i . k_j * scale) v_j (Vaswani et al. 2017, Eq. 1)."""
    chunk = max(1, min(q.shape[2], ATTENTION_CHUNK_SCORES // max(k.shape[2], 1)))
    return _ChunkedAttention.apply(q, k, v, float(scale), chunk)


class SelfAttention2d(nn.Module):
    """Self-attention A(.) of the FAAB: scaled dot-product attention (Vaswani et al. 2017, seed 001 ref. [20]) over
    the positions of the map, with the SAGAN-style residual of the public V1 code.

    q = W_q x, k = W_k P(x) (1x1 projections to d = max(C / 8, 1) channels), v = W_v P(x) (C channels);
    A(x) = gamma * softmax(q k^T * scale) v + x, gamma a learnable scalar initialised to 0 (starts as identity).
    ``scaled=True``: scale = 1 / sqrt(d) as in ref. [20]; ``scaled=False``: scale 1, as the V1 code.
    ``pool`` = 1 (default): every position attends to all H * W positions, as the paper (seed 001 Sec. III-C,
    Eq. 1: the FAAB acts on R_z at the resolution of R, the input's, so 4096 positions for a 64 x 64 crop).
    ``pool`` > 1 is our option: keys and values average-pooled by ``pool`` (8: 64 keys on a 64 x 64 map, as
    non-local blocks subsample phi and g), measured in bench/ugsnet/cost.md, where full attention dominates.
    Both are computed by :func:`chunked_attention` on the channel-first maps (no transposes, no (HW x HW)
    matrix kept for the backward pass: 2 GB per block for a batch of 32 64 x 64 maps).
    (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, pool: int = 1, scaled: bool = True):
        super().__init__()
        inner = max(channels // 8, 1)
        self.query = nn.Conv2d(channels, inner, 1)
        self.key = nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.full = pool == 1
        self.pool = nn.Identity() if self.full else nn.AvgPool2d(pool)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.scale = 1.0 / math.sqrt(inner) if scaled else 1.0

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """softmax(q k^T * scale) v without the residual: (B, C, H, W) -> (B, C, H, W)."""
        pooled = self.pool(x)
        q, k, v = self.query(x).flatten(2), self.key(pooled).flatten(2), self.value(pooled).flatten(2)
        return chunked_attention(q, k, v, self.scale).view_as(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gamma * self.attend(x) + x


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

    Each channel is filtered by ``orientations`` fixed Gabor kernels (not trained: edge and texture responses at
    0, 45, 90, 135 degrees), then a learnable 1x1 convolution mixes the C * orientations responses back to C
    channels, followed by BN and ReLU. The public V1 code used an all-ones 1x1 "Gabor" (a plain 1x1 convolution);
    a real bank gives the boundary/texture preference the paper describes. (B, C, H, W) -> (B, C, H, W).

    Both steps are linear, so forward applies them as one k x k convolution C -> C whose kernel is the mix of the
    bank (:meth:`kernel`): the same output as the bank then the 1x1 mix, in one dense convolution instead of a
    depthwise one on C * orientations maps plus a 1x1 one (bench/ugsnet/cost.md).
    """

    def __init__(self, channels: int, orientations: int = 4, kernel_size: int = 7):
        super().__init__()
        bank = gabor_bank(orientations, kernel_size)
        self.channels = channels
        self.orientations = orientations
        self.register_buffer("weight", bank.repeat(channels, 1, 1).unsqueeze(1))  # (C*O, 1, k, k)
        self.mix = nn.Sequential(
            nn.Conv2d(channels * orientations, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True)
        )

    def responses(self, x: torch.Tensor) -> torch.Tensor:
        """Fixed Gabor responses (B, C * orientations, H, W), one grouped convolution."""
        return F.conv2d(x, self.weight, padding=self.weight.shape[-1] // 2, groups=self.channels)

    def kernel(self) -> torch.Tensor:
        """The 1x1 mix composed with the bank: (C, C, k, k), kernel[o, c] = sum_t mix[o, c, t] * bank[c, t]."""
        c, o, k = self.channels, self.orientations, self.weight.shape[-1]
        mix = self.mix[0].weight.view(c, c, o)
        return torch.einsum("pct,ctij->pcij", mix, self.weight.view(c, o, k, k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = F.conv2d(x, self.kernel(), padding=self.weight.shape[-1] // 2)
        return self.mix[2](self.mix[1](mixed))


def otsu_thresholds(x: torch.Tensor, bins: int = 64) -> torch.Tensor:
    """Otsu's threshold (Otsu 1979) of every (B, C) map of ``x`` (B, C, H, W), computed on a ``bins``-bin
    histogram between the map's min and max; returns (B, C, 1, 1). No gradient (a threshold is a choice).
    All B * C histograms come from one ``bincount`` over map-offset bin indices."""
    with torch.no_grad():
        flat = x.detach().flatten(2).float()  # (B, C, N)
        maps = flat.shape[0] * flat.shape[1]
        low, high = torch.aminmax(flat, dim=-1, keepdim=True)
        width = (high - low).clamp_min(1e-12)
        index = ((flat - low) / width * bins).long().clamp_(0, bins - 1)
        index += torch.arange(0, maps * bins, bins, device=x.device).view(flat.shape[:2] + (1,))
        hist = torch.bincount(index.flatten(), minlength=maps * bins).view(*flat.shape[:2], bins).float()
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

    def __init__(
        self, channels: int, feature_filter: nn.Module, attention_pool: int = 1, attention_scaled: bool = True
    ):
        super().__init__()
        self.attention = SelfAttention2d(channels, attention_pool, attention_scaled)
        self.filter = feature_filter

    def filtered(self, x: torch.Tensor) -> torch.Tensor:
        """Gamma(A(R_z)), the second half of R'_z: (B, C, H, W) -> (B, C, H, W)."""
        return self.filter(self.attention(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.filtered(x)], dim=1)


class FeatureAwareAttentionBlockV1(nn.Module):
    """FAAB of UGS-Net-V1 (MICCAI 2022, public code): R_z + gamma * Gamma(softmax(q k^T) v).

    The filter acts on the attended map inside the attention's residual (the journal's Eq. 1 instead filters the
    whole A(R_z) and concatenates it with R_z); the scores are not scaled by 1 / sqrt(d), as in the V1 code.
    Gamma is the same real Gabor / Otsu filter as UGS-Net's (:class:`GaborFilter`, :class:`OtsuFilter`; the V1
    code's were a plain 1x1 convolution and a gradient-free quantisation), so that UGS-Net-V1 and UGS-Net differ
    only in the IUCM (Eq. 1 and s_z) and the loss. (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, feature_filter: nn.Module, attention_pool: int = 1):
        super().__init__()
        self.attention = SelfAttention2d(channels, attention_pool, scaled=False)
        self.filter = feature_filter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention.gamma * self.filter(self.attention.attend(x)) + x
