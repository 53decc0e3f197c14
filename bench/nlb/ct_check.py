"""NeoplasmNLB on real CT in HU: the normal scan CTChest4, and CTChest4 with real LIDC-IDRI nodules inserted.

Regenerate (from the repository root)::

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python bench/nlb/ct_check.py --lidc ../shared/data/lidc_multireader.npz \
        --repeats 5 --out bench/nlb

Writes ``ct_check.csv`` (one row per slice and repeat) and ``ct_check.md``. Nodules: the usable nodules
(:func:`lungai.nlb.insertion.usable_nodules`) of the LIDC patients in nodule fold 0 of 5 (by patient, seed 0), the fold
the bundled model's training leaves out (:func:`lungai.nlb.training.make_split`). CTChest4 is never used for training.
Each repeat inserts one nodule into every other slice with room in its lungs (:func:`lungai.nlb.simulation`), the
repeats alternate the starting slice and draw other nodules and places.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

import numpy as np

from lungai.checkpoint import load_model
from lungai.nlb.data import load_nodules
from lungai.nlb.evaluation import seg_threshold_of
from lungai.nlb.pipeline import DEFAULT_MODEL_ID, score_volume
from lungai.nlb.regions import findings_region
from lungai.nlb.simulation import insert_into_ct, score_inserted
from lungai.registry import load_registered_model
from lungai.sample_data import chest_ct
from lungai.splits import group_folds

SIZE_BINS = ((5, 10), (10, 20), (20, 100))


def held_out_nodules(lidc: str, fold: int = 0, n_folds: int = 5, seed: int = 0):
    nodules, patients = load_nodules(lidc)
    folds = group_folds(patients, n_folds, seed)
    return [n for n, f in zip(nodules, folds) if f == fold], len(np.unique(patients[folds == fold]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lidc", required=True)
    parser.add_argument("--model", default=DEFAULT_MODEL_ID, help="registry id")
    parser.add_argument("--weights", help="a checkpoint file instead of a registry id (a run not yet published)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.weights:
        model, header = load_model(args.weights, expected_model="nlb_unet")
        model.eval()
    else:
        model, header = load_registered_model(args.model, "cpu")
    seg_threshold = seg_threshold_of(header)
    ct = chest_ct()
    region = findings_region(ct.array, ct.spacing, ct.direction)
    normal = score_volume(model, ct, threshold=args.threshold, seg_threshold=seg_threshold)
    segmented = normal.labelmap > 0
    nodules, n_patients = held_out_nodules(args.lidc)
    rows = []
    for repeat in range(args.repeats):
        inserted = insert_into_ct(ct, nodules, seed=repeat)
        for row in score_inserted(model, inserted, threshold=args.threshold, seg_threshold=seg_threshold):
            rows.append({"repeat": repeat, **row})
        print(f"repeat {repeat}: {len(inserted.nodule_slices)} nodule slices", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "ct_check.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    nodule_rows = [r for r in rows if r["nodule"]]
    visible_rows = [r for r in nodule_rows if r["visible"]]
    other_rows = [r for r in rows if not r["nodule"]]
    detected = np.mean([r["positive"] for r in nodule_rows])
    dices = np.array([r["dice"] for r in nodule_rows])
    visible_dices = np.array([r["dice"] for r in visible_rows]) if visible_rows else np.zeros(1)
    lines = [
        "# NeoplasmNLB on real CT in HU (CTChest4, never used for training)",
        "",
        "Command: `OMP_NUM_THREADS=1 PYTHONPATH=$PWD python bench/nlb/ct_check.py " + " ".join(sys.argv[1:]) + "`",
        "",
        f"Model `{args.weights or args.model}` ({header['config'].get('block_type')} blocks, "
        f"{header['config'].get('in_channels', 1)} input channels), decision threshold {args.threshold}, "
        f"segmentation threshold {seg_threshold} (calibrated at training). Load average at the end: "
        f"{os.getloadavg()[0]:.1f}.",
        "",
        "## The normal scan",
        "",
        f"- positive slices: {int(normal.decisions.sum())} of {len(normal.decisions)} (probabilities "
        f"{normal.probabilities.min():.3f} to {normal.probabilities.max():.3f}; slices without lung are never "
        "positive)",
        f"- segmented: {int(segmented.sum())} voxels = {100 * segmented.mean():.4f} % of the volume; outside the "
        f"body: {int((segmented & ~region.body).sum())}; outside the lungs: {int((segmented & ~region.lungs).sum())}",
        "",
        "## With inserted real nodules",
        "",
        f"{len(nodules)} nodules of {n_patients} held-out LIDC-IDRI patients (nodule fold 0 of 5 by patient, seed 0: "
        f"never inserted during training), {args.repeats} repeats, one nodule on every other slice with room in its "
        "lungs (resampled to 3.05 mm pixels, blended in HU; see `lungai/nlb/simulation.py`).",
        "",
        f"- nodule slices positive: {detected:.3f} ({int(sum(r['positive'] for r in nodule_rows))} of "
        f"{len(nodule_rows)})",
        f"- slices without a nodule positive: {np.mean([r['positive'] for r in other_rows]):.3f} "
        f"({int(sum(r['positive'] for r in other_rows))} of {len(other_rows)})",
        f"- Dice of the segmentation against the inserted mask, per nodule slice: mean {dices.mean():.3f}, "
        f"median {np.median(dices):.3f} (0 where the slice was negative or missed the nodule)",
        f"- nodules the snapshot window shows at 3.05 mm pixels (at least a quarter of the inserted mask above "
        f"-50 HU; `lungai.nlb.insertion.shows_in_window`): {len(visible_rows)} of {len(nodule_rows)} nodule slices; "
        f"positive {np.mean([r['positive'] for r in visible_rows]) if visible_rows else float('nan'):.3f} "
        f"({int(sum(r['positive'] for r in visible_rows))} of {len(visible_rows)}), Dice mean "
        f"{visible_dices.mean():.3f}, median {np.median(visible_dices):.3f}",
        "",
        "| nodule diameter | nodule slices | positive | mean Dice | mean Dice on positive slices |",
        "|---|---|---|---|---|",
    ]
    for low, high in SIZE_BINS:
        chosen = [r for r in nodule_rows if low <= r["diameter_mm"] < high]
        if not chosen:
            continue
        positive = [r for r in chosen if r["positive"]]
        lines.append(
            f"| {low}-{high} mm | {len(chosen)} | {np.mean([r['positive'] for r in chosen]):.3f} | "
            f"{np.mean([r['dice'] for r in chosen]):.3f} | "
            + (f"{np.mean([r['dice'] for r in positive]):.3f} |" if positive else "- |")
        )
    lines += [
        "",
        "The network sees CT through the snapshots' window (-50, 265) HU, where lung and ground-glass tissue are "
        "black: a nodule with (almost) nothing above -50 HU at this pixel size is invisible to it, and to anyone "
        "reading these slices in that window.",
        "",
        "At 3.05 mm pixels and 10 mm slices, a 6 mm nodule covers about 3 pixels of one slice, partial-volumed with "
        "the lung around it: small nodules are hard to see on this scan for a reader too.",
        "",
    ]
    (out / "ct_check.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
