"""Whole-slice training and test samples with exact masks: real LIDC-IDRI nodules inserted into the lungs of real
slices (issue 12, item 1).

IQ-OTH/NCCD has no masks, and LIDC-IDRI nodule crops (71 x 71 px) are not whole slices. Inserting the real nodule of
a crop (its HU values inside its readers' consensus mask) into the lung of a real slice without neoplasm gives a
whole slice with a neoplasm whose mask is known exactly; the slice without the nodule is the matching negative.

Method (:func:`insert_nodule`), on any slice whose grey values are the snapshot window applied to HU
(:func:`lungai.nlb.framing.hu_to_unit`), or, with ``in_hu``, on a CT slice in HU (the blend is then in HU):

1. **Size and spacing.** The crop (pixel ``crop_mm``) is resampled in HU to the slice's pixel size ``slice_mm`` by
   area averaging (bilinear with antialiasing when shrinking), so a nodule keeps its size in millimetres: a 10 mm
   nodule covers 7 px of a 1.40 mm snapshot and 3.3 px of a 3 mm CT slice, with the partial-volume blur such a
   scanner shows (the scanner averages attenuation, so the averaging is in HU and the snapshot window comes after).
   The consensus mask (pixels drawn by at least half of the crop's readers) is resampled the same way as a fraction
   ``f`` in [0, 1]; the inserted mask is ``f >= 0.5``.
2. **Blending.** The nodule's windowed grey values ``n`` replace the slice's ``s`` with weight ``alpha = f``
   smoothed by a Gaussian of :data:`FEATHER_PX` px: ``out = s + alpha * max(n - s, 0)``. Only brightening is
   allowed, so the vessels the slice already shows are kept and the crop's own lung background (black in this
   window, like the slice's lung) never darkens anything; the border fades over about one pixel, so no edge marks the
   insertion.
3. **Placement** (:func:`placement_centres`): the nodule's centre is drawn among the pixels of the slice's lung
   region whose distance to the region's border is at least the nodule's radius (:func:`footprint_radius_px`, the
   disc that holds the whole mask whatever its shape) plus :data:`MARGIN_MM`, so the whole nodule lies inside the
   lung. The lung region of an HU slice is the shared lung field
   (:func:`lungai.lungfield.lung_field`); on snapshots, where this window shows lung and fat equally black, it is
   the black lung parenchyma of :func:`lungai.nlb.regions.snapshot_field`.

**What the snapshot window shows.** The snapshots' window (-50, 265) HU is a mediastinal one: lung and anything
below -50 HU is black. Measured on the 1,669 usable LIDC nodules: 30 % have no pixel above -50 HU inside their
consensus mask even at the crop's own resolution (ground-glass and part-solid nodules), 37 % of those of 5-10 mm. Such
a nodule is invisible to a network that sees slices the way the snapshots show them, and training it to mark a black
patch of lung teaches it to mark black lung anywhere. :func:`shows_in_window` keeps the nodules of which at least
:data:`MIN_VISIBLE_SHARE` of the inserted mask lies above the window's lower end at the slice's pixel size; training
inserts only those (at the snapshots' 1.40 mm), and ``bench/nlb/ct_check.py`` reports both all nodules and those
the window shows at the CT's pixel size.

Nodules whose crop has no lung in it (10th HU percentile above -600 HU: an unapplied rescale intercept) or whose
consensus mask is under :data:`MIN_DIAMETER_MM` in equivalent diameter are not used (:func:`usable_nodules`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from torch.nn import functional as F

from lungai.nlb.framing import SNAPSHOT_WINDOW, hu_to_unit

FEATHER_PX = 0.7
MARGIN_MM = 3.0
MIN_DIAMETER_MM = 5.0
LUNG_CHECK_HU = -600.0
MIN_VISIBLE_SHARE = 0.25


@dataclass(frozen=True)
class Nodule:
    """One LIDC nodule crop: HU (H, W), consensus mask (H, W) bool, in-plane pixel size in mm."""

    hu: np.ndarray
    mask: np.ndarray
    pixel_mm: float

    @property
    def diameter_mm(self) -> float:
        """Equivalent diameter of the consensus mask."""
        return float(2 * np.sqrt(self.mask.sum() / np.pi) * self.pixel_mm)


def consensus_masks(masks: np.ndarray, n_readers: np.ndarray) -> np.ndarray:
    """(N, R, H, W) reader masks -> (N, H, W) pixels marked by at least ceil(n / 2) of the n real readers."""
    needed = np.ceil(np.asarray(n_readers) / 2).astype(int)
    return masks.sum(axis=1) >= needed[:, None, None]


def usable_nodules(hu: np.ndarray, consensus: np.ndarray, pixel_mm: np.ndarray) -> np.ndarray:
    """Boolean (N,): crops with lung in them (see the module docstring) and a consensus mask of at least
    :data:`MIN_DIAMETER_MM`."""
    has_lung = np.percentile(hu.reshape(len(hu), -1), 10, axis=1) < LUNG_CHECK_HU
    diameter = 2 * np.sqrt(consensus.sum(axis=(1, 2)) / np.pi) * np.asarray(pixel_mm)
    return has_lung & (diameter >= MIN_DIAMETER_MM)


def resample_nodule(nodule: Nodule, slice_mm: float, in_hu: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The crop's windowed grey values (``in_hu``: its HU) and mask fraction resampled to ``slice_mm`` pixels
    (step 1)."""
    factor = nodule.pixel_mm / slice_mm
    size = max(1, int(round(nodule.hu.shape[0] * factor))), max(1, int(round(nodule.hu.shape[1] * factor)))
    stack = torch.from_numpy(np.stack([nodule.hu.astype(np.float32), nodule.mask.astype(np.float32)]))[None]
    out = F.interpolate(stack, size=size, mode="bilinear", align_corners=False, antialias=factor < 1)[0]
    hu = out[0].numpy()
    return (hu if in_hu else hu_to_unit(hu)), out[1].clamp(0, 1).numpy()


