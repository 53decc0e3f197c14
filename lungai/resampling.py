"""Resizing slices to a model's input and back."""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage


def resize_slices(array: np.ndarray, out_hw: tuple[int, int], order: int = 1) -> np.ndarray:
    """Resize the last two axes of a (..., y, x) array to ``out_hw``.

    ``order`` 0 (nearest) for labels, 1 (linear) for images. Corner pixels map to corner pixels'
    areas (the scipy ``grid-mode``), so resizing there and back keeps structures in place.

    Linear and nearest resizing are separable, so float arrays are resized as ``R_y @ slice @ R_x^T`` with each
    axis' resizing as a matrix (:func:`_axis_matrix`, made by scipy's ``zoom`` itself): the same numbers to
    float rounding, several times faster than ``zoom`` when enlarging (when shrinking ``zoom`` is faster and is
    used, as for other dtypes and orders).
    """
    array = np.asarray(array)
    in_hw = array.shape[-2:]
    enlarging = out_hw[0] * out_hw[1] > in_hw[0] * in_hw[1]
    if enlarging and order in (0, 1) and array.dtype in (np.float32, np.float64):
        rows = _axis_matrix(in_hw[0], int(out_hw[0]), order, array.dtype.str)
        cols = _axis_matrix(in_hw[1], int(out_hw[1]), order, array.dtype.str)
        return rows @ array @ cols.T
    factors = (1.0,) * (array.ndim - 2) + (out_hw[0] / in_hw[0], out_hw[1] / in_hw[1])
    resized = ndimage.zoom(array, factors, order=order, mode="nearest", grid_mode=True)
    return resized[..., : out_hw[0], : out_hw[1]]


@functools.lru_cache(maxsize=64)
def _axis_matrix(size: int, out: int, order: int, dtype: str) -> np.ndarray:
    """``(out, size)`` matrix of ``dtype`` resizing one axis of ``size`` samples to ``out`` as :func:`resize_slices`'
    zoom does (its columns are the zoomed unit impulses)."""
    impulses = np.eye(size)
    matrix = ndimage.zoom(impulses, (out / size, 1.0), order=order, mode="nearest", grid_mode=True)[:out].astype(dtype)
    matrix.flags.writeable = False
    return matrix
