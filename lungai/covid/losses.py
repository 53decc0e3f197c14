"""Segmentation loss of CHS-Net (seed 003, Sec. 3.3, Eqs. 13-15): 0.5 BCE + 0.5 Dice."""

from __future__ import annotations

import torch


def soft_dice_loss(probabilities: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Eq. 14 per image, averaged over the batch: ``1 - (2 sum yp + s) / (sum y^2 + sum p^2 + s)`` (MONAI's
    ``DiceLoss`` with squared denominators, the V-Net form of Eq. 14).

    ``smooth`` (not in the paper) keeps the loss defined, and 0, for an empty target predicted empty (slices
    without infection).
    """
    from monai.losses import DiceLoss  # MONAI imports take seconds: only when training

    return DiceLoss(squared_pred=True, smooth_nr=smooth, smooth_dr=smooth)(
        probabilities, target.to(probabilities.dtype)
    )


def bce_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, bce_weight: float = 0.5, smooth: float = 1.0
) -> torch.Tensor:
    """Eq. 15: ``0.5 BCE + 0.5 DL`` on logits ``(N, 1, H, W)`` and binary targets of the same shape (MONAI's
    ``DiceCELoss``; for one channel its cross-entropy term is the binary one, from logits).

    Eq. 13 sums BCE over the pixels; we average it (the sum grows with the image size and would
    swamp the Dice term, which is in [0, 1], so the paper's 1/2 : 1/2 weighting only makes sense
    for the mean).
    """
    from monai.losses import DiceCELoss

    loss = DiceCELoss(
        sigmoid=True,
        squared_pred=True,
        smooth_nr=smooth,
        smooth_dr=smooth,
        lambda_dice=1.0 - bce_weight,
        lambda_ce=bce_weight,
    )
    return loss(logits, target.to(logits.dtype))
