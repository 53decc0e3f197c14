"""How far from the readers' own agreement a model is, on held-out patient folds (issue 13 diagnosis).

    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/ugsnet/recipe_analysis.py --data ../shared/data/lidc_multireader.npz \
        --runs bench/ugsnet/recipe_runs --folds 0 1 --out bench/ugsnet

Writes ``recipe_analysis.md``: per fold, (1) the Dice against Label1 of the other readers' masks of the same crop
(a second reader, their majority and union; the union and intersection of all readers), the ceiling a model trained
on one reader's outlines can expect; (2) per run ``<runs>/<kind>_fold<k>/last.pt``, the Dice against Label1 of each
output head at thresholds 0.3 to 0.6, without and with test-time flips (:mod:`lungai.tta`); (3) per run, the final
mask's Dice (threshold 0.5) on every crop of the fold's patients, single-reader crops included (what ``lungai ugsnet
evaluate`` scores by default, ``--min-readers 1``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from lungai import metrics
from lungai.checkpoint import load_model
from lungai.ugsnet.data import load_npz, prepare_crops
from lungai.ugsnet.inference import predict_probabilities
from lungai.ugsnet.training import split_by_patient

THRESHOLDS = (0.3, 0.4, 0.5, 0.6)


def mean_dice(predictions, references) -> float:
    return float(np.mean([metrics.dice(p, r) for p, r in zip(predictions, references)]))


def reader_rows(crops) -> list[tuple[str, float]]:
    n = crops.n_readers
    label1 = crops.label1
    others_majority = [crops.masks[i, 1 : n[i]].mean(0) >= 0.5 for i in range(len(crops))]
    others_union = [crops.masks[i, 1 : n[i]].any(0) for i in range(len(crops))]
    all_majority = [crops.masks[i, : n[i]].mean(0) >= 0.5 for i in range(len(crops))]
    return [
        ("second reader (masks[:, 1])", mean_dice(crops.masks[:, 1], label1)),
        ("majority of the other readers (>= half)", mean_dice(others_majority, label1)),
        ("union of the other readers", mean_dice(others_union, label1)),
        ("majority of all readers, Label1 included", mean_dice(all_majority, label1)),
        ("union of all readers", mean_dice(crops.union, label1)),
        ("intersection of all readers", mean_dice(crops.intersection, label1)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--runs", default="bench/ugsnet/recipe_runs")
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--out", default="bench/ugsnet")
    args = parser.parse_args()
    torch.set_num_threads(1)
    arrays = load_npz(args.data)
    crops = prepare_crops(arrays)
    all_crops = prepare_crops(arrays, min_readers=1)
    lines = [
        f"Command: `PYTHONPATH=. python bench/ugsnet/recipe_analysis.py --data {Path(args.data).name} "
        f"--runs {args.runs} --folds {' '.join(map(str, args.folds))} --out {args.out}`",
        "",
        "Dice against Label1 (the crop's own reader), mean over the held-out crops with >= 2 readers.",
        "",
    ]
    for fold in args.folds:
        _, test_rows = split_by_patient(crops, fold)
        test = crops.subset(test_rows)
        lines += [f"## Fold {fold} ({len(test)} crops)", "", "| other readers' masks | Dice vs Label1 |", "|---|---|"]
        lines += [f"| {name} | {value:.4f} |" for name, value in reader_rows(test)]
        lines += ["", "| run | head | test-time flips | " + " | ".join(f"t = {t}" for t in THRESHOLDS) + " |"]
        lines += ["|---|---|---|" + "---|" * len(THRESHOLDS)]
        for checkpoint in sorted(Path(args.runs).glob(f"*_fold{fold}/last.pt")):
            model, _ = load_model(checkpoint)
            for tta in (False, True):
                probabilities = predict_probabilities(model, test.image_hu, tta=tta)
                for head, probability in probabilities.items():
                    scores = [mean_dice(probability > t, test.label1) for t in THRESHOLDS]
                    lines.append(
                        f"| {checkpoint.parent.name} | {head} | {'yes' if tta else 'no'} | "
                        + " | ".join(f"{s:.4f}" for s in scores)
                        + " |"
                    )
        _, all_rows = split_by_patient(all_crops, fold)
        every = all_crops.subset(all_rows)
        single = every.n_readers == 1
        lines += ["", f"Every crop of the fold's patients ({len(every)}, {int(single.sum())} with one reader):", ""]
        lines += ["| run | Dice, all crops | Dice, single-reader crops | Dice, >= 2 readers |", "|---|---|---|---|"]
        for checkpoint in sorted(Path(args.runs).glob(f"*_fold{fold}/last.pt")):
            model, _ = load_model(checkpoint)
            final = predict_probabilities(model, every.image_hu)["final"] > 0.5
            dice = np.array([metrics.dice(p, r) for p, r in zip(final, every.label1)])
            parts = (dice.mean(), dice[single].mean(), dice[~single].mean())
            lines.append(f"| {checkpoint.parent.name} | " + " | ".join(f"{v:.4f}" for v in parts) + " |")
        lines.append("")
    (Path(args.out) / "recipe_analysis.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
