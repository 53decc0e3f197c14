"""Segmentation and classification metrics on numpy masks.

Overlap and surface metrics are thin wrappers over MONAI's (``compute_dice``, ``compute_iou``,
``compute_surface_dice``, ``compute_hausdorff_distance``, ``compute_average_surface_distance``)
for one binary mask pair, 2-D or 3-D, with optional spacing in numpy axis order. Conventions for
empty masks: Dice and IoU are 1 when both masks are empty (and 0 when only one is); surface
metrics are NaN when either mask is empty (no surface to measure).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import torch


def _pair(pred: np.ndarray, ref: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    pred, ref = np.asarray(pred, dtype=bool), np.asarray(ref, dtype=bool)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction {pred.shape} and reference {ref.shape} differ in shape")
    as_tensor = lambda a: torch.from_numpy(a.astype(np.float32))[None, None]  # noqa: E731  (B=1, C=1, *spatial)
    return as_tensor(pred), as_tensor(ref)


def _spacing(spacing: Sequence[float] | None, ndim: int) -> list[float] | None:
    if spacing is None:
        return None
    if len(spacing) != ndim:
        raise ValueError(f"spacing {tuple(spacing)} needs {ndim} values, one per array axis")
    return [float(s) for s in spacing]


@contextlib.contextmanager
def _monai_surface_warnings_silenced() -> Iterator[None]:
    """MONAI 1.5+ warns about an argument that its own surface-distance code passes."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy", category=FutureWarning)
        yield


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    from monai.metrics import compute_dice  # MONAI imports take seconds: only where a metric is computed

    y_pred, y = _pair(pred, ref)
    return float(compute_dice(y_pred, y, include_background=True, ignore_empty=False))


def iou(pred: np.ndarray, ref: np.ndarray) -> float:
    from monai.metrics import compute_iou

    y_pred, y = _pair(pred, ref)
    return float(compute_iou(y_pred, y, include_background=True, ignore_empty=False))


def nsd(pred: np.ndarray, ref: np.ndarray, tolerance_mm: float = 1.0, spacing: Sequence[float] | None = None) -> float:
    """Normalised surface Dice: share of both boundaries within ``tolerance_mm`` of the other.

    MONAI's pooled formula: (|S_p within tol of S_r| + |S_r within tol of S_p|) / (|S_p| + |S_r|).
    """
    from monai.metrics import compute_surface_dice

    y_pred, y = _pair(pred, ref)
    with _monai_surface_warnings_silenced():
        value = compute_surface_dice(
            y_pred, y, class_thresholds=[tolerance_mm], include_background=True, spacing=_spacing(spacing, y.ndim - 2)
        )
    return float(value)


def hausdorff(
    pred: np.ndarray, ref: np.ndarray, percentile: float | None = None, spacing: Sequence[float] | None = None
) -> float:
    """Symmetric Hausdorff distance (``percentile=95`` gives HD95), in mm when spacing is given."""
    from monai.metrics import compute_hausdorff_distance

    y_pred, y = _pair(pred, ref)
    if not y_pred.any() or not y.any():
        return float("nan")
    with _monai_surface_warnings_silenced():
        return float(
            compute_hausdorff_distance(
                y_pred, y, include_background=True, percentile=percentile, spacing=_spacing(spacing, y.ndim - 2)
            )
        )


def mean_surface_distance(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    """Symmetric mean surface distance, in mm when spacing is given."""
    from monai.metrics import compute_average_surface_distance

    y_pred, y = _pair(pred, ref)
    if not y_pred.any() or not y.any():
        return float("nan")
    with _monai_surface_warnings_silenced():
        return float(
            compute_average_surface_distance(
                y_pred, y, include_background=True, symmetric=True, spacing=_spacing(spacing, y.ndim - 2)
            )
        )


def relative_volume_error(pred: np.ndarray, ref: np.ndarray) -> float:
    """(|pred| - |ref|) / |ref|; NaN when the reference is empty."""
    reference = int(np.count_nonzero(ref))
    return float("nan") if reference == 0 else (int(np.count_nonzero(pred)) - reference) / reference


def confusion_counts(pred: np.ndarray, ref: np.ndarray) -> dict[str, int]:
    pred, ref = np.asarray(pred, dtype=bool), np.asarray(ref, dtype=bool)
    return {
        "tp": int(np.count_nonzero(pred & ref)),
        "fp": int(np.count_nonzero(pred & ~ref)),
        "tn": int(np.count_nonzero(~pred & ~ref)),
        "fn": int(np.count_nonzero(~pred & ref)),
    }


def _ratio(numerator: float, denominator: float, empty: float) -> float:
    return numerator / denominator if denominator else empty


def pixel_metrics(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Accuracy, precision, recall (sensitivity), specificity, Dice and Jaccard from pixel counts.

    A ratio whose denominator is zero is 1 when its numerator cannot be wrong (for example
    precision with no predicted pixels and no reference pixels) and 0 otherwise.
    """
    c = confusion_counts(pred, ref)
    tp, fp, tn, fn = c["tp"], c["fp"], c["tn"], c["fn"]
    nothing = float(tp + fp + fn == 0)
    return {
        "accuracy": _ratio(tp + tn, tp + fp + tn + fn, 1.0),
        "precision": _ratio(tp, tp + fp, nothing),
        "recall": _ratio(tp, tp + fn, nothing),
        "specificity": _ratio(tn, tn + fp, 1.0),
        "dice": _ratio(2 * tp, 2 * tp + fp + fn, 1.0),
        "jaccard": _ratio(tp, tp + fp + fn, 1.0),
    }


def classification_metrics(predicted: Sequence[int], truth: Sequence[int]) -> dict[str, object]:
    """Binary classification: precision, recall, F1, accuracy and the confusion matrix.

    The matrix is ``[[tn, fp], [fn, tp]]`` (rows: truth 0/1, columns: prediction 0/1).
    """
    p, t = np.asarray(predicted, dtype=bool), np.asarray(truth, dtype=bool)
    c = confusion_counts(p, t)
    precision = _ratio(c["tp"], c["tp"] + c["fp"], 0.0)
    recall = _ratio(c["tp"], c["tp"] + c["fn"], 0.0)
    return {
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * precision * recall, precision + recall, 0.0),
        "accuracy": _ratio(c["tp"] + c["tn"], len(p), 0.0),
        "confusion_matrix": [[c["tn"], c["fp"]], [c["fn"], c["tp"]]],
    }


def validation_dice(logits: torch.Tensor, target: torch.Tensor) -> float:
    """The trainers' validation Dice: hard Dice (logits > 0) per sample, an empty prediction of an empty target
    counting 1, averaged over the batch (MONAI ``compute_dice`` on (B, C, ...) tensors)."""
    from monai.metrics import compute_dice

    prediction = (logits.detach() > 0).to(target.dtype)
    return float(compute_dice(prediction, target, include_background=True, ignore_empty=False).mean())
