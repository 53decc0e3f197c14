"""Cheap levers on trained NLB weights, chosen on the validation split only: decision threshold and test-time flips.

For each checkpoint given, every snapshot of the validation split and of the held-out fold of
:func:`lungai.nlb.training.make_split` (the split the weights were trained with: ``--folds``, ``--fold``, ``--seed``)
is scored as ``lungai nlb evaluate`` scores it (:func:`lungai.nlb.pipeline.score_slices`), once as given and once
averaged with its left-right mirror (``--tta``). On the validation snapshots only, the decision threshold with the
best F1 is chosen (grid 0.05-0.95; ties go to the threshold nearest 0.5); the held-out fold is then scored at 0.5
and at that threshold. The held-out figures are reported, never used to choose. The validation split is small (a
tenth of the training folds), so its F1 moves in steps of about 0.01-0.02: the table says how much the choice can
be trusted.

Regenerate (from the repository root)::

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python bench/nlb/decision_check.py --iqoth ../shared/data/iqoth_nccd \
        --weights bundled=Resources/Models/nlb_unet_demo.pt --out bench/nlb/decision_check.md
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from lungai.checkpoint import load_model
from lungai.metrics import classification_metrics
from lungai.nlb.data import list_snapshots, read_snapshot
from lungai.nlb.evaluation import seg_threshold_of
from lungai.nlb.pipeline import score_slices
from lungai.nlb.training import make_split

GRID = tuple(round(0.05 * k, 2) for k in range(1, 20))


def probabilities(model, paths: list[Path], seg_threshold: float, tta: bool) -> np.ndarray:
    return np.array(
        [
            score_slices(model, read_snapshot(p), threshold=0.0, seg_threshold=seg_threshold, tta=tta).probabilities[0]
            for p in paths
        ]
    )


def scores(probs: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    return classification_metrics(probs >= threshold, labels)


def best_threshold(probs: np.ndarray, labels: np.ndarray) -> float:
    f1 = np.array([scores(probs, labels, t)["f1"] for t in GRID])
    candidates = [t for t, f in zip(GRID, f1) if f == f1.max()]
    return min(candidates, key=lambda t: (abs(t - 0.5), t))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iqoth", required=True)
    parser.add_argument("--weights", nargs="+", required=True, help="LABEL=checkpoint.pt")
    parser.add_argument("--out", required=True, help="markdown file")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    snapshots = list_snapshots(args.iqoth)
    categories = np.array([s.category for s in snapshots])
    split = make_split(categories, np.arange(args.folds), args.folds, args.fold, args.seed)
    parts = {"validation": split.validation, "held-out": split.test}
    labels = {name: np.array([snapshots[i].label for i in idx]) for name, idx in parts.items()}
    rows = []
    for item in args.weights:
        label, path = item.split("=", 1)
        model, header = load_model(path, expected_model="nlb_unet")
        for tta in (False, True):
            probs = {
                name: probabilities(model, [snapshots[i].path for i in idx], seg_threshold_of(header), tta)
                for name, idx in parts.items()
            }
            chosen = best_threshold(probs["validation"], labels["validation"])
            for threshold, how in ((0.5, "0.5 (default)"), (chosen, f"{chosen} (best validation F1)")):
                val = scores(probs["validation"], labels["validation"], threshold)
                test = scores(probs["held-out"], labels["held-out"], threshold)
                rows.append((label, "left-right" if tta else "none", how, val, test))
                print(rows[-1][:3], val["f1"], test["f1"], flush=True)
    lines = [
        "# NeoplasmNLB: decision threshold and test-time flips, chosen on validation",
        "",
        "Command: `OMP_NUM_THREADS=1 PYTHONPATH=$PWD python bench/nlb/decision_check.py "
        + " ".join(sys.argv[1:])
        + "`",
        "",
        f"Split: IQ-OTH/NCCD fold {args.fold} of {args.folds} held out (stratified by category, seed {args.seed}), "
        f"{len(split.validation)} validation snapshots ({int(labels['validation'].sum())} with a neoplasm) from the "
        f"training folds, {len(split.test)} held-out ({int(labels['held-out'].sum())} with a neoplasm). Choices are "
        "made on validation only; the held-out columns are what `lungai nlb evaluate --fold "
        f"{args.fold}` would report with that choice. One thread, load average {os.getloadavg()[0]:.1f} at the end.",
        "",
        "| weights | test-time flips | decision threshold | validation F1 | held-out P | held-out R | held-out F1 "
        "| held-out [[tn, fp], [fn, tp]] |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {label} | {tta} | {how} | {val['f1']:.3f} | {test['precision']:.3f} | {test['recall']:.3f} | "
        f"{test['f1']:.3f} | {test['confusion_matrix']} |"
        for label, tta, how, val, test in rows
    ]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
