"""NeoplasmNLB's second input channel: the lungs below the snapshot window, where sub-solid nodules are.

The snapshot window (-50, 265) HU (:data:`lungai.nlb.framing.SNAPSHOT_WINDOW`) shows lung, ground glass and fat as
black. Measured on the 316 usable nodules of the held-out LIDC patients (nodule fold 0 of 5) at CTChest4's 3.05 mm
pixels: only 28 % have a quarter of their inserted mask above -50 HU, 54 % above -300, 75 % above -500 and 85 %
above -600 HU. A network that sees CT only through the snapshot window cannot find most of them (issue 12 asks
80 %).

**The view.** Channel 2 is the **lung view**: HU through :data:`LUNG_VIEW_WINDOW` = (-1000, -50) HU, the range
just below the snapshot window (the two channels together span -1000 to 265 HU without overlap), shown only inside
the lungs and 0 elsewhere (outside the lungs channel 1 already says everything the snapshots can teach). A pixel is
white in the lung view exactly when it is not black in the snapshot view.

* CT in HU (:func:`ct_lung_view`): the shared lung field (:func:`lungai.lungfield.lung_field`), HU windowed.
* 8-bit snapshots (:func:`snapshot_lung_view`): their lungs are clipped black, so their HU below -50 is unknown.
  The lung region is the black parenchyma of :func:`lungai.nlb.regions.snapshot_field` with its holes filled
  (vessels, nodules); a non-black pixel there is white (at least -50 HU, exactly as on CT), a black one (grey at
  most :data:`lungai.nlb.regions.DARK_GREY`, about 10 of 255: the snapshots' lungs are speckled, measured on 34
  normal snapshots 17 % of lung pixels have grey 1 or more, 1.1 % more than 10, against 0.6 % of CTChest4's lung
  field above -50 HU; isolated bright pixels are speckle, so a pixel counts as shown when its 3 x 3 median is not
  black) is lung parenchyma at :data:`PARENCHYMA_HU` (CTChest4's median lung HU, -863). On snapshots the lung
  view therefore shows the lung's outline and what the snapshot shows in it, no more: nothing is invented at
  inference.
* Training (:func:`paste_disc`): real lung texture in HU from LIDC-IDRI crops (the training patients' crops,
  discs at least :data:`TEXTURE_MARGIN_MM` away from the nodule's consensus mask, mostly lung) is blended into the
  flat parenchyma of normal, benign, malignant and inserted-nodule slices alike (so texture tells no class apart),
  and an inserted nodule comes with its own real surroundings (a disc of :data:`SURROUNDING_MM` around the nodule):
  in the lung view the HU replace the flat level; in the snapshot view only what lies above -50 HU brightens the
  slice (vessels, solid parts), as a CT slice would show it. Real CT lungs are textured everywhere (on CTChest4
  3.3 % of lung pixels lie above -500 HU, in 57 in-plane blobs of at least 5 pixels; ``bench/nlb/lung_view.md``),
  so the network must learn that vessels in the lung view are normal: the texture discs teach it that on real
  LIDC lung.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from lungai.intensity import window_to_unit
from lungai.nlb.framing import SNAPSHOT_WINDOW, hu_to_unit
from lungai.nlb.insertion import FEATHER_PX, Nodule, footprint_radius_px, resample_nodule
from lungai.nlb.regions import DARK_GREY

LUNG_VIEW_WINDOW: tuple[float, float] = (-1000.0, SNAPSHOT_WINDOW[0])
PARENCHYMA_HU = -863.0  # CTChest4's median HU inside the shared lung field (bench/nlb/lung_view.md)
TEXTURE_RADIUS_MM = (4.0, 10.0)  # radius of the lung texture discs of training
TEXTURE_MARGIN_MM = 5.0  # a texture disc keeps this far from the crop's nodule
TEXTURE_MAX_HU = -500.0  # a texture disc whose mean HU lies above this is chest wall or mediastinum, not lung
SURROUNDING_MM = 4.0  # an inserted nodule brings this much of its own lung around it
MAX_TEXTURE_DISCS = 32


def lung_view_of_hu(hu: np.ndarray, lungs: np.ndarray) -> np.ndarray:
    """HU (any shape) through :data:`LUNG_VIEW_WINDOW`, 0 outside ``lungs`` (float32 in [0, 1])."""
    return window_to_unit(hu, LUNG_VIEW_WINDOW) * np.asarray(lungs, dtype=np.float32)


def ct_lung_view(hu: np.ndarray, lungs: np.ndarray) -> np.ndarray:
    """The lung view of CT slices in HU inside the shared lung field ``lungs`` (same shape)."""
    return lung_view_of_hu(hu, lungs)


def snapshot_lung_region(parenchyma: np.ndarray) -> np.ndarray:
    """A snapshot's lungs: its black parenchyma (:func:`lungai.nlb.regions.snapshot_field`) with holes filled."""
    return ndimage.binary_fill_holes(parenchyma)


