"""Intensity windows: HU to display or network values, without any plotting library."""

from __future__ import annotations

import numpy as np

LUNG_WINDOW = (-1350.0, 150.0)  # level -600, width 1500 HU


def window_to_unit(array: np.ndarray, window: tuple[float, float] = LUNG_WINDOW) -> np.ndarray:
    """Map ``window`` = (low, high) linearly to [0, 1], clipping outside."""
    low, high = window
    return np.clip((np.asarray(array, dtype=np.float32) - low) / (high - low), 0.0, 1.0)


def window_to_uint8(array: np.ndarray, window: tuple[float, float] = LUNG_WINDOW) -> np.ndarray:
    return np.round(window_to_unit(array, window) * 255).astype(np.uint8)
