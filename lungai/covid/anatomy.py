"""Anatomical limits on CHS-Net's output: body, airways and the HU lung field (issue 12).

The networks see one slice at a time and know nothing of anatomy; on a normal chest CT they marked air
between the patient's back and the table as lung and infection, and let a lung run into the trachea. The
shared HU lung field (:mod:`lungai.lungfield`) sets the limits, on a volume or on one 2-D slice:

- **Infection** is cut to the body. Of its connected components only those that touch the aerated lung
  field and are denser than the patient's aerated lung (median at least :data:`OPACITY_MARGIN_HU` above
  the median of the lung field outside the predicted infection: ground glass is by definition hazier than
  normal lung) are kept, and kept whole. Keeping whole components matters: consolidation is as dense as
  soft tissue, so a HU lung field misses it, and cutting infection to the lung field would erase exactly
  the dense disease at the lung border (on the 50 MedSeg slices, 86 % of the doctors' infection pixels lie
  in components that touch the 2-D lung field; the density rule removes a further 0.7 %).
- **Lungs** are the network's lungs inside the aerated lung field (so never in the airways, outside the
  body or in the air behind the patient), plus the infection kept (infected lung is lung).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from lungai.lungfield import LungField

OPACITY_MARGIN_HU = 80.0


def constrain(
    lungs: np.ndarray, infection: np.ndarray, field: LungField, hu: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(lungs, infection) within the anatomical limits of ``field`` (module docstring).

    All arrays share one shape: a (z, y, x) volume or a (y, x) slice; ``hu`` is the CT in HU.
    """
    labels, count = ndimage.label(infection & field.body)
    kept = np.zeros_like(infection, dtype=bool)
    if count and field.lungs.any():
        aerated = field.lungs & ~infection
        baseline = float(np.median(hu[aerated if aerated.any() else field.lungs]))
        index = np.arange(1, count + 1)
        inside = labels > 0  # statistics over the components' voxels only (ndimage sorts whatever it is given)
        touches = ndimage.maximum(field.lungs[inside], labels[inside], index) > 0
        medians = ndimage.median(hu[inside], labels[inside], index)
        good = index[touches & (np.asarray(medians) >= baseline + OPACITY_MARGIN_HU)]
        kept = np.isin(labels, good)
    return (lungs & field.lungs) | kept, kept
