"""Networks trained apart, run as one: the mean of their sigmoid probabilities, returned as a logit.

Averaging networks that differ only in their training seed removes part of the seed-to-seed variance of a single
network. The mean is taken over probabilities, as :func:`lungai.tta.flip_average` does over flips, so a member
ensemble under flip averaging is the mean probability over members and flips.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

LOGIT_EPS = 1e-6  # probabilities are clamped to [eps, 1 - eps] before the logit (finite at 0 and 1)


class ProbabilityMean(nn.Module):
    """``(N, C, H, W) -> (N, K, H, W)`` logits of the mean member probability; each member returns logits."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probability = torch.stack([torch.sigmoid(member(x)) for member in self.members]).mean(dim=0)
        return torch.logit(probability, eps=LOGIT_EPS)
