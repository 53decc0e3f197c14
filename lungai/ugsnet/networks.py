"""UGS-Net (seed 001, Fig. 3) and the baselines of its Table I, registered as lungai architectures.

Every network maps an image (B, 1, H, W) to a dict of logits (B, 1, H, W); ``"final"`` is the
segmentation evaluated against Label1. UGS-Net adds ``"union"``, ``"intersection"`` (the MCM heads) and
``"uni"`` (the plausible single segmentation GT'_Uni). H and W must be divisible by 2 ** (levels - 1).

Widths: the paper's Attention U-Net has widths 64-128-256-512-1024 and a 64-channel decoder map R
(``PAPER_FEATURES``). ``features`` is configurable; R always has ``features[0]`` channels and the UAM
branches ``features[0] // 2`` (the paper's 64 -> 32), so small widths scale R down with the backbone
(``DEMO_FEATURES``: R has 8 channels, branches 4).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from lungai.architectures import register_architecture
from lungai.ugsnet.blocks import (
    AttentionGate,
    DoubleConv,
    FeatureAwareAttentionBlock,
    FeatureAwareAttentionBlockV1,
    GaborFilter,
    OtsuFilter,
    UpConv,
)

PAPER_FEATURES = (64, 128, 256, 512, 1024)
DEMO_FEATURES = (8, 16, 32, 64, 128)  # bundled weights and benchmark (CPU budget)


class AttentionUNetBackbone(nn.Module):
    """Feature Extracting Module: (Attention) U-Net to the decoder map R, (B, 1, H, W) -> (B, features[0], H, W).

    Max-pool down, nearest-upsample + 3x3 conv up, double 3x3 conv per level; with ``attention`` each skip
    connection passes an additive attention gate (Attention U-Net), without it this is the plain U-Net.
    As seed 001 Sec. III-A says of its Attention U-Net [5], "each up-sampling layer is composed of two
    convolutional layers and an attention block": with the up-convolution this is 1.37x the floating-point work
    of MONAI's ``AttentionUnet`` of the same widths (one merge convolution per decoder level, a strided
    transposed up-convolution), measured in bench/ugsnet/cost.md.
    """

    def __init__(self, in_channels: int = 1, features: Sequence[int] = PAPER_FEATURES, attention: bool = True):
        super().__init__()
        features = tuple(int(f) for f in features)
        self.encoders = nn.ModuleList(
            [DoubleConv(in_channels, features[0])]
            + [DoubleConv(features[i - 1], features[i]) for i in range(1, len(features))]
        )
        self.pool = nn.MaxPool2d(2)
        self.ups = nn.ModuleList([UpConv(features[i], features[i - 1]) for i in range(len(features) - 1, 0, -1)])
        self.gates = nn.ModuleList(
            [AttentionGate(features[i - 1]) if attention else nn.Identity() for i in range(len(features) - 1, 0, -1)]
        )
        self.decoders = nn.ModuleList(
            [DoubleConv(2 * features[i - 1], features[i - 1]) for i in range(len(features) - 1, 0, -1)]
        )
        self.attention = attention
        self.out_channels = features[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, encoder in enumerate(self.encoders):
            x = encoder(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up, gate, decoder in zip(self.ups, self.gates, self.decoders):
            x = up(x)
            skip = skips.pop()
            skip = gate(x, skip) if self.attention else skip
            x = decoder(torch.cat([skip, x], dim=1))
        return x


class SegmentationNet(nn.Module):
    """Baseline (U-Net or Attention U-Net): backbone + 1x1 logit head. Output ``{"final": (B, 1, H, W)}``."""

    def __init__(self, in_channels: int = 1, features: Sequence[int] = PAPER_FEATURES, attention: bool = True):
        super().__init__()
        self.backbone = AttentionUNetBackbone(in_channels, features, attention)
        self.head = nn.Conv2d(self.backbone.out_channels, 1, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"final": self.head(self.backbone(x))}


class UncertaintyAwareModule(nn.Module):
    """UAM (Sec. III-B): three 3x3 conv + BN + ReLU branches R -> R_LC, R_HC, R_Uni (C -> C/2 channels each) and
    1x1 heads: union logits from R_LC, intersection logits from R_HC, GT'_Uni logits from R_Uni.

    The three branch convolutions read the same R, so forward runs them as one convolution C -> 3 C/2 (their
    kernels stacked) and splits the result before each branch's BN and ReLU."""

    def __init__(self, channels: int):
        super().__init__()
        half = max(channels // 2, 1)

        def branch() -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(channels, half, 3, padding=1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True)
            )

        self.branches = nn.ModuleDict({"lc": branch(), "hc": branch(), "uni": branch()})
        self.heads = nn.ModuleDict(
            {"union": nn.Conv2d(half, 1, 1), "intersection": nn.Conv2d(half, 1, 1), "uni": nn.Conv2d(half, 1, 1)}
        )
        self.branch_channels = half

    def forward(self, r: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Returns ({lc, hc, uni}: (B, C/2, H, W) features, {union, intersection, uni}: (B, 1, H, W) logits)."""
        kernels = torch.cat([branch[0].weight for branch in self.branches.values()])
        convolved = F.conv2d(r, kernels, padding=1).split(self.branch_channels, dim=1)
        feats = {name: branch[2](branch[1](part)) for (name, branch), part in zip(self.branches.items(), convolved)}
        logits = {
            "union": self.heads["union"](feats["lc"]),
            "intersection": self.heads["intersection"](feats["hc"]),
            "uni": self.heads["uni"](feats["uni"]),
        }
        return feats, logits


class DistanceWeighting(nn.Module):
    """s_z weighting of the IUCM (seed 001 Sec. III-C): s_z = ||R'_z - R||_2 / sqrt(C) per pixel, R'_z scaled by it.

    R'_z = concat(R_z, Gamma(A(R_z))) (Eq. 1) is given as its two halves and never concatenated: s_z is the
    square root of the two halves' squared distances to the matching channels of R (sums over channels: a
    norm over the channel axis is many times slower on CPU), and the halves come back scaled, ready for the
    one concatenation of the fusion input. s_z is the per-pixel L2 distance over channels, scaled by
    sqrt(C) so that its size does not depend on the width (the paper does not say whether d is per pixel or per
    map: per pixel lets the constraint act where the branches disagree with R).
    forward(r (B, C, H, W), first, second (B, C/2, H, W)) -> (s_z first, s_z second, s_z (B, 1, H, W)).
    """

    def forward(self, r: torch.Tensor, first: torch.Tensor, second: torch.Tensor):
        half = first.shape[1]
        squared = (first - r[:, :half]).square().sum(1, keepdim=True) + (second - r[:, half:]).square().sum(
            1, keepdim=True
        )
        # the floor keeps the square root differentiable where R'_z equals R (distance 1e-6 instead of 0)
        distance = squared.clamp_min(1e-12).sqrt() / r.shape[1] ** 0.5
        return distance * first, distance * second, distance


class IntersectionUnionConstrainingModule(nn.Module):
    """IUCM (Sec. III-C, Fig. 4): R_Aug from three FAABs weighted by their feature distance to R.

    R'_z = FAAB_z(R_z) (Eq. 1; Gabor filter for Uni and LC, Otsu for HC) has 2 * C/2 = C channels, like R;
    R_Aug = concat(s_Uni R'_Uni, s_LC R'_LC, s_HC R'_HC) with s_z from :class:`DistanceWeighting`.
    forward(r (B, C, H, W), feats {lc, hc, uni} (B, C/2, H, W)) -> (R_Aug (B, 3C, H, W), {z: s_z (B, 1, H, W)});
    :meth:`weighted_parts` gives R_Aug's channel blocks unconcatenated.
    """

    def __init__(
        self,
        branch_channels: int,
        gabor_orientations: int = 4,
        gabor_kernel_size: int = 7,
        attention_pool: int = 1,
        attention_scaled: bool = True,
    ):
        super().__init__()

        def gabor() -> GaborFilter:
            return GaborFilter(branch_channels, gabor_orientations, gabor_kernel_size)

        def faab(feature_filter: nn.Module) -> FeatureAwareAttentionBlock:
            return FeatureAwareAttentionBlock(branch_channels, feature_filter, attention_pool, attention_scaled)

        self.blocks = nn.ModuleDict({"uni": faab(gabor()), "lc": faab(gabor()), "hc": faab(OtsuFilter())})
        self.weighting = DistanceWeighting()

    def weighted_parts(self, r: torch.Tensor, feats: dict[str, torch.Tensor]):
        """([s_Uni R_Uni, s_Uni Gamma(A(R_Uni)), s_LC R_LC, ..., s_HC Gamma(A(R_HC))], {z: s_z})."""
        parts, distances = [], {}
        for name in ("uni", "lc", "hc"):
            first, second, distances[name] = self.weighting(r, feats[name], self.blocks[name].filtered(feats[name]))
            parts += [first, second]
        return parts, distances

    def forward(self, r: torch.Tensor, feats: dict[str, torch.Tensor]):
        parts, distances = self.weighted_parts(r, feats)
        return torch.cat(parts, dim=1), distances


class UGSNet(nn.Module):
    """Uncertainty-Guided Segmentation Network (seed 001, Fig. 3) and UGS-Net-V1 (MICCAI 2022).

    R = FEM(X); (R_LC, R_HC, R_Uni), (union', intersection', GT'_Uni) = UAM(R);
    with ``iucm`` (UGS-Net): X_S = conv(concat(R, R_Aug)), R_Aug from the IUCM; without it (UGS-Net-V1):
    X_S = conv(concat(R, V1-FAAB(R_LC), V1-FAAB(R_HC), V1-FAAB(R_Uni))) with the V1 code's attention blocks
    (:class:`FeatureAwareAttentionBlockV1`: Gabor for LC and Uni, Otsu for HC, no s_z). The fusion conv is a
    double 3x3 conv to C channels and a 1x1 logit (as V1's fusion). Output logits {"final", "union",
    "intersection", "uni"}, each (B, 1, H, W). ``attention_pool`` / ``attention_scaled``: see
    :class:`SelfAttention2d` (V1 attention is never scaled, as its code).
    """

    def __init__(
        self,
        in_channels: int = 1,
        features: Sequence[int] = PAPER_FEATURES,
        iucm: bool = True,
        gabor_orientations: int = 4,
        gabor_kernel_size: int = 7,
        attention_pool: int = 1,
        attention_scaled: bool = True,
    ):
        super().__init__()
        self.backbone = AttentionUNetBackbone(in_channels, features, attention=True)
        channels = self.backbone.out_channels
        self.uam = UncertaintyAwareModule(channels)
        half = self.uam.branch_channels
        self.iucm = None
        if iucm:
            self.iucm = IntersectionUnionConstrainingModule(
                half, gabor_orientations, gabor_kernel_size, attention_pool, attention_scaled
            )
        else:

            def gabor() -> GaborFilter:
                return GaborFilter(half, gabor_orientations, gabor_kernel_size)

            self.v1_blocks = nn.ModuleDict(
                {
                    "lc": FeatureAwareAttentionBlockV1(half, gabor(), attention_pool),
                    "hc": FeatureAwareAttentionBlockV1(half, OtsuFilter(), attention_pool),
                    "uni": FeatureAwareAttentionBlockV1(half, gabor(), attention_pool),
                }
            )
        fused = channels + (3 * 2 * half if iucm else 3 * half)
        self.fusion = nn.Sequential(DoubleConv(fused, channels), nn.Conv2d(channels, 1, 1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        r = self.backbone(x)
        feats, logits = self.uam(r)
        if self.iucm is not None:
            parts, _ = self.iucm.weighted_parts(r, feats)
        else:
            parts = [self.v1_blocks[name](feats[name]) for name in ("lc", "hc", "uni")]
        return {"final": self.fusion(torch.cat([r, *parts], dim=1)), **logits}


def multi_confidence_mask(union_logits: torch.Tensor, intersection_logits: torch.Tensor) -> torch.Tensor:
    """MCM' = normalise(sigmoid(union') + sigmoid(intersection')) in [0, 1] (seed 001 Sec. III-B): 1 where both
    heads are certain (high confidence), about 0.5 where only the union head fires (low confidence)."""
    return (torch.sigmoid(union_logits) + torch.sigmoid(intersection_logits)) / 2.0


# Checkpoints written before the attention options were stored were trained with 8x pooled, unscaled attention.
@register_architecture("ugsnet", legacy_config={"attention_pool": 8, "attention_scaled": False})
def build_ugsnet(
    in_channels: int = 1,
    features: Sequence[int] = PAPER_FEATURES,
    gabor_orientations: int = 4,
    gabor_kernel_size: int = 7,
    attention_pool: int = 1,
    attention_scaled: bool = True,
) -> UGSNet:
    return UGSNet(
        in_channels,
        features,
        iucm=True,
        gabor_orientations=gabor_orientations,
        gabor_kernel_size=gabor_kernel_size,
        attention_pool=attention_pool,
        attention_scaled=attention_scaled,
    )


@register_architecture("ugsnet_v1")
def build_ugsnet_v1(in_channels: int = 1, features: Sequence[int] = PAPER_FEATURES, attention_pool: int = 1) -> UGSNet:
    return UGSNet(in_channels, features, iucm=False, attention_pool=attention_pool)


@register_architecture("ugsnet_unet")
def build_unet(in_channels: int = 1, features: Sequence[int] = PAPER_FEATURES) -> SegmentationNet:
    return SegmentationNet(in_channels, features, attention=False)


@register_architecture("ugsnet_attention_unet")
def build_attention_unet(in_channels: int = 1, features: Sequence[int] = PAPER_FEATURES) -> SegmentationNet:
    return SegmentationNet(in_channels, features, attention=True)


class MonaiUNet(nn.Module):
    """MONAI's ``UNet`` (residual units, strided convolutions) with lungai's dict output ``{"final": logits}``: the
    plain baseline of issue 13 (channels 16-32-64-128-256, strides 2, two residual units)."""

    def __init__(self, in_channels: int = 1, features: Sequence[int] = (16, 32, 64, 128, 256), num_res_units: int = 2):
        super().__init__()
        from monai.networks.nets import UNet

        self.net = UNet(
            spatial_dims=2,
            in_channels=in_channels,
            out_channels=1,
            channels=tuple(int(f) for f in features),
            strides=(2,) * (len(features) - 1),
            num_res_units=num_res_units,
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"final": self.net(x)}


@register_architecture("ugsnet_monai_unet")
def build_monai_unet(
    in_channels: int = 1, features: Sequence[int] = (16, 32, 64, 128, 256), num_res_units: int = 2
) -> MonaiUNet:
    return MonaiUNet(in_channels, features, num_res_units)
