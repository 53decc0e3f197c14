"""Metric wrappers against hand-computed values."""

import math

import numpy as np
import pytest

from lungai import metrics


def _squares():
    a = np.zeros((10, 10), bool)
    a[2:6, 2:6] = True  # 16 pixels
    b = np.zeros_like(a)
    b[2:6, 4:8] = True  # 16 pixels, 8 shared
    return a, b


def test_overlap_metrics_by_hand():
    a, b = _squares()
    assert metrics.dice(a, b) == pytest.approx(2 * 8 / 32)
    assert metrics.iou(a, b) == pytest.approx(8 / 24)
    assert metrics.dice(a, a) == pytest.approx(1.0)
    empty = np.zeros_like(a)
    assert metrics.dice(empty, empty) == 1.0 and metrics.iou(empty, empty) == 1.0
    assert metrics.dice(a, empty) == 0.0


def test_surface_metrics_by_hand():
    a, b = _squares()
    shifted = np.roll(a, 2, axis=1)  # the same square moved 2 pixels right
    assert metrics.hausdorff(a, shifted) == pytest.approx(2.0)
    assert metrics.hausdorff(a, shifted, spacing=(0.5, 0.5)) == pytest.approx(1.0)
    assert metrics.nsd(a, a, tolerance_mm=0.0) == pytest.approx(1.0)
    assert metrics.nsd(a, shifted, tolerance_mm=2.0) == pytest.approx(1.0)
    assert 0.0 < metrics.nsd(a, shifted, tolerance_mm=1.0) < 1.0
    assert metrics.mean_surface_distance(a, a) == pytest.approx(0.0)
    assert math.isnan(metrics.hausdorff(a, np.zeros_like(a)))


def test_pixel_and_classification_metrics():
    a, b = _squares()
    m = metrics.pixel_metrics(b, a)
    assert m["precision"] == pytest.approx(0.5) and m["recall"] == pytest.approx(0.5)
    assert m["specificity"] == pytest.approx((100 - 24) / (100 - 16))
    assert m["accuracy"] == pytest.approx((100 - 16) / 100)
    assert m["jaccard"] == pytest.approx(8 / 24)
    c = metrics.classification_metrics([1, 1, 0, 0, 1], [1, 0, 0, 1, 1])
    assert c["confusion_matrix"] == [[1, 1], [1, 2]]
    assert c["precision"] == pytest.approx(2 / 3) and c["recall"] == pytest.approx(2 / 3)
    assert c["f1"] == pytest.approx(2 / 3) and c["accuracy"] == pytest.approx(3 / 5)
    assert metrics.relative_volume_error(b[:, :6], a[:, :6]) == pytest.approx((8 - 16) / 16)


def test_validation_dice_is_per_sample_with_empty_pairs_counting_one():
    import torch

    from lungai.metrics import validation_dice

    target = torch.zeros(2, 1, 4, 4)
    target[0, 0, :2] = 1  # 8 foreground pixels in sample 0, sample 1 empty
    logits = torch.full((2, 1, 4, 4), -1.0)
    logits[0, 0, :1] = 1.0  # 4 of them predicted: Dice 2 * 4 / (4 + 8)
    assert validation_dice(logits, target) == pytest.approx((2 * 4 / 12 + 1.0) / 2)
