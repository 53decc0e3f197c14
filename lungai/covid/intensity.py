"""One intensity convention for HU volumes and 8-bit windowed slices.

Every network input is a lung-window display value in [0, 1]: HU are clipped to the standard
lung window (level -600, width 1500, i.e. [-1350, 150] HU) and scaled linearly, so air and the
area outside the body are 0 and soft tissue and bone are 1. The MedSeg slices
(``covid_infection_medseg``) are 8-bit screenshots already windowed for the lungs; they are used
as ``grey / 255`` on the assumption that their window is close to this one. Their windows do
vary from slice to slice (some are visibly brighter), which training covers with gamma and
contrast augmentation. The value 0 doubles as the "masked out" value of the hierarchical
cascade (air).
"""

from __future__ import annotations

import numpy as np

from lungai.errors import InputError
from lungai.intensity import LUNG_WINDOW, window_to_unit

LUNG_WINDOW_HU = LUNG_WINDOW


def hu_to_unit(hu: np.ndarray, window: tuple[float, float] = LUNG_WINDOW_HU) -> np.ndarray:
    """HU -> [0, 1] float32 through the lung window."""
    return window_to_unit(hu, window)


def uint8_to_unit(grey: np.ndarray) -> np.ndarray:
    """8-bit windowed grey values -> [0, 1] float32."""
    grey = np.asarray(grey)
    if grey.size and (grey.min() < 0 or grey.max() > 255):
        raise InputError(f"Expected 8-bit grey values in 0..255, found {grey.min()}..{grey.max()}.")
    return grey.astype(np.float32) / 255.0
