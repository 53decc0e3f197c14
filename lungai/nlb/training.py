"""Training NeoplasmNLB on whole slices with the shared trainer (:mod:`lungai.training`) and recipe.

Data (:mod:`lungai.nlb.data`): IQ-OTH/NCCD snapshots (classification targets; normal ones also empty segmentation
targets) and normal snapshots with an inserted real LIDC-IDRI nodule (label 1 and the exact inserted mask), all
framed to 192 x 192 (:mod:`lungai.nlb.framing`) and augmented by :mod:`lungai.augmentation` (left-right flips only:
the snapshots are always anterior up; small rotations and scaling; intensity jitter and noise).

Loss per batch: ``BCE(class_logit, label)`` over all samples + ``seg_weight * DiceCE(seg_logits, mask)`` (MONAI
``DiceCELoss``, sigmoid, Dice over the whole batch so that empty masks of normal slices count without a 0/0) over the
samples with a mask; a term is left out when its samples are absent from the batch. Two weights, both measured
needs. The class BCE is a weighted mean over the samples (:func:`class_weights`): real neoplasm snapshots weigh 1,
the inserted-nodule slices together weigh ``inserted_class_share`` (default :data:`INSERTED_CLASS_SHARE`) times the
normal snapshots they are made from, and the normal snapshots weigh 1 + that share, so each normal snapshot is
balanced against its copies with a nodule while the real snapshots keep their own class ratio. (Earlier runs:
unweighted, the inserted nodules made positives 3.6 times as many as normal slices and a 2-epoch pilot called 47 of
67 held-out normal snapshots positive; positives weighted by negatives / positives of all samples, 9 epochs reached
F1 0.858 but with recall 0.83, the real neoplasm snapshots weighing only 0.28 each.) The segmentation
BCE weighs neoplasm pixels by :data:`SEG_POS_WEIGHT` (an inserted nodule covers 5 to 200 of the 36,864 pixels;
with plain DiceCE a 2-epoch pilot segmented nothing at any threshold).

Split (:func:`make_split`, every number in the returned record): snapshots in ``n_folds`` folds stratified by
category (IQ-OTH/NCCD has no patient ids, so one patient's slices can fall on both sides), fold ``held_out`` is the
test set; a tenth of the remaining snapshots is the validation set for early stopping and the segmentation threshold.
LIDC nodules in ``n_folds`` folds by patient; the held-out fold's patients are never inserted during training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from lungai.augmentation import AugmentedDataset, AugmentSettings
from lungai.checkpoint import load_model, save_checkpoint
from lungai.nlb.data import WholeSliceDataset, list_snapshots, load_nodules, snapshot_unit
from lungai.nlb.evaluation import calibrate_seg_threshold, classification_report, predict, segmentation_report
from lungai.progress import CancelToken, ProgressCallback
from lungai.splits import fold_indices, group_folds, stratified_folds, validation_split
from lungai.training import TrainConfig, train

MODEL_NAME = "nlb_unet"
SEG_POS_WEIGHT = 20.0  # BCE weight of neoplasm pixels (about 0.1 % of an inserted-nodule slice)
INSERTED_CLASS_SHARE = 0.5  # class-loss weight of all inserted-nodule slices relative to the normal snapshots
AUGMENTATION = AugmentSettings(flip_axes=(1,), rotate_degrees=10.0, scale=0.1)


class NLBTask:
    """:class:`lungai.training.TrainTask` for :class:`lungai.nlb.networks.NLBUNet` on :class:`WholeSliceDataset`."""

    def __init__(self, seg_weight: float = 1.0, class_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> None:
        from monai.losses import DiceCELoss

        self.seg_weight = seg_weight
        self.class_weights = class_weights  # per sample: (real normal, real neoplasm, inserted nodule)
        self.seg_loss = DiceCELoss(sigmoid=True, batch=True, weight=torch.tensor([SEG_POS_WEIGHT]))

    def losses(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = model(batch["image"])
        label, inserted = batch["label"].float(), batch["inserted"].float()
        negative, positive, nodule = self.class_weights
        weight = (1 - inserted) * (negative * (1 - label) + positive * label) + inserted * nodule
        bce = F.binary_cross_entropy_with_logits(out["class_logit"], label, reduction="none")
        losses = {"class": (weight * bce).sum() / weight.sum()}
        masked = batch["has_mask"] > 0
        losses["seg"] = (
            self.seg_loss(out["seg_logits"][masked], batch["mask"][masked])
            if masked.any()
            else out["seg_logits"].sum() * 0.0
        )
        return losses

    def training_step(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        losses = self.losses(model, batch)
        return losses["class"] + self.seg_weight * losses["seg"]

    def validation_step(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        losses = self.losses(model, batch)
        return {"loss": float(losses["class"] + self.seg_weight * losses["seg"]), "class_loss": float(losses["class"])}


def uses_lung_view(model: nn.Module) -> bool:
    """True for a network with two input channels: the snapshot view and the lung view (:mod:`lungai.nlb.lungview`)."""
    return getattr(model, "in_channels", 1) == 2


def class_weights(dataset: WholeSliceDataset, inserted_share: float) -> tuple[float, float, float]:
    """Per-sample weights of the class loss (real normal, real neoplasm, inserted nodule); see the module docstring.

    The inserted-nodule slices together weigh ``inserted_share`` times the normal snapshots they were made from, and
    the normal snapshots get the same weight again on top of their own, so the pairs (normal, same with a nodule)
    are balanced and the real snapshots keep their own class ratio."""
    normals = int((dataset.labels == 0).sum())
    if dataset.n_inserted == 0 or normals == 0:
        return 1.0, 1.0, 1.0
    return 1.0 + inserted_share, 1.0, inserted_share * normals / dataset.n_inserted


@dataclass
class Split:
    """Indices into the snapshot list and the nodule list; ``test``/``test_nodules`` empty when nothing is held out."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    train_nodules: np.ndarray
    test_nodules: np.ndarray
    record: dict[str, Any] = field(default_factory=dict)


