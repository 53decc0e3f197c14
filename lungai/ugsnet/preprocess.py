"""Network input of UGS-Net: an axial patch around the nodule, HU-windowed, at a fixed pixel spacing.

Crop size in the sources: the journal version (seed 001, Sec. III-A) crops 50 x 50 pixels around the nodule;
its earlier version (seed 000, Sec. III-A) states 64 x 64; the public UGS-Net-V1 (MICCAI 2022) code crops 50 x 50
native pixels and resizes them to 64 x 64, so that model sees a scan-dependent pixel size. We keep the 64 x 64
input but resample to one physical spacing, ``INPUT_SPACING_MM`` = 0.55 mm (field of view 35.2 mm, the median
LIDC spacing 0.7 mm x the journal's 50 pixels), so that a CT of any in-plane resolution can be mapped to the
model and back (Slicer module) without a scale change.
Intensities: HU clipped to the lung window ``HU_WINDOW`` = [-1000, 400] and scaled to [0, 1] (the V1 code used
raw HU or a 3-window stack; one window keeps the model single-channel).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from lungai.intensity import window_to_unit

INPUT_SIZE = 64
INPUT_SPACING_MM = 0.55
HU_WINDOW = (-1000.0, 400.0)
AIR_HU = -1000.0


def normalise_hu(image_hu: np.ndarray, window: tuple[float, float] = HU_WINDOW) -> np.ndarray:
    """Clip HU to ``window`` and scale linearly to [0, 1] (float32)."""
    return window_to_unit(image_hu, window)


def patch_coordinates(
    center_rc: tuple[float, float],
    spacing_in_mm: float | tuple[float, float],
    spacing_out_mm: float = INPUT_SPACING_MM,
    size: int = INPUT_SIZE,
) -> np.ndarray:
    """Fractional (row, col) input-pixel coordinates of a ``size`` x ``size`` output grid.

    The output grid is centred on ``center_rc`` (input pixel coordinates); output pixel (r, c) lies at
    ``center + (r - (size - 1) / 2) * spacing_out / spacing_in``. Returns an array (2, size, size).
    """
    sr, sc = (spacing_in_mm, spacing_in_mm) if np.isscalar(spacing_in_mm) else spacing_in_mm
    offsets = (np.arange(size, dtype=np.float64) - (size - 1) / 2.0) * spacing_out_mm
    rows = center_rc[0] + offsets / sr
    cols = center_rc[1] + offsets / sc
    return np.stack(np.meshgrid(rows, cols, indexing="ij"))


def resample_patch(
    image: np.ndarray,
    center_rc: tuple[float, float],
    spacing_in_mm: float | tuple[float, float],
    *,
    order: int = 1,
    spacing_out_mm: float = INPUT_SPACING_MM,
    size: int = INPUT_SIZE,
    mode: str = "nearest",
) -> np.ndarray:
    """Sample a 2-D ``image`` on the patch grid of :func:`patch_coordinates` (outside: nearest edge value)."""
    coords = patch_coordinates(center_rc, spacing_in_mm, spacing_out_mm, size)
    return ndimage.map_coordinates(np.asarray(image, dtype=np.float32), coords, order=order, mode=mode)


def resample_mask(
    mask: np.ndarray,
    center_rc: tuple[float, float],
    spacing_in_mm: float | tuple[float, float],
    *,
    spacing_out_mm: float = INPUT_SPACING_MM,
    size: int = INPUT_SIZE,
) -> np.ndarray:
    """Resample a binary mask (linear interpolation of the indicator, threshold 0.5, zero outside)."""
    value = resample_patch(
        mask.astype(np.float32),
        center_rc,
        spacing_in_mm,
        order=1,
        spacing_out_mm=spacing_out_mm,
        size=size,
        mode="constant",
    )
    return value >= 0.5
