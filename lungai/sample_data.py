"""Bundled real data: the chest CT and its lung segmentation that ``slicerio`` ships.

``CTChest4.nrrd`` is a real chest CT (128 x 128 x 34 voxels, 3.05 x 3.05 x 10 mm) with a
segmentation that includes the right and left lungs. Both are read through :mod:`lungai.io`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lungai.errors import LungAIError
from lungai.io import read_segmentation, read_volume
from lungai.segments import TERMINOLOGY_LEFT_LUNG, TERMINOLOGY_RIGHT_LUNG, SegmentSpec
from lungai.volume import Volume

RIGHT_LUNG = SegmentSpec("Right lung", 1, (0.50, 0.68, 0.50), TERMINOLOGY_RIGHT_LUNG)
LEFT_LUNG = SegmentSpec("Left lung", 2, (0.27, 0.51, 0.71), TERMINOLOGY_LEFT_LUNG)
ATTRIBUTION = "CTChest4 chest CT and lung segmentation from the slicerio package (3D Slicer sample data)."


def _slicerio_data() -> Path:
    try:
        import slicerio
    except ImportError as error:
        raise LungAIError("The sample data needs the 'slicerio' package: pip install slicerio.") from error
    return Path(slicerio.__file__).parent / "data"


def chest_ct_path() -> Path:
    return _slicerio_data() / "CTChest4.nrrd"


def chest_ct() -> Volume:
    """The real chest CT in Hounsfield units."""
    volume = read_volume(chest_ct_path())
    volume.array = volume.array.astype(np.int16)
    return volume


def chest_lungs() -> tuple[Volume, list[SegmentSpec]]:
    """Lung labelmap on the CT's grid: 1 right lung, 2 left lung, 0 elsewhere."""
    labelmap, specs = read_segmentation(_slicerio_data() / "Segmentation.seg.nrrd")
    masks = {
        spec.name.lower(): (labelmap.array if labelmap.array.ndim == 3 else labelmap.array[spec.layer]) == spec.label
        for spec in specs
    }
    lungs = np.zeros(masks["right lung"].shape, dtype=np.uint8)
    lungs[masks["right lung"]] = RIGHT_LUNG.label
    lungs[masks["left lung"]] = LEFT_LUNG.label
    return labelmap.like(lungs), [RIGHT_LUNG, LEFT_LUNG]
