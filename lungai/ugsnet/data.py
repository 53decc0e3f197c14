"""The multi-reader LIDC crops (``lidc_multireader.npz`` format) as UGS-Net samples.

A file holds N axial crops (``image_hu`` (N, H, W)), up to four reader masks (``masks`` (N, 4, H, W), the
first ``n_readers`` real, ``masks[:, 0]`` the crop's own reader, "Label1"), ``pixel_spacing_mm`` and
``patient_id``. Every crop is centred on its nodule; :func:`prepare_crops` cuts the network input, the central
64 x 64 native pixels, from it (see :mod:`lungai.ugsnet.preprocess`). Targets (seed 001, Sec. III-B/D): union and
intersection of the real masks (the MCM), every real annotation (fusion loss) and Label1 (baselines, evaluation).

Padding masks never count as annotations: ``n_readers`` says how many are real and every consumer masks
with :func:`reader_validity`. Crops with fewer than ``min_readers`` readers are dropped (the paper keeps
nodules with at least two readers); a crop whose real masks are all empty is rejected with a clear error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from lungai.errors import InputError
from lungai.ugsnet.preprocess import INPUT_SIZE, extract_patch, normalise_hu

MAX_READERS = 4
REQUIRED_KEYS = ("image_hu", "masks", "n_readers", "pixel_spacing_mm", "patient_id")


@dataclass
class CropSet:
    """Crops on the network grid (native pixels). Arrays share the first axis (N)."""

    image_hu: np.ndarray  # (N, S, S) float32 HU
    masks: np.ndarray  # (N, 4, S, S) bool, first n_readers real
    n_readers: np.ndarray  # (N,) int
    patient_id: np.ndarray  # (N,) str
    index: np.ndarray  # (N,) int, row in the source file

    def __len__(self) -> int:
        return len(self.n_readers)

    def subset(self, rows: np.ndarray) -> CropSet:
        return CropSet(
            self.image_hu[rows], self.masks[rows], self.n_readers[rows], self.patient_id[rows], self.index[rows]
        )

    @property
    def label1(self) -> np.ndarray:
        return self.masks[:, 0]

    @property
    def union(self) -> np.ndarray:
        return (self.masks & reader_validity(self.n_readers)[:, :, None, None]).any(1)

    @property
    def intersection(self) -> np.ndarray:
        valid = reader_validity(self.n_readers)[:, :, None, None]
        return (self.masks | ~valid).all(1)


def reader_validity(n_readers: np.ndarray | torch.Tensor, max_readers: int = MAX_READERS):
    """Boolean (N, max_readers): True where the mask slot holds a real annotation."""
    if isinstance(n_readers, torch.Tensor):
        return torch.arange(max_readers, device=n_readers.device)[None, :] < n_readers[:, None]
    return np.arange(max_readers)[None, :] < np.asarray(n_readers)[:, None]


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Read a multi-reader file and check its keys and shapes (InputError says what is wrong)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Multi-reader data file not found: {path}. Expected an .npz like lidc_multireader.npz.")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except Exception as exc:  # zip/npy errors; numpy's advice about pickles does not apply here
        raise InputError(
            f"{path} is not a multi-reader .npz of arrays; give a file in the format of lidc_multireader.npz."
        ) from exc
    missing = [key for key in REQUIRED_KEYS if key not in arrays]
    if missing:
        raise InputError(f"{path} lacks arrays {missing}; a multi-reader file needs {list(REQUIRED_KEYS)}.")
    n = len(arrays["image_hu"])
    if (
        arrays["image_hu"].ndim != 3
        or arrays["masks"].shape[:2] != (n, MAX_READERS)
        or arrays["masks"].shape[2:] != arrays["image_hu"].shape[1:]
    ):
        raise InputError(
            f"{path}: expected image_hu (N, H, W) and masks (N, 4, H, W); found "
            f"{arrays['image_hu'].shape} and {arrays['masks'].shape}."
        )
    return arrays


def prepare_crops(arrays: dict[str, np.ndarray], *, min_readers: int = 2, size: int = INPUT_SIZE) -> CropSet:
    """Select crops with at least ``min_readers`` readers and cut the central ``size`` x ``size`` native pixels."""
    n_readers = np.asarray(arrays["n_readers"]).astype(int)
    if np.any(n_readers < 1) or np.any(n_readers > MAX_READERS):
        bad = np.nonzero((n_readers < 1) | (n_readers > MAX_READERS))[0][:5]
        raise InputError(f"n_readers must be 1..4; rows {bad.tolist()} have {n_readers[bad].tolist()}.")
    rows = np.nonzero(n_readers >= min_readers)[0]
    if len(rows) == 0:
        raise InputError(f"No crop has at least {min_readers} readers (found up to {n_readers.max()}).")
    masks_in = np.asarray(arrays["masks"], dtype=bool)
    valid = reader_validity(n_readers)
    empty = np.nonzero(~(masks_in.any((2, 3)) | ~valid).all(1))[0]
    if len(empty):
        raise InputError(
            f"Rows {empty[:5].tolist()} have an empty real reader mask; every real annotation must "
            "contain the nodule (fix n_readers or drop those rows)."
        )
    height, width = arrays["image_hu"].shape[1:]
    center = ((height - 1) / 2.0, (width - 1) / 2.0)
    images = np.empty((len(rows), size, size), np.float32)
    masks = np.zeros((len(rows), MAX_READERS, size, size), bool)
    for out, row in enumerate(rows):
        images[out] = extract_patch(arrays["image_hu"][row].astype(np.float32), center, size=size)
        for reader in range(n_readers[row]):
            masks[out, reader] = extract_patch(masks_in[row, reader], center, size=size, edge=False)
    return CropSet(images, masks, n_readers[rows], np.asarray(arrays["patient_id"])[rows].astype(str), rows)


def patient_folds(patient_id: np.ndarray, n_folds: int = 5, seed: int = 0) -> np.ndarray:
    """Fold index per crop: patients shuffled with ``seed`` and dealt round-robin, so no patient is in two folds."""
    patients = np.unique(np.asarray(patient_id).astype(str))
    order = np.random.default_rng(seed).permutation(len(patients))
    fold_of = {patients[p]: rank % n_folds for rank, p in enumerate(order)}
    return np.array([fold_of[p] for p in np.asarray(patient_id).astype(str)], dtype=int)


class CropDataset(Dataset):
    """Torch dataset of dict samples: ``image`` (1, S, S) in [0, 1], ``masks`` (4, S, S) float, ``n_readers``,
    ``label1``, ``union``, ``intersection`` (1, S, S) float. ``augment`` adds random flips and 90-degree turns."""

    def __init__(self, crops: CropSet, augment: bool = False, seed: int = 0):
        self.crops = crops
        self.augment = augment
        self.rng = np.random.default_rng(seed)
        self.union = crops.union
        self.intersection = crops.intersection

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        image = normalise_hu(self.crops.image_hu[i])[None]
        masks = self.crops.masks[i]
        stack = np.concatenate([image, masks, self.union[i][None], self.intersection[i][None]]).astype(np.float32)
        if self.augment:
            if self.rng.random() < 0.5:
                stack = stack[:, :, ::-1]
            stack = np.rot90(stack, k=int(self.rng.integers(4)), axes=(1, 2))
        stack = torch.from_numpy(np.ascontiguousarray(stack))
        return {
            "image": stack[0:1],
            "masks": stack[1 : 1 + MAX_READERS],
            "label1": stack[1:2],
            "union": stack[1 + MAX_READERS : 2 + MAX_READERS],
            "intersection": stack[2 + MAX_READERS : 3 + MAX_READERS],
            "n_readers": torch.tensor(int(self.crops.n_readers[i])),
        }