def snapshot_lung_hu(unit: np.ndarray, region: np.ndarray) -> np.ndarray:
    """HU a snapshot (grey / 255) stands for inside its lung ``region``: black = :data:`PARENCHYMA_HU`, grey g =
    the snapshot window's HU; -1000 outside the region (the lung view is 0 there anyway)."""
    low, high = SNAPSHOT_WINDOW
    unit = np.asarray(unit, dtype=np.float32)
    shown = ndimage.median_filter(unit, size=3) > DARK_GREY
    hu = np.where(shown, low + unit * (high - low), np.float32(PARENCHYMA_HU))
    return np.where(region, hu, np.float32(-1000.0)).astype(np.float32)


def snapshot_lung_view(unit: np.ndarray, region: np.ndarray) -> np.ndarray:
    """The lung view of a snapshot at inference (flat parenchyma, white where the snapshot is not black)."""
    return lung_view_of_hu(snapshot_lung_hu(unit, region), region)


def _feathered_disc(shape: tuple[int, int], centre: tuple[float, float], radius_px: float) -> np.ndarray:
    rows, cols = np.indices(shape)
    inside = ((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius_px**2).astype(np.float32)
    return np.clip(ndimage.gaussian_filter(inside, FEATHER_PX), 0, 1) if FEATHER_PX > 0 else inside


def paste_disc(
    unit: np.ndarray,
    lung_hu: np.ndarray,
    source_hu: np.ndarray,
    source_centre: tuple[int, int],
    radius_px: float,
    centre: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """Blend the disc of ``source_hu`` (HU at the slice's pixel size) of ``radius_px`` around ``source_centre``
    into a slice at ``centre``: the lung-view HU ``lung_hu`` take the source's HU (feathered), the snapshot-view
    grey ``unit`` only brightens (the source's windowed grey where it is above the slice's); pixels the snapshot
    already shows (not black) keep at least their HU. Returns new (unit, lung_hu); parts outside either are cut."""
    height, width = unit.shape
    top, left = int(centre[0]) - int(source_centre[0]), int(centre[1]) - int(source_centre[1])
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + source_hu.shape[0], height), min(left + source_hu.shape[1], width)
    unit, lung_hu = np.array(unit, dtype=np.float32), np.array(lung_hu, dtype=np.float32)
    if r0 >= r1 or c0 >= c1:
        return unit, lung_hu
    alpha = _feathered_disc(source_hu.shape, source_centre, radius_px)[r0 - top : r1 - top, c0 - left : c1 - left]
    source = source_hu[r0 - top : r1 - top, c0 - left : c1 - left]
    target_unit, target_hu = unit[r0:r1, c0:c1], lung_hu[r0:r1, c0:c1]
    shown = target_unit > DARK_GREY
    blended = target_hu + alpha * (source - target_hu)
    lung_hu[r0:r1, c0:c1] = np.where(shown, np.maximum(blended, target_hu), blended)
    unit[r0:r1, c0:c1] = target_unit + alpha * np.maximum(hu_to_unit(source) - target_unit, 0)
    return unit, lung_hu


def texture_disc(
    nodule: Nodule, slice_mm: float, rng: np.random.Generator
) -> tuple[np.ndarray, tuple[int, int], float] | None:
    """A disc of real lung from ``nodule``'s crop away from its nodule: (crop HU at ``slice_mm``, disc centre,
    radius in px); None when the crop has no such disc that is mostly lung (mean below :data:`TEXTURE_MAX_HU`)."""
    hu, fraction = resample_nodule(nodule, slice_mm, in_hu=True)
    radius = float(rng.uniform(*TEXTURE_RADIUS_MM)) / slice_mm
    away = ndimage.distance_transform_edt(fraction < 0.1) >= radius + TEXTURE_MARGIN_MM / slice_mm
    rows, cols = np.indices(hu.shape)
    edge = np.minimum.reduce([rows, cols, hu.shape[0] - 1 - rows, hu.shape[1] - 1 - cols])
    candidates = np.argwhere(away & (edge >= radius))
    if len(candidates) == 0:
        return None
    centre = tuple(int(v) for v in candidates[rng.integers(len(candidates))])
    inside = (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2
    if hu[inside].mean() > TEXTURE_MAX_HU:
        return None
    return hu, centre, radius


def nodule_with_surroundings(nodule: Nodule, slice_mm: float) -> tuple[np.ndarray, np.ndarray, tuple[int, int], float]:
    """The crop's HU and mask fraction at ``slice_mm``, the centre :func:`lungai.nlb.insertion.insert_nodule`
    uses (the mask's bounding-box centre) and the radius of the disc holding the nodule plus
    :data:`SURROUNDING_MM` of its lung."""
    hu, fraction = resample_nodule(nodule, slice_mm, in_hu=True)
    rows, cols = np.nonzero(fraction >= 0.5)
    if len(rows) == 0:
        rows, cols = np.unravel_index([int(np.argmax(fraction))], fraction.shape)
    centre = int(round((rows.min() + rows.max()) / 2)), int(round((cols.min() + cols.max()) / 2))
    return hu, fraction, centre, footprint_radius_px(nodule, slice_mm) + SURROUNDING_MM / slice_mm
