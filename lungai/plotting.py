"""Pictures people would rather look at than read: windowed CT with coloured mask outlines."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lungai.intensity import LUNG_WINDOW, window_to_unit  # noqa: E402


def radiological_view(array: np.ndarray, direction: np.ndarray, plane: str, index: int) -> np.ndarray:
    """A 2-D slice of a (z, y, x) array as radiologists view it (axis-aligned volumes).

    Axial: anterior at the top, the patient's right on the screen's left. Coronal: superior at
    the top, the patient's right on the left. ``direction`` is the volume's LPS direction matrix.
    """
    flip_x = direction[0, 0] < 0  # i runs toward the patient's right: flip so right is on the left
    flip_y = direction[1, 1] < 0  # j runs toward anterior: flip so anterior is on top
    flip_z = direction[2, 2] > 0  # k runs toward superior: flip so superior is on top
    if plane == "axial":
        view = array[index]
        view = view[::-1] if flip_y else view
    elif plane == "coronal":
        view = array[:, index, :]
        view = view[::-1] if flip_z else view
    else:
        raise ValueError(f"plane must be 'axial' or 'coronal', not {plane!r}")
    return view[:, ::-1] if flip_x else view


def overlay_rgb(
    image2d: np.ndarray,
    overlays: Sequence[tuple[np.ndarray, Sequence[float]]],
    window: tuple[float, float] | None = LUNG_WINDOW,
    alpha: float = 0.45,
) -> np.ndarray:
    """An RGB float image: grey CT with each mask blended in its colour."""
    grey = window_to_unit(image2d, window) if window is not None else np.asarray(image2d, dtype=np.float32)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    for mask, color in overlays:
        mask = np.asarray(mask, dtype=bool)
        rgb[mask] = (1 - alpha) * rgb[mask] + alpha * np.asarray(color, dtype=np.float32)
    return rgb


def save_overlay_png(
    path: str | Path,
    image2d: np.ndarray,
    overlays: Sequence[tuple[np.ndarray, Sequence[float]]],
    window: tuple[float, float] | None = LUNG_WINDOW,
    title: str | None = None,
    pixel_aspect: float = 1.0,
) -> Path:
    """Save a windowed slice with masks blended and outlined, optionally titled."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axis = plt.subplots(figsize=(5, 5 * pixel_aspect * image2d.shape[0] / image2d.shape[1]), dpi=100)
    axis.imshow(overlay_rgb(image2d, overlays, window), interpolation="nearest", aspect=pixel_aspect)
    for mask, color in overlays:
        if np.any(mask) and not np.all(mask):
            axis.contour(np.asarray(mask, dtype=float), levels=[0.5], colors=[tuple(color)], linewidths=1.0)
    axis.set_axis_off()
    if title:
        axis.set_title(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
