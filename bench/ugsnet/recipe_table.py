"""Side-by-side table of models trained by ``lungai ugsnet train`` with one recipe (issue 13), from their out folders.

    PYTHONPATH=. python bench/ugsnet/recipe_table.py --runs bench/ugsnet/recipe_runs --out bench/ugsnet \
        --command "the training commands, for the header"

Reads ``<runs>/<kind>_fold<k>/test/metrics.json`` (held-out scores written by ``lungai ugsnet train --fold k``),
``test_tta/metrics.json`` when present (the same model scored with ``lungai ugsnet evaluate --tta`` on the held-out
crops) and ``log.csv`` (seconds per epoch), and writes ``recipe_results.md`` and ``recipe_results.csv``: Dice / IoU /
NSD of the final mask against Label1 per fold, mean +- population std over the folds found.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path

import numpy as np

NAMES = {"ugsnet": "UGS-Net", "monai_unet": "MONAI UNet", "unet": "U-Net", "attention_unet": "Attention U-Net"}


def read_runs(runs: Path) -> list[dict]:
    rows = []
    for folder in sorted(runs.glob("*_fold*")):
        match = re.fullmatch(r"(.+)_fold(\d+)", folder.name)
        metrics = folder / "test" / "metrics.json"
        if not match or not metrics.is_file():
            continue
        scores = json.loads(metrics.read_text())["scores_of_final"]
        with open(folder / "log.csv") as handle:
            log = list(csv.DictReader(handle))
        row = {
            "model": match.group(1),
            "fold": int(match.group(2)),
            "epochs": len(log),
            "train_seconds": round(sum(float(r["seconds"]) for r in log), 1),
            "dice": scores["dice_label1"],
            "iou": scores["iou_label1"],
            "nsd": scores["nsd_label1"],
        }
        tta = folder / "test_tta" / "metrics.json"
        if tta.is_file():
            row["dice_tta"] = json.loads(tta.read_text())["scores_of_final"]["dice_label1"]
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="bench/ugsnet/recipe_runs")
    parser.add_argument("--out", default="bench/ugsnet")
    parser.add_argument("--command", default="", help="the commands that trained the runs (table header)")
    parser.add_argument("--note", default="", help="machine load and anything else the reader should know")
    args = parser.parse_args()
    rows = read_runs(Path(args.runs))
    out = Path(args.out)
    with open(out / "recipe_results.csv", "w", newline="") as handle:
        columns = ["model", "fold", "epochs", "train_seconds", "dice", "iou", "nsd", "dice_tta"]
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        f"Command: `{args.command}`" if args.command else "",
        f"Table: `PYTHONPATH=. python bench/ugsnet/recipe_table.py --runs {args.runs} --out {args.out}`",
        "",
        args.note,
        "",
        "| model | folds | Dice per fold | mean Dice | mean IoU | mean NSD | Dice with test-time flips | epochs | "
        "train s per fold |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    if not any("dice_tta" in r for r in rows):
        lines[-2] = lines[-2].replace(" Dice with test-time flips |", "")
        lines[-1] = lines[-1][4:]
    for model in sorted({r["model"] for r in rows}, key=lambda m: list(NAMES).index(m) if m in NAMES else 99):
        mine = sorted((r for r in rows if r["model"] == model), key=lambda r: r["fold"])

        def stat(key: str, rows=mine) -> str:
            values = [100 * r[key] for r in rows if key in r]
            if not values:
                return "-"
            return f"{np.mean(values):.2f} ± {np.std(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"

        folds = ", ".join(str(r["fold"]) for r in mine)
        per_fold = " / ".join("%.2f" % (100 * r["dice"]) for r in mine)
        seconds = " / ".join(str(r["train_seconds"]) for r in mine)
        tta = f" {stat('dice_tta')} |" if any("dice_tta" in r for r in rows) else ""
        lines.append(
            f"| {NAMES.get(model, model)} | {folds} | {per_fold} | {stat('dice')} | {stat('iou')} | {stat('nsd')} |"
            f"{tta} {mine[0]['epochs']} | {seconds} |"
        )
    (out / "recipe_results.md").write_text("\n".join(lines).strip() + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
