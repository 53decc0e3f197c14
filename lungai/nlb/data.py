"""Training and test data of NeoplasmNLB: whole IQ-OTH/NCCD snapshots, and the same with real LIDC nodules inserted.

Classification (``iqoth_nccd`` layout): a folder with sub-folders ``normal/`` (label 0, no neoplasm), ``benign/`` and
``malignant/`` (label 1, neoplasm present); at least one of them must exist. Images (png, jpg, bmp, tif) are read as
grey, divided by 255 and framed to the network grid by :class:`lungai.nlb.framing.Framing` (a snapshot fills it).
IQ-OTH/NCCD has no patient ids: folds are stratified by category only (:func:`lungai.splits.stratified_folds`) and
slices of one patient can fall on both sides, so numbers on held-out snapshots are optimistic for unseen patients.

Segmentation has no masks in IQ-OTH/NCCD; :class:`WholeSliceDataset` gives the segmentation head whole slices with
exact masks: normal snapshots are negatives (empty mask), and normal snapshots with a real LIDC-IDRI nodule inserted
into their lungs (:mod:`lungai.nlb.insertion`) are positives (label 1, the inserted mask). A network that sees only
the snapshot view gets only nodules that the snapshot window shows (:func:`lungai.nlb.insertion.shows_in_window`:
30 % of LIDC nodules are ground-glass or part-solid and entirely black in this window); one with the lung view
(``lung_view``, :mod:`lungai.nlb.lungview`: two channels) gets every usable nodule with its own real lung around
it, and real LIDC lung texture in the lungs of every sample (up to :data:`lungai.nlb.lungview.MAX_TEXTURE_DISCS`
discs per sample, drawn from the nodule crops away from their nodules). Benign and malignant
snapshots have no mask and train the classifier only. LIDC nodules are split by patient
(:func:`lungai.splits.group_folds`).

Resolution (:func:`degrade_resolution`, training only): CT is often reconstructed coarser than the snapshots' 1.40 mm
(``CTChest4``: 3.05 mm pixels), so on CT the framing upsamples the slice and every structure, an inserted nodule
too, looks blurrier than in any snapshot. With probability ``degrade_prob`` a training sample (real or inserted,
so that blur never tells the classes apart) is resampled to pixels of a size drawn in :data:`DEGRADE_MM` and back
to its own grid, image only (the mask stays exact, as on CT, where the inserted mask is known exactly).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage
from torch.nn import functional as F
from torch.utils.data import Dataset

from lungai.augmentation import sample_seed
from lungai.errors import InputError
from lungai.nlb.framing import SNAPSHOT_PIXEL_MM, SNAPSHOT_SIZE, Framing
from lungai.nlb.insertion import (
    MARGIN_MM,
    Nodule,
    consensus_masks,
    footprint_radius_px,
    insert_nodule,
    placement_centres,
    shows_in_window,
    usable_nodules,
)
from lungai.nlb.lungview import (
    MAX_TEXTURE_DISCS,
    lung_view_of_hu,
    nodule_with_surroundings,
    paste_disc,
    snapshot_lung_hu,
    snapshot_lung_region,
    texture_disc,
)
from lungai.nlb.regions import snapshot_parenchyma
from lungai.registry import resources_dir

CLASS_LABELS = {"normal": 0, "benign": 1, "malignant": 1}
DEGRADE_MM = (SNAPSHOT_PIXEL_MM, 3.5)  # pixel sizes of the resolution augmentation (CTChest4: 3.05 mm)
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


def to_grey(image: np.ndarray) -> np.ndarray:
    """(H, W) stays; (H, W, 3 or 4) colour -> (H, W) luma 0.299 R + 0.587 G + 0.114 B (alpha ignored)."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        rgb = image[..., :3].astype(np.float32)
        return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return image


def read_snapshot(path: str | Path) -> np.ndarray:
    """One image file as a grey (H, W) array (8-bit data unchanged, colour converted to grey)."""
    try:
        with Image.open(path) as image:
            array = np.asarray(image)
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read image {path}: {error}") from error
    return to_grey(array)


def snapshot_unit(path: str | Path) -> np.ndarray:
    """A snapshot's grey values / 255 as float32 (H, W)."""
    return np.asarray(read_snapshot(path), dtype=np.float32) / 255.0


def frame_snapshot(unit: np.ndarray) -> torch.Tensor:
    """(H, W) snapshot in [0, 1] -> network input (1, S, S)."""
    return Framing.snapshot(*unit.shape).apply(unit[None])[0]


def load_snapshots(snapshots: list[Snapshot]) -> torch.Tensor:
    """Images as network input (N, 1, S, S) in [0, 1]."""
    return torch.stack([frame_snapshot(snapshot_unit(s.path)) for s in snapshots])


