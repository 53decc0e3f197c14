"""Network input of UGS-Net: a block of the slice's own (native) pixels around the nodule, HU-windowed.

Crop size in the sources: the journal version (seed 001, Sec. III-A) crops 50 x 50 pixels around the nodule;
its earlier version (seed 000, Sec. III-A) states 64 x 64; the public UGS-Net-V1 (MICCAI 2022) code crops 50 x 50
native pixels and resizes them to 64 x 64. We take ``INPUT_SIZE`` = 64 x 64 **native** pixels (seed 000's size,
no resize). Measured choice (issue 13, fold 0, MONAI UNet, 30 epochs, ``bench/ugsnet/input_grid.md``): resampling the
crops to one physical spacing (0.55, 0.7 or 0.85 mm) scored 0.82, 0.81 and 0.81 Dice against Label1, native pixels
0.85 (0.849 when that model's output is scored on the 0.55 mm grid). Caveat, measured on the bundled model: much of
the gain depends on the nodule sitting on the patch's centre pixel as in the LIDC crops (centred on the crop's
reader's nodule); moving the centre by up to 1 / 2 / 3 pixels per axis drops Dice from 0.872 to 0.824 / 0.787 /
0.737, and random shifts in training made the model robust to them but cost its centred score (MONAI UNet: 0.79
centred and shifted). So points placed in Slicer should sit on the nodule's centre. The physical field of view
follows the scan (64 x 0.46 to 0.98 mm = 29 to 63 mm over LIDC), so CTs with pixels outside the training range get
a warning (:data:`TRAINED_SPACING_MM`, :mod:`lungai.ugsnet.pipeline`).
Intensities: HU clipped to the lung window ``HU_WINDOW`` = [-1000, 400] and scaled to [0, 1] (the V1 code used
raw HU or a 3-window stack; one window keeps the model single-channel).
"""

from __future__ import annotations

import numpy as np

from lungai.intensity import window_to_unit

INPUT_SIZE = 64
TRAINED_SPACING_MM = (0.46, 0.98)  # in-plane pixel spacing range of the LIDC training crops
HU_WINDOW = (-1000.0, 400.0)


def normalise_hu(image_hu: np.ndarray, window: tuple[float, float] = HU_WINDOW) -> np.ndarray:
    """Clip HU to ``window`` and scale linearly to [0, 1] (float32)."""
    return window_to_unit(image_hu, window)


def patch_origin(center_rc: tuple[float, float], size: int = INPUT_SIZE) -> tuple[int, int]:
    """Image (row, col) of the patch's pixel (0, 0): the pixel nearest ``center_rc`` lands on (size // 2, size // 2)."""
    return tuple(int(np.floor(c + 0.5)) - size // 2 for c in center_rc)  # type: ignore[return-value]


def extract_patch(
    image: np.ndarray, center_rc: tuple[float, float], *, size: int = INPUT_SIZE, edge: bool = True
) -> np.ndarray:
    """The ``size`` x ``size`` block of ``image`` (H, W) at :func:`patch_origin`; pixels beyond the image take the
    nearest edge value (``edge``, for CT) or zero (masks)."""
    r0, c0 = patch_origin(center_rc, size)
    height, width = image.shape
    pad = max(0, -r0, -c0, r0 + size - height, c0 + size - width)
    padded = np.pad(image, pad, mode="edge" if edge else "constant")
    return padded[r0 + pad : r0 + pad + size, c0 + pad : c0 + pad + size].copy()


def paste_patch(patch: np.ndarray, center_rc: tuple[float, float], shape: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`extract_patch`: ``patch`` placed on a zero image of ``shape``, cut at the image's edges."""
    out = np.zeros(shape, patch.dtype)
    r0, c0 = patch_origin(center_rc, patch.shape[0])
    rows = slice(max(r0, 0), min(r0 + patch.shape[0], shape[0]))
    cols = slice(max(c0, 0), min(c0 + patch.shape[1], shape[1]))
    out[rows, cols] = patch[rows.start - r0 : rows.stop - r0, cols.start - c0 : cols.stop - c0]
    return out
