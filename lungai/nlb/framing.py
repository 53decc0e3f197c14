"""How NeoplasmNLB sees a slice: the IQ-OTH/NCCD snapshot convention, measured, applied to CT in Hounsfield units.

The network learns from IQ-OTH/NCCD snapshots (8-bit, 256 x 256). A CT slice in HU must reach it looking like one,
in intensity and in framing, or the classifier answers a question it was never asked (issue 12: before this module
every slice of a normal CT scored positive). The numbers below are measured by ``bench/nlb/measure_snapshots.py``
(output in ``bench/nlb/snapshot_levels.md``), not chosen:

* **Window** :data:`SNAPSHOT_WINDOW` = :data:`lungai.intensity.IQOTH_NCCD_WINDOW` = (-50, 265) HU. The snapshots
  are a narrow soft-tissue window: air, lung parenchyma and fat are all black (grey 0 holds 71 % of all pixels and
  41 % of the body), muscle and vessels are mid-grey, bone saturates. The window is the linear map
  grey = 255 (HU - lo) / (hi - lo) that best matches the grey levels of the bodies of the 331 normal snapshots to the
  HU levels of the body of the real CT ``CTChest4`` (slices with lungs), level by level (equal fractions of body
  pixels above grey g and above HU h, g = 20 ... 200).
* **Field of view**: :data:`SNAPSHOT_PIXEL_MM` = 1.40 mm per pixel at 256 px (a 358 mm field), from the body width:
  ``CTChest4``'s body is 329 mm wide, the normal snapshots' bodies 225-244 px (the two ends of the measurement
  depend on how the snapshot body mask treats black fat at the skin; 1.35-1.46 mm/px).
* **Body position**: the body's bounding box is centred in the snapshot (median rows 56-195 of 256 below the
  anterior skin, columns centred on 127.5).

:data:`INPUT_SIZE` = 192 px (1.87 mm per pixel): 256 px costs 1.8 times the compute of 192 for a grid finer than the
in-plane resolution of most clinical CT reconstructions at this field of view; 128 px (2.8 mm) loses nodules under
6 mm. Snapshots are resized 256 -> 192 with antialiasing; HU slices are windowed, then resampled by
:class:`Framing` so that their pixels are 1.87 mm and the body's bounding box (over the whole volume, so every slice
shares one geometry) sits in the centre, air (grey 0) filling the rest. :meth:`Framing.restore` maps outputs back to
the slice's own pixel grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from lungai.errors import InputError
from lungai.intensity import IQOTH_NCCD_WINDOW, window_to_unit

SNAPSHOT_WINDOW: tuple[float, float] = IQOTH_NCCD_WINDOW
SNAPSHOT_SIZE = 256
SNAPSHOT_PIXEL_MM = 1.40
INPUT_SIZE = 192
INPUT_PIXEL_MM = SNAPSHOT_PIXEL_MM * SNAPSHOT_SIZE / INPUT_SIZE
MIN_IMAGE_SIZE = 16
BODY_HU = -300.0  # above fat's lower tail and below soft tissue: the body's outline on a slice


def hu_to_unit(hu: np.ndarray) -> np.ndarray:
    """HU -> [0, 1] through :data:`SNAPSHOT_WINDOW` (float32): a snapshot's grey / 255."""
    return window_to_unit(hu, SNAPSHOT_WINDOW)


