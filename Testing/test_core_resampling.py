"""Slice resizing (lungai.resampling): the matrix form gives scipy zoom's numbers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from lungai.resampling import resize_slices


def _zoom(array: np.ndarray, out_hw: tuple[int, int], order: int) -> np.ndarray:
    factors = (1.0,) * (array.ndim - 2) + (out_hw[0] / array.shape[-2], out_hw[1] / array.shape[-1])
    return ndimage.zoom(array, factors, order=order, mode="nearest", grid_mode=True)[..., : out_hw[0], : out_hw[1]]


@pytest.mark.parametrize(
    "shape, out_hw, order",
    [((128, 128), (512, 512), 1), ((3, 37, 50), (64, 96), 1), ((128, 96), (400, 401), 0), ((40, 40), (16, 100), 1)],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_enlarging_equals_scipy_zoom(shape, out_hw, order, dtype):
    image = np.random.default_rng(0).normal(size=shape).astype(dtype)
    resized = resize_slices(image, out_hw, order)
    expected = _zoom(image, out_hw, order)
    assert resized.shape == expected.shape and resized.dtype == dtype
    np.testing.assert_allclose(resized, expected, rtol=0, atol=1e-5 if dtype == np.float32 else 1e-12)


def test_shrinking_and_labels_keep_zoom():
    image = np.random.default_rng(1).normal(size=(400, 400)).astype(np.float32)
    assert np.array_equal(resize_slices(image, (128, 128)), _zoom(image, (128, 128), 1))
    labels = (image > 0).astype(np.uint8)
    assert np.array_equal(resize_slices(labels, (512, 512), order=0), _zoom(labels, (512, 512), 0))
