"""Weighted soft Dice loss for partially annotated volumes (seed 004, Eq. 2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def weighted_soft_dice_loss(
    probability: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """``1 - 2 sum(w y p) / (sum(w y) + sum(w p))`` over every voxel of the mini-batch (Eq. 2).

    ``w`` is 1 on annotated voxels and 0 elsewhere, so unannotated voxels give exactly zero gradient. With such
    0/1 weights Eq. 2 is MONAI's batch ``DiceLoss`` of ``w p`` against ``w y`` (``w^2 = w``), which is how it is
    computed. ``eps`` (added to numerator and denominator) keeps the loss defined when a batch has no annotated or
    no foreground voxel: the loss is then 0 with zero gradient. Tensors are (B, C, ...) of the same shape.
    """
    from monai.losses import DiceLoss  # MONAI imports take seconds: only when training

    w = weight.to(probability.dtype)
    dice = DiceLoss(batch=True, smooth_nr=eps, smooth_dr=eps)
    return dice(w * probability, w * target.to(probability.dtype))


def weighted_bce_with_logits(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy averaged over annotated voxels only (w as in Eq. 2); 0 when nothing is annotated."""
    w = weight.to(logits.dtype)
    per_voxel = F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="none")
    return (w * per_voxel).sum() / w.sum().clamp_min(1.0)


LOSSES = ("dice", "dice+bce")


def partial_annotation_loss(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, loss: str = "dice"
) -> torch.Tensor:
    """``"dice"``: Eq. 2 alone (the paper). ``"dice+bce"``: Eq. 2 plus the weighted cross-entropy.

    Why the option: soft Dice barely pushes background probabilities to 0 (its gradient there shrinks with the
    overlap term), so a Dice-trained sigmoid keeps a floor of p ~ 0.02-0.04 over the whole background, whose
    entropy (~0.1-0.15 nats per voxel) then dominates every slice mean and tracks body area more than model
    doubt. Adding cross-entropy calibrates the background (cf. the paper's discussion of calibration, ref. 23)
    so that entropy concentrates at uncertain boundaries. Both use the same annotation weights.
    """
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}: use one of {', '.join(LOSSES)}")
    value = weighted_soft_dice_loss(torch.sigmoid(logits), target, weight)
    if loss == "dice+bce":
        value = value + weighted_bce_with_logits(logits, target, weight)
    return value