@dataclass(frozen=True)
class Framing:
    """Affine map between a slice's pixel grid (H x W, pixel ``pixel_mm``) and the network's ``size`` x ``size``
    grid of ``target_mm`` pixels, the slice point ``centre`` (row, column, in pixels) at the grid's centre.

    ``apply`` resamples slices (bilinear, zero outside the slice); ``restore`` maps network maps back (bilinear).
    """

    height: int
    width: int
    pixel_mm: tuple[float, float]  # (row, column) spacing of the slice
    centre: tuple[float, float]
    target_mm: float = INPUT_PIXEL_MM
    size: int = INPUT_SIZE

    @classmethod
    def snapshot(cls, height: int, width: int, size: int = INPUT_SIZE) -> Framing:
        """The identity framing of a snapshot: the whole (square-padded) image fills the grid."""
        side = max(height, width)
        pixel = SNAPSHOT_PIXEL_MM * SNAPSHOT_SIZE / side
        target = SNAPSHOT_PIXEL_MM * SNAPSHOT_SIZE / size
        return cls(height, width, (pixel, pixel), ((height - 1) / 2, (width - 1) / 2), target, size)

    @classmethod
    def of_body(cls, body: np.ndarray, pixel_mm: tuple[float, float], size: int = INPUT_SIZE) -> Framing:
        """The snapshot framing of a CT: ``body`` (Z, H, W) or (H, W) mask; its in-plane bounding box (all slices)
        is centred, pixels become :data:`INPUT_PIXEL_MM` x 192 / ``size``."""
        body = np.asarray(body, dtype=bool)
        plane = body.any(axis=0) if body.ndim == 3 else body
        height, width = plane.shape
        if plane.any():
            rows, cols = np.flatnonzero(plane.any(axis=1)), np.flatnonzero(plane.any(axis=0))
            centre = ((rows[0] + rows[-1]) / 2, (cols[0] + cols[-1]) / 2)
        else:
            centre = ((height - 1) / 2, (width - 1) / 2)
        target = SNAPSHOT_PIXEL_MM * SNAPSHOT_SIZE / size
        return cls(height, width, (float(pixel_mm[0]), float(pixel_mm[1])), centre, target, size)

    def _theta(self) -> torch.Tensor:
        """affine_grid matrix from network-grid coordinates to slice coordinates (both normalised to [-1, 1])."""
        half = (self.size - 1) / 2
        # A network pixel offset of d from the grid centre is d * target_mm / pixel_mm slice pixels.
        sy = half * self.target_mm / self.pixel_mm[0] / ((self.height - 1) / 2 or 1)
        sx = half * self.target_mm / self.pixel_mm[1] / ((self.width - 1) / 2 or 1)
        ty = self.centre[0] / ((self.height - 1) / 2 or 1) - 1
        tx = self.centre[1] / ((self.width - 1) / 2 or 1) - 1
        return torch.tensor([[sx, 0.0, tx], [0.0, sy, ty]], dtype=torch.float32)

    def apply(self, slices: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(Z, H, W) in [0, 1] -> (Z, 1, size, size)."""
        if min(self.height, self.width) < MIN_IMAGE_SIZE:
            raise InputError(
                f"image of {self.height} x {self.width} pixels is too small: NeoplasmNLB needs at least "
                f"{MIN_IMAGE_SIZE} x {MIN_IMAGE_SIZE} pixels per slice"
            )
        tensor = torch.as_tensor(np.asarray(slices, dtype=np.float32))[:, None]
        shrink = min(self.target_mm / self.pixel_mm[0], self.target_mm / self.pixel_mm[1])
        kernel = int(shrink) // 2 * 2 + 1
        if kernel > 1:  # average neighbours first so that shrinking does not alias
            tensor = F.avg_pool2d(tensor, kernel, stride=1, padding=kernel // 2, count_include_pad=False)
        grid = F.affine_grid(
            self._theta()[None].expand(len(tensor), 2, 3), [len(tensor), 1, self.size, self.size], align_corners=True
        )
        return F.grid_sample(tensor, grid, mode="bilinear", padding_mode="zeros", align_corners=True).clamp_(0, 1)

    def restore(self, maps: torch.Tensor) -> torch.Tensor:
        """(Z, 1, size, size) network maps -> (Z, H, W) on the slice grid (zero outside the network's field)."""
        inverse = torch.linalg.inv(torch.cat([self._theta(), torch.tensor([[0.0, 0.0, 1.0]])]))[:2]
        grid = F.affine_grid(
            inverse[None].expand(len(maps), 2, 3), [len(maps), 1, self.height, self.width], align_corners=True
        )
        return F.grid_sample(maps.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=True)[:, 0]
