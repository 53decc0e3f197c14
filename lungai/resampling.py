"""Resizing slices to a model's input and back, and cropping around a point with padding."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def resize_slices(array: np.ndarray, out_hw: tuple[int, int], order: int = 1) -> np.ndarray:
    """Resize the last two axes of a (..., y, x) array to ``out_hw``.

    ``order`` 0 (nearest) for labels, 1 (linear) for images. Corner pixels map to corner pixels'
    areas (the scipy ``grid-mode``), so resizing there and back keeps structures in place.
    """
    in_hw = array.shape[-2:]
    factors = (1.0,) * (array.ndim - 2) + (out_hw[0] / in_hw[0], out_hw[1] / in_hw[1])
    resized = ndimage.zoom(array, factors, order=order, mode="nearest", grid_mode=True)
    return resized[..., : out_hw[0], : out_hw[1]]


def crop_around(
    array2d: np.ndarray, center_yx: tuple[int, int], size: tuple[int, int], fill: float
) -> tuple[np.ndarray, tuple[int, int]]:
    """A ``size`` crop centred on ``center_yx``; parts outside the image are ``fill``.

    Returns the crop and the (y, x) index in ``array2d`` of the crop's top-left pixel, which may
    be negative at the image edge.
    """
    top = int(center_yx[0]) - size[0] // 2
    left = int(center_yx[1]) - size[1] // 2
    crop = np.full(size, fill, dtype=array2d.dtype)
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + size[0], array2d.shape[0]), min(left + size[1], array2d.shape[1])
    if y1 > y0 and x1 > x0:
        crop[y0 - top : y1 - top, x0 - left : x1 - left] = array2d[y0:y1, x0:x1]
    return crop, (top, left)


def paste_crop(shape: tuple[int, int], crop: np.ndarray, top_left: tuple[int, int], fill: float = 0) -> np.ndarray:
    """Inverse of :func:`crop_around`: place ``crop`` into an array of ``shape``."""
    out = np.full(shape, fill, dtype=crop.dtype)
    top, left = top_left
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + crop.shape[0], shape[0]), min(left + crop.shape[1], shape[1])
    if y1 > y0 and x1 > x0:
        out[y0:y1, x0:x1] = crop[y0 - top : y1 - top, x0 - left : x1 - left]
    return out
