"""Intensity windows: HU to display or network values, without any plotting library."""

from __future__ import annotations

import numpy as np

LUNG_WINDOW = (-1350.0, 150.0)  # level -600, width 1500 HU


def window_to_unit(array: np.ndarray, window: tuple[float, float] = LUNG_WINDOW) -> np.ndarray:
    """Map ``window`` = (low, high) linearly to [0, 1], clipping outside."""
    low, high = window
    unit = np.subtract(array, np.float32(low), dtype=np.float32)  # one new array, the rest in place
    unit /= np.float32(high - low)
    return np.clip(unit, 0.0, 1.0, out=unit)


def window_to_uint8(array: np.ndarray, window: tuple[float, float] = LUNG_WINDOW) -> np.ndarray:
    return np.round(window_to_unit(array, window) * 255).astype(np.uint8)


# Windows of the 8-bit snapshot datasets, (low, high) HU mapped to grey 0 and 255.
MEDSEG_WINDOW = (-1024.0, 240.0)  # MedSeg COVID-19 slices (covid_infection_medseg)
# IQ-OTH/NCCD snapshots (narrow soft-tissue window: air, lung and fat all black, muscle mid-grey, bone white).
# Measured by bench/nlb/measure_snapshots.py (bench/nlb/snapshot_levels.md): the grey levels of the bodies of the
# 331 normal snapshots matched level by level to the HU of the body of the real CT CTChest4 (equal shares of body
# pixels above grey g and above HU h), least squares over g = 20..200: (-49, 246) HU with the snapshot body of
# lungai.nlb.regions.snapshot_field, (-50, 265) with a body mask that leaves out the black fat under the skin. The
# fit depends on the grey range used (g = 10..230: (-80, 321); 10..120: (-14, 173)), the lower end least. Fat
# (about -100 HU) is black in the snapshots, which a lower end at -200 HU would show as grey 57. NeoplasmNLB's
# bundled model is trained with (-50, 265).
IQOTH_NCCD_WINDOW = (-50.0, 265.0)


def grey_to_hu(grey: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """8-bit grey of a snapshot windowed to ``window`` = (low, high) HU back to HU (float32).

    Values at 0 and 255 were clipped by the window: they only say "at most low" / "at least high".
    """
    low, high = window
    return (low + np.asarray(grey, dtype=np.float32) * ((high - low) / 255.0)).astype(np.float32)
