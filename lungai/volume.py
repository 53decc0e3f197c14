"""A voxel array with its geometry: the one image type passed between lungai functions."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Volume:
    """Voxels plus the geometry that places them in patient space (LPS, millimetres).

    ``array`` is in numpy order (k, j, i) = (z, y, x), as SimpleITK and Slicer's
    ``arrayFromVolume`` return it; a 2-D image is a volume of shape (1, y, x). ``spacing`` and
    ``origin`` are in (x, y, z) = (i, j, k) order; the columns of ``direction`` are the unit
    directions of the i, j and k axes in LPS.
    """

    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))

    def __post_init__(self) -> None:
        self.spacing = tuple(float(s) for s in self.spacing)  # type: ignore[assignment]
        self.origin = tuple(float(o) for o in self.origin)  # type: ignore[assignment]
        self.direction = np.asarray(self.direction, dtype=float).reshape(3, 3)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    def ijk_to_lps(self) -> np.ndarray:
        """4 x 4 matrix from voxel index (i, j, k, 1) to LPS millimetres."""
        matrix = np.eye(4)
        matrix[:3, :3] = self.direction @ np.diag(self.spacing)
        matrix[:3, 3] = self.origin
        return matrix

    def ijk_to_ras(self) -> np.ndarray:
        """4 x 4 matrix from voxel index to RAS millimetres (Slicer's world frame)."""
        return np.diag([-1.0, -1.0, 1.0, 1.0]) @ self.ijk_to_lps()

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.spacing))

    def like(self, array: np.ndarray) -> Volume:
        """A volume with the same geometry and a new array of the same spatial shape."""
        if array.shape[-3:] != self.array.shape[-3:]:
            raise ValueError(f"array shape {array.shape} does not match the volume's {self.array.shape}")
        return Volume(array, self.spacing, self.origin, self.direction.copy())

    def is_axial(self, tolerance: float = 1e-3) -> bool:
        """True when the k axis runs along patient z, so array[k] is an axial slice."""
        return bool(abs(abs(self.direction[2, 2]) - 1.0) < tolerance)
