"""Joint training of the classification and segmentation heads with the generic trainer (:mod:`lungai.training`).

Each batch mixes IQ-OTH/NCCD snapshots (classification targets only) and LIDC nodule crops (segmentation
targets only), see :mod:`lungai.nlb.data`. Loss per batch:
``BCE(class_logit, label)`` over the snapshots + ``seg_weight * (BCE + soft Dice)(seg_logits, mask)`` over the
crops (and, with ``normal_empty_masks``, over the normal snapshots with empty masks); a term is left out when
its samples are absent from the batch.

Cross-validation protocol (:func:`make_folds`): IQ-OTH/NCCD snapshots in ``n_folds`` folds stratified by
category (no patient ids exist), LIDC crops in ``n_folds`` folds by patient id, both shuffled with ``seed``.
Training on fold k's complement uses at most ``max_crops`` crops (chosen with ``seed``) to fit the CPU budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from lungai.checkpoint import load_model, save_checkpoint
from lungai.nlb.data import (
    NLBDataset,
    NoduleCrops,
    Snapshot,
    group_folds,
    list_snapshots,
    load_nodule_crops,
    load_snapshots,
    stratified_folds,
    subsample,
)
from lungai.nlb.evaluation import calibrate_seg_threshold, predict, seg_threshold_of
from lungai.progress import CancelToken, ProgressCallback
from lungai.training import TrainConfig, TrainResult, train

MODEL_NAME = "nlb_unet"


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice per sample (smoothed by ``eps``), averaged; logits and target (B, 1, H, W)."""
    prob = logits.sigmoid().flatten(1)
    target = target.flatten(1)
    dice = (2 * (prob * target).sum(1) + eps) / (prob.sum(1) + target.sum(1) + eps)
    return (1 - dice).mean()


class NLBTask:
    """:class:`lungai.training.TrainTask` for :class:`lungai.nlb.networks.NLBUNet` on :class:`NLBDataset`."""

    def __init__(self, seg_weight: float = 1.0) -> None:
        self.seg_weight = seg_weight

    def losses(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = model(batch["image"])
        labelled, masked = batch["has_label"] > 0, batch["has_mask"] > 0
        zero = out["class_logit"].sum() * 0.0
        losses = {"class": zero, "seg": zero}
        if labelled.any():
            losses["class"] = F.binary_cross_entropy_with_logits(
                out["class_logit"][labelled], batch["label"][labelled].float()
            )
        if masked.any():
            logits, mask = out["seg_logits"][masked], batch["mask"][masked]
            losses["seg"] = F.binary_cross_entropy_with_logits(logits, mask) + soft_dice_loss(logits, mask)
        return losses

    def training_step(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        losses = self.losses(model, batch)
        return losses["class"] + self.seg_weight * losses["seg"]

    def validation_step(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        losses = self.losses(model, batch)
        return {"loss": float(losses["class"] + self.seg_weight * losses["seg"])}


@dataclass
class Folds:
    snapshots: list[Snapshot]
    snapshot_folds: np.ndarray
    crop_patient_ids: np.ndarray
    crop_folds: np.ndarray
    n_folds: int
    seed: int

    def describe(self) -> dict[str, Any]:
        """Counts per fold, for the record next to the results."""
        labels = np.array([s.label for s in self.snapshots])
        return {
            "seed": self.seed,
            "n_folds": self.n_folds,
            "folds": [
                {
                    "fold": k,
                    "snapshots": int((self.snapshot_folds == k).sum()),
                    "snapshots_with_neoplasm": int(labels[self.snapshot_folds == k].sum()),
                    "crops": int((self.crop_folds == k).sum()),
                    "crop_patients": int(len(np.unique(self.crop_patient_ids[self.crop_folds == k]))),
                }
                for k in range(self.n_folds)
            ],
        }


def make_folds(iqoth_dir: str | Path, lidc_path: str | Path, n_folds: int = 2, seed: int = 0) -> Folds:
    snapshots = list_snapshots(iqoth_dir)
    categories = np.array([s.category for s in snapshots])
    with np.load(lidc_path) as data:
        patient_ids = data["patient_id"]
    return Folds(
        snapshots,
        stratified_folds(categories, n_folds, seed),
        patient_ids,
        group_folds(patient_ids, n_folds, seed),
        n_folds,
        seed,
    )


@dataclass
class LoadedData:
    """All snapshots and crops of a :class:`Folds` as network input, loaded once."""

    snapshot_images: torch.Tensor
    snapshot_labels: np.ndarray
    crops: NoduleCrops


def load_data(folds: Folds, lidc_path: str | Path, size: int) -> LoadedData:
    return LoadedData(
        load_snapshots(folds.snapshots, size),
        np.array([s.label for s in folds.snapshots]),
        load_nodule_crops(lidc_path, size),
    )


def training_dataset(
    folds: Folds, data: LoadedData, held_out: int | None, max_crops: int | None, normal_empty_masks: bool = False
) -> NLBDataset:
    """Training data: every fold but ``held_out`` (all data when None), at most ``max_crops`` crops; see
    :class:`NLBDataset` for ``normal_empty_masks``."""
    snap_idx = np.flatnonzero(folds.snapshot_folds != held_out)
    crop_idx = subsample(np.flatnonzero(folds.crop_folds != held_out), max_crops, folds.seed)
    return NLBDataset(
        data.snapshot_images[snap_idx],
        data.snapshot_labels[snap_idx],
        data.crops.images[crop_idx],
        data.crops.masks[crop_idx],
        flip=True,
        normal_empty_masks=normal_empty_masks,
        seed=folds.seed,
    )


def train_nlb(
    model: nn.Module,
    model_config: dict[str, Any],
    dataset: NLBDataset,
    config: TrainConfig,
    *,
    training_data: str,
    seg_weight: float = 1.0,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> TrainResult:
    """Train with the generic trainer, no validation set (fixed budget: the last epoch is kept), then
    calibrate the segmentation threshold on the training crops into ``last.pt`` (:func:`calibrate_checkpoint`)."""
    result = train(
        model,
        NLBTask(seg_weight),
        dataset,
        None,
        config,
        model_name=MODEL_NAME,
        model_config=model_config,
        training_data=training_data,
        progress=progress,
        cancel=cancel,
    )
    if result.last_checkpoint is not None:
        calibrate_checkpoint(result.last_checkpoint, dataset)
    return result


def calibrate_checkpoint(path: str | Path, dataset: NLBDataset) -> float:
    """Store in the checkpoint's header ``extra.seg_threshold`` the threshold with the best mean Dice on the
    dataset's segmentation crops (training data only); returns it."""
    model, header = load_model(path, expected_model=MODEL_NAME)
    crops = dataset.has_label == 0
    if not crops.any():
        return seg_threshold_of(header)
    _, maps = predict(model, dataset.images[crops])
    threshold = calibrate_seg_threshold(maps, dataset.masks[crops, 0].numpy() > 0)
    save_checkpoint(
        path,
        model,
        model_name=header["model_name"],
        config=header["config"],
        version=header["version"],
        training_data=header["training_data"],
        metrics=header["metrics"],
        extra={**header.get("extra", {}), "seg_threshold": threshold},
    )
    return threshold
