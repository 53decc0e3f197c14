"""Slices in, tensors out: CT windowing and resizing for the 2-D network, partially annotated training slices,
and the simulated pool derived from one scan.

Every axial slice is windowed to the lung window and resized to the model's square input (``input_size``);
results are resized back to the slice's own grid, so volumes of different in-plane size can share one pool.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from lungai.errors import InputError
from lungai.intensity import window_to_unit
from lungai.io import read_volume
from lungai.validation import validate_ct

WINDOW_HU = (-1000.0, 400.0)
AIR_HU = -1024.0


def preprocess_slices(volume_hu: np.ndarray, input_size: int, window=WINDOW_HU) -> torch.Tensor:
    """(Z, Y, X) HU -> (Z, 1, S, S) float32 in [0, 1]: lung window, then (anti-aliased) bilinear resize."""
    x = torch.from_numpy(window_to_unit(volume_hu, window))[:, None]
    return resize(x, (input_size, input_size))


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (B, C, H, W); anti-aliased when shrinking."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)


def label_slices(label: np.ndarray, input_size: int) -> torch.Tensor:
    """(Z, Y, X) binary -> (Z, 1, S, S) float32 in {0, 1} (area-weighted resize, then >= 0.5)."""
    x = torch.from_numpy((np.asarray(label) > 0).astype(np.float32))[:, None]
    return (resize(x, (input_size, input_size)) >= 0.5).float()


@dataclass
class PoolCase:
    """One pool volume: HU image and binary reference (both (Z, Y, X)), which slices are annotated, and the
    voxel spacing (x, y, z) in mm for distance metrics."""

    name: str
    image: np.ndarray
    label: np.ndarray | None = None
    annotated: np.ndarray = field(default=None)  # (Z,) bool
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self):
        if self.image.ndim != 3:
            raise InputError(f"{self.name}: expected a 3-D volume, got shape {self.image.shape}")
        if self.label is not None and self.label.shape != self.image.shape:
            raise InputError(
                f"{self.name}: labelmap shape {self.label.shape} differs from the volume's "
                f"{self.image.shape}; resample the labelmap onto the volume"
            )
        if self.annotated is None:
            self.annotated = np.zeros(self.image.shape[0], dtype=bool)

    @property
    def foreground_slices(self) -> np.ndarray:
        """(Z,) bool: slices whose reference contains foreground (simulation only)."""
        return self.label.reshape(self.label.shape[0], -1).any(axis=1)


class AnnotatedSliceDataset(torch.utils.data.Dataset):
    """The annotated slices of partially annotated volumes, as ``{"image", "label", "weight"}`` (1, S, S).

    ``weight`` is Eq. 2's w: 1 on annotated voxels. For this 2-D network an unannotated slice would carry w = 0
    everywhere and add nothing to the loss, so it is not sampled at all (same loss, less compute; BatchNorm
    sees annotated slices only).
    """

    def __init__(self, cases: list[PoolCase], input_size: int):
        images, labels = [], []
        for case in cases:
            if case.label is None:
                raise InputError(f"{case.name}: annotated slices need a labelmap")
            keep = np.flatnonzero(case.annotated)
            if keep.size:
                images.append(preprocess_slices(case.image[keep], input_size))
                labels.append(label_slices(case.label[keep], input_size))
        if not images:
            raise InputError("no annotated slice in the pool: mark at least one slice as annotated before training")
        self.images = torch.cat(images)
        self.labels = torch.cat(labels)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[i], "label": self.labels[i], "weight": torch.ones_like(self.labels[i])}


def synthesize_case(
    image_hu: np.ndarray,
    label: np.ndarray,
    rng: np.random.Generator,
    *,
    min_slices: int = 20,
    max_rotation_deg: float = 12.0,
    scale_range=(0.88, 1.12),
    max_shift_px: float = 8.0,
    elastic_px: float = 4.0,
    elastic_sigma_px: float = 8.0,
    hu_scale=(0.92, 1.08),
    hu_shift=(-40.0, 40.0),
    max_noise_hu: float = 25.0,
) -> tuple[np.ndarray, np.ndarray, int]:
    """One simulated pool volume from a real scan and its reference. Returns (image, label, first slice).

    Applied in this order, image and label with the same geometry (order 1 / order 0 interpolation):
    1. a random contiguous axial crop of ``min_slices`` to all slices;
    2. one in-plane similarity transform for all slices (rotation, isotropic scale, shift; outside is air);
    3. a smooth random in-plane displacement field (Gaussian-filtered noise, max ``elastic_px`` pixels);
    4. intensity changes: ``a * HU + b``, Gaussian noise, clipped to [-1024, 3071] HU.
    """
    z, h, w = image_hu.shape
    n = int(rng.integers(min(min_slices, z), z + 1))
    z0 = int(rng.integers(0, z - n + 1))
    img, lab = image_hu[z0 : z0 + n].astype(np.float32), label[z0 : z0 + n]
    theta = np.deg2rad(rng.uniform(-max_rotation_deg, max_rotation_deg))
    scale = rng.uniform(*scale_range)
    shift = rng.uniform(-max_shift_px, max_shift_px, size=2)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    c, s = np.cos(theta) / scale, np.sin(theta) / scale
    src_y = c * (yy - cy) - s * (xx - cx) + cy - shift[0]
    src_x = s * (yy - cy) + c * (xx - cx) + cx - shift[1]
    field = rng.normal(size=(2, n, h, w)).astype(np.float32)
    field = np.stack([ndimage.gaussian_filter(f, sigma=(1.0, elastic_sigma_px, elastic_sigma_px)) for f in field])
    field *= elastic_px / max(float(np.abs(field).max()), 1e-6)
    coords = np.stack(
        [
            np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None], (n, h, w)),
            src_y[None] + field[0],
            src_x[None] + field[1],
        ]
    )
    img = ndimage.map_coordinates(img, coords, order=1, mode="constant", cval=AIR_HU)
    lab = ndimage.map_coordinates(lab.astype(np.uint8), coords, order=0, mode="constant", cval=0)
    img = img * rng.uniform(*hu_scale) + rng.uniform(*hu_shift)
    img = img + rng.normal(0.0, rng.uniform(0.0, max_noise_hu), size=img.shape)
    return np.clip(img, -1024, 3071).astype(np.float32), (lab > 0).astype(np.uint8), z0


def synthesize_pool(
    image_hu: np.ndarray,
    label: np.ndarray,
    n_cases: int,
    seed: int = 0,
    prefix: str = "sim",
    spacing=(1.0, 1.0, 1.0),
    **kwargs,
) -> list[PoolCase]:
    """``n_cases`` simulated volumes from one scan (see :func:`synthesize_case`); all derive from that scan."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n_cases):
        img, lab, _ = synthesize_case(image_hu, label, rng, **kwargs)
        cases.append(PoolCase(f"{prefix}{i:02d}", img, lab, spacing=tuple(spacing)))
    return cases


