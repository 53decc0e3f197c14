"""Score every axial slice of a CT (or one 2-D image) and segment the neoplasm on slices judged positive.

Each slice is a snapshot: it is turned to the radiological view (anterior at the top, the patient's right on
the left, as the IQ-OTH/NCCD snapshots are shown, using the volume's direction like
:func:`lungai.plotting.radiological_view`), mapped to [0, 1] and framed to the network grid like a snapshot by
:mod:`lungai.nlb.intensity` (HU: the measured snapshot window, 1.87 mm pixels, the body centred), and passed through
the network. The segmentation probabilities are mapped back to the slice's pixel grid, turned back to the volume's
own orientation and thresholded. Findings are reported only inside the lungs (:mod:`lungai.nlb.regions`): on CT the
segmentation is cut to the shared lung field, and a slice is positive only if its probability reaches the decision
threshold *and* the segmentation locates the finding inside the lungs (a slice without lung, or whose finding lies
outside the lungs, is never positive; its probability is still reported); on 8-bit snapshots, whose window hides
the lungs' outline, the segmentation is cut to the body and the probability alone decides.

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
from lungai.nlb.regions import findings_region
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
    labelmap: np.ndarray  # (Z, H, W) uint8: 1 = neoplasm region (only on positive slices, only in the lungs)
    intensity: str  # "HU" or "8-bit": how the input was mapped to [0, 1]
    # (Z,) bool: the slice may be reported positive (on CT: it shows lung and the segmentation located the finding
    # inside the lungs); None: every slice may (snapshots, whose lungs are not known)
    reportable: np.ndarray | None = None

    @property
    def decisions(self) -> np.ndarray:
        decisions = self.probabilities >= self.threshold
        return decisions if self.reportable is None else decisions & self.reportable

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
    spacing: tuple[float, float, float] | None = None,
    threshold: float = 0.5,
    seg_threshold: float = 0.5,
    size: int = INPUT_SIZE,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    restrict: bool = True,
) -> SliceScores:
    """Classify and segment every slice of ``array`` ((Z, H, W) volume, (H, W) image or (H, W, 3|4) colour).

    ``spacing``: (x, y, z) voxel size in mm, needed for CT in HU (framing and lung field). ``seg_threshold``: on the
    segmentation probability; use the model's calibrated value (:func:`lungai.nlb.evaluation.seg_threshold_of` of
    its checkpoint header). ``restrict=False`` returns the network's own output, not cut to the lungs (to measure
    what the restriction removes).
    """
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"the decision threshold must lie in [0, 1], got {threshold}")
    flips = _radiological_flips(direction) if direction is not None else (False, False)
    array = to_grey(np.asarray(array))
    array = array[None] if array.ndim == 2 else array
    region = findings_region(array, spacing, direction)
    pixel_mm = None if spacing is None else (float(spacing[1]), float(spacing[0]))
    body = _flip(region.body, *flips)
    images, framing, kind = prepare_slices(_flip(array, *flips), pixel_mm, body, size)
    probabilities, maps = predict(model, images, batch_size=batch_size, device=device, progress=progress, cancel=cancel)
    has_lung = region.lungs.any(axis=(1, 2)) if restrict else np.ones(len(probabilities), dtype=bool)
    allowed = region.lungs if restrict else np.ones_like(region.lungs)
    positive = (probabilities >= threshold) & has_lung
    labelmap = np.zeros((len(probabilities), framing.height, framing.width), dtype=np.uint8)
    if positive.any():
        restored = framing.restore(torch.from_numpy(maps[positive])[:, None]).numpy()
        labelmap[positive] = _flip(restored >= seg_threshold, *flips) & allowed[positive]
    if region.snapshot or not restrict:
        return SliceScores(probabilities, threshold, labelmap, kind)
    return SliceScores(probabilities, threshold, labelmap, kind, labelmap.any(axis=(1, 2)))


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
    return score_slices(model, volume.array, volume.direction, spacing=volume.spacing, **kwargs)


def read_input(path: str | Path) -> Volume:
    """A CT volume (any format :func:`lungai.io.read_volume` reads) or a 2-D picture as a one-slice Volume."""
    path = Path(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return Volume(read_snapshot(path)[None])
    return read_volume(path)
