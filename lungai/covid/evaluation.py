"""Metrics of the two stages on held-out slices (seed 003 Sec. 4.2, Fig. 13).

The six metrics (accuracy, precision, specificity, recall, Dice, Jaccard) come from
:func:`lungai.metrics.pixel_metrics` on each slice's own pixel grid (predictions are resized
back from the model grid and thresholded at 0.5), then averaged over slices. The paper does not
say whether it averages per slice or pools pixels; per-slice means weigh every slice equally.
"""

from __future__ import annotations

import numpy as np

from lungai.covid.cascade import THRESHOLD, Cascade
from lungai.covid.data import LabelledSlice
from lungai.metrics import pixel_metrics
from lungai.progress import CancelToken, ProgressCallback

METRIC_NAMES = ("accuracy", "precision", "specificity", "recall", "dice", "jaccard")


def mean_metrics(rows: list[dict[str, float]]) -> dict[str, float]:
    return {name: float(np.mean([row[name] for row in rows])) for name in METRIC_NAMES}


def infection_metrics(
    cascade: Cascade,
    slices: list[LabelledSlice],
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> tuple[dict[str, float], list[dict]]:
    """Mean infection metrics over ``slices`` and one row per slice (name, metrics, lung share)."""
    results = cascade.segment([s.image for s in slices], progress, cancel)
    rows = []
    for s, result in zip(slices, results):
        row = {"slice": s.name, **pixel_metrics(result.infection > THRESHOLD, s.infection)}
        rows.append(row)
    return mean_metrics(rows), rows


def lung_metrics(cascade: Cascade, slices: list[LabelledSlice]) -> tuple[dict[str, float], list[dict]]:
    """Mean lung metrics of the cascade's stage 1 over ``slices`` with real lung labels."""
    probabilities = cascade.lung_probabilities([s.image for s in slices])
    rows = [{"slice": s.name, **pixel_metrics(p > THRESHOLD, s.lung)} for s, p in zip(slices, probabilities)]
    return mean_metrics(rows), rows
