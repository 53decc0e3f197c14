"""What ``lungai ugsnet train | evaluate | segment`` do, as plain functions (the CLI only parses arguments)."""

from __future__ import annotations

import csv
from dataclasses import asdict
from pathlib import Path

import numpy as np

from lungai.errors import InputError, LungAIError
from lungai.progress import CancelToken, ProgressCallback, report, subrange
from lungai.ugsnet import evaluation
from lungai.ugsnet.data import CropSet, load_npz, prepare_crops
from lungai.ugsnet.inference import confidence_masks, load_ugsnet_model, predict_probabilities
from lungai.ugsnet.task import MODELS
from lungai.ugsnet.training import split_by_patient, train_model


def evaluate_crops(
    model, crops: CropSet, out_dir: Path, *, device="cpu", progress=None, cancel=None, overlays: int = 8
) -> dict:
    """Predict ``crops``, write ``metrics.json``, ``per_crop.csv``, ``hu_density.png`` and MCM overlays."""
    out_dir.mkdir(parents=True, exist_ok=True)
    probabilities = predict_probabilities(model, crops.image_hu, device=device, progress=progress, cancel=cancel)
    regions = confidence_masks(probabilities)
    rows = evaluation.per_crop_scores(regions.final, crops)
    hu = evaluation.region_hu(crops.image_hu, regions, crops)
    result = {
        "crops": len(crops),
        "scores_of_final": evaluation.summarise(rows),
        "hu": evaluation.hu_summary(hu),
        "nsd": f"MONAI surface Dice, tolerance {evaluation.NSD_TOLERANCE_MM} mm (1 pixel of the 64 x 64 input)",
    }
    evaluation.write_json(out_dir / "metrics.json", result)
    with open(out_dir / "per_crop.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    grid, curves = evaluation.hu_density_curves(hu)
    evaluation.save_hu_density_png(
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

    from lungai.plotting import overlay_rgb

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


def run_evaluate(
    data: str,
    out: str,
    weights: str | None,
    *,
    device="cpu",
    min_readers: int = 1,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> dict:
    out_dir = Path(out)
    if (out_dir / "metrics.json").exists():
        raise LungAIError(f"{out_dir / 'metrics.json'} exists; choose a new --out folder.")
    model, header = load_ugsnet_model(weights, device)
    crops = prepare_crops(load_npz(data), min_readers=min_readers)
    result = evaluate_crops(model, crops, out_dir, device=device, progress=progress, cancel=cancel)
    result["model"] = {"name": header.get("model_name"), "weights": weights or "bundled"}
    evaluation.write_json(out_dir / "metrics.json", result)
    return result


def run_train(
    data: str,
    out: str,
    *,
    kind: str,
    features,
    config,
    fold: int | None,
    fusion: str,
    min_readers: int,
    register_id: str | None = None,
    command: str = "",
    progress=None,
    cancel=None,
) -> dict:
    """Train on the folds other than ``fold`` (or on everything), evaluate on ``fold``, optionally register."""
    out_dir = Path(out)
    crops = prepare_crops(load_npz(data), min_readers=min_readers)
    train_rows, test_rows = split_by_patient(crops, fold)
    if len(train_rows) == 0:
        raise InputError("No training crops left after the split.")
    data_note = f"{Path(data).name}: {len(train_rows)} crops (>= {min_readers} readers), patient folds != {fold}"
    config.out_dir = str(out_dir)
    model, result = train_model(
        kind,
        crops,
        train_rows,
        features=features,
        config=config,
        fusion=fusion,
        training_data=data_note,
        progress=subrange(progress, 0.0, 0.9),
        cancel=cancel,
    )
    summary = {"history": result.history, "checkpoint": str(result.last_checkpoint)}
    if len(test_rows):
        metrics = evaluate_crops(
            model,
            crops.subset(test_rows),
            out_dir / "test",
            device=config.device,
            progress=subrange(progress, 0.9, 1.0),
            cancel=cancel,
        )
        summary["test"] = metrics
    if register_id:
        summary["registered"] = asdict(
            register_weights(
                register_id,
                Path(result.last_checkpoint),
                kind,
                data_note,
                summary.get("test", {}),
                config,
                command=command,
            )
        )
    report(progress, 1.0, "done")
    return summary


def register_weights(
    model_id: str,
    checkpoint: Path,
    kind: str,
    training_data: str,
    test: dict,
    config,
    command: str = "",
    timings: dict | None = None,
):
    from lungai.checkpoint import load_model, save_checkpoint
    from lungai.registry import register_model, registry_path

    target = registry_path().parent / f"{model_id}.pt"
    metrics = {k: round(v, 4) for k, v in test.get("scores_of_final", {}).items()}
    metrics.update({k: round(v, 1) for k, v in test.get("hu", {}).items() if k.startswith("mean_hu")})
    metrics["test_crops"] = test.get("crops", 0)
    model, header = load_model(checkpoint, expected_model=MODELS[kind])
    # weights and header only: the optimiser state of last.pt would triple the bundled file
    save_checkpoint(
        target,
        model,
        model_name=header["model_name"],
        config=header["config"],
        training_data=training_data,
        metrics=metrics,
    )
    return register_model(
        {
            "id": model_id,
            "version": "1",
            "module": "UGSNetSegmentation",
            "architecture": MODELS[kind],
            "file": f"{model_id}.pt",
            "licence": "Apache-2.0 (weights trained on LIDC-IDRI, CC BY 3.0)",
            "training_data": training_data,
            "metrics": metrics,
            "timings": timings or {},
            "command": command,
            "description": f"{kind}, widths {list(config_features(checkpoint))}, {config.epochs} epochs on CPU "
            "(demo budget); "
            "metrics on held-out patients (test fold)",
        }
    )


def config_features(checkpoint: Path) -> list[int]:
    from lungai.checkpoint import load_checkpoint

    return list(load_checkpoint(checkpoint).header["config"]["features"])


def read_points_csv(path: str | Path) -> np.ndarray:
    """RAS points (P, 3) from a CSV: a header with r, a, s columns (Slicer's markups CSV) or rows of 3 numbers."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Points file not found: {path}")
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    if not lines:
        raise InputError(f"{path} holds no points; write one line 'r,a,s' per nodule.")
    rows = list(csv.reader(lines))
    header = [h.strip().lower() for h in rows[0]]
    try:
        if {"r", "a", "s"} <= set(header):
            cols = [header.index(c) for c in ("r", "a", "s")]
            return np.array([[float(row[c]) for c in cols] for row in rows[1:]], dtype=float).reshape(-1, 3)
        return np.array([[float(v) for v in row[:3]] for row in rows], dtype=float).reshape(-1, 3)
    except (ValueError, IndexError) as exc:
        raise InputError(
            f"{path}: cannot read RAS points ({exc}); expected columns r,a,s or three numbers per line."
        ) from exc


def run_segment(
    volume_path: str,
    points_path: str,
    out: str,
    weights: str | None,
    *,
    device="cpu",
    overwrite: bool = False,
    progress=None,
    cancel=None,
) -> list[Path]:
    """Segment the nodules of a CT at RAS points; write ``nodules.seg.nrrd``, ``nodules.csv`` and overlays."""
    from lungai.io import read_volume, write_segmentation, write_table_csv
    from lungai.plotting import save_overlay_png
    from lungai.segments import pack_masks
    from lungai.ugsnet.pipeline import nodule_segments, nodule_table_rows, segment_nodules

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    volume = read_volume(volume_path)
    points = read_points_csv(points_path)
    model, _ = load_ugsnet_model(weights, device)
    results = segment_nodules(volume, points, model, device=device, progress=subrange(progress, 0, 0.9), cancel=cancel)
    masks, specs = nodule_segments(results, volume.shape)
    layers, packed = pack_masks(masks, specs)
    written = [
        write_segmentation(out_dir / "nodules.seg.nrrd", volume.like(layers), packed, overwrite=overwrite),
        write_table_csv(out_dir / "nodules.csv", nodule_table_rows(volume, results), overwrite=overwrite),
    ]
    for result in results:
        k = int(round(result.point_ijk[2]))
        picture = out_dir / f"nodule_{result.number}.png"
        if picture.exists() and not overwrite:
            raise LungAIError(f"{picture} exists; pass --overwrite or choose a new --out folder.")
        written.append(
            save_overlay_png(
                picture,
                volume.array[k],
                [
                    (result.full_mask("high", volume.shape)[k], (1, 0, 0)),
                    (result.full_mask("low", volume.shape)[k], (0, 0.3, 1)),
                    (result.full_mask("final", volume.shape)[k], (0, 0.9, 0)),
                ],
                title=f"Nodule {result.number}, slice {k}: red HC, blue LC, green final",
            )
        )
    report(progress, 1.0, "done")
    return written
