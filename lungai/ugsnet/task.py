"""Training tasks (lungai.training.TrainTask) and the four models of the comparison.

``MODELS`` maps a model kind to its registered architecture and its training target:
- ``ugsnet``: UGS-Net, full loss with the Multiple Annotation Fusion Loss (all real annotations);
- ``ugsnet_v1``: UGS-Net-V1 (MICCAI 2022): its attention and filter blocks instead of the IUCM, Phi on one
  random real annotation per sample;
- ``unet`` / ``attention_unet``: baselines trained with BCE on Label1 (the crop's own reader), as in
  seed 001 Sec. IV-B.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from lungai.architectures import build_architecture
from lungai.metrics import validation_dice
from lungai.ugsnet.losses import FUSION_LOSSES, UGSNetLoss

# The CPU budget trains UGS-Net with 8x pooled keys/values in the self-attention. The paper's attention attends to
# all positions (attention_pool=1, the architecture's default, used by --paper-schedule); on 64 x 64 maps it costs
# many times the whole Attention U-Net per training step (bench/ugsnet/cost.md).
BUDGET_ATTENTION_POOL = 8

MODELS = {
    "ugsnet": "ugsnet",
    "ugsnet_v1": "ugsnet_v1",
    "unet": "ugsnet_unet",
    "attention_unet": "ugsnet_attention_unet",
    "monai_unet": "ugsnet_monai_unet",
}


def model_config(kind: str, features: Sequence[int], attention_pool: int = BUDGET_ATTENTION_POOL) -> dict:
    """Architecture config stored in checkpoints (JSON-safe). ``attention_pool``: key/value pooling of the
    UGS-Net self-attention (1 = full attention, the paper; see lungai.ugsnet.blocks.SelfAttention2d); always
    stored for the UGS-Nets, so that a checkpoint says which attention it was trained with."""
    if kind not in MODELS:
        raise ValueError(f"unknown model kind {kind!r}; choose one of {sorted(MODELS)}")
    config = {"features": [int(f) for f in features]}
    if kind == "ugsnet":
        config.update(attention_pool=int(attention_pool), attention_scaled=True)
    elif kind == "ugsnet_v1":
        config.update(attention_pool=int(attention_pool))
    return config


def build_model(kind: str, features: Sequence[int], attention_pool: int = BUDGET_ATTENTION_POOL) -> nn.Module:
    return build_architecture(MODELS[kind], model_config(kind, features, attention_pool))


@dataclass
class UGSNetTask:
    """UGS-Net / UGS-Net-V1 training on multi-reader batches (see :class:`UGSNetLoss`)."""

    loss: UGSNetLoss = field(default_factory=UGSNetLoss)

    def training_step(self, model: nn.Module, batch: dict) -> torch.Tensor:
        total, _ = self.loss(model(batch["image"]), batch)
        return total

    def validation_step(self, model: nn.Module, batch: dict) -> dict[str, float]:
        out = model(batch["image"])
        total, parts = self.loss(out, batch)
        return {
            "loss": float(total),
            "dice": validation_dice(out["final"], batch["label1"]),
            "dice_union": validation_dice(out["union"], batch["union"]),
            "dice_intersection": validation_dice(out["intersection"], batch["intersection"]),
            **parts,
        }


@dataclass
class Label1Task:
    """Single-annotation baseline: ``loss`` (a key of :data:`lungai.ugsnet.losses.FUSION_LOSSES`: BCE as seed 001
    Sec. IV-B, Dice, or their sum) between the final logits and Label1."""

    loss: str = "bce"

    def _loss(self, logits: torch.Tensor, label1: torch.Tensor) -> torch.Tensor:
        if self.loss == "bce":
            return F.binary_cross_entropy_with_logits(logits, label1)
        return FUSION_LOSSES[self.loss](logits, label1).mean()

    def training_step(self, model: nn.Module, batch: dict) -> torch.Tensor:
        return self._loss(model(batch["image"])["final"], batch["label1"])

    def validation_step(self, model: nn.Module, batch: dict) -> dict[str, float]:
        logits = model(batch["image"])["final"]
        return {
            "loss": float(self._loss(logits, batch["label1"]).detach()),
            "dice": validation_dice(logits, batch["label1"]),
        }


def make_task(
    kind: str,
    fusion: str = "bce",
    alphas: tuple[float, float, float] = (0.5, 0.5, 1.0),
    final_target: str = "annotations",
):
    """Training task of ``kind``; ``fusion`` is the per-annotation loss (baselines: their loss on Label1) and
    ``final_target`` the UGS-Nets' target of the final output (see :class:`lungai.ugsnet.losses.UGSNetLoss`)."""
    if kind == "ugsnet":
        return UGSNetTask(UGSNetLoss(*alphas, fusion=fusion, annotations="all", final_target=final_target))
    if kind == "ugsnet_v1":
        return UGSNetTask(UGSNetLoss(*alphas, fusion=fusion, annotations="random", final_target=final_target))
    if kind in ("unet", "attention_unet", "monai_unet"):
        if fusion not in FUSION_LOSSES:
            raise ValueError(f"loss must be one of {sorted(FUSION_LOSSES)}, got {fusion!r}")
        return Label1Task(fusion)
    raise ValueError(f"unknown model kind {kind!r}; choose one of {sorted(MODELS)}")
