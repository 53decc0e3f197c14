"""Any input of NeoplasmNLB -> network input: 8-bit snapshots as they are, HU through the measured snapshot window.

* 8-bit grey images or volumes (uint8, or integer values inside 0..255): already windowed by their publisher, like
  the IQ-OTH/NCCD snapshots; value / 255, framed as a snapshot (the whole image fills the grid). Colour images are
  converted to grey first (:func:`lungai.nlb.data.to_grey`).
* CT in Hounsfield units: windowed by :data:`lungai.nlb.framing.SNAPSHOT_WINDOW` and framed by the body's bounding
  box and the pixel spacing (:meth:`lungai.nlb.framing.Framing.of_body`), so a CT slice looks like a snapshot.
* Anything else must pass :func:`lungai.validation.check_hu_like` (air present, values within the HU range) or is
  refused with its :class:`lungai.errors.InputError`; NaN or infinite values are refused too.
"""

from __future__ import annotations

import numpy as np
import torch

from lungai.errors import InputError
from lungai.nlb.data import to_grey
from lungai.nlb.framing import INPUT_SIZE, SNAPSHOT_WINDOW, Framing, hu_to_unit
from lungai.validation import check_finite, check_hu_like

HU_WINDOW = SNAPSHOT_WINDOW  # the window pictures of HU inputs are shown in
__all__ = ["HU_WINDOW", "INPUT_SIZE", "is_eight_bit", "prepare_slices", "to_grey", "to_unit"]


def is_eight_bit(array: np.ndarray) -> bool:
    """True for uint8 data or integer-valued data inside 0..255 (a windowed snapshot, not HU)."""
    array = np.asarray(array)
    if array.dtype == np.uint8:
        return True
    if array.size == 0 or not np.all(np.isfinite(array)):
        return False
    return bool(array.min() >= 0 and array.max() <= 255 and np.all(np.mod(array, 1) == 0))


def to_unit(array: np.ndarray) -> tuple[np.ndarray, str]:
    """Map a grey image or volume to [0, 1] by the rules of this module; returns (array, "8-bit" or "HU")."""
    array = np.asarray(array)
    check_finite(array, "The image")
    if is_eight_bit(array):
        return np.asarray(array, dtype=np.float32) / 255.0, "8-bit"
    check_hu_like(array, "The image (neither 8-bit grey values 0..255 nor CT)")
    return hu_to_unit(array), "HU"


def prepare_slices(
    array: np.ndarray,
    pixel_mm: tuple[float, float] | None = None,
    body: np.ndarray | None = None,
    size: int = INPUT_SIZE,
) -> tuple[torch.Tensor, Framing, str]:
    """(H, W), (Z, H, W) or colour (H, W, 3|4) data -> network input (Z, 1, size, size), its framing, kind.

    HU data needs ``pixel_mm`` (row, column spacing) and the ``body`` mask (Z, H, W) of the shared lung field
    (:func:`lungai.lungfield.lung_field`); 8-bit data ignores both.
    """
    array = to_grey(array)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise InputError(f"expected a 2-D image or a 3-D volume, got an array of shape {array.shape}")
    unit, kind = to_unit(array)
    if kind == "8-bit":
        framing = Framing.snapshot(unit.shape[1], unit.shape[2], size)
    else:
        if pixel_mm is None or body is None:
            raise InputError("a CT in Hounsfield units needs its pixel spacing and body mask to be framed")
        framing = Framing.of_body(body, pixel_mm, size)
    return framing.apply(unit), framing, kind
