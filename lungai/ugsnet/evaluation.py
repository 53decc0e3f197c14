"""Evaluation of UGS-Net predictions (seed 001 Sec. IV): Dice, IoU, NSD against Label1, the union and the
intersection; Complex-Nodule Validation (Table III); HU of predicted versus real HC and LC regions (Fig. 8).

NSD: MONAI's surface Dice (pooled formula: boundary points of both masks within the tolerance of the other
boundary, divided by all boundary points), tolerance 1 pixel on the 64 x 64 grid of native pixels (the V1 code's
1-pixel tolerance; 0.46 to 0.98 mm over LIDC).
Where one mask is empty the surface metric is undefined: we score 0 (1 when both are empty).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from lungai import metrics
from lungai.plotting import overlay_rgb
from lungai.progress import CancelToken, ProgressCallback
from lungai.ugsnet.data import CropSet
from lungai.ugsnet.inference import ConfidenceMasks, confidence_masks, predict_probabilities

NSD_TOLERANCE_PIXELS = 1.0
COMPLEX_THRESHOLDS = (0.6, 0.7, 0.8)


def nsd_or_edge_case(pred: np.ndarray, ref: np.ndarray) -> float:
    if not pred.any() or not ref.any():
        return float(pred.any() == ref.any())
    return metrics.nsd(pred, ref, tolerance_mm=NSD_TOLERANCE_PIXELS, spacing=(1.0, 1.0))


def overlap_scores(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Dice, IoU and NSD of one 2-D binary prediction against one reference."""
    return {"dice": metrics.dice(pred, ref), "iou": metrics.iou(pred, ref), "nsd": nsd_or_edge_case(pred, ref)}


def per_crop_scores(final: np.ndarray, crops: CropSet) -> list[dict[str, float]]:
    """Per crop: scores of the final masks (N, H, W) against Label1, the union and the intersection."""
    rows = []
    union, intersection = crops.union, crops.intersection
    for i in range(len(crops)):
        row: dict[str, float] = {"source_index": int(crops.index[i]), "n_readers": int(crops.n_readers[i])}
        for name, ref in (("label1", crops.label1[i]), ("union", union[i]), ("intersection", intersection[i])):
            row.update({f"{metric}_{name}": value for metric, value in overlap_scores(final[i], ref).items()})
        rows.append(row)
    return rows


def summarise(rows: list[dict[str, float]]) -> dict[str, float]:
    """Mean of every score column over crops."""
    keys = [k for k in rows[0] if k.split("_")[0] in ("dice", "iou", "nsd")]
    return {k: float(np.mean([r[k] for r in rows])) for k in keys}


def region_hu(images_hu: np.ndarray, regions: ConfidenceMasks, crops: CropSet) -> dict[str, np.ndarray]:
    """HU values of every pixel in the predicted and real HC and LC regions (real: the readers' MCM)."""
    real_high = crops.intersection
    real_low = crops.union & ~real_high
    return {
        "predicted_hc": images_hu[regions.high],
        "predicted_lc": images_hu[regions.low],
        "real_hc": images_hu[real_high],
        "real_lc": images_hu[real_low],
    }


