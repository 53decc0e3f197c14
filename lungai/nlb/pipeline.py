"""Score every axial slice of a CT (or one 2-D image) and segment the neoplasm on slices judged positive.

Each slice is a snapshot: it is turned to the radiological view (anterior at the top, the patient's right on
the left, as the IQ-OTH/NCCD snapshots are shown, using the volume's direction like
:func:`lungai.plotting.radiological_view`), mapped to [0, 1] and 128 x 128 by :mod:`lungai.nlb.intensity`,
and passed through the network. The segmentation probabilities are resized back to the slice's pixel grid,
turned back to the volume's own orientation and thresholded; slices whose neoplasm probability is below the
decision threshold get no segmentation.

A volume of one slice is a single snapshot (one row, one point in the plot). Non-axial volumes are refused:
resample them to axial slices first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lungai.errors import InputError
from lungai.io import read_volume
from lungai.nlb.data import IMAGE_SUFFIXES, read_snapshot
from lungai.nlb.evaluation import predict
from lungai.nlb.intensity import INPUT_SIZE, prepare_slices, to_grey
from lungai.progress import CancelToken, ProgressCallback
from lungai.segments import TERMINOLOGY_NEOPLASM, SegmentSpec
from lungai.volume import Volume

NEOPLASM_SEGMENT = SegmentSpec("Neoplasm", 1, (0.89, 0.35, 0.21), TERMINOLOGY_NEOPLASM)
DEFAULT_MODEL_ID = "nlb_unet_demo"


@dataclass
class SliceScores:
    """Per-slice results in the input array's own (z, y, x) order."""

    probabilities: np.ndarray  # (Z,) neoplasm probability per slice
    threshold: float  # decision threshold on the probability
    labelmap: np.ndarray  # (Z, H, W) uint8: 1 = neoplasm region (only on positive slices)
    intensity: str  # "HU" or "8-bit": how the input was mapped to [0, 1]

    @property
    def decisions(self) -> np.ndarray:
        return self.probabilities >= self.threshold

    @property
    def most_likely_slice(self) -> int:
        return int(np.argmax(self.probabilities))

    def rows(self) -> list[dict]:
        """One row per slice: index, probability, decision (1 = neoplasm present)."""
        return [
            {"slice": k, "probability": round(float(p), 6), "decision": int(d)}
            for k, (p, d) in enumerate(zip(self.probabilities, self.decisions))
        ]

    def summary(self) -> dict:
        return {
            "slices": int(len(self.probabilities)),
            "positive_slices": int(self.decisions.sum()),
            "threshold": self.threshold,
            "most_likely_slice": self.most_likely_slice,
            "max_probability": float(self.probabilities.max()),
            "intensity": self.intensity,
            "segmented_voxels": int(self.labelmap.sum()),
        }


def _radiological_flips(direction: np.ndarray) -> tuple[bool, bool]:
    """(flip rows, flip columns) that bring an axial slice to the radiological view."""
    return bool(direction[1, 1] < 0), bool(direction[0, 0] < 0)


def _flip(array: np.ndarray, flip_rows: bool, flip_columns: bool) -> np.ndarray:
    if flip_rows:
        array = array[..., ::-1, :]
    if flip_columns:
        array = array[..., ::-1]
    return np.ascontiguousarray(array)


def score_slices(
    model: nn.Module,
    array: np.ndarray,
    direction: np.ndarray | None = None,
    *,
    threshold: float = 0.5,
    seg_threshold: float = 0.5,
    size: int = INPUT_SIZE,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> SliceScores:
    """Classify and segment every slice of ``array`` ((Z, H, W) volume, (H, W) image or (H, W, 3|4) colour).

    ``seg_threshold``: on the segmentation probability; use the model's calibrated value
    (:func:`lungai.nlb.evaluation.seg_threshold_of` of its checkpoint header).
    """
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"the decision threshold must lie in [0, 1], got {threshold}")
    flips = _radiological_flips(direction) if direction is not None else (False, False)
    images, resize, kind = prepare_slices(np.asarray(array), size)
    images = torch.flip(images, [d for d, f in zip((-2, -1), flips) if f]) if any(flips) else images
    probabilities, maps = predict(model, images, batch_size=batch_size, device=device, progress=progress, cancel=cancel)
    positive = probabilities >= threshold
    labelmap = np.zeros((len(probabilities), resize.height, resize.width), dtype=np.uint8)
    if positive.any():
        restored = resize.restore(torch.from_numpy(maps[positive])[:, None]).numpy()
        labelmap[positive] = _flip(restored >= seg_threshold, *flips)
    return SliceScores(probabilities, threshold, labelmap, kind)


def score_volume(model: nn.Module, volume: Volume, **kwargs) -> SliceScores:
    """:func:`score_slices` on the axial slices of ``volume`` (see the module docstring).

    A colour volume (Z, H, W, 3|4), as Slicer loads an RGB picture, is converted to grey first.
    """
    if volume.array.ndim == 4 and volume.array.shape[-1] in (3, 4):
        volume = Volume(to_grey(volume.array), volume.spacing, volume.origin, volume.direction)
    if volume.array.ndim != 3:
        raise InputError(f"expected a volume of shape (slices, rows, columns), got {volume.array.shape}")
    if not volume.is_axial():
        raise InputError(
            "the volume's slices are not axial; resample it to axial slices (for example with "
            "Slicer's Resample Scalar/Vector/DWI Volume) before scoring slices"
        )
    return score_slices(model, volume.array, volume.direction, **kwargs)


def read_input(path: str | Path) -> Volume:
    """A CT volume (any format :func:`lungai.io.read_volume` reads) or a 2-D picture as a one-slice Volume."""
    path = Path(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return Volume(read_snapshot(path)[None])
    return read_volume(path)
