"""Tables and figures of the UGS-Net comparison from the predictions saved by ``run_comparison.py``.

    OMP_NUM_THREADS=1 python bench/ugsnet/analyse.py --data ../shared/data/lidc_multireader.npz \
        --runs bench/ugsnet/runs --out bench/ugsnet

Writes results.csv / results.md (Table I protocol: Dice, IoU, NSD of X_S against Label1 per fold and mean +- std),
complex_nodules.csv / .md (Table III protocol), hu_regions.csv + hu_density.png (Fig. 8), mcm_overlays.png
(Fig. 7 colours), mcm_heads.csv (MCM heads against the readers' union / intersection and how often the raw
intersection head leaves the union head), and paper_width.csv (parameter counts and CPU latency).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path

import numpy as np
import torch

from lungai import metrics
from lungai.timing import count_parameters, forward_times_ms
from lungai.ugsnet import evaluation
from lungai.ugsnet.data import load_npz, prepare_crops
from lungai.ugsnet.evaluation import save_mcm_grid
from lungai.ugsnet.inference import confidence_masks
from lungai.ugsnet.networks import PAPER_FEATURES
from lungai.ugsnet.task import build_model

MODELS = ("unet", "attention_unet", "ugsnet_v1", "ugsnet")
COMMAND = (  # written at the top of the tables (training first: bench/ugsnet/README.md)
    "OMP_NUM_THREADS=1 PYTHONPATH=. python bench/ugsnet/analyse.py --data ../shared/data/lidc_multireader.npz "
    "--runs bench/ugsnet/runs --out bench/ugsnet"
)
LABELS = {
    "unet": "U-Net",
    "attention_unet": "Attention U-Net",
    "ugsnet_v1": "UGS-Net-V1 (no IUCM, random annotation)",
    "ugsnet": "UGS-Net",
}


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def load_predictions(runs: Path, kind: str, fold: int):
    with np.load(runs / f"pred_{kind}_fold{fold}.npz") as data:
        probabilities = {k: data[k].astype(np.float32) for k in data.files if k not in ("rows", "source_index")}
        return data["rows"], probabilities


def latency(kind: str, features, repeats: int = 5) -> tuple[int, float]:
    model = build_model(kind, features).eval()
    x = torch.zeros(1, 1, 64, 64)
    return count_parameters(model), statistics.mean(forward_times_ms(model, x, repeats, warmup=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--runs", default="bench/ugsnet/runs")
    parser.add_argument("--out", default="bench/ugsnet")
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    torch.set_num_threads(1)
    runs, out = Path(args.runs), Path(args.out)
    crops = prepare_crops(load_npz(args.data))
    timings = json.loads((runs / "timings.json").read_text())

    scores, per_crop, regions_by = [], {}, {}
    for fold in args.folds:
        for kind in MODELS:
            rows, probabilities = load_predictions(runs, kind, fold)
            subset = crops.subset(rows)
            regions = confidence_masks(probabilities)
            crop_rows = evaluation.per_crop_scores(regions.final, subset)
            per_crop[kind, fold] = crop_rows
            regions_by[kind, fold] = (subset, regions, probabilities)
            summary = evaluation.summarise(crop_rows)
            t = timings[f"{kind}_fold{fold}"]
            scores.append(
                {
                    "model": kind,
                    "fold": fold,
                    "test_crops": len(rows),
                    **{k: round(summary[f"{k}_label1"], 4) for k in ("dice", "iou", "nsd")},
                    "dice_union": round(summary["dice_union"], 4),
                    "dice_intersection": round(summary["dice_intersection"], 4),
                    "parameters": t["parameters"],
                    "epochs": t["epochs"],
                    "train_seconds": t["train_seconds"],
                    "infer_ms_per_crop": t["infer_ms_per_crop"],
                }
            )
    write_csv(out / "results.csv", scores)

    lines = [
        "| model | "
        + " | ".join(f"fold {f} Dice / IoU / NSD" for f in args.folds)
        + " | mean Dice | mean IoU | mean NSD | params | train s / fold |",
        "|---|" + "---|" * (len(args.folds) + 5),
    ]
    for kind in MODELS:
        mine = [s for s in scores if s["model"] == kind]
        cells = [f"{100 * s['dice']:.2f} / {100 * s['iou']:.2f} / {100 * s['nsd']:.2f}" for s in mine]
        stats = [
            f"{100 * np.mean([s[k] for s in mine]):.2f} ± {100 * np.std([s[k] for s in mine]):.2f}"
            for k in ("dice", "iou", "nsd")
        ]
        lines.append(
            f"| {LABELS[kind]} | "
            + " | ".join(cells + stats)
            + f" | {mine[0]['parameters']:,} | {np.mean([s['train_seconds'] for s in mine]):.0f} |"
        )
    (out / "results.md").write_text(f"Command: `{COMMAND}`\n\n" + "\n".join(lines) + "\n")

    complex_rows = []
    for fold in args.folds:
        base = per_crop["unet", fold]
        dice_unet = np.array([r["dice_label1"] for r in base])
        for row in evaluation.complex_nodule_validation(dice_unet, per_crop["ugsnet", fold], base):
            complex_rows.append(
                {"fold": fold, **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}}
            )
    write_csv(out / "complex_nodules.csv", complex_rows)
    lines = [
        "| U-Net Dice <= | fold | crops | U-Net Dice | U-Net IoU | UGS-Net Dice | UGS-Net IoU |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in evaluation.COMPLEX_THRESHOLDS:
        rows = [r for r in complex_rows if r["threshold"] == t]
        for r in rows:
            lines.append(
                f"| {t:.1f} | {r['fold']} | {r['crops']} | {100 * r['baseline_dice']:.2f} | "
                f"{100 * r['baseline_iou']:.2f} | {100 * r['model_dice']:.2f} | {100 * r['model_iou']:.2f} |"
            )
        mean = lambda k, rows=rows: 100 * np.mean([r[k] for r in rows])  # noqa: E731
        lines.append(
            f"| {t:.1f} | mean | {sum(r['crops'] for r in rows)} | {mean('baseline_dice'):.2f} | "
            f"{mean('baseline_iou'):.2f} | **{mean('model_dice'):.2f}** "
            f"({mean('model_dice') - mean('baseline_dice'):+.2f}) | "
            f"**{mean('model_iou'):.2f}** ({mean('model_iou') - mean('baseline_iou'):+.2f}) |"
        )
    (out / "complex_nodules.md").write_text(f"Command: `{COMMAND}`\n\n" + "\n".join(lines) + "\n")

    hu_values: dict[str, list] = {}
    head_rows = []
    for fold in args.folds:
        subset, regions, probabilities = regions_by["ugsnet", fold]
        for name, values in evaluation.region_hu(subset.image_hu, regions, subset).items():
            hu_values.setdefault(name, []).append(values)
        union_head, inter_head = probabilities["union"] > 0.5, probabilities["intersection"] > 0.5
        outside = (inter_head & ~union_head).sum() / max(1, inter_head.sum())
        head_rows.append(
            {
                "fold": fold,
                "dice_union_head_vs_readers_union": round(
                    np.mean([metrics.dice(p, r) for p, r in zip(union_head, subset.union)]), 4
                ),
                "dice_intersection_head_vs_readers_intersection": round(
                    np.mean([metrics.dice(p, r) for p, r in zip(inter_head, subset.intersection)]), 4
                ),
                "raw_intersection_pixels_outside_union_head": round(float(outside), 5),
                "mean_low_confidence_fraction_predicted": round(
                    float(np.mean([(low.sum() / max(1, u.sum())) for low, u in zip(regions.low, regions.union)])), 4
                ),
                "mean_low_confidence_fraction_readers": round(
                    float(
                        np.mean([((u & ~i).sum() / max(1, u.sum())) for u, i in zip(subset.union, subset.intersection)])
                    ),
                    4,
                ),
            }
        )
    write_csv(out / "mcm_heads.csv", head_rows)
    pooled = {k: np.concatenate(v) for k, v in hu_values.items()}
    summary = evaluation.hu_summary(pooled)
    write_csv(
        out / "hu_regions.csv",
        [
            {
                "region": name,
                "mean_hu": round(summary[f"mean_hu_{name}"], 1),
                "median_hu": round(summary[f"median_hu_{name}"], 1),
                "pixels": summary[f"pixels_{name}"],
            }
            for name in pooled
        ],
    )
    grid, curves = evaluation.hu_density_curves(pooled)
    evaluation.save_hu_density_png(
        out / "hu_density.png",
        grid,
        curves,
        "UGS-Net, test folds " + ", ".join(map(str, args.folds)) + ": real (solid) vs predicted (dashed)",
    )
    subset, regions, _ = regions_by["ugsnet", args.folds[0]]
    lc_share = np.array([(subset.union[i] & ~subset.intersection[i]).sum() for i in range(len(subset))])
    save_mcm_grid(out / "mcm_overlays.png", subset, regions, np.argsort(-lc_share)[:8])

    paper_rows = []
    for kind in MODELS:
        for label, features in (
            ("paper", PAPER_FEATURES),
            ("bench", timings[f"{kind}_fold{args.folds[0]}"]["features"]),
        ):
            parameters, ms = latency(kind, features)
            paper_rows.append(
                {
                    "model": kind,
                    "widths": label + " " + "-".join(map(str, features)),
                    "parameters": parameters,
                    "cpu_ms_per_64x64_crop_1_thread": round(ms, 1),
                }
            )
    write_csv(out / "paper_width.csv", paper_rows)
    print((out / "results.md").read_text(), (out / "complex_nodules.md").read_text(), json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
