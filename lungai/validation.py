"""Checks that an input is a usable CT before any model sees it.

Each check raises :class:`InputError` with what was found and what is expected.
"""

from __future__ import annotations

import numpy as np

from lungai.errors import InputError
from lungai.volume import Volume

HU_MIN = -3100.0  # below any scanner's padding value (-3024 on many)
HU_MAX = 5000.0  # above dense bone and contrast; metal can exceed it, see check_hu_like
AIR_HU = -500.0


def check_finite(array: np.ndarray, what: str = "The volume") -> None:
    bad = ~np.isfinite(array) if np.issubdtype(array.dtype, np.floating) else None
    if bad is not None and bad.any():
        raise InputError(
            f"{what} has {int(bad.sum())} NaN or infinite voxels of {array.size}; "
            "fix or replace them (for example with -1024 HU) before running a model."
        )


def check_hu_like(array: np.ndarray, what: str = "The volume") -> None:
    """Require intensities that look like CT Hounsfield units.

    A chest CT contains air (about -1000 HU) and stays within [-3100, 5000] HU apart from rare
    metal. Two common mistakes are caught: an 8-bit picture (0..255) and raw scanner values
    without the DICOM rescale intercept (0..4095).
    """
    low, high = float(np.min(array)), float(np.max(array))
    found = f"found intensities from {low:g} to {high:g}"
    if low < HU_MIN or high > 4 * HU_MAX:
        raise InputError(
            f"{what} is not CT in Hounsfield units: {found}, expected about -1024 to 3071 HU. "
            "Convert it to HU (slope and intercept) first."
        )
    if low >= 0:
        hint = (
            "it looks like an 8-bit picture"
            if high <= 255
            else "it looks like raw scanner values without the rescale intercept"
        )
        raise InputError(
            f"{what} is not CT in Hounsfield units: {found}, but a CT contains air near -1000 HU; {hint}. "
            "Load the DICOM series (which applies slope and intercept) or convert to HU first."
        )
    if low > AIR_HU:
        raise InputError(
            f"{what} has no air: {found}, but a chest CT contains air and lungs below {AIR_HU:g} HU. "
            "Check that this is a chest CT in Hounsfield units."
        )


def validate_ct(
    volume: Volume,
    *,
    min_slices: int = 1,
    min_size_xy: int = 16,
    max_spacing_mm: float | None = None,
) -> None:
    """Validate a CT volume: dimensions, size, spacing, finite voxels and HU intensities."""
    array = volume.array
    if array.ndim != 3:
        raise InputError(
            f"Expected a 3-D CT volume (slices, rows, columns), found an array of {array.ndim} dimensions "
            f"{array.shape}."
        )
    slices, rows, columns = array.shape
    if slices < min_slices:
        raise InputError(f"The volume has {slices} slice(s); this tool needs at least {min_slices}.")
    if rows < min_size_xy or columns < min_size_xy:
        raise InputError(
            f"The slices are {rows} x {columns} voxels; at least {min_size_xy} x {min_size_xy} are needed."
        )
    spacing = np.asarray(volume.spacing)
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise InputError(f"The voxel spacing {tuple(spacing)} mm is invalid; every spacing must be a positive number.")
    if max_spacing_mm is not None and spacing[:2].max() > max_spacing_mm:
        raise InputError(
            f"The in-plane spacing {spacing[0]:.2f} x {spacing[1]:.2f} mm is too coarse for this tool "
            f"(at most {max_spacing_mm:g} mm); use a thinner reconstruction of the scan."
        )
    check_finite(array)
    check_hu_like(array)


def validate_image_2d(array: np.ndarray, min_size: int = 32) -> None:
    """Validate a 2-D grey picture (for example an 8-bit CT snapshot)."""
    if array.ndim != 2:
        raise InputError(f"Expected a 2-D grey image, found an array of shape {array.shape}.")
    if min(array.shape) < min_size:
        raise InputError(
            f"The image is {array.shape[0]} x {array.shape[1]} pixels; at least {min_size} x {min_size} are needed."
        )
    check_finite(array, "The image")
