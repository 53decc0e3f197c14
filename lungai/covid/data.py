"""Data for CHS-Net: MedSeg infection slices, the slicerio chest CT lungs, derived lung labels.

Sources (see ``../shared/data/README.md``):

- Infection: a folder in the layout of ``covid_infection_medseg/``: ``images/<id>.jpg|png``
  (8-bit lung-windowed), ``infection/<id>.png`` (0/255), optional ``ggo_consolidation/<id>.png``.
  The MedSeg slices as distributed with Inf-Net are stored *transposed* with respect to the
  radiological display of an axial slice (anterior on the left, patient's left at the bottom);
  ``orientation="transposed"`` (the default for this layout) transposes them so that every
  image in lungai has rows running anterior -> posterior and columns patient right -> left, as
  ``Volume.array[k]`` of an LPS-ordered axial CT. Use ``orientation="display"`` for folders whose
  slices are already in display orientation.
- Semi-supervised infection (``covid_pseudo_infnet/``): the same layout, ``images/<case>_<k>.jpg``
  with Semi-Inf-Net's pseudo labels in ``infection/``, stored transposed like the MedSeg slices;
  :func:`case_of` gives the case of a slice name so splits keep a case on one side. The pseudo
  labels are grey (0..255) and read as ``>= 128``, the README's threshold.
- Lungs: the slicerio chest CT (34 axial slices of 128 x 128, turned to display orientation)
  with its right and left lung labels, split by slice range: slices ``TEST_SLICES`` (k = 22-33,
  the upper lungs up to the apices) are held out for the lung metrics, the others train.
- Derived lung labels for the training slices (never used as ground truth in a reported metric):
  :func:`derive_lung_mask`, an image-only classical rule, joined with the slice's own infection
  label by :func:`with_derived_lungs` (training slices only): dark pixels below Otsu's threshold,
  minus air connected to all four image borders (outside the body), the two largest
  remaining components (each at least 1 % of the image), closed with a disc of 4 % of the image
  size and hole-filled so vessels and most inner opacities count as lung.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.morphology import disk

from lungai.covid.intensity import hu_to_unit, uint8_to_unit
from lungai.covid.orientation import to_display
from lungai.errors import InputError
from lungai.sample_data import chest_ct, chest_lungs

TEST_SLICES = range(22, 34)
ORIENTATIONS = ("transposed", "display")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass
class LabelledSlice:
    """One 2-D slice in display orientation: ``image`` in [0, 1] (see :mod:`lungai.covid.intensity`)."""

    name: str
    image: np.ndarray
    infection: np.ndarray | None = None
    lung: np.ndarray | None = None
    classes: np.ndarray | None = None


def _read_grey(path: Path, labels: bool = False) -> np.ndarray:
    """8-bit grey values; with ``labels``, palette images keep their indices (class labels)."""

    try:
        with Image.open(path) as handle:
            return np.asarray(handle if labels and handle.mode in ("P", "L") else handle.convert("L"))
    except OSError as error:
        raise InputError(f"Cannot read image {path}: {error}") from error


def load_medseg_folder(folder: str | Path, orientation: str = "transposed") -> list[LabelledSlice]:
    """Read every slice of a folder in the ``covid_infection_medseg`` layout (sorted by id)."""
    folder = Path(folder)
    if orientation not in ORIENTATIONS:
        raise InputError(f"orientation must be one of {ORIENTATIONS}, not {orientation!r}.")
    images_dir, masks_dir = folder / "images", folder / "infection"
    if not images_dir.is_dir() or not masks_dir.is_dir():
        raise InputError(
            f"{folder} is not in the covid_infection_medseg layout: give a folder with 'images/' and "
            "'infection/' subfolders (optional 'ggo_consolidation/')."
        )
    paths = sorted(
        (p for p in images_dir.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES), key=lambda p: (len(p.stem), p.stem)
    )
    if not paths:
        raise InputError(f"No .jpg or .png images in {images_dir}.")
    slices = []
    for path in paths:
        mask_path = masks_dir / f"{path.stem}.png"
        if not mask_path.is_file():
            raise InputError(f"Image {path.name} has no infection mask {mask_path}.")
        image, infection = _read_grey(path), _read_grey(mask_path) >= 128
        if image.shape != infection.shape:
            raise InputError(f"{path.name} is {image.shape} but its mask is {infection.shape}.")
        classes_path = folder / "ggo_consolidation" / f"{path.stem}.png"
        classes = _read_grey(classes_path, labels=True) if classes_path.is_file() else None
        arrays = [uint8_to_unit(image), infection, classes]
        if orientation == "transposed":
            arrays = [None if a is None else np.ascontiguousarray(a.T) for a in arrays]
        slices.append(LabelledSlice(path.stem, arrays[0], infection=arrays[1], classes=arrays[2]))
    return slices


def case_of(name: str) -> str:
    """The case of a slice named ``<case>_<k>`` (pseudo-labelled set); a name without ``_<k>`` is its own case."""
    case, _, index = name.rpartition("_")
    return case if case and index.isdigit() else name


def derive_lung_mask(image: np.ndarray) -> np.ndarray:
    """Image-only lung label for a [0, 1] slice (module docstring); bool, same shape."""
    if image.max() - image.min() < 1e-6:
        return np.zeros(image.shape, dtype=bool)
    dark = image < threshold_otsu(image)
    labels, count = ndimage.label(dark)
    borders = [np.unique(edge) for edge in (labels[0], labels[-1], labels[:, 0], labels[:, -1])]
    touches = np.zeros(count + 1, dtype=int)
    for edge in borders:
        touches[edge] += 1
    sizes = ndimage.sum(np.ones_like(labels), labels, index=np.arange(count + 1))
    sizes[0] = 0
    sizes[touches == 4] = 0
    minimum = 0.01 * image.size
    keep = [label for label in np.argsort(sizes)[::-1][:2] if sizes[label] >= minimum]
    lungs = np.isin(labels, keep)
    radius = max(1, round(0.04 * max(image.shape)))
    padded = np.pad(lungs, radius)
    closed = ndimage.binary_closing(padded, structure=disk(radius))[radius:-radius, radius:-radius]
    return ndimage.binary_fill_holes(closed)


def chest_ct_lung_slices(split: str) -> list[LabelledSlice]:
    """Axial slices of the slicerio chest CT with lung masks (both lungs); ``split`` 'train' or 'test'."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    ct = chest_ct()
    labels, _ = chest_lungs()
    images, lungs = to_display(hu_to_unit(ct.array), ct), to_display(labels.array > 0, ct)
    indices = [k for k in range(ct.shape[0]) if (k in TEST_SLICES) == (split == "test")]
    return [LabelledSlice(f"CTChest4-k{k:02d}", images[k], lung=lungs[k]) for k in indices]


def with_derived_lungs(slices: list[LabelledSlice]) -> list[LabelledSlice]:
    """Copies of training ``slices`` with ``lung`` set to :func:`derive_lung_mask` joined with their infection.

    Infection lies inside the lungs by definition, but dense consolidation is as bright as the chest
    wall, so the image-only rule misses it: on the 50 MedSeg slices a mean 22 % (up to 86 %) of the
    doctors' infection falls outside the derived mask. A lung stage taught those masks would cut the
    infection it should hand to stage 2, so a training slice's lung label also covers its own
    infection label (holes filled). Training labels only: a held-out slice is never passed here.
    """
    labelled = []
    for s in slices:
        lung = derive_lung_mask(s.image)
        if s.infection is not None:
            lung = ndimage.binary_fill_holes(lung | s.infection)
        labelled.append(LabelledSlice(s.name, s.image, s.infection, lung, s.classes))
    return labelled
