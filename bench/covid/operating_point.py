"""Held-out infection Dice of one CHS-Net checkpoint over its operating points: left-right flips off and on, and the
probability threshold (`trials.md`, fourth trial: the point is chosen on one fold and measured once on the other).

Regenerate (from the repository root)::

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python bench/covid/operating_point.py \\
        --data ../shared/data/covid_infection_medseg --weights RUN/chsnet.pt --out DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from lungai.covid.bundle import held_out_names
from lungai.covid.data import load_medseg_folder
from lungai.covid.evaluation import mean_metrics
from lungai.covid.pipeline import load
from lungai.io import write_table_csv
from lungai.metrics import pixel_metrics

THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.30, 0.701, 0.05))


def sweep(cascade, slices, thresholds=THRESHOLDS) -> list[dict]:
    """One row per (flips, threshold): the mean infection metrics over ``slices``."""
    rows = []
    for tta in (False, True):
        cascade.tta = tta
        probabilities = [r.infection for r in cascade.segment([s.image for s in slices])]
        for threshold in thresholds:
            per_slice = [pixel_metrics(p > threshold, s.infection) for p, s in zip(probabilities, slices)]
            rows.append({"flips": tta, "threshold": threshold, **mean_metrics(per_slice)})
    return rows


def choose(rows: list[dict]) -> dict:
    """The rule of `trials.md`: flips if their best Dice is at least the best without; then the best threshold, a
    tie going to the one nearest 0.5."""
    best = {tta: max(r["dice"] for r in rows if r["flips"] == tta) for tta in (False, True)}
    tta = best[True] >= best[False]
    candidates = [r for r in rows if r["flips"] == tta and r["dice"] == best[tta]]
    return min(candidates, key=lambda r: abs(r["threshold"] - 0.5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="covid_infection_medseg folder")
    parser.add_argument("--weights", required=True, help="chsnet checkpoint; its held-out slices are scored")
    parser.add_argument("--out", required=True, help="folder for operating_point.csv and .md")
    parser.add_argument("--name", default="operating_point", help="file stem of the two outputs")
    args = parser.parse_args()
    model = load(args.weights, device="cpu")
    names = set(held_out_names(model.header))
    slices = [s for s in load_medseg_folder(args.data) if s.name in names]
    rows = sweep(model.network, slices)
    chosen = choose(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_table_csv(
        out / f"{args.name}.csv", [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in rows]
    )
    split = model.header.get("extra", {}).get("held_out", {}).get("split", "?")
    lines = [
        f"# Operating points of {Path(args.weights).name} on its {len(slices)} held-out slices ({split})",
        "",
        "| flips | threshold | Dice | precision | recall |",
        "|---|---|---|---|---|",
        *(
            f"| {'on' if r['flips'] else 'off'} | {r['threshold']:.2f} | {r['dice']:.4f} | {r['precision']:.4f} "
            f"| {r['recall']:.4f} |"
            for r in rows
        ),
        "",
        f"Chosen by the rule of `trials.md`: flips {'on' if chosen['flips'] else 'off'}, threshold "
        f"{chosen['threshold']:.2f} (Dice {chosen['dice']:.4f}).",
    ]
    (out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
