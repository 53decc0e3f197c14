"""Display orientation of axial slices, the orientation every lungai.covid network learns in.

Display orientation: rows run anterior -> posterior and columns patient right -> left (as a
radiologist views an axial slice; identity-direction LPS volumes already store slices so).
Volumes with other axis signs or swapped in-plane axes are flipped / transposed per slice;
oblique or non-axial volumes are refused.
"""

from __future__ import annotations

import numpy as np

from lungai.errors import InputError
from lungai.volume import Volume


def check_axial(volume: Volume, tolerance: float = 1e-3) -> None:
    """Refuse volumes whose slices are not axial with axis-aligned rows and columns."""
    d = np.abs(volume.direction)
    in_plane = d[:2, :2]
    aligned = np.allclose(np.sort(in_plane, axis=None)[-2:], 1.0, atol=tolerance) and np.isclose(
        d[2, 2], 1.0, atol=tolerance
    )
    if not aligned:
        raise InputError(
            "The volume's slices are not axial (its direction matrix is oblique or reformatted): "
            f"{np.round(volume.direction, 3).tolist()}. Resample it to an axial grid first "
            "(in Slicer: Resample Image (BRAINS) or Crop Volume with an axial ROI)."
        )


def _display_flips(volume: Volume) -> tuple[bool, bool, bool]:
    """(transpose, flip rows, flip columns) turning ``array[k]`` into display orientation."""
    d = volume.direction
    transpose = abs(d[0, 1]) > abs(d[0, 0])  # the j axis runs along patient x: rows/columns swapped
    column_axis, row_axis = (1, 0) if transpose else (0, 1)
    return transpose, d[1, row_axis] < 0, d[0, column_axis] < 0


def to_display(array: np.ndarray, volume: Volume) -> np.ndarray:
    """``(z, y, x)`` voxel order -> display orientation per slice."""
    transpose, flip_rows, flip_cols = _display_flips(volume)
    out = np.swapaxes(array, 1, 2) if transpose else array
    if flip_rows:
        out = out[:, ::-1]
    if flip_cols:
        out = out[:, :, ::-1]
    return np.ascontiguousarray(out)


def from_display(array: np.ndarray, volume: Volume) -> np.ndarray:
    """Inverse of :func:`to_display`."""
    transpose, flip_rows, flip_cols = _display_flips(volume)
    out = array
    if flip_cols:
        out = out[:, :, ::-1]
    if flip_rows:
        out = out[:, ::-1]
    return np.ascontiguousarray(np.swapaxes(out, 1, 2) if transpose else out)
