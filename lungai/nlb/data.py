"""Training and test data of NeoplasmNLB: CT snapshots for classification, LIDC nodule crops for segmentation.

Classification (``iqoth_nccd`` layout): a folder with sub-folders ``normal/`` (label 0, no neoplasm),
``benign/`` and ``malignant/`` (label 1, neoplasm present); at least one of them must exist. Images (png, jpg,
bmp, tif) are read as grey and mapped by :mod:`lungai.nlb.intensity`. IQ-OTH/NCCD has no patient ids, so
folds are stratified by class only and slices of one patient can fall into different folds: reported numbers
are optimistic for unseen patients.

Segmentation (``lidc_multireader.npz``): each 71 x 71 nodule crop (HU, native pixel spacing of about
0.5-0.8 mm) with its *consensus mask* = pixels drawn by at least half of the crop's readers
(votes >= ceil(n_readers / 2), so the union for one or two readers, two of three, two of four). The crop is
windowed like any HU input and resized as a whole to 128 x 128 (x 1.8): the segmentation head is trained
on the nodule in its own crop's context (a field of view of about 35-60 mm), not on whole slices. Folds are
split by patient id.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from lungai.errors import InputError
from lungai.nlb.intensity import INPUT_SIZE, SquareResize, hu_to_unit, to_grey, to_unit
from lungai.registry import resources_dir

CLASS_LABELS = {"normal": 0, "benign": 1, "malignant": 1}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class Snapshot:
    path: Path
    category: str  # normal | benign | malignant

    @property
    def label(self) -> int:
        return CLASS_LABELS[self.category]


def bundled_sample_dir() -> Path:
    """The few IQ-OTH/NCCD snapshots bundled with the extension (``iqoth_nccd`` layout, README there)."""
    return resources_dir() / "SampleData" / "nlb" / "iqoth_nccd_sample"


def list_snapshots(root: str | Path) -> list[Snapshot]:
    """All images of a folder in the ``iqoth_nccd`` layout, sorted by category then name."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root} is not a folder; give a folder in the iqoth_nccd layout (normal/ benign/ malignant/)")
    snapshots = [
        Snapshot(path, category)
        for category in CLASS_LABELS
        if (root / category).is_dir()
        for path in sorted((root / category).iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not snapshots:
        raise InputError(
            f"no images in {root}: expected sub-folders normal/, benign/ and/or malignant/ with "
            f"{', '.join(IMAGE_SUFFIXES)} files (the layout of iqoth_nccd)"
        )
    return snapshots


def read_snapshot(path: str | Path) -> np.ndarray:
    """One image file as a grey (H, W) array (8-bit data unchanged, colour converted to grey)."""
    try:
        with Image.open(path) as image:
            array = np.asarray(image)
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read image {path}: {error}") from error
    return to_grey(array)


def load_snapshots(snapshots: list[Snapshot], size: int = INPUT_SIZE) -> torch.Tensor:
    """Images as network input (N, 1, size, size) in [0, 1]."""
    tensors = []
    for snapshot in snapshots:
        unit, _ = to_unit(read_snapshot(snapshot.path))
        tensors.append(SquareResize(*unit.shape, size).apply(unit[None]))
    return torch.cat(tensors)


def stratified_folds(labels: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold index per sample, each class shuffled with ``seed`` and dealt round-robin."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    folds = np.empty(len(labels), dtype=int)
    for value in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == value))
        folds[members] = np.arange(len(members)) % n_folds
    return folds


def group_folds(groups: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold index per sample such that all samples of a group (patient) share a fold."""
    unique = np.unique(np.asarray(groups))
    order = np.random.default_rng(seed).permutation(len(unique))
    fold_of_group = dict(zip(unique[order], np.arange(len(unique)) % n_folds))
    return np.array([fold_of_group[g] for g in groups], dtype=int)


@dataclass
class NoduleCrops:
    images: torch.Tensor  # (N, 1, S, S) in [0, 1]
    masks: torch.Tensor  # (N, 1, S, S) float 0/1, consensus of readers
    patient_ids: np.ndarray


def consensus_masks(masks: np.ndarray, n_readers: np.ndarray) -> np.ndarray:
    """(N, R, H, W) reader masks -> (N, H, W) pixels marked by at least ceil(n / 2) of the n real readers."""
    needed = np.ceil(np.asarray(n_readers) / 2).astype(int)
    return masks.sum(axis=1) >= needed[:, None, None]


def load_nodule_crops(path: str | Path, size: int = INPUT_SIZE, indices: np.ndarray | None = None) -> NoduleCrops:
    """LIDC crops and consensus masks of ``lidc_multireader.npz`` resized to ``size`` (see module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"LIDC crops not found: {path}")
    with np.load(path) as data:
        select = slice(None) if indices is None else indices
        hu = data["image_hu"][select]
        consensus = consensus_masks(data["masks"][select], data["n_readers"][select])
        patient_ids = data["patient_id"][select]
    resize = SquareResize(hu.shape[1], hu.shape[2], size)
    images = resize.apply(hu_to_unit(hu))
    masks = (resize.apply(consensus.astype(np.float32)) > 0.5).float()
    return NoduleCrops(images, masks, patient_ids)


class NLBDataset(Dataset):
    """Classification snapshots and segmentation crops in one dataset of dict samples.

    Each sample: ``image`` (1, S, S), ``label`` (float), ``has_label`` (1 for snapshots), ``mask`` (1, S, S),
    ``has_mask`` (1 for crops; with ``normal_empty_masks`` also for label-0 snapshots, whose empty mask is a
    correct segmentation target: a whole slice without neoplasm). With ``flip=True`` images (and masks) are
    flipped left-right at random.
    """

    def __init__(
        self,
        snapshots: torch.Tensor | None = None,
        labels: np.ndarray | None = None,
        crops: torch.Tensor | None = None,
        masks: torch.Tensor | None = None,
        *,
        flip: bool = False,
        normal_empty_masks: bool = False,
        seed: int = 0,
    ) -> None:
        size = (snapshots if snapshots is not None else crops).shape[-1]
        empty = torch.zeros(0, 1, size, size)
        snapshots = snapshots if snapshots is not None else empty
        crops = crops if crops is not None else empty
        self.images = torch.cat([snapshots, crops])
        self.masks = torch.cat([torch.zeros_like(snapshots), masks if masks is not None else empty])
        n_snap = len(snapshots)
        self.labels = torch.zeros(len(self.images))
        if n_snap:
            self.labels[:n_snap] = torch.as_tensor(np.asarray(labels), dtype=torch.float32)
        self.has_label = (torch.arange(len(self.images)) < n_snap).float()
        self.has_mask = 1.0 - self.has_label
        if normal_empty_masks:
            self.has_mask[:n_snap] = (self.labels[:n_snap] == 0).float()
        self.flip = flip
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image, mask = self.images[index], self.masks[index]
        if self.flip and torch.rand(1, generator=self.generator).item() < 0.5:
            image, mask = image.flip(-1), mask.flip(-1)
        return {
            "image": image,
            "mask": mask,
            "label": self.labels[index],
            "has_label": self.has_label[index],
            "has_mask": self.has_mask[index],
        }


def subsample(indices: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """At most ``limit`` of ``indices`` chosen with ``seed`` (all when limit is None), sorted."""
    if limit is None or len(indices) <= limit:
        return np.sort(indices)
    return np.sort(np.random.default_rng(seed).choice(indices, size=limit, replace=False))
