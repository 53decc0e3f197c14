"""The one intensity and size convention of NeoplasmNLB: every input becomes 128 x 128 grey values in [0, 1].

* 8-bit snapshots (IQ-OTH/NCCD PNGs, any uint8 image or volume whose values are integers in 0..255): the
  publisher already windowed them; value / 255. Colour images are converted to grey first (ITU-R 601 luma,
  as PIL's "L" mode does).
* CT in Hounsfield units: clipped to the window :data:`HU_WINDOW` = (-600, 400) HU (level -100, width 1000)
  and scaled linearly to [0, 1]. The window serves both heads: like the IQ-OTH/NCCD snapshots the classifier
  learns from, it shows aerated lung (about -850 HU) black and soft tissue grey to bright; unlike the
  mediastinal window (-160, 240) those snapshots resemble most, it keeps the fainter parts of nodules visible
  for the segmentation head (median fraction of LIDC consensus-mask pixels above the lower bound: 68 %
  against 27 % at -160 HU, where 42 % of nodules would be under one fifth visible).
* Anything else must pass :func:`lungai.validation.check_hu_like` (air present, values within the HU range)
  or is refused with its :class:`lungai.errors.InputError`; NaN or infinite values are refused too.
* Size: slices are zero-padded (value 0 = below the window) to a square, centred, then resized to
  :data:`INPUT_SIZE` x :data:`INPUT_SIZE` with area-weighted (antialiased) bilinear interpolation. 128 keeps
  six cross-validated variants within a CPU budget of minutes; :class:`SquareResize` maps outputs back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from lungai.errors import InputError
from lungai.intensity import window_to_unit
from lungai.validation import check_finite, check_hu_like

HU_WINDOW: tuple[float, float] = (-600.0, 400.0)
INPUT_SIZE = 128
MIN_IMAGE_SIZE = 16


def hu_to_unit(array: np.ndarray, window: tuple[float, float] = HU_WINDOW) -> np.ndarray:
    """Clip HU to ``window`` and scale to [0, 1] (float32)."""
    return window_to_unit(array, window)


def to_grey(image: np.ndarray) -> np.ndarray:
    """(H, W) stays; (H, W, 3 or 4) colour -> (H, W) luma 0.299 R + 0.587 G + 0.114 B (alpha ignored)."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        rgb = image[..., :3].astype(np.float32)
        return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return image


def is_eight_bit(array: np.ndarray) -> bool:
    """True for uint8 data or integer-valued data inside 0..255 (a windowed snapshot, not HU)."""
    array = np.asarray(array)
    if array.dtype == np.uint8:
        return True
    if array.size == 0 or not np.all(np.isfinite(array)):
        return False
    return bool(array.min() >= 0 and array.max() <= 255 and np.all(np.mod(array, 1) == 0))


def to_unit(array: np.ndarray, window: tuple[float, float] = HU_WINDOW) -> tuple[np.ndarray, str]:
    """Map a grey image or volume to [0, 1] by the rules of this module; returns (array, "8-bit" or "HU")."""
    array = np.asarray(array)
    check_finite(array, "The image")
    if is_eight_bit(array):
        return np.asarray(array, dtype=np.float32) / 255.0, "8-bit"
    check_hu_like(array, "The image (neither 8-bit grey values 0..255 nor CT)")
    return hu_to_unit(array, window), "HU"


@dataclass(frozen=True)
class SquareResize:
    """Pads (H, W) slices to a centred square and resizes to ``size``; :meth:`restore` maps outputs back."""

    height: int
    width: int
    size: int = INPUT_SIZE

    @property
    def side(self) -> int:
        return max(self.height, self.width)

    @property
    def offsets(self) -> tuple[int, int]:
        return (self.side - self.height) // 2, (self.side - self.width) // 2

    def apply(self, slices: np.ndarray) -> torch.Tensor:
        """(Z, H, W) in [0, 1] -> tensor (Z, 1, size, size)."""
        if min(self.height, self.width) < MIN_IMAGE_SIZE:
            raise InputError(
                f"image of {self.height} x {self.width} pixels is too small: NeoplasmNLB needs at "
                f"least {MIN_IMAGE_SIZE} x {MIN_IMAGE_SIZE} pixels per slice"
            )
        top, left = self.offsets
        square = np.zeros((slices.shape[0], self.side, self.side), dtype=np.float32)
        square[:, top : top + self.height, left : left + self.width] = slices
        tensor = torch.from_numpy(square)[:, None]
        if self.side == self.size:
            return tensor
        return F.interpolate(
            tensor, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=self.side > self.size
        ).clamp_(0.0, 1.0)

    def restore(self, maps: torch.Tensor) -> torch.Tensor:
        """(Z, 1, size, size) maps (e.g. probabilities) -> (Z, H, W) on the original pixel grid."""
        if self.side != self.size:
            maps = F.interpolate(maps, size=(self.side, self.side), mode="bilinear", align_corners=False)
        top, left = self.offsets
        return maps[:, 0, top : top + self.height, left : left + self.width]


def prepare_slices(
    array: np.ndarray, size: int = INPUT_SIZE, window: tuple[float, float] = HU_WINDOW
) -> tuple[torch.Tensor, SquareResize, str]:
    """(H, W), (Z, H, W) or colour (H, W, 3|4) data -> network input (Z, 1, size, size), its resizer, kind.

    An array whose last axis has 3 or 4 entries is taken as a colour image and converted to grey.
    """
    array = to_grey(array)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise InputError(f"expected a 2-D image or a 3-D volume, got an array of shape {array.shape}")
    unit, kind = to_unit(array, window)
    resize = SquareResize(unit.shape[1], unit.shape[2], size)
    return resize.apply(unit), resize, kind
