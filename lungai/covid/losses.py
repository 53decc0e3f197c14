"""Segmentation loss of CHS-Net (seed 003, Sec. 3.3, Eqs. 13-15): 0.5 BCE + 0.5 Dice."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_dice_loss(probabilities: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Eq. 14 per image, averaged over the batch: ``1 - (2 sum yp + s) / (sum y^2 + sum p^2 + s)``.

    The squared denominators follow Eq. 14 (V-Net form). ``smooth`` (not in the paper) keeps the
    loss defined, and 0, for an empty target predicted empty (slices without infection).
    """
    dims = tuple(range(1, probabilities.ndim))
    overlap = (probabilities * target).sum(dims)
    energy = probabilities.pow(2).sum(dims) + target.pow(2).sum(dims)
    return (1.0 - (2.0 * overlap + smooth) / (energy + smooth)).mean()


def bce_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, bce_weight: float = 0.5, smooth: float = 1.0
) -> torch.Tensor:
    """Eq. 15: ``0.5 BCE + 0.5 DL`` on logits ``(N, 1, H, W)`` and binary targets of the same shape.

    Eq. 13 sums BCE over the pixels; we average it (the sum grows with the image size and would
    swamp the Dice term, which is in [0, 1], so the paper's 1/2 : 1/2 weighting only makes sense
    for the mean). BCE is computed from logits for numerical stability.
    """
    target = target.to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, target)
    return bce_weight * bce + (1.0 - bce_weight) * soft_dice_loss(torch.sigmoid(logits), target, smooth)
