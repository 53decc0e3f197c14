"""Files written by ``lungai nlb classify``: the per-slice table, the probability plot, the segmentation, a picture."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lungai.errors import LungAIError  # noqa: E402
from lungai.io import write_segmentation, write_table_csv  # noqa: E402
from lungai.nlb.intensity import HU_WINDOW  # noqa: E402
from lungai.nlb.pipeline import NEOPLASM_SEGMENT, SliceScores  # noqa: E402
from lungai.plotting import radiological_view, save_overlay_png  # noqa: E402
from lungai.volume import Volume  # noqa: E402

SLICES_CSV = "slices.csv"
SEGMENTATION = "neoplasm.seg.nrrd"
PLOT_PNG = "probability.png"
OVERLAY_PNG = "most_likely_slice.png"
SUMMARY_JSON = "summary.json"


def save_probability_plot(path: str | Path, probabilities: np.ndarray, threshold: float) -> Path:
    """Neoplasm probability against slice index with the decision threshold."""
    figure, axes = plt.subplots(figsize=(6, 3), dpi=100)
    index = np.arange(len(probabilities))
    axes.plot(index, probabilities, marker="o", markersize=3, color="#e35a36", label="neoplasm probability")
    axes.axhline(threshold, color="grey", linestyle="--", label=f"threshold {threshold:g}")
    axes.set(xlabel="slice index", ylabel="probability", ylim=(-0.02, 1.02))
    axes.legend(loc="best", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return Path(path)


def write_outputs(
    out_dir: str | Path, volume: Volume, scores: SliceScores, *, overwrite: bool = False, about: dict | None = None
) -> dict[str, Path]:
    """Write the table, plot, segmentation, overlay and summary of one scored volume into ``out_dir``."""
    out_dir = Path(out_dir)
    paths = {name: out_dir / name for name in (SLICES_CSV, SEGMENTATION, PLOT_PNG, OVERLAY_PNG, SUMMARY_JSON)}
    if not overwrite and any(p.exists() for p in paths.values()):
        raise LungAIError(f"{out_dir} already holds results; choose another --out folder or pass --overwrite")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_table_csv(paths[SLICES_CSV], scores.rows(), overwrite=overwrite)
    write_segmentation(paths[SEGMENTATION], volume.like(scores.labelmap), [NEOPLASM_SEGMENT], overwrite=overwrite)
    save_probability_plot(paths[PLOT_PNG], scores.probabilities, scores.threshold)
    k = scores.most_likely_slice
    view = lambda a: radiological_view(a, volume.direction, "axial", k)  # noqa: E731
    window = HU_WINDOW if scores.intensity == "HU" else (0.0, 255.0)
    save_overlay_png(
        paths[OVERLAY_PNG],
        view(volume.array),
        [(view(scores.labelmap) > 0, NEOPLASM_SEGMENT.color)],
        window=window,
        title=f"slice {k}: neoplasm probability {scores.probabilities[k]:.2f}",
    )
    paths[SUMMARY_JSON].write_text(json.dumps({**scores.summary(), **(about or {})}, indent=2) + "\n")
    return paths
