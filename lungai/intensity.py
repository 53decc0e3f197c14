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


# Windows of the 8-bit snapshot datasets, (low, high) HU mapped to grey 0 and 255.
MEDSEG_WINDOW = (-1024.0, 240.0)  # MedSeg COVID-19 slices (covid_infection_medseg)
# IQ-OTH/NCCD snapshots (mediastinal-type window; it varies from scanner to scanner). Measured on all 875
# snapshots: in each, the body (smoothed grey > 25, largest component, holes filled) minus lungs (grey <= 8)
# is split by Otsu into fat (taken as -100 HU) and soft tissue (+40 HU); median grey 58 and 140 give
# (-208, 243) HU, interquartile range of the low end -245..-184 and of the high end 209..297 (malignant
# snapshots narrower: median (-213, 225)). Matching the grey quantiles of 293 snapshots to the HU quantiles
# of the CTChest4 body gave a median (-200, 260). Rounded: (-200, 250).
IQOTH_NCCD_WINDOW = (-200.0, 250.0)


def grey_to_hu(grey: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """8-bit grey of a snapshot windowed to ``window`` = (low, high) HU back to HU (float32).

    Values at 0 and 255 were clipped by the window: they only say "at most low" / "at least high".
    """
    low, high = window
    return (low + np.asarray(grey, dtype=np.float32) * ((high - low) / 255.0)).astype(np.float32)
