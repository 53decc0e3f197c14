"""Pictures people would rather look at than read: windowed CT with coloured mask outlines.

Drawn with Pillow (no matplotlib), so the commands Slicer runs stay light.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from lungai.intensity import LUNG_WINDOW, window_to_unit

PICTURE_WIDTH = 480  # pixels


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
    """Save a windowed slice with masks blended and outlined (1-pixel lines), optionally titled.

    ``pixel_aspect``: height / width of one pixel (e.g. slice thickness / row spacing for coronal views).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows, columns = np.asarray(image2d).shape[:2]
    size = (PICTURE_WIDTH, max(1, round(PICTURE_WIDTH * pixel_aspect * rows / columns)))
    rgb = overlay_rgb(image2d, overlays, window)
    picture = np.asarray(Image.fromarray(_to_uint8(rgb)).resize(size, Image.NEAREST)).copy()
    for mask, color in overlays:
        mask = np.asarray(mask, dtype=bool)
        if mask.any() and not mask.all():
            large = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.NEAREST)) > 0
            outline = large & ~ndimage.binary_erosion(large)
            picture[outline] = _to_uint8(np.asarray(color, dtype=np.float32))
    image = Image.fromarray(picture)
    if title:
        band = 22
        titled = Image.new("RGB", (image.width, image.height + band), "white")
        titled.paste(image, (0, band))
        ImageDraw.Draw(titled).text((6, 5), title, fill="black")
        image = titled
    image.save(path)
    return path


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return (np.clip(values, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


SERIES_COLORS = ((31, 119, 180), (227, 90, 54), (44, 160, 44), (148, 103, 189), (140, 86, 75), (127, 127, 127))


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering [low, high]."""
    span = max(high - low, 1e-12)
    raw = span / max(count - 1, 1)
    magnitude = 10 ** np.floor(np.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = np.ceil(low / step) * step
    return [float(v) for v in np.arange(first, high + step * 1e-6, step)]


def save_line_chart(
    path: str | Path,
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    *,
    xlabel: str,
    ylabel: str,
    y_range: tuple[float, float] | None = None,
    lines: dict[str, float] | None = None,
    markers: dict[str, tuple[Sequence[float], Sequence[float]]] | None = None,
    size: tuple[int, int] = (640, 330),
) -> Path:
    """A line chart (Pillow): each series as a line with dots, horizontal reference ``lines`` dashed grey,
    ``markers`` as red dots, and a legend. NaN values break a line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    left, right, top, bottom = 58, 16, 12, 46
    xs = np.concatenate([np.asarray(x, float) for x, _ in series.values()] or [np.zeros(1)])
    ys = np.concatenate([np.asarray(y, float) for _, y in series.values()] or [np.zeros(1)])
    x_low, x_high = float(np.nanmin(xs)), float(np.nanmax(xs))
    x_high = x_high if x_high > x_low else x_low + 1
    if y_range is None:
        finite = ys[np.isfinite(ys)]
        y_low, y_high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        pad = 0.05 * (y_high - y_low or 1.0)
        y_range = (y_low - pad, y_high + pad)
    y_low, y_high = y_range

    def to_pixel(x: float, y: float) -> tuple[float, float]:
        px = left + (x - x_low) / (x_high - x_low) * (width - left - right)
        py = height - bottom - (y - y_low) / (y_high - y_low) * (height - top - bottom)
        return px, py

    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([left, top, width - right, height - bottom], outline=(90, 90, 90))
    for value in _ticks(y_low, y_high):
        _, py = to_pixel(x_low, value)
        draw.line([left, py, width - right, py], fill=(232, 232, 232))
        draw.text((4, py - 6), f"{value + 0.0:.3g}", fill="black")
    for value in _ticks(x_low, x_high, 8):
        px, _ = to_pixel(value, y_low)
        draw.line([px, height - bottom, px, height - bottom + 4], fill=(90, 90, 90))
        draw.text((px - 8, height - bottom + 6), f"{value + 0.0:g}", fill="black")
    draw.text(((width - len(xlabel) * 6) / 2, height - 18), xlabel, fill="black")
    draw.text((4, 0), ylabel, fill="black")
    legend = []
    for name, value in (lines or {}).items():
        _, py = to_pixel(x_low, value)
        for start in range(left, width - right, 10):
            draw.line([start, py, min(start + 5, width - right), py], fill=(128, 128, 128), width=1)
        legend.append((name, (128, 128, 128)))
    for index, (name, (x, y)) in enumerate(series.items()):
        color = SERIES_COLORS[index % len(SERIES_COLORS)]
        points = [
            to_pixel(a, b) if np.isfinite(b) else None for a, b in zip(np.asarray(x, float), np.asarray(y, float))
        ]
        run: list[tuple[float, float]] = []
        for point in [*points, None]:
            if point is None:
                if len(run) > 1:
                    draw.line(run, fill=color, width=2)
                run = []
            else:
                run.append(point)
        if len(points) <= 80:
            for point in filter(None, points):
                draw.ellipse([point[0] - 2, point[1] - 2, point[0] + 2, point[1] + 2], fill=color)
        legend.append((name, color))
    for name, (x, y) in (markers or {}).items():
        for a, b in zip(x, y):
            px, py = to_pixel(a, b)
            draw.ellipse([px - 4, py - 4, px + 4, py + 4], outline=(200, 0, 0), width=2)
        legend.append((name, (200, 0, 0)))
    for row, (name, color) in enumerate(legend[:10]):
        y = top + 6 + 13 * row
        draw.line([width - right - 150, y + 6, width - right - 135, y + 6], fill=color, width=3)
        draw.text((width - right - 130, y), name[:24], fill="black")
    image.save(path)
    return path
