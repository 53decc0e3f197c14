"""The paper's comparison of non-local block variants (seed 002, Tables I and II) with the bundled model's recipe.

Every variant is trained exactly as the bundled model (``lungai nlb train`` with the defaults of
:class:`lungai.nlb.pipeline.Training`, the bundled model's recipe: whole-slice training on IQ-OTH/NCCD snapshots with
inserted LIDC nodules, 192 px, same split, seed and budget; only ``--block`` differs), then measured
on the held-out fold: classification of the real snapshots (precision, recall, F1), segmentation Dice of held-out
LIDC nodules inserted into held-out normal snapshots, parameters and one-thread CPU latency per 192 x 192 slice.
Finished runs are kept in ``--work`` and skipped when the script runs again. ``--reuse-bundled`` fills the
bundled block's run (``symmetry_localized``) from the shipped ``nlb_unet_demo`` weights and the log and metrics of the
run that trained them (``recipe_runs/log_keep_last.csv``, ``recipe_runs/metrics_keep_last.json``) instead of training it
again: with the default options that run *is* this script's training of that block (same command, seed 0).
``--keep best`` runs the earlier recipe (the epoch with the lowest validation loss, early stopping by ``--patience``).

Regenerate (from the repository root; at the default ``--epochs`` each variant costs one bundled-model training, up
to 60 CPU minutes; ``--epochs N`` runs the same recipe at a reduced budget, the same for every variant, and the
table says so)::

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python bench/nlb/compare_variants.py --iqoth ../shared/data/iqoth_nccd \
        --lidc ../shared/data/lidc_multireader.npz --work /tmp/nlb_variants --out bench/nlb
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
from pathlib import Path

from lungai.checkpoint import load_model
from lungai.cli import main as lungai_main
from lungai.nlb.bundle import cpu_latency_ms
from lungai.nlb.pipeline import Training
from lungai.registry import get_model_entry

VARIANTS = ("none", "basic", "localized", "symmetry", "symmetry_localized")
COLUMNS = ("precision", "recall", "f1", "accuracy", "inserted_dice", "inserted_detected")
BUNDLED_ID = "nlb_unet_demo"
RECIPE_RUNS = Path(__file__).parent / "recipe_runs"


def reuse_bundled_run(run: Path) -> None:
    """Lay out the bundled model's own training run as a finished run of its block (see the module docstring)."""
    run.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(get_model_entry(BUNDLED_ID).path, run / "best.pt")
    shutil.copyfile(RECIPE_RUNS / "log_keep_last.csv", run / "log.csv")
    shutil.copyfile(RECIPE_RUNS / "metrics_keep_last.json", run / "metrics.json")


def train_variant(args: argparse.Namespace, variant: str) -> dict:
    run = Path(args.work) / variant
    if not (run / "metrics.json").exists():
        command = ["--device", "cpu", "--progress", "none", "nlb", "train", "--iqoth", args.iqoth, "--lidc"]
        command += [args.lidc, "--out", str(run), "--block", variant, "--epochs", str(args.epochs)]
        command += ["--inserted-per-normal", str(args.inserted_per_normal), "--keep", args.keep]
        command += ["--patience", str(args.patience)] if args.keep == "best" else []
        if lungai_main(command) != 0:
            raise SystemExit(f"training {variant} failed")
    metrics = json.loads((run / "metrics.json").read_text())
    model, _ = load_model(run / "best.pt", expected_model="nlb_unet")
    with open(run / "log.csv", newline="") as handle:
        log = list(csv.DictReader(handle))
    return {
        "variant": variant,
        "parameters": sum(p.numel() for p in model.parameters()),
        "ms_per_slice": cpu_latency_ms(model),
        "epochs_trained": len(log),
        "best_epoch": (log[-1] if args.keep == "last" else min(log, key=lambda r: float(r["val_loss"])))["epoch"],
        "train_minutes": round(sum(float(row["seconds"]) for row in log) / 60, 1),
        **{key: round(metrics[f"held_out_{key}"], 4) for key in COLUMNS},
        "test_snapshots": metrics["split"]["test_snapshots"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iqoth", required=True)
    parser.add_argument("--lidc", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    defaults = Training()  # the bundled model's recipe (its registry command)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--inserted-per-normal", type=float, default=defaults.inserted_per_normal)
    parser.add_argument("--keep", choices=("best", "last"), default=defaults.keep)
    parser.add_argument("--patience", type=int, default=defaults.patience, help="with --keep best")
    parser.add_argument("--reuse-bundled", action="store_true", help="bundled block: the shipped run")
    args = parser.parse_args()
    recipe = (args.epochs, args.inserted_per_normal, args.keep, args.patience)
    if args.reuse_bundled:
        if recipe != (defaults.epochs, defaults.inserted_per_normal, defaults.keep, defaults.patience):
            raise SystemExit("--reuse-bundled needs the default --epochs, --inserted-per-normal, --keep and --patience")
        reuse_bundled_run(Path(args.work) / defaults.block)
    rows = [train_variant(args, variant) for variant in args.variants]
    budget = (
        f"the bundled model's budget ({args.epochs} epochs)"
        if args.epochs == defaults.epochs
        else f"a reduced budget: {args.epochs} epochs instead of the bundled model's {defaults.epochs}, the same for "
        "every variant"
    )
    out = Path(args.out)
    with open(out / "variants.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        "# NeoplasmNLB: non-local block variants, same recipe and budget for each",
        "",
        "Command: `OMP_NUM_THREADS=1 PYTHONPATH=$PWD python bench/nlb/compare_variants.py "
        + " ".join(sys.argv[1:])
        + "`",
        "",
        "Each variant: `lungai nlb train` with the "
        + ("bundled model's recipe" if args.keep == defaults.keep else "earlier recipe of the bundled model")
        + f" at {budget} (cosine schedule over the "
        + (
            "epochs, the last epoch kept), "
            if args.keep == "last"
            else f"epochs, early stopping on the validation loss, patience {args.patience}), "
        )
        + f"{args.inserted_per_normal} inserted-nodule slices per normal snapshot and epoch, 5 folds, fold 0 held out, "
        "seed 0. Held out: IQ-OTH/NCCD snapshot fold 0 (stratified by category; no patient ids, so a patient's "
        "other slices may be in training) and LIDC patients of nodule fold 0 (never inserted during training), "
        f"their nodules inserted into the held-out normal snapshots for the Dice. Latency: median of 20 forward "
        "passes of one 192 x 192 slice on one thread (`lungai.nlb.bundle.cpu_latency_ms`, as in the registry), "
        f"measured after each training while the other core trained; load average {os.getloadavg()[0]:.1f} at the "
        "end. Training minutes: sum of the epochs' wall time in `log.csv`, one thread."
        + (
            f" The {defaults.block} row is the shipped `{BUNDLED_ID}` and its own training run (`--reuse-bundled`: "
            "`recipe_runs/log_keep_last.csv`, `recipe_runs/metrics_keep_last.json`), not a new training."
            if args.reuse_bundled
            else ""
        ),
        "",
        "| block | parameters | ms per slice | epochs (best) | train min | precision | recall | F1 | Dice (inserted) "
        "| inserted detected |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *(
            f"| {r['variant']} | {r['parameters']:,} | {r['ms_per_slice']} | {r['epochs_trained']} "
            f"({r['best_epoch']}) | {r['train_minutes']} | {r['precision']:.3f} | "
            f"{r['recall']:.3f} | {r['f1']:.3f} | {r['inserted_dice']:.3f} | {r['inserted_detected']:.3f} |"
            for r in rows
        ),
        "",
    ]
    (out / "variants.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
