"""Predictions and metrics: precision, recall, F1, accuracy, confusion matrix; per-image mean IoU and Dice.

Classification metrics come from :func:`lungai.metrics.classification_metrics` (confusion matrix
``[[tn, fp], [fn, tp]]``); segmentation metrics are the means over images of :func:`lungai.metrics.iou` and
:func:`lungai.metrics.dice` (the paper's mIoU and mDice), thresholding probabilities at 0.5.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lungai.io import write_table_csv
from lungai.metrics import classification_metrics, dice, iou
from lungai.nlb.data import list_snapshots, read_snapshot
from lungai.outputs import check_outputs
from lungai.progress import CancelToken, ProgressCallback, check_cancel, report
from lungai.tta import flip_average

TTA_FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,))  # the image as given and flipped left-right


@torch.no_grad()
def predict(
    model: nn.Module,
    images: torch.Tensor,
    *,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    tta: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """images (N, 1, S, S) -> neoplasm probabilities (N,) and segmentation probabilities (N, S, S).

    ``tta``: the mean over the image as given and flipped left-right (:data:`TTA_FLIPS`, :mod:`lungai.tta`); only
    left-right, because the snapshots are always shown anterior up and training flips them left-right only."""
    model.eval().to(device)
    probabilities, maps = [], []
    for start in range(0, len(images), batch_size):
        check_cancel(cancel)
        batch = images[start : start + batch_size].to(device)
        if tta:
            out = flip_average(model, batch, TTA_FLIPS, per_image=("class_logit",))
        else:
            out = {k: v.sigmoid() for k, v in model(batch).items()}
        probabilities.append(out["class_logit"].cpu())
        maps.append(out["seg_logits"][:, 0].cpu())
        report(progress, min(start + batch_size, len(images)) / len(images), "classifying slices")
    return torch.cat(probabilities).numpy(), torch.cat(maps).numpy()


def classification_report(probabilities: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    metrics = classification_metrics(np.asarray(probabilities) >= threshold, np.asarray(labels))
    return {**metrics, "threshold": threshold, "n": int(len(labels))}


def segmentation_report(probability_maps: np.ndarray, masks: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    predicted = np.asarray(probability_maps) >= threshold
    masks = np.asarray(masks, dtype=bool)
    return {
        "iou": float(np.mean([iou(p, m) for p, m in zip(predicted, masks)])),
        "dice": float(np.mean([dice(p, m) for p, m in zip(predicted, masks)])),
        "n": int(len(masks)),
    }


SEG_THRESHOLD_GRID = tuple(round(0.05 * k, 2) for k in range(1, 20))


def calibrate_seg_threshold(probability_maps: np.ndarray, masks: np.ndarray) -> float:
    """The threshold of :data:`SEG_THRESHOLD_GRID` with the best mean Dice over ``masks`` (per image; an empty
    prediction of an empty mask scores 1).

    The weighted training loss (:mod:`lungai.nlb.training`) does not make 0.5 the best cut of the segmentation
    probabilities, so the threshold is calibrated on validation slices and stored in the checkpoint
    (:func:`seg_threshold_of`).
    """
    scores = [segmentation_report(probability_maps, masks, t)["dice"] for t in SEG_THRESHOLD_GRID]
    return SEG_THRESHOLD_GRID[int(np.argmax(scores))]


def seg_threshold_of(header: dict[str, Any]) -> float:
    """The segmentation threshold stored in a checkpoint header (0.5 when none was calibrated)."""
    return float(header.get("extra", {}).get("seg_threshold", 0.5))


def evaluate_snapshot_folder(
    model: nn.Module,
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    threshold: float = 0.5,
    seg_threshold: float = 0.5,
    fold: int | None = None,
    n_folds: int = 5,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    overwrite: bool = False,
    about: dict[str, Any] | None = None,
    tta: bool = False,
) -> dict[str, Any]:
    """Classify and segment every image of a folder in the ``iqoth_nccd`` layout (with ``fold``: only the
    snapshots of that fold of :func:`lungai.splits.stratified_folds` by category, ``n_folds`` and ``seed``, the
    split of :func:`lungai.nlb.training.make_split`); write ``metrics.json`` and ``predictions.csv`` to ``out_dir``
    and return the metrics.

    Per image the CSV also gives the segmented pixels (inside the body, on positive images: what the pipeline
    reports) and the pixels the network marks outside the body before that restriction. ``tta``: left-right flip
    averaging (:func:`predict`).
    """
    from lungai.nlb.pipeline import score_slices
    from lungai.nlb.regions import findings_region
    from lungai.splits import stratified_folds

    out_dir = Path(out_dir)
    metrics_path = out_dir / "metrics.json"
    check_outputs([metrics_path], overwrite)
    snapshots = list_snapshots(data_dir)
    if fold is not None:
        folds = stratified_folds(np.array([s.category for s in snapshots]), n_folds, seed)
        snapshots = [s for s, f in zip(snapshots, folds) if f == fold]
    report(progress, 0.0, f"reading {len(snapshots)} images")
    rows = []
    for k, snapshot in enumerate(snapshots):
        check_cancel(cancel)
        grey = read_snapshot(snapshot.path)
        scores = score_slices(model, grey, threshold=threshold, seg_threshold=seg_threshold, device=device, tta=tta)
        raw = score_slices(
            model, grey, threshold=0.0, seg_threshold=seg_threshold, device=device, restrict=False, tta=tta
        )
        body = findings_region(grey[None]).body[0]
        rows.append(
            {
                "file": str(snapshot.path.relative_to(Path(data_dir))),
                "category": snapshot.category,
                "label": snapshot.label,
                "probability": round(float(scores.probabilities[0]), 6),
                "decision": int(scores.decisions[0]),
                "segmented_pixels": int(scores.labelmap.sum()),
                "segmented_outside_body": int((scores.labelmap[0].astype(bool) & ~body).sum()),
                "network_pixels_outside_body": int((raw.labelmap[0].astype(bool) & ~body).sum()),
            }
        )
        report(progress, (k + 1) / len(snapshots), "classifying images")
    probabilities = np.array([r["probability"] for r in rows])
    labels = np.array([s.label for s in snapshots])
    metrics = {
        **classification_report(probabilities, labels, threshold),
        "data": str(data_dir),
        "fold": fold if fold is None else f"{fold} of {n_folds} (stratified by category, seed {seed})",
        "seg_threshold": seg_threshold,
        "test_time_flips": bool(tta),
        "images_segmented_outside_body": int(sum(r["segmented_outside_body"] > 0 for r in rows)),
        "images_with_network_output_outside_body": int(sum(r["network_pixels_outside_body"] > 0 for r in rows)),
        **(about or {}),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
    write_table_csv(out_dir / "predictions.csv", rows, overwrite=overwrite)
    return metrics
