"""Cross-validated comparison of the six block variants: the paper's Tables I and II on our data.

For every variant and fold: train NLBUNet on the other folds (fixed budget, last epoch kept), then measure
classification on the held-out IQ-OTH/NCCD snapshots and segmentation on the held-out LIDC crops.
Finished runs are kept in ``--work`` and skipped when the script is run again.

Regenerate (from the repository root, about 70 minutes on one shared CPU thread):
    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python bench/nlb/cross_validate.py \
        --iqoth ../shared/data/iqoth_nccd --lidc ../shared/data/lidc_multireader.npz \
        --work /tmp/nlb_cv --out bench/nlb
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

from lungai.checkpoint import load_model
from lungai.nlb.blocks import BLOCK_TYPES
from lungai.nlb.evaluation import classification_report, predict, seg_threshold_of, segmentation_report
from lungai.nlb.networks import build_nlb_unet
from lungai.nlb.training import calibrate_checkpoint, load_data, make_folds, train_nlb, training_dataset
from lungai.training import TrainConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iqoth", required=True)
    parser.add_argument("--lidc", required=True)
    parser.add_argument("--work", required=True, help="folder for checkpoints and per-run results")
    parser.add_argument("--out", required=True, help="folder for cv_results.csv / cv_results.md / cv_folds.json")
    parser.add_argument("--variants", nargs="+", default=list(BLOCK_TYPES), choices=BLOCK_TYPES)
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--max-crops", type=int, default=200)
    parser.add_argument("--size", type=int, default=128)
    return parser.parse_args(argv)


def epochs_done(run_dir: Path) -> int:
    if not (run_dir / "log.csv").exists() or not (run_dir / "last.pt").exists():
        return 0
    with open(run_dir / "log.csv") as handle:
        return len(list(csv.DictReader(handle)))


def run_one(args: argparse.Namespace, folds, data, variant: str, fold: int) -> dict:
    run_dir = Path(args.work) / f"{variant}_fold{fold}"
    result_path = run_dir / "result.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    model_config = {"block_type": variant}
    model = build_nlb_unet(**model_config)
    dataset = training_dataset(folds, data, fold, args.max_crops)
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        scheduler="cosine",
        seed=args.seed,
        device="cpu",
        out_dir=str(run_dir),
    )
    if epochs_done(run_dir) == args.epochs:  # trained before, evaluation missing: calibrate and evaluate only
        calibrate_checkpoint(run_dir / "last.pt", dataset)
    else:
        shutil.rmtree(run_dir, ignore_errors=True)  # an interrupted run starts again
        train_nlb(
            model,
            model_config,
            dataset,
            config,
            training_data=f"IQ-OTH/NCCD + LIDC crops, {args.folds}-fold CV seed {args.seed}, all folds but {fold}",
        )
    with open(run_dir / "log.csv") as handle:
        train_seconds = sum(float(row["seconds"]) for row in csv.DictReader(handle))
    model, header = load_model(run_dir / "last.pt", expected_model="nlb_unet")
    snap_idx = np.flatnonzero(folds.snapshot_folds == fold)
    crop_idx = np.flatnonzero(folds.crop_folds == fold)
    probabilities, _ = predict(model, data.snapshot_images[snap_idx])
    _, maps = predict(model, data.crops.images[crop_idx])
    cls = classification_report(probabilities, data.snapshot_labels[snap_idx])
    seg = segmentation_report(maps, data.crops.masks[crop_idx, 0].numpy(), seg_threshold_of(header))
    result = {
        "variant": variant,
        "fold": fold,
        "train_seconds": round(train_seconds, 1),
        "train_samples": len(dataset),
        **{k: cls[k] for k in ("precision", "recall", "f1", "accuracy")},
        "confusion_matrix": cls["confusion_matrix"],
        "test_snapshots": cls["n"],
        "iou": seg["iou"],
        "dice": seg["dice"],
        "seg_threshold": seg_threshold_of(header),
        "test_crops": seg["n"],
    }
    result_path.write_text(json.dumps(result, indent=2))
    return result


def write_tables(results: list[dict], out: Path, args: argparse.Namespace) -> None:
    columns = [
        "variant",
        "fold",
        "precision",
        "recall",
        "f1",
        "accuracy",
        "iou",
        "dice",
        "seg_threshold",
        "train_seconds",
        "train_samples",
        "test_snapshots",
        "test_crops",
    ]
    with open(out / "cv_results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(results)
    lines = [
        f"# NeoplasmNLB: {args.folds}-fold cross-validation of the block variants",
        "",
        "Command: `OMP_NUM_THREADS=1 PYTHONPATH=$PWD "
        + " ".join(["python", "bench/nlb/cross_validate.py"] + sys.argv[1:])
        + f"` on {platform.machine()} (2 shared CPU cores, no GPU), torch {torch.__version__}.",
        "",
        f"Budget per run: {args.epochs} epochs, batch {args.batch_size}, Adam lr {args.lr} with cosine decay, "
        f"{args.size} x {args.size} inputs, one CPU thread; training on all IQ-OTH/NCCD snapshots of the other "
        f"fold(s) plus at most {args.max_crops} LIDC crops. Mean (min-max) over folds.",
        "",
        "| block | precision | recall | F1 | accuracy | IoU | Dice | train s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for variant in args.variants:
        rows = [r for r in results if r["variant"] == variant]
        if not rows:
            continue

        def cell(key: str, digits: int = 3, rows: list = rows) -> str:
            values = np.array([r[key] for r in rows], dtype=float)
            return f"{values.mean():.{digits}f} ({values.min():.{digits}f}-{values.max():.{digits}f})"

        lines.append(
            f"| {variant} | {cell('precision')} | {cell('recall')} | {cell('f1')} | {cell('accuracy')} | "
            f"{cell('iou')} | {cell('dice')} | {np.mean([r['train_seconds'] for r in rows]):.0f} |"
        )
    lines += [
        "",
        "Classification: held-out IQ-OTH/NCCD snapshots (neoplasm = benign or malignant), threshold 0.5. "
        "IQ-OTH/NCCD has no patient ids: slices of one patient can be in both folds, so these numbers are "
        "optimistic for new patients. Segmentation: held-out LIDC crops (folds by patient), consensus masks "
        "(at least half of the readers), mean per-crop IoU and Dice at the run's segmentation threshold, "
        "calibrated on its training crops (best mean Dice on the grid 0.05..0.95; column seg_threshold of "
        "cv_results.csv). Per-fold numbers: "
        "cv_results.csv; fold sizes: cv_folds.json.",
        "",
    ]
    (out / "cv_results.md").write_text("\n".join(lines))


def write_split_lists(folds, out: Path) -> None:
    """The fold of every snapshot file and of every LIDC patient, so the split is written down, not only seeded."""
    with open(out / "cv_split_snapshots.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "category", "fold"])
        writer.writerows(
            [f"{s.category}/{s.path.name}", s.category, int(f)] for s, f in zip(folds.snapshots, folds.snapshot_folds)
        )
    patients = dict(zip(folds.crop_patient_ids, folds.crop_folds))
    with open(out / "cv_split_lidc_patients.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["patient_id", "fold"])
        writer.writerows([p, int(patients[p])] for p in sorted(patients))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    folds = make_folds(args.iqoth, args.lidc, args.folds, args.seed)
    (out / "cv_folds.json").write_text(json.dumps(folds.describe(), indent=2) + "\n")
    write_split_lists(folds, out)
    data = load_data(folds, args.lidc, args.size)
    results = []
    for fold in range(args.folds):  # every variant on fold 0 first
        for variant in args.variants:
            results.append(run_one(args, folds, data, variant, fold))
            print(
                json.dumps({k: results[-1][k] for k in ("variant", "fold", "f1", "dice", "train_seconds")}), flush=True
            )
            write_tables(results, out, args)


if __name__ == "__main__":
    main()
