"""Batched UGS-Net inference on prepared crops and the Multi-Confidence Mask as binary regions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lungai.progress import CancelToken, ProgressCallback, check_cancel, report
from lungai.tta import flip_average
from lungai.ugsnet.preprocess import normalise_hu


@dataclass
class ConfidenceMasks:
    """Binary results per crop (N, H, W): final X_S, high confidence (HC), low confidence (LC), union."""

    final: np.ndarray
    high: np.ndarray
    low: np.ndarray
    union: np.ndarray


@torch.no_grad()
def predict_probabilities(
    model: nn.Module,
    images_hu: np.ndarray,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 32,
    tta: bool = False,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> dict[str, np.ndarray]:
    """Sigmoid outputs of every head of ``model`` for HU crops (N, H, W) on the input grid -> {head: (N, H, W)};
    ``tta``: the mean over the crop as given and flipped left-right, up-down and both (:mod:`lungai.tta`)."""
    model.eval().to(device)
    outputs: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(images_hu), batch_size):
        check_cancel(cancel)
        x = torch.from_numpy(normalise_hu(images_hu[start : start + batch_size])[:, None]).to(device)
        probabilities = flip_average(model, x) if tta else {k: torch.sigmoid(v) for k, v in model(x).items()}
        for name, probability in probabilities.items():
            outputs.setdefault(name, []).append(probability[:, 0].float().cpu().numpy())
        report(progress, min(1.0, (start + batch_size) / len(images_hu)), "segmenting nodules")
    return {name: np.concatenate(parts) for name, parts in outputs.items()}


def confidence_masks(probabilities: dict[str, np.ndarray], threshold: float = 0.5) -> ConfidenceMasks:
    """Threshold the heads into MCM regions, with HC inside the union by construction.

    union = p_union > t (or the final mask where the model has no union head); HC = p_intersection > t AND
    union; LC = union AND NOT HC. The heads are trained independently (seed 001), so the raw intersection
    head may stray outside the union; the clinical regions never do.
    """
    final = probabilities["final"] > threshold
    if "union" not in probabilities:
        return ConfidenceMasks(final, final.copy(), np.zeros_like(final), final.copy())
    union = probabilities["union"] > threshold
    high = (probabilities["intersection"] > threshold) & union
    return ConfidenceMasks(final, high, union & ~high, union)
