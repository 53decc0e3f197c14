"""Resizing slices to a model's input and back."""

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
