"""Segment descriptions (name, label, colour, terminology) and packing of overlapping masks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

_CONTEXT = "Segmentation category and type - 3D Slicer General Anatomy list"
_ANATOMY = "Anatomic codes - DICOM master list"


def terminology(
    category: str, type_: str, modifier: str = "^^", region: str = "^^", region_modifier: str = "^^"
) -> str:
    """A Slicer terminology entry string from DICOM codes written ``scheme^value^meaning``."""
    return "~".join([_CONTEXT, category, type_, modifier, _ANATOMY, region, region_modifier])


_ANATOMICAL = "SCT^123037004^Anatomical Structure"
_MORPHOLOGY = "SCT^49755003^Morphologically Altered Structure"
TERMINOLOGY_LUNG = terminology(_ANATOMICAL, "SCT^39607008^Lung")
TERMINOLOGY_RIGHT_LUNG = terminology(_ANATOMICAL, "SCT^39607008^Lung", "SCT^24028007^Right")
TERMINOLOGY_LEFT_LUNG = terminology(_ANATOMICAL, "SCT^39607008^Lung", "SCT^7771000^Left")
TERMINOLOGY_NODULE = terminology(_MORPHOLOGY, "SCT^27925004^Nodule", region="SCT^39607008^Lung")
TERMINOLOGY_NEOPLASM = terminology(_MORPHOLOGY, "SCT^108369006^Neoplasm", region="SCT^39607008^Lung")
TERMINOLOGY_INFECTION = terminology(_MORPHOLOGY, "SCT^52988006^Lesion", region="SCT^39607008^Lung")


@dataclass(frozen=True)
class SegmentSpec:
    """How one segment is named and shown. ``label`` is its value in ``layer`` of a labelmap."""

    name: str
    label: int
    color: tuple[float, float, float]
    terminology: str | None = None
    layer: int = 0


def pack_masks(masks: Sequence[np.ndarray], specs: Sequence[SegmentSpec]) -> tuple[np.ndarray, list[SegmentSpec]]:
    """Pack binary masks that may overlap into as few labelmap layers as possible.

    Returns an array (layers, *mask.shape) of label values and the specs with their ``layer``
    and ``label`` set (labels count from 1 within each layer). A single-layer result still has
    the leading layer axis.
    """
    if len(masks) != len(specs):
        raise ValueError("one spec per mask is required")
    if not masks:
        raise ValueError("at least one mask is required")
    shape = masks[0].shape
    layers: list[np.ndarray] = []
    packed: list[SegmentSpec] = []
    for mask, spec in zip(masks, specs):
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != shape:
            raise ValueError(f"mask '{spec.name}' has shape {mask.shape}, expected {shape}")
        for index, layer in enumerate(layers):  # noqa: B007 - the index found is used below
            if not np.any(layer[mask]):
                break
        else:
            layers.append(np.zeros(shape, dtype=np.uint8))
            index = len(layers) - 1
        label = int(layers[index].max()) + 1
        layers[index][mask] = label
        packed.append(replace(spec, label=label, layer=index))
    return np.stack(layers), packed


def unpack_masks(labelmap: np.ndarray, specs: Sequence[SegmentSpec]) -> dict[str, np.ndarray]:
    """Binary mask per segment name from a labelmap of shape (z, y, x) or (layers, z, y, x)."""
    layers = labelmap if labelmap.ndim == 4 else labelmap[np.newaxis]
    return {spec.name: layers[spec.layer] == spec.label for spec in specs}
