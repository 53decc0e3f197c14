"""RAIU-Net and the CHS-Net cascade (seed 003, Sec. 3, Figs. 5-6).

RAIU-Net is a U-Net with four stages, each halving height and width: residual inception blocks
(RIB) instead of plain convolutions, hybrid pooling (HP) between stages, spectral spatial and
depth attention (SSD) on the skip connections, transposed-convolution upsampling and a 1x1 head.
The three switches ``rib``, ``hybrid_pool`` and ``ssd`` reproduce the ablation of Tables 4-5:
all off is the baseline U-Net (BU: standard 3x3 convolutions, max pooling, plain skips).

Widths: Sec. 3 says each contraction stage "increase[s] depth by 50%" and Table 3 gives 4.2 M
parameters. :data:`PAPER_WIDTHS` (49-74-110-165-248, :func:`growing_widths` of 49) is the base
width whose 50 % growth gives the parameter count closest to 4.2 M for one RAIU-Net (4.15 M);
Table 3 does not say whether its 4.2 M counts one RAIU-Net or the cascade of two, we read one.
Any other widths are a choice of whoever trains, and checkpoints record them.

The head returns logits; the paper's sigmoid is applied by :func:`torch.sigmoid` at inference
and inside ``BCEWithLogits`` in the loss (numerically the same function, more stable).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lungai.covid.blocks import DoubleConv, HybridPool2d, ResidualInceptionBlock, SSDAttention
from lungai.ensemble import ProbabilityMean

GROWTH = 1.5


def growing_widths(base: int, growth: float = GROWTH) -> tuple[int, ...]:
    """Five widths (four stages and the bottleneck) starting at ``base``, each ``growth`` times the last, rounded."""
    return tuple(int(round(base * growth**k)) for k in range(5))


PAPER_WIDTHS = growing_widths(49)
DEFAULT_WIDTHS = PAPER_WIDTHS
LUNG_INPUTS = ("mask", "channel")


class RAIUNet(nn.Module):
    """Residual attention inception U-Net. ``(N, in_channels, H, W) -> (N, out_channels, H, W)`` logits.

    ``H`` and ``W`` must be multiples of 16 (four halvings). ``dropout`` (default 0, as in CHS-Net)
    adds channel dropout before each decoder block, for Monte-Carlo dropout uncertainty.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        widths: Sequence[int] = DEFAULT_WIDTHS,
        *,
        rib: bool = True,
        hybrid_pool: bool = True,
        ssd: bool = True,
        dropout: float = 0.0,
        gsp_band: int = 3,
    ) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        self.widths = widths
        if len(widths) != 5:
            raise ValueError(f"RAIU-Net has four stages plus a bottleneck: give 5 widths, not {len(widths)}")

        def block(cin: int, cout: int) -> nn.Module:
            return ResidualInceptionBlock(cin, cout, spectral=hybrid_pool) if rib else DoubleConv(cin, cout)

        def down(channels: int) -> nn.Module:
            return HybridPool2d(channels, mode="valid") if hybrid_pool else nn.MaxPool2d(2)

        self.encoders = nn.ModuleList(block(cin, cout) for cin, cout in zip((in_channels,) + widths[:3], widths[:4]))
        self.downs = nn.ModuleList(down(w) for w in widths[:4])
        self.bottleneck = block(widths[3], widths[4])
        self.ups = nn.ModuleList(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in range(4))
        self.skips = nn.ModuleList(SSDAttention(widths[i], widths[i + 1], gsp_band) for i in range(4)) if ssd else None
        self.dropout = nn.Dropout2d(dropout)
        self.decoders = nn.ModuleList(block(2 * widths[i], widths[i]) for i in range(4))
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] % 16 or x.shape[-1] % 16:
            raise ValueError(f"RAIU-Net needs height and width divisible by 16, got {tuple(x.shape[-2:])}")
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            x = encoder(x)
            skips.append(x)
            x = down(x)
        x = self.bottleneck(x)
        for level in reversed(range(4)):
            skip = skips[level] if self.skips is None else self.skips[level](skips[level], x)
            x = torch.cat([skip, self.ups[level](x)], dim=1)
            x = self.decoders[level](self.dropout(x))
        return self.head(x)