def hu_summary(values: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean and median HU and pixel count per region."""
    out = {}
    for name, v in values.items():
        out[f"mean_hu_{name}"] = float(v.mean()) if v.size else float("nan")
        out[f"median_hu_{name}"] = float(np.median(v)) if v.size else float("nan")
        out[f"pixels_{name}"] = int(v.size)
    return out


def hu_density_curves(
    values: dict[str, np.ndarray], grid: np.ndarray | None = None, max_samples: int = 20000, seed: int = 0
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Gaussian kernel density of HU per region (Fig. 8) on ``grid`` (default -1100..500 HU)."""
    from scipy.stats import gaussian_kde  # scipy.stats takes a second to import: only where it is used

    grid = np.linspace(-1100, 500, 321) if grid is None else grid
    rng = np.random.default_rng(seed)
    curves = {}
    for name, v in values.items():
        if v.size < 2:
            continue
        sample = v if v.size <= max_samples else rng.choice(v, max_samples, replace=False)
        curves[name] = gaussian_kde(sample.astype(np.float64))(grid)
    return grid, curves


def save_hu_density_png(path: Path, grid: np.ndarray, curves: dict[str, np.ndarray], title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {
        "real_hc": ("red", "-"),
        "real_lc": ("blue", "-"),
        "predicted_hc": ("red", "--"),
        "predicted_lc": ("blue", "--"),
    }
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
    for name, curve in curves.items():
        color, line = styles.get(name, ("black", "-"))
        ax.plot(
            grid,
            curve,
            color=color,
            linestyle=line,
            label=name.replace("_", " ").upper().replace("REAL", "real").replace("PREDICTED", "predicted"),
        )
    ax.set_xlabel("HU")
    ax.set_ylabel("density")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def complex_nodule_validation(
    baseline_dice: np.ndarray,
    model_rows: list[dict[str, float]],
    baseline_rows: list[dict[str, float]],
    thresholds=COMPLEX_THRESHOLDS,
) -> list[dict[str, float]]:
    """Table III protocol: crops where the baseline's Dice vs Label1 is <= t; both models' mean Dice/IoU there."""
    out = []
    for t in thresholds:
        chosen = np.nonzero(baseline_dice <= t)[0]
        row = {"threshold": t, "crops": int(len(chosen))}
        for prefix, rows in (("baseline", baseline_rows), ("model", model_rows)):
            for metric in ("dice", "iou"):
                row[f"{prefix}_{metric}"] = (
                    float(np.mean([rows[i][f"{metric}_label1"] for i in chosen])) if len(chosen) else float("nan")
                )
        out.append(row)
    return out


def write_json(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def evaluate_crops(
    model,
    crops: CropSet,
    out_dir: Path,
    *,
    device="cpu",
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    overlays: int = 8,
    tta: bool = False,
) -> dict:
    """Predict ``crops`` (``tta``: averaged over flips), write ``metrics.json``, ``per_crop.csv``,
    ``hu_density.png`` and MCM overlays."""
    out_dir.mkdir(parents=True, exist_ok=True)
    probabilities = predict_probabilities(
        model, crops.image_hu, device=device, tta=tta, progress=progress, cancel=cancel
    )
    regions = confidence_masks(probabilities)
    rows = per_crop_scores(regions.final, crops)
    hu = region_hu(crops.image_hu, regions, crops)
    result = {
        "crops": len(crops),
        "test_time_flips": bool(tta),
        "scores_of_final": summarise(rows),
        "hu": hu_summary(hu),
        "nsd": f"MONAI surface Dice, tolerance {NSD_TOLERANCE_PIXELS:g} pixel of the 64 x 64 native-pixel input",
    }
    write_json(out_dir / "metrics.json", result)
    with open(out_dir / "per_crop.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    grid, curves = hu_density_curves(hu)
    save_hu_density_png(
        out_dir / "hu_density.png",
        grid,
        curves,
        "HU density: real (solid) vs predicted (dashed) HC (red) and LC (blue)",
    )
    save_mcm_grid(out_dir / "mcm_overlays.png", crops, regions, range(min(overlays, len(crops))))
    return result


def save_mcm_grid(path: Path, crops: CropSet, regions, indices, columns: int = 4) -> Path:
    """Seed 001 Fig. 7 style: each crop with predicted HC (red), LC (blue) and the final outline (green),
    next to the readers' MCM."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    indices = list(indices)
    rows = max(1, int(np.ceil(len(indices) / columns)))
    fig, axes = plt.subplots(rows, 2 * columns, figsize=(2.0 * 2 * columns, 2.1 * rows), dpi=100, squeeze=False)
    real_high = crops.intersection
    real_low = crops.union & ~real_high
    for ax in axes.ravel():
        ax.set_axis_off()
    for n, i in enumerate(indices):
        r, c = divmod(n, columns)
        for offset, (high, low, title) in enumerate(
            (
                (regions.high[i], regions.low[i], "UGS-Net MCM"),
                (real_high[i], real_low[i], f"readers ({crops.n_readers[i]})"),
            )
        ):
            ax = axes[r, 2 * c + offset]
            ax.imshow(overlay_rgb(crops.image_hu[i], [(high, (1, 0, 0)), (low, (0, 0.3, 1))]))
            final = regions.final[i] if offset == 0 else crops.label1[i]
            if final.any():
                ax.contour(final.astype(float), levels=[0.5], colors=[(0, 0.9, 0)], linewidths=1.0)
            ax.set_title(title if offset else f"{title} #{int(crops.index[i])}", fontsize=7)
    fig.suptitle("red: high confidence, blue: low confidence, green: final (left) / Label1 (right)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
