"""A CT with real nodules in it and their exact masks: the check of NeoplasmNLB on HU volumes (issue 12 item 1).

No CT we may ship has neoplasm masks, so real LIDC-IDRI nodules of patients the model never trained on are inserted
into a real CT in HU (:mod:`lungai.nlb.insertion` with ``in_hu``: resampled to the CT's pixel spacing, blended in HU,
placed inside the shared lung field with a margin), on every other slice that has room in its lungs. The slices in
between stay as they were and are the negatives of the same scan. Each nodule lies on one slice (a 10 mm slice holds
most of a nodule under 10 mm; larger ones would show on neighbouring slices too, which this check leaves out).
Every nodule slice records whether the snapshot window shows that nodule at the CT's pixel size
(:func:`lungai.nlb.insertion.shows_in_window`): a network that sees CT through that window cannot find the others.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lungai.lungfield import lung_field
from lungai.nlb.insertion import Nodule, insert_at_random, shows_in_window
from lungai.volume import Volume


@dataclass
class InsertedCT:
    """The CT with nodules, the inserted masks (Z, H, W), which slices got one, and each nodule's diameter."""

    volume: Volume
    masks: np.ndarray
    nodule_slices: np.ndarray  # slice indices with a nodule
    diameters_mm: np.ndarray  # per nodule slice
    visible: np.ndarray  # per nodule slice: the snapshot window shows it at the CT's pixel size (shows_in_window)


def insert_into_ct(volume: Volume, nodules: list[Nodule], seed: int = 0, every: int = 2) -> InsertedCT:
    """Insert one nodule (drawn from ``nodules`` with ``seed``) into every ``every``-th slice that has room in its
    lungs, starting at slice ``seed % every``; the volume is not changed in place."""
    if volume.spacing[0] != volume.spacing[1]:
        raise ValueError("nodule insertion needs square pixels")
    rng = np.random.default_rng(seed)
    lungs = lung_field(volume).lungs
    array = volume.array.astype(np.float32)
    masks = np.zeros(array.shape, dtype=bool)
    slices, diameters, visible = [], [], []
    for k in range(seed % every, array.shape[0], every):
        if not lungs[k].any():
            continue
        nodule = nodules[rng.integers(len(nodules))]
        result = insert_at_random(array[k], lungs[k], nodule, float(volume.spacing[0]), rng, in_hu=True)
        if result is None:
            continue
        array[k], masks[k] = result
        slices.append(k)
        diameters.append(nodule.diameter_mm)
        visible.append(shows_in_window(nodule, float(volume.spacing[0])))
    inserted = volume.like(np.round(array).astype(volume.array.dtype))
    return InsertedCT(inserted, masks, np.array(slices, dtype=int), np.array(diameters), np.array(visible, dtype=bool))


def score_inserted(model, inserted: InsertedCT, *, threshold: float, seg_threshold: float) -> list[dict]:
    """Score ``inserted.volume`` with :func:`lungai.nlb.pipeline.score_volume`; one row per slice: whether it holds
    a nodule (and its diameter), the probability, the decision, and on nodule slices the Dice of the segmentation
    against the inserted mask."""
    from lungai.metrics import dice
    from lungai.nlb.pipeline import score_volume

    scores = score_volume(model, inserted.volume, threshold=threshold, seg_threshold=seg_threshold)
    diameters = dict(zip(inserted.nodule_slices.tolist(), inserted.diameters_mm.tolist()))
    visible = dict(zip(inserted.nodule_slices.tolist(), inserted.visible.tolist()))
    rows = []
    for k, (probability, decision) in enumerate(zip(scores.probabilities, scores.decisions)):
        nodule = k in diameters
        rows.append(
            {
                "slice": k,
                "nodule": int(nodule),
                "diameter_mm": round(diameters[k], 1) if nodule else "",
                "visible": int(visible[k]) if nodule else "",
                "probability": round(float(probability), 4),
                "positive": int(decision),
                "dice": round(float(dice(scores.labelmap[k] > 0, inserted.masks[k])), 4) if nodule else "",
                "segmented_voxels": int(scores.labelmap[k].sum()),
            }
        )
    return rows