def make_split(
    categories: np.ndarray, nodule_patients: np.ndarray, n_folds: int, held_out: int | None, seed: int
) -> Split:
    """The split of the module docstring (``held_out`` None: everything but the validation tenth trains)."""
    categories, nodule_patients = np.asarray(categories), np.asarray(nodule_patients)
    snapshot_folds = stratified_folds(categories, n_folds, seed)
    nodule_folds = group_folds(nodule_patients, n_folds, seed)
    if held_out is None:
        rest, test = np.arange(len(categories)), np.array([], dtype=int)
        train_nodules, test_nodules = np.arange(len(nodule_patients)), np.array([], dtype=int)
    else:
        rest, test = fold_indices(snapshot_folds, held_out)
        train_nodules, test_nodules = fold_indices(nodule_folds, held_out)
    fit, validation = validation_split(np.arange(len(rest)), 0.1, seed)
    train_idx, val_idx = rest[fit], rest[validation]
    record = {
        "snapshots": "IQ-OTH/NCCD, folds stratified by category (no patient ids: slices of one patient can be on "
        "both sides)",
        "n_folds": n_folds,
        "held_out_fold": held_out,
        "seed": seed,
        "train_snapshots": int(len(train_idx)),
        "validation_snapshots": int(len(val_idx)),
        "test_snapshots": int(len(test)),
        "test_snapshots_with_neoplasm": int((categories[test] != "normal").sum()),
        "nodules": "LIDC-IDRI, folds by patient",
        "train_nodules": int(len(train_nodules)),
        "train_nodule_patients": int(len(np.unique(nodule_patients[train_nodules]))),
        "test_nodules": int(len(test_nodules)),
        "test_nodule_patients": int(len(np.unique(nodule_patients[test_nodules]))),
    }
    return Split(train_idx, val_idx, test, train_nodules, test_nodules, record)


@dataclass
class NLBData:
    """Everything a run reads, loaded once: snapshot grey / 255, labels, categories, nodules and their patients."""

    units: list[np.ndarray]
    labels: np.ndarray
    categories: np.ndarray
    nodules: list
    nodule_patients: np.ndarray

    @classmethod
    def load(cls, iqoth_dir: str | Path, lidc_path: str | Path) -> NLBData:
        snapshots = list_snapshots(iqoth_dir)
        nodules, patients = load_nodules(lidc_path)
        return cls(
            [snapshot_unit(s.path) for s in snapshots],
            np.array([s.label for s in snapshots]),
            np.array([s.category for s in snapshots]),
            nodules,
            patients,
        )

    def dataset(
        self,
        snapshots: np.ndarray,
        nodules: np.ndarray,
        inserted_per_normal: float,
        seed: int,
        degrade_prob: float = 0.0,
        lung_view: bool = False,
    ):
        """:class:`WholeSliceDataset` of the given snapshots, inserting the given nodules into its normal ones."""
        labels = self.labels[snapshots]
        n_inserted = int(round(inserted_per_normal * int((labels == 0).sum())))
        return WholeSliceDataset(
            [self.units[i] for i in snapshots],
            labels,
            [self.nodules[i] for i in nodules],
            n_inserted,
            seed,
            degrade_prob,
            lung_view=lung_view,
        )