def shows_in_window(nodule: Nodule, slice_mm: float) -> bool:
    """True when at least :data:`MIN_VISIBLE_SHARE` of the nodule's inserted mask at ``slice_mm`` pixels lies above
    the lower end of the snapshot window (:data:`lungai.nlb.framing.SNAPSHOT_WINDOW`), i.e. is not black."""
    hu, fraction = resample_nodule(nodule, slice_mm, in_hu=True)
    inside = fraction >= 0.5
    if not inside.any():
        return False
    return bool((hu[inside] > SNAPSHOT_WINDOW[0]).mean() >= MIN_VISIBLE_SHARE)


def footprint_radius_px(nodule: Nodule, slice_mm: float) -> float:
    """Distance in slice pixels from the centre :func:`insert_nodule` uses (the mask's bounding-box centre) to the
    farthest inserted mask pixel, plus half a pixel: the radius of the disc the nodule fits in, whatever its shape."""
    _, fraction = resample_nodule(nodule, slice_mm)
    rows, cols = np.nonzero(fraction >= 0.5)
    if len(rows) == 0:
        return 0.5
    centre_row, centre_col = round((rows.min() + rows.max()) / 2), round((cols.min() + cols.max()) / 2)
    return float(np.sqrt((rows - centre_row) ** 2 + (cols - centre_col) ** 2).max()) + 0.5


def placement_centres(region: np.ndarray, radius_px: float, slice_mm: float) -> np.ndarray:
    """(K, 2) pixel positions of ``region`` at least ``radius_px`` + :data:`MARGIN_MM` from its border."""
    distance = ndimage.distance_transform_edt(region)
    return np.argwhere(distance >= radius_px + MARGIN_MM / slice_mm)


def insert_nodule(
    image: np.ndarray, nodule: Nodule, slice_mm: float, centre: tuple[int, int], in_hu: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Insert ``nodule`` into the windowed slice ``image`` (H, W) in [0, 1] (``in_hu``: a slice in HU) with its mask
    centre at ``centre``.

    Returns (image with the nodule, inserted mask (H, W) bool); steps 1 and 2 of the module docstring. Parts that
    would fall outside the image are cut off.
    """
    grey, fraction = resample_nodule(nodule, slice_mm, in_hu)
    rows, cols = np.nonzero(fraction >= 0.5)
    if len(rows) == 0:
        rows, cols = np.unravel_index([int(np.argmax(fraction))], fraction.shape)
    top = int(centre[0]) - int(round((rows.min() + rows.max()) / 2))
    left = int(centre[1]) - int(round((cols.min() + cols.max()) / 2))
    alpha = np.clip(ndimage.gaussian_filter(fraction, FEATHER_PX), 0, 1) if FEATHER_PX > 0 else fraction
    height, width = image.shape
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + grey.shape[0], height), min(left + grey.shape[1], width)
    out = np.array(image, dtype=np.float32, copy=True)
    mask = np.zeros(image.shape, dtype=bool)
    if r0 >= r1 or c0 >= c1:
        return out, mask
    patch = (slice(r0 - top, r1 - top), slice(c0 - left, c1 - left))
    target = out[r0:r1, c0:c1]
    out[r0:r1, c0:c1] = target + alpha[patch] * np.maximum(grey[patch] - target, 0)
    mask[r0:r1, c0:c1] = fraction[patch] >= 0.5
    return out, mask


def insert_at_random(
    image: np.ndarray,
    region: np.ndarray,
    nodule: Nodule,
    slice_mm: float,
    rng: np.random.Generator,
    in_hu: bool = False,
) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`insert_nodule` at a centre drawn from :func:`placement_centres`; None when the region has no room."""
    centres = placement_centres(region, footprint_radius_px(nodule, slice_mm), slice_mm)
    if len(centres) == 0:
        return None
    return insert_nodule(image, nodule, slice_mm, tuple(centres[rng.integers(len(centres))]), in_hu)