def degrade_resolution(unit: np.ndarray, pixel_mm: float, coarse_mm: float) -> np.ndarray:
    """(H, W) image of ``pixel_mm`` pixels -> the same grid after resampling to ``coarse_mm`` pixels (area average,
    antialiased) and back (bilinear): what a scan reconstructed at ``coarse_mm`` shows. Unchanged when
    ``coarse_mm <= pixel_mm``."""
    if coarse_mm <= pixel_mm:
        return unit
    height, width = unit.shape
    factor = pixel_mm / coarse_mm
    small = max(2, int(round(height * factor))), max(2, int(round(width * factor)))
    tensor = torch.as_tensor(np.asarray(unit, dtype=np.float32))[None, None]
    tensor = F.interpolate(tensor, size=small, mode="bilinear", align_corners=False, antialias=True)
    return F.interpolate(tensor, size=(height, width), mode="bilinear", align_corners=False)[0, 0].numpy()


def load_nodules(path: str | Path) -> tuple[list[Nodule], np.ndarray]:
    """The usable nodules of ``lidc_multireader.npz`` (:func:`lungai.nlb.insertion.usable_nodules`) and their
    patient ids."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"LIDC crops not found: {path}")
    with np.load(path) as data:
        hu, spacing, patients = data["image_hu"], data["pixel_spacing_mm"], data["patient_id"]
        consensus = consensus_masks(data["masks"], data["n_readers"])
    keep = np.flatnonzero(usable_nodules(hu, consensus, spacing))
    return [Nodule(hu[i], consensus[i], float(spacing[i])) for i in keep], patients[keep]


class WholeSliceDataset(Dataset):
    """Real snapshots plus ``n_inserted`` normal snapshots with an inserted nodule, as dict samples.

    Sample: ``image`` (1, S, S) in [0, 1], ``mask`` (1, S, S), ``label`` (float), ``has_mask`` (1 for normal
    snapshots, whose empty mask is a correct target, and for inserted-nodule slices). Which normal snapshot, which
    nodule and where it goes are drawn from ``(seed, epoch, index)``, so each epoch shows new positives and a resumed
    run draws the same ones (call :meth:`set_epoch`; :class:`lungai.augmentation.AugmentedDataset` forwards it).

    Args:
        units: snapshots (H, W) in [0, 1], grey / 255 (:func:`snapshot_unit`).
        labels: 0 normal, 1 neoplasm, per snapshot.
        nodules: LIDC nodules to insert (training patients only); with ``visible_only`` only those the snapshot
            window shows at the snapshots' pixel size (:func:`lungai.nlb.insertion.shows_in_window`).
        n_inserted: inserted-nodule samples per epoch (0: none).
        degrade_prob: probability of :func:`degrade_resolution` per sample (training only; 0: never).
    """

    def __init__(
        self,
        units: list[np.ndarray],
        labels: np.ndarray,
        nodules: list[Nodule],
        n_inserted: int,
        seed: int = 0,
        degrade_prob: float = 0.0,
        visible_only: bool = True,
        lung_view: bool = False,
    ) -> None:
        self.units = units
        self.labels = np.asarray(labels, dtype=np.float32)
        self.lung_view = lung_view
        self.texture_real = True  # False: real snapshots as inference sees them (flat lung view, no texture)
        self.texture_sources = list(nodules)
        if visible_only and not lung_view:
            nodules = [n for n in nodules if shows_in_window(n, SNAPSHOT_PIXEL_MM)]
        self.nodules = nodules
        self.normals = np.flatnonzero(self.labels == 0)
        self.n_inserted = n_inserted if len(nodules) and len(self.normals) else 0
        self.seed = seed
        self.degrade_prob = degrade_prob
        self.epoch = 0
        self._regions: dict[int, np.ndarray] = {}
        self._lung_regions: dict[int, np.ndarray] = {}
        self._distances: dict[int, np.ndarray] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.units) + self.n_inserted

    def _region(self, index: int) -> np.ndarray:
        if index not in self._regions:
            unit = self.units[index]
            pixel_mm = SNAPSHOT_PIXEL_MM * SNAPSHOT_SIZE / max(unit.shape)
            self._regions[index] = snapshot_parenchyma(unit, pixel_mm)
        return self._regions[index]

    def _pick(self, index: int, rng: np.random.Generator) -> tuple[int, Nodule, tuple[int, int]]:
        """(normal snapshot, nodule, centre) of the ``index``-th inserted slice: a place in the lungs with room."""
        for _ in range(20):
            normal = int(self.normals[rng.integers(len(self.normals))])
            nodule = self.nodules[rng.integers(len(self.nodules))]
            slice_mm = self._pixel_mm(normal)
            centres = placement_centres(self._region(normal), footprint_radius_px(nodule, slice_mm), slice_mm)
            if len(centres):
                return normal, nodule, tuple(int(v) for v in centres[rng.integers(len(centres))])
        raise InputError("no normal snapshot had room in its lungs for a nodule after 20 draws")

    def _pixel_mm(self, index: int) -> float:
        return SNAPSHOT_PIXEL_MM * SNAPSHOT_SIZE / max(self.units[index].shape)

    def inserted(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``index``-th inserted-nodule slice of the current epoch: (image (H, W), mask (H, W))."""
        rng = np.random.default_rng(sample_seed(self.seed, self.epoch, len(self.units) + index))
        normal, nodule, centre = self._pick(index, rng)
        return insert_nodule(self.units[normal], nodule, self._pixel_mm(normal), centre)

    def _textured(self, snapshot: int, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(snapshot grey, lung-view HU) of snapshot ``snapshot`` with up to :data:`MAX_TEXTURE_DISCS` discs of
        real lung (:mod:`lungai.nlb.lungview`), drawn from ``(seed, epoch, index)``."""
        unit, slice_mm = self.units[snapshot], self._pixel_mm(snapshot)
        lung_hu = snapshot_lung_hu(unit, self._lungs(snapshot))
        rng = np.random.default_rng([sample_seed(self.seed, self.epoch, index), 2])
        if not self.texture_sources:
            return unit, lung_hu
        for _ in range(int(rng.integers(MAX_TEXTURE_DISCS + 1))):
            disc = texture_disc(self.texture_sources[rng.integers(len(self.texture_sources))], slice_mm, rng)
            if disc is None:
                continue
            centres = np.argwhere(self._distance(snapshot) >= disc[2] + MARGIN_MM / slice_mm)
            if len(centres):
                target = tuple(int(v) for v in centres[rng.integers(len(centres))])
                unit, lung_hu = paste_disc(unit, lung_hu, disc[0], disc[1], disc[2], target)
        return unit, lung_hu

    def _distance(self, index: int) -> np.ndarray:
        """Distance (px) of each pixel of snapshot ``index`` to the border of its black lung parenchyma."""
        if index not in self._distances:
            self._distances[index] = ndimage.distance_transform_edt(self._region(index))
        return self._distances[index]

    def _lungs(self, index: int) -> np.ndarray:
        if index not in self._lung_regions:
            self._lung_regions[index] = snapshot_lung_region(self._region(index))
        return self._lung_regions[index]

    def _two_views(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(snapshot view, lung view, mask) of sample ``index`` for a network with the lung view."""
        if index < len(self.units):
            unit, lung_hu = (
                self._textured(index, index)
                if self.texture_real
                else (self.units[index], snapshot_lung_hu(self.units[index], self._lungs(index)))
            )
            return unit, lung_view_of_hu(lung_hu, self._lungs(index)), np.zeros(unit.shape, dtype=np.float32)
        rng = np.random.default_rng(sample_seed(self.seed, self.epoch, index))
        normal, nodule, centre = self._pick(index - len(self.units), rng)
        unit, lung_hu = self._textured(normal, index)
        hu, fraction, source_centre, radius = nodule_with_surroundings(nodule, self._pixel_mm(normal))
        unit, lung_hu = paste_disc(unit, lung_hu, hu, source_centre, radius, centre)
        mask = np.zeros(unit.shape, dtype=np.float32)
        top, left = centre[0] - source_centre[0], centre[1] - source_centre[1]
        r0, c0 = max(top, 0), max(left, 0)
        r1, c1 = min(top + hu.shape[0], unit.shape[0]), min(left + hu.shape[1], unit.shape[1])
        if r0 < r1 and c0 < c1:
            mask[r0:r1, c0:c1] = fraction[r0 - top : r1 - top, c0 - left : c1 - left] >= 0.5
        return unit, lung_view_of_hu(lung_hu, self._lungs(normal)), mask

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        label = float(self.labels[index]) if index < len(self.units) else 1.0
        has_mask = float(label == 0) if index < len(self.units) else 1.0
        if self.lung_view:
            unit, view, mask = self._two_views(index)
            channels = [unit, view]
        elif index < len(self.units):
            unit = self.units[index]
            mask = np.zeros(unit.shape, dtype=np.float32)
            channels = [unit]
        else:
            unit, mask = self.inserted(index - len(self.units))
            channels = [unit]
        if self.degrade_prob > 0:
            rng = np.random.default_rng([sample_seed(self.seed, self.epoch, index), 1])
            if rng.random() < self.degrade_prob:
                pixel_mm = SNAPSHOT_PIXEL_MM * SNAPSHOT_SIZE / max(unit.shape)
                coarse = float(rng.uniform(*DEGRADE_MM))
                channels = [degrade_resolution(c, pixel_mm, coarse) for c in channels]
        framing = Framing.snapshot(*unit.shape)
        framed = framing.apply(np.stack([*channels, mask.astype(np.float32)]))
        return {
            "image": framed[:-1, 0] if len(channels) > 1 else framed[0],
            "mask": (framed[-1] >= 0.5).float(),
            "label": torch.tensor(label),
            "has_mask": torch.tensor(has_mask),
            "inserted": torch.tensor(float(index >= len(self.units))),
        }