def stage2_input(image: torch.Tensor, lung_map: torch.Tensor, lung_input: str) -> torch.Tensor:
    """Stage-2 input from the CT ``(N, 1, H, W)`` and a lung map of the same shape (see :class:`CHSNet`)."""
    if lung_input == "mask":
        return image * lung_map
    if lung_input == "channel":
        return torch.cat([image, lung_map], dim=1)
    raise ValueError(f"lung_input must be one of {LUNG_INPUTS}, not {lung_input!r}")


class CHSNet(nn.Module):
    """Two cascaded RAIU-Nets (Fig. 5): lungs from the CT slice, then infection from CT + lungs.

    ``lung_input`` says how the stage-1 lung map (``sigmoid > threshold``, no gradient) reaches
    stage 2; the paper only says "lungs contour maps":

    - ``"mask"``: stage 2 sees the CT multiplied by the lung map (background set to 0, the air
      value of :mod:`lungai.covid.intensity`), and its output is forced to background outside the
      predicted lungs, so infection is never reported outside them.
    - ``"channel"``: stage 2 sees ``[CT, lung map]`` as two channels and may answer anywhere.

    ``infection_members`` > 1 (our addition, not the paper's) makes stage 2 that many RAIU-Nets of the same
    config, trained apart from different seeds on the same lung stage, whose probabilities are averaged
    (:class:`lungai.ensemble.ProbabilityMean`).

    ``forward`` returns ``{"lung": logits, "infection": logits}``, both ``(N, 1, H, W)``.
    """

    def __init__(
        self,
        lung: dict | None = None,
        infection: dict | None = None,
        lung_input: str = "mask",
        threshold: float = 0.5,
        infection_members: int = 1,
    ) -> None:
        super().__init__()
        if lung_input not in LUNG_INPUTS:
            raise ValueError(f"lung_input must be one of {LUNG_INPUTS}, not {lung_input!r}")
        if infection_members < 1:
            raise ValueError(f"infection_members must be at least 1, not {infection_members}")
        infection = dict(infection or {})
        infection["in_channels"] = 2 if lung_input == "channel" else 1
        self.lung_input = lung_input
        self.threshold = float(threshold)
        self.lung = RAIUNet(**dict(lung or {}, in_channels=1))
        members = [RAIUNet(**infection) for _ in range(infection_members)]
        self.infection = members[0] if infection_members == 1 else ProbabilityMean(members)

    def lung_map(self, lung_logits: torch.Tensor) -> torch.Tensor:
        """Binary lung map ``(N, 1, H, W)`` from stage-1 logits, detached (stage 2 never trains stage 1)."""
        return (torch.sigmoid(lung_logits.detach()) > self.threshold).to(lung_logits.dtype)

    def infection_input(self, image: torch.Tensor, lung_map: torch.Tensor) -> torch.Tensor:
        """Stage-2 input from the CT ``(N, 1, H, W)`` and a lung map of the same shape."""
        return stage2_input(image, lung_map, self.lung_input)

    def gate(self, infection_logits: torch.Tensor, lung_map: torch.Tensor) -> torch.Tensor:
        """With masking, logits outside the lungs become a large negative (probability ~0)."""
        if self.lung_input != "mask":
            return infection_logits
        return torch.where(lung_map > 0, infection_logits, torch.full_like(infection_logits, -30.0))

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        lung_logits = self.lung(image)
        lung_map = self.lung_map(lung_logits)
        infection_logits = self.infection(self.infection_input(image, lung_map))
        return {"lung": lung_logits, "infection": self.gate(infection_logits, lung_map)}