def evaluate_split(
    model: nn.Module, data: NLBData, snapshots: np.ndarray, nodules: np.ndarray, seg_threshold: float, seed: int
) -> dict[str, Any]:
    """Classification on the real snapshots and segmentation Dice on one inserted-nodule copy of each normal one
    (nodules drawn from ``nodules``, placement from ``seed``); empty when ``snapshots`` is empty."""
    if len(snapshots) == 0:
        return {}
    dataset = data.dataset(snapshots, nodules, 1.0, seed, lung_view=uses_lung_view(model))
    dataset.texture_real = False  # the real snapshots as `lungai nlb evaluate` and the pipeline see them
    n_real = len(dataset.units)
    samples = [dataset[i] for i in range(len(dataset))]
    images = torch.stack([s["image"] for s in samples])
    probabilities, maps = predict(model, images)
    cls = classification_report(probabilities[:n_real], dataset.labels)
    metrics = {k: cls[k] for k in ("precision", "recall", "f1", "accuracy", "confusion_matrix", "n")}
    if len(samples) > n_real:
        masks = torch.stack([s["mask"][0] for s in samples[n_real:]]).numpy() > 0
        seg = segmentation_report(maps[n_real:], masks, seg_threshold)
        normals = dataset.labels == 0
        metrics.update(
            inserted_dice=seg["dice"],
            inserted_iou=seg["iou"],
            inserted_n=seg["n"],
            inserted_detected=float((probabilities[n_real:] >= 0.5).mean()),
            normal_pixels_segmented=float((maps[:n_real][normals] >= seg_threshold).mean()),
        )
    return metrics


def calibrate_checkpoint(path: str | Path, model: nn.Module, data: NLBData, split: Split, seed: int) -> float:
    """Store in the checkpoint's ``extra.seg_threshold`` the threshold with the best mean Dice over the validation
    snapshots' normal slices (empty masks: Dice 1 when nothing is marked, else 0) and their copies with an inserted
    nodule (training nodules); returns it. Counting the normal slices keeps the threshold from buying nodule Dice
    with false marks on normal lungs (issue 12: at most 0.1 % of a normal CT may be segmented)."""
    _, header = load_model(path, expected_model=MODEL_NAME)
    dataset = data.dataset(split.validation, split.train_nodules, 1.0, seed, lung_view=uses_lung_view(model))
    n_real = len(dataset.units)
    normals = [i for i in range(n_real) if dataset.labels[i] == 0]
    samples = [dataset[i] for i in normals + list(range(n_real, len(dataset)))]
    threshold = 0.5
    if len(samples) > len(normals):
        _, maps = predict(model, torch.stack([s["image"] for s in samples]))
        threshold = calibrate_seg_threshold(maps, torch.stack([s["mask"][0] for s in samples]).numpy() > 0)
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


def train_nlb(
    model: nn.Module,
    model_config: dict[str, Any],
    data: NLBData,
    split: Split,
    config: TrainConfig,
    *,
    inserted_per_normal: float = 1.0,
    seg_weight: float = 1.0,
    degrade_prob: float = 0.5,
    inserted_class_share: float = INSERTED_CLASS_SHARE,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> tuple[Path, float]:
    """Train, keep the epoch ``config.keep`` names (the lowest validation loss, or the last), calibrate its
    segmentation threshold on the validation split.

    Returns (checkpoint path, segmentation threshold). ``config.out_dir`` must be set.
    """
    train_set = AugmentedDataset(
        data.dataset(
            split.train, split.train_nodules, inserted_per_normal, config.seed, degrade_prob, uses_lung_view(model)
        ),
        mask_keys=("mask",),
        settings=AUGMENTATION,
        seed=config.seed,
    )
    val_set = data.dataset(
        split.validation, split.train_nodules, inserted_per_normal, config.seed + 1, lung_view=uses_lung_view(model)
    )
    held_out = split.record["held_out_fold"]
    training_data = (
        f"IQ-OTH/NCCD snapshots ({split.record['train_snapshots']} training, {split.record['validation_snapshots']} "
        f"validation) + {split.record['train_nodules']} LIDC-IDRI nodules inserted into normal snapshots; "
        + (
            "all folds"
            if held_out is None
            else f"held out: snapshot fold {held_out} of {split.record['n_folds']} (stratified by category, "
            f"seed {split.record['seed']}; no patient ids) and the LIDC patients of nodule fold {held_out}"
        )
    )
    result = train(
        model,
        NLBTask(seg_weight, class_weights(train_set.dataset, inserted_class_share)),
        train_set,
        val_set,
        config,
        model_name=MODEL_NAME,
        model_config=model_config,
        training_data=training_data,
        progress=progress,
        cancel=cancel,
    )
    checkpoint = result.best_checkpoint or result.last_checkpoint
    threshold = calibrate_checkpoint(checkpoint, model, data, split, config.seed + 2)
    return Path(checkpoint), threshold
