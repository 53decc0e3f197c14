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

from lungai.architectures import register_architecture
from lungai.ugsnet.blocks import AttentionGate, DoubleConv, FeatureAwareAttentionBlock, GaborFilter, OtsuFilter, UpConv

PAPER_FEATURES = (64, 128, 256, 512, 1024)
DEMO_FEATURES = (8, 16, 32, 64, 128)  # bundled weights and benchmark (CPU budget)


class AttentionUNetBackbone(nn.Module):
    """Feature Extracting Module: (Attention) U-Net to the decoder map R, (B, 1, H, W) -> (B, features[0], H, W).

    Max-pool down, nearest-upsample + 3x3 conv up, double 3x3 conv per level; with ``attention`` each skip
    connection passes an additive attention gate (Attention U-Net), without it this is the plain U-Net.
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
    1x1 heads: union logits from R_LC, intersection logits from R_HC, GT'_Uni logits from R_Uni."""

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
        feats = {name: branch(r) for name, branch in self.branches.items()}
        logits = {
            "union": self.heads["union"](feats["lc"]),
            "intersection": self.heads["intersection"](feats["hc"]),
            "uni": self.heads["uni"](feats["uni"]),
        }
        return feats, logits


class IntersectionUnionConstrainingModule(nn.Module):
    """IUCM (Sec. III-C, Fig. 4): R_Aug from three FAABs weighted by their feature distance to R.

    R'_z = FAAB_z(R_z) (Eq. 1; Gabor filter for Uni and LC, Otsu for HC) has 2 * C/2 = C channels, like R.
    s_z = ||R'_z - R||_2 / sqrt(C), the per-pixel L2 distance over channels (scaled by sqrt(C) so that its size
    does not depend on the width; the paper does not say whether d is per pixel or per map: per pixel lets
    the constraint act where the branches disagree with R). R_Aug = concat(s_Uni R'_Uni, s_LC R'_LC, s_HC R'_HC).
    forward(r (B, C, H, W), feats {lc, hc, uni} (B, C/2, H, W)) -> (R_Aug (B, 3C, H, W), {z: s_z (B, 1, H, W)}).
    """

    def __init__(
        self, branch_channels: int, gabor_orientations: int = 4, gabor_kernel_size: int = 7, attention_pool: int = 8
    ):
        super().__init__()

        def gabor() -> GaborFilter:
            return GaborFilter(branch_channels, gabor_orientations, gabor_kernel_size)

        self.blocks = nn.ModuleDict(
            {
                "uni": FeatureAwareAttentionBlock(branch_channels, gabor(), attention_pool),
                "lc": FeatureAwareAttentionBlock(branch_channels, gabor(), attention_pool),
                "hc": FeatureAwareAttentionBlock(branch_channels, OtsuFilter(), attention_pool),
            }
        )

    def forward(self, r: torch.Tensor, feats: dict[str, torch.Tensor]):
        augmented, distances = [], {}
        for name in ("uni", "lc", "hc"):
            refined = self.blocks[name](feats[name])
            distance = torch.linalg.vector_norm(refined - r, dim=1, keepdim=True) / r.shape[1] ** 0.5
            distances[name] = distance
            augmented.append(distance * refined)
        return torch.cat(augmented, dim=1), distances


class UGSNet(nn.Module):
    """Uncertainty-Guided Segmentation Network (seed 001, Fig. 3).

    R = FEM(X); (R_LC, R_HC, R_Uni), (union', intersection', GT'_Uni) = UAM(R);
    with ``iucm``: X_S = conv(concat(R, R_Aug)), R_Aug from the IUCM; without it (UGS-Net-V1 ablation, no
    IUCM): X_S = conv(concat(R, R_LC, R_HC, R_Uni)). The fusion conv is a double 3x3 conv to C channels and a
    1x1 logit (as V1's fusion). Output logits {"final", "union", "intersection", "uni"}, each (B, 1, H, W).
    """

    def __init__(
        self,
        in_channels: int = 1,
        features: Sequence[int] = PAPER_FEATURES,
        iucm: bool = True,
        gabor_orientations: int = 4,
        gabor_kernel_size: int = 7,
        attention_pool: int = 8,
    ):
        super().__init__()
        self.backbone = AttentionUNetBackbone(in_channels, features, attention=True)
        channels = self.backbone.out_channels
        self.uam = UncertaintyAwareModule(channels)
        half = self.uam.branch_channels
        self.iucm = (
            IntersectionUnionConstrainingModule(half, gabor_orientations, gabor_kernel_size, attention_pool)
            if iucm
            else None
        )
        fused = channels + (3 * 2 * half if iucm else 3 * half)
        self.fusion = nn.Sequential(DoubleConv(fused, channels), nn.Conv2d(channels, 1, 1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        r = self.backbone(x)
        feats, logits = self.uam(r)
        if self.iucm is not None:
            augmented, _ = self.iucm(r, feats)
            fused = torch.cat([r, augmented], dim=1)
        else:
            fused = torch.cat([r, feats["lc"], feats["hc"], feats["uni"]], dim=1)
        return {"final": self.fusion(fused), **logits}


def multi_confidence_mask(union_logits: torch.Tensor, intersection_logits: torch.Tensor) -> torch.Tensor:
    """MCM' = normalise(sigmoid(union') + sigmoid(intersection')) in [0, 1] (seed 001 Sec. III-B): 1 where both
    heads are certain (high confidence), about 0.5 where only the union head fires (low confidence)."""
    return (torch.sigmoid(union_logits) + torch.sigmoid(intersection_logits)) / 2.0


@register_architecture("ugsnet")
def build_ugsnet(
    in_channels: int = 1,
    features: Sequence[int] = PAPER_FEATURES,
    gabor_orientations: int = 4,
    gabor_kernel_size: int = 7,
    attention_pool: int = 8,
) -> UGSNet:
    return UGSNet(
        in_channels,
        features,
        iucm=True,
        gabor_orientations=gabor_orientations,
        gabor_kernel_size=gabor_kernel_size,
        attention_pool=attention_pool,
    )


@register_architecture("ugsnet_v1")
def build_ugsnet_v1(in_channels: int = 1, features: Sequence[int] = PAPER_FEATURES) -> UGSNet:
    return UGSNet(in_channels, features, iucm=False)


@register_architecture("ugsnet_unet")
def build_unet(in_channels: int = 1, features: Sequence[int] = PAPER_FEATURES) -> SegmentationNet:
    return SegmentationNet(in_channels, features, attention=False)


@register_architecture("ugsnet_attention_unet")
def build_attention_unet(in_channels: int = 1, features: Sequence[int] = PAPER_FEATURES) -> SegmentationNet:
    return SegmentationNet(in_channels, features, attention=True)
