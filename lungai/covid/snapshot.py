"""CHS-Net on one 2-D 8-bit windowed slice: the MedSeg format its infection stage learned from.

A snapshot is a one-slice image of grey values 0..255 (a PNG or JPEG screenshot of a lung-windowed CT,
colour turned to grey), not HU. It must be shown as a radiologist views an axial slice: anterior at the
top, the patient's right on the left of the image. (The MedSeg files as distributed with Inf-Net are
stored transposed: transpose them first, or use ``lungai covid evaluate --orientation transposed``.)

The networks see ``grey / 255``. The anatomical limits (:mod:`lungai.covid.anatomy`) use the slice in HU
through :data:`lungai.intensity.MEDSEG_WINDOW`, the window of those slices. Right and left are split at the
body's midline. On a tight crop through dense lungs the HU lung field can fail: when it holds less than
:data:`MIN_AGREEMENT` of the network's lungs (7 of the 50 MedSeg slices with the bundled model), the slice
keeps the network's own output (infection inside its lungs). A snapshot has no pixel size: the burden table
gives the infected share of the lungs and leaves the volumes blank.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lungai.covid.anatomy import constrain
from lungai.covid.cascade import THRESHOLD, Cascade
from lungai.covid.intensity import uint8_to_unit
from lungai.errors import InputError
from lungai.intensity import MEDSEG_WINDOW, grey_to_hu
from lungai.io import IMAGE_2D_SUFFIXES, read_image_2d, read_volume
from lungai.lungfield import lung_field_2d, split_sides
from lungai.progress import CancelToken, ProgressCallback
from lungai.volume import Volume

MIN_AGREEMENT = 0.5


def read_ct_or_snapshot(path: str | Path) -> Volume:
    """A CT volume (:func:`lungai.io.read_volume`), or a picture (PNG, JPEG, ...) as a one-slice grey volume."""
    if Path(path).suffix.lower() in IMAGE_2D_SUFFIXES:
        return Volume(read_image_2d(path)[None])
    return read_volume(path)


def as_snapshot(volume: Volume) -> np.ndarray | None:
    """The grey (y, x) uint8 image when ``volume`` is one 8-bit slice (grey, RGB or RGBA), else None."""
    array = volume.array
    if array.ndim == 4 and array.shape[-1] in (3, 4):
        array = np.round(array[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32))
    if array.ndim != 3 or array.shape[0] != 1 or array.size == 0:
        return None
    if array.dtype == np.uint8:
        return array[0]
    if array.min() >= 0 and array.max() <= 255 and np.array_equal(array, np.round(array)):
        return array[0].astype(np.uint8)
    return None


def segment_snapshot(
    grey: np.ndarray,
    cascade: Cascade,
    window: tuple[float, float] = MEDSEG_WINDOW,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> dict[str, np.ndarray]:
    """Masks ``{"Right lung", "Left lung", "Infection"}`` of one display-oriented 8-bit slice, (y, x) bool."""
    if grey.ndim != 2:
        raise InputError(f"Expected one 2-D slice, got an array of shape {grey.shape}.")
    result = cascade.segment([uint8_to_unit(grey)], progress, cancel)[0]
    field = lung_field_2d(grey, window=window)
    lungs, infection = result.lung > THRESHOLD, result.infection > THRESHOLD
    if (lungs & field.lungs).sum() >= MIN_AGREEMENT * lungs.sum():
        lungs, infection = constrain(lungs, infection, field, grey_to_hu(grey, window))
    if not lungs.any():
        raise InputError(
            "No lungs were found in this slice. CHS-Net expects an axial chest CT slice windowed for the lungs "
            "(about -1024..240 HU to 0..255), anterior at the top and the patient's right on the left."
        )
    columns = np.broadcast_to(np.arange(grey.shape[1], dtype=np.float32), grey.shape)
    right, left = split_sides(lungs, columns, float(columns[field.body].mean()) if field.body.any() else 0.0)
    return {"Right lung": right, "Left lung": left, "Infection": infection}


def segment_labelled_slice(
    image: np.ndarray,
    cascade: Cascade,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> dict[str, np.ndarray]:
    """:func:`segment_snapshot` of a labelled slice's ``image`` (grey / 255), every mask empty when it shows no lungs:
    for scoring and galleries, where such a slice is an empty answer rather than an error."""
    grey = np.round(image * 255).astype(np.uint8)
    try:
        return segment_snapshot(grey, cascade, progress=progress, cancel=cancel)
    except InputError:
        return {name: np.zeros(grey.shape, dtype=bool) for name in ("Right lung", "Left lung", "Infection")}
