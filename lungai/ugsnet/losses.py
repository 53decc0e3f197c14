"""UGS-Net losses (seed 001, Sec. III-D), on logits, with padded reader masks excluded.

L = alpha_1 L_MCM + alpha_2 Phi_a + alpha_3 Phi_b (Eq. 4), alpha = (0.5, 0.5, 1.0) by default;
L_MCM = BCE(union', union) + BCE(intersection', intersection) (Eq. 2);
Phi_a, Phi_b = mean over the real annotations GT_j of a per-annotation loss of GT'_Uni and X_S (Eq. 3):
BCE in the journal (``fusion="bce"``), 1 - Dice in seed 000 (``fusion="dice"``, soft Dice per sample), or their
sum (``fusion="dicebce"``, our CPU-budget recipe's choice, the DiceCE of the plain baseline).
Eq. 3 writes E{sum_j ...}: we read it as the mean over a sample's real annotations, then over the batch,
so a crop with 2 readers weighs as much as one with 4. ``annotations="random"`` is UGS-Net-V1: Phi uses
one annotation drawn at random among the real ones instead of all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from lungai.ugsnet.data import reader_validity


def per_sample_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean BCE over pixels for each sample: (B, 1, H, W) x2 -> (B,)."""
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).mean(1)


def per_sample_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - soft Dice per sample, (2 sum(p t) + s) / (sum p + sum t + s): (B, 1, H, W) x2 -> (B,) (MONAI's
    ``DiceLoss`` on sigmoid probabilities, unreduced)."""
    from monai.losses import DiceLoss  # MONAI imports take seconds: only when training

    dice = DiceLoss(sigmoid=True, smooth_nr=smooth, smooth_dr=smooth, reduction="none")
    return dice(logits, target.to(logits.dtype)).flatten(1).mean(1)


def per_sample_dice_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE + (1 - soft Dice) per sample (our recipe's choice, not the papers': the Dice term keeps small nodules
    from being under-segmented at the 0.5 threshold): (B, 1, H, W) x2 -> (B,)."""
    return per_sample_bce(logits, target) + per_sample_dice_loss(logits, target)


FUSION_LOSSES = {"bce": per_sample_bce, "dice": per_sample_dice_loss, "dicebce": per_sample_dice_bce}


def annotation_fusion_loss(
    logits: torch.Tensor, masks: torch.Tensor, n_readers: torch.Tensor, fusion: str = "bce"
) -> torch.Tensor:
    """Multiple Annotation Fusion Loss Phi (Eq. 3): per sample, the mean of the loss between ``logits``
    (B, 1, H, W) and each real mask in ``masks`` (B, R, H, W); padded slots (index >= n_readers) are ignored.
    Returns the batch mean (scalar)."""
    loss_fn = FUSION_LOSSES[fusion]
    b, r = masks.shape[:2]
    valid = reader_validity(n_readers, r).float()  # (B, R)
    if torch.any(valid.sum(1) == 0):
        raise ValueError("Every training sample needs at least one real annotation (n_readers >= 1).")
    expanded = logits.unsqueeze(1).expand(-1, r, -1, -1, -1).reshape(b * r, 1, *logits.shape[-2:])
    losses = loss_fn(expanded, masks.reshape(b * r, 1, *masks.shape[-2:])).view(b, r)
    return ((losses * valid).sum(1) / valid.sum(1)).mean()


def pick_random_annotation(
    masks: torch.Tensor, n_readers: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One real annotation per sample, uniformly among its n_readers: (B, R, H, W) -> (B, 1, H, W)."""
    draw = torch.rand(len(n_readers), generator=generator, device=masks.device if generator is None else "cpu")
    index = (draw.to(masks.device) * n_readers.float()).long().clamp(max=n_readers - 1)
    return masks[torch.arange(len(index), device=masks.device), index].unsqueeze(1)


@dataclass
class UGSNetLoss:
    """Total UGS-Net loss (Eq. 4). ``__call__(outputs, batch) -> (loss, parts)``.

    ``outputs``: logits {"final", "union", "intersection", "uni"}; ``batch``: "masks" (B, 4, H, W),
    "n_readers" (B,), "union", "intersection" (B, 1, H, W).
    """

    alpha_mcm: float = 0.5
    alpha_uni: float = 0.5
    alpha_final: float = 1.0
    fusion: str = "bce"
    annotations: str = "all"  # "all": fusion loss (UGS-Net); "random": one random annotation (UGS-Net-V1)
    # Target of the final output X_S: "annotations" as Eq. 3 (the same annotations as Phi_a), or "label1", the
    # crop's own reader, the target of the baselines and of the evaluation (our CPU-budget recipe's choice).
    final_target: str = "annotations"

    def __post_init__(self):
        if self.fusion not in FUSION_LOSSES:
            raise ValueError(f"fusion must be one of {sorted(FUSION_LOSSES)}, got {self.fusion!r}")
        if self.annotations not in ("all", "random"):
            raise ValueError(f"annotations must be 'all' or 'random', got {self.annotations!r}")
        if self.final_target not in ("annotations", "label1"):
            raise ValueError(f"final_target must be 'annotations' or 'label1', got {self.final_target!r}")

    def __call__(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]):
        masks, n_readers = batch["masks"], batch["n_readers"]
        mcm = (
            per_sample_bce(outputs["union"], batch["union"]).mean()
            + per_sample_bce(outputs["intersection"], batch["intersection"]).mean()
        )
        if self.annotations == "all":
            phi_a = annotation_fusion_loss(outputs["uni"], masks, n_readers, self.fusion)
            phi_b = annotation_fusion_loss(outputs["final"], masks, n_readers, self.fusion)
        else:
            single = pick_random_annotation(masks, n_readers)
            one = torch.ones_like(n_readers)
            phi_a = annotation_fusion_loss(outputs["uni"], single, one, self.fusion)
            phi_b = annotation_fusion_loss(outputs["final"], single, one, self.fusion)
        if self.final_target == "label1":
            phi_b = annotation_fusion_loss(outputs["final"], masks[:, :1], torch.ones_like(n_readers), self.fusion)
        total = self.alpha_mcm * mcm + self.alpha_uni * phi_a + self.alpha_final * phi_b
        return total, {"loss_mcm": float(mcm.detach()), "phi_a": float(phi_a.detach()), "phi_b": float(phi_b.detach())}