def load_folder_pool(folder: str | Path) -> list[PoolCase]:
    """Labelled volumes from ``folder/images/<name>`` and ``folder/labels/<name>`` (same file names; any format
    :func:`lungai.io.read_volume` reads). Every non-zero label voxel is foreground."""
    folder = Path(folder)
    images_dir, labels_dir = folder / "images", folder / "labels"
    if not images_dir.is_dir() or not labels_dir.is_dir():
        raise InputError(
            f"{folder} is not a pool folder; give a folder with 'images/' and 'labels/' holding volumes of the same "
            "file names"
        )
    cases = []
    for path in sorted(p for p in images_dir.iterdir() if not p.name.startswith(".")):
        label_path = labels_dir / path.name
        if not label_path.exists():
            raise InputError(f"{path.name} has no labelmap {label_path}")
        image, label = read_volume(path), read_volume(label_path)
        validate_ct(image)
        if not image.is_axial():
            raise InputError(f"{path.name} is not axial; the 2-D network needs axial slices (reslice it first)")
        if label.shape != image.shape or not np.allclose(label.spacing, image.spacing, rtol=1e-3):
            raise InputError(
                f"{label_path.name}: labelmap geometry {label.shape} {label.spacing} differs from the "
                f"volume's {image.shape} {image.spacing}"
            )
        cases.append(
            PoolCase(
                path.name.split(".")[0],
                image.array.astype(np.float32),
                (label.array > 0).astype(np.uint8),
                spacing=image.spacing,
            )
        )
    if not cases:
        raise InputError(f"no volumes in {images_dir}")
    return cases
