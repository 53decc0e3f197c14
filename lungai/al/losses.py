"""Weighted soft Dice loss for partially annotated volumes (seed 004, Eq. 2)."""
from __future__ import annotations

import torch


def weighted_soft_dice_loss(probability: torch.Tensor, target: torch.Tensor, weight: torch.Tensor,
                            eps: float = 1e-6) -> torch.Tensor:
    """``1 - 2 sum(w y p) / (sum(w y) + sum(w p))`` over every voxel of the mini-batch (Eq. 2).

    ``w`` is 1 on annotated voxels and 0 elsewhere, so unannotated voxels give exactly zero gradient.
    ``eps`` (added to numerator and denominator) keeps the loss defined when a batch has no annotated or no
    foreground voxel: the loss is then 0 with zero gradient. All tensors broadcast to the same shape.
    """
    w = weight.to(probability.dtype)
    y = target.to(probability.dtype)
    intersection = (w * y * probability).sum()
    denominator = (w * y).sum() + (w * probability).sum()
    return 1.0 - (2.0 * intersection + eps) / (denominator + eps)
