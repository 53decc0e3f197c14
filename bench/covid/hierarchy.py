"""Hierarchical against direct infection segmentation at equal budget; and grid 128 against 256 at equal time.

Both modes train with the bundled recipe (:class:`lungai.covid.training.Recipe` defaults, our CPU
widths): the same doctor-labelled training slices (fold 0 of :data:`lungai.covid.bundle.SPLIT`),
the same pseudo-labelled pre-training slices, the same infection-stage epochs, batches and seed;
the hierarchical modes (``channel``, the bundled one: lung map as a second channel; ``mask``: CT
masked by the lungs) additionally train their lung stage (its time is reported). Both are measured
on the same held-out doctor-labelled slices (fold 1; infection Dice etc. per slice, averaged).
One run per mode appends a row to ``hierarchy_runs.csv``; ``hierarchy.md`` is rewritten from all
rows.

``--time-scale S`` divides the infection stage's batches (pre-training batches per epoch and
fine-tuning epochs) by ``S``. The rows use ``S = 1`` at 128 px (the bundled budget) and ``S = 3.3``
at 256 px, 3.3 being the measured cost of a 256 px training step relative to 128 px
(``bench/covid/cost.md``), so the two grids get about the same wall time; the table reports each
run's time and slice-steps, so the equality can be checked. ``--render`` rewrites ``hierarchy.md`` from the CSV.

``--pretrain-steps``, ``--finetune-epochs`` and ``--pseudo-stride`` set the infection budget and
data explicitly instead (the bundled registry command's budget, so its direct counterpart trains
with the same infection epochs, batches and data); ``--tta`` measures with left-right flip
averaging, as a model trained with ``lungai covid train --tta`` does.

``--from-checkpoint`` takes the row of a mode from a ``chsnet`` checkpoint trained by ``lungai
covid train`` with this recipe (it refuses a recipe that differs in anything but the infection
budget and the pseudo-label stride, which the row reports), instead of training it again.

Commands: at the top of ``hierarchy.md`` (from the repository root, one CPU thread each).
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

DATA = "covid_infection_medseg"
PSEUDO = "covid_pseudo_infnet"
TIMES = ["lung_stage_s", "infection_stage_s"]
COLUMNS = ["mode", "dice", "jaccard", "precision", "recall", "specificity", "accuracy", "held_out_slices"]


COMMANDS = [
    "--mode channel --from-checkpoint /tmp/chsnet/chsnet.pt --out bench/covid   # the earlier bundled model",
    "--mode direct --size 128 --out bench/covid",
    "--mode channel --size 256 --time-scale 3.3 --lung-weights /tmp/chsnet/lung/last.pt --out bench/covid",
    "--mode direct --size 256 --time-scale 3.3 --out bench/covid",
    "--mode channel --size 256 --lung-weights /tmp/chsnet/lung/last.pt --out bench/covid   # 704 slice-steps",
    "--mode direct --size 128 --time-scale 0.3333 --out bench/covid   # 3x the default budget",
    "--mode channel --size 128 --time-scale 0.3333 --lung-weights /tmp/chsnet/lung/last.pt --out bench/covid",
    "--mode channel --from-checkpoint /tmp/chsnet-5120/chsnet.pt --out bench/covid   # the bundled model",
    "--mode direct --pseudo-stride 2 --pretrain-steps 250 --finetune-epochs 40 --out bench/covid   # its direct "
    "counterpart",
    "--mode channel --from-checkpoint /tmp/chsnet-5600/chsnet.pt --out bench/covid",
]
BUDGET = ("pretrain_epochs", "pretrain_steps", "finetune_epochs", "pseudo_stride", "tta")  # may differ between rows


def scaled_recipe(mode: str, size: int, time_scale: float, **budget):
    """The default recipe in ``mode`` at ``size`` with the infection stage's batches divided by ``time_scale``;
    ``budget`` (:data:`BUDGET` fields; None: scaled default) sets them explicitly instead."""
    from lungai.covid.training import Recipe

    base = Recipe(mode=mode)
    scaled = dict(
        pretrain_steps=max(1, round(base.pretrain_steps / time_scale)),
        finetune_epochs=max(1, round(base.finetune_epochs / time_scale)),
    )
    scaled.update({k: v for k, v in budget.items() if v is not None})
    return Recipe(mode=mode, size=size, **scaled)


def slice_steps(recipe, doctor_slices: int) -> int:
    """Slices the infection stage trains on, counted with repeats (pre-training + fine-tuning)."""
    per_epoch = -(-doctor_slices // recipe.batch_size)
    return recipe.batch_size * (recipe.pretrain_epochs * recipe.pretrain_steps + recipe.finetune_epochs * per_epoch)


def run_mode(
    mode: str, data: Path, work: Path, size: int, time_scale: float, lung_weights: str | None, **budget
) -> dict:
    from lungai.checkpoint import load_model
    from lungai.covid.bundle import doctor_split, measure
    from lungai.covid.data import load_medseg_folder
    from lungai.covid.training import train_chsnet

    train_slices, held_out = doctor_split(load_medseg_folder(data / DATA))
    pseudo = load_medseg_folder(data / PSEUDO)
    recipe = scaled_recipe(mode, size, time_scale, **budget)
    load = os.getloadavg()[0]
    started = time.perf_counter()
    lung = None
    if lung_weights and mode != "direct":
        network, header = load_model(lung_weights, "cpu", expected_model="raiunet")
        lung = (network, header["config"], header.get("training_data", ""))
    trained = train_chsnet(recipe, train_slices, pseudo, work, doctor_source=DATA, pseudo_source=PSEUDO, lung=lung)
    seconds = time.perf_counter() - started
    metrics = measure(trained, held_out)["infection"]
    return {
        "mode": mode,
        "grid": size,
        "infection_slice_steps": slice_steps(recipe, len(train_slices)),
        "pseudo_stride": recipe.pseudo_stride,
        "tta": int(recipe.tta),
        **{k: metrics[k] for k in COLUMNS[1:-1]},
        "held_out_slices": len(held_out),
        "lung_stage_s": round(trained.seconds.get("lung", 0.0)),
        "infection_stage_s": round(trained.seconds["pretrain"] + trained.seconds["finetune"]),
        "total_s": round(seconds),
        "load_average_at_start": round(load, 1),
        "source": "this script" + (" (lung stage reused from the bundled run)" if lung else ""),
    }


def row_from_checkpoint(mode: str, path: Path) -> dict:
    from lungai.checkpoint import load_checkpoint
    from lungai.covid.training import Recipe, recipe_record
    from lungai.errors import LungAIError

    header = load_checkpoint(path).header
    default = recipe_record(Recipe(mode=mode))
    recipe = {**default, **header["extra"]["recipe"]}  # fields added since the checkpoint: their defaults
    expected = {**default, "device": recipe["device"], **{k: recipe[k] for k in BUDGET}}
    if recipe != expected:
        differing = sorted(k for k in expected if recipe.get(k) != expected[k])
        raise LungAIError(f"{path} was trained with another recipe (differs in {differing}).")
    metrics, seconds = header["metrics"], header["extra"]["train_seconds"]
    trained = Recipe(mode=mode, **{k: recipe[k] for k in BUDGET})
    return {
        "mode": mode,
        "grid": recipe["size"],
        "infection_slice_steps": slice_steps(trained, len(header["extra"]["held_out"]["slices"])),
        "pseudo_stride": trained.pseudo_stride,
        "tta": int(trained.tta),
        **{k: metrics[f"held_out_infection_{k}"] for k in COLUMNS[1:-1]},
        "held_out_slices": len(header["extra"]["held_out"]["slices"]),
        "lung_stage_s": round(seconds.get("lung", 0.0)),
        "infection_stage_s": round(seconds["pretrain"] + seconds["finetune"]),
        "total_s": round(sum(seconds.values())),
        "load_average_at_start": "",
        "source": "lungai covid train checkpoint",
    }


def run_key(row: dict) -> tuple[int, str, int, int, int]:
    """A run's place in the table: a new run replaces the row of the same grid, mode, budget and data."""
    return (
        int(row.get("grid") or 128),
        row["mode"],
        int(row.get("infection_slice_steps") or 0),
        -int(row.get("pseudo_stride") or 4),
        int(row.get("tta") or 0),
    )


def write_tables(rows: list[dict], out: Path) -> None:
    fields = list(max(rows, key=len))
    for name in ("pseudo_stride", "tta"):
        if name not in fields:
            fields.insert(fields.index("infection_slice_steps") + 1, name)
    for row in rows:  # rows of runs before the grid and stride options: 128 px, 1 in 4 pseudo slices
        row["grid"] = row.get("grid") or 128
        row["infection_slice_steps"] = row.get("infection_slice_steps") or ""
        row["pseudo_stride"] = row.get("pseudo_stride") or 4
        row["tta"] = row.get("tta") or 0
    with open(out / "hierarchy_runs.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        "| "
        + " | ".join(
            str(row[k])
            for k in ["mode", "grid", *COLUMNS[1:], "infection_slice_steps", "pseudo_stride", "tta", *TIMES, "source"]
        )
        + " |"
        for row in rows
    ]
    (out / "hierarchy.md").write_text(
        "# Hierarchical versus direct infection segmentation, and 128 versus 256 px (CHS-Net, equal budget)\n\n"
        "Commands (from the repository root, each on one CPU thread; `/tmp/chsnet*` are the `--out` folders of "
        "`lungai covid train` runs: `/tmp/chsnet` the earlier bundled model's (its registry command then had no "
        "budget options), `/tmp/chsnet-5120` the present bundled model's (its registry command, `lungai info`: "
        "`--pseudo-stride 2 --pretrain-epochs 4 --pretrain-steps 250 --finetune-epochs 40`), `/tmp/chsnet-5600` "
        "the same command with `--pseudo-stride 1 --pretrain-steps 350 --tta`, a larger budget that did not "
        "do better):\n\n"
        + "".join(f"    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python bench/covid/hierarchy.py {c}\n" for c in COMMANDS)
        + "\nHeld-out: the doctor-labelled MedSeg slices of fold 1 of a seeded 2-fold split (seed 0) that no training "
        "step saw; per-slice metrics averaged over those slices. MedSeg does not identify patients, so these are "
        "other slices of the same collection, not necessarily other patients. Every row: the recipe of `lungai "
        "covid train` (our widths 16-24-36-54-81, pre-training on 1 in k pseudo-labelled slices mixed with the 25 "
        "doctor training slices x 4, then fine-tuning on those 25, same seed); its infection budget is the "
        "slice-steps column (slices trained on, with repeats: 704 is the default, 4 epochs of 30 batches of 4 "
        "plus 8 fine-tuning epochs). Rows of this script without explicit budget options divide the default "
        "batches by `--time-scale`: 1 at 128 px, 3.3 at 256 px, the measured cost of a 256 px training step "
        "relative to 128 px (cost.md), so the two grids train for about the same time (compare the "
        "infection-stage seconds). 'channel' (the bundled mode) is hierarchical: it has a lung stage (128 px; "
        "rows marked so reuse the earlier bundled run's, trained by the same recipe) and gives stage 2 the lung "
        "map as a second channel; 'direct' has no lung stage and gets the same infection epochs, batches and "
        "data. 'flips at inference': the infection probability averaged over the slice and its left-right mirror "
        "(`lungai covid train --tta`). One CPU thread on a 2-core machine whose other core trained another model "
        "(load average at the start in the CSV, blank for checkpoint rows; the 704 checkpoint row's times are "
        "from a load of 10-15, so its seconds are not comparable with the others'); times are wall seconds.\n\n"
        "| mode | grid | Dice | Jaccard | precision | recall | specificity | accuracy | held-out slices | infection "
        "slice-steps | pseudo slices 1 in k | flips at inference | lung stage s | infection stage s | source |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n" + "\n".join(lines) + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["mask", "channel", "direct"], required=True)
    parser.add_argument("--out", default="bench/covid")
    parser.add_argument("--work", default="/tmp/covid_hierarchy", help="folder for the training logs")
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("LUNGAI_SHARED_DATA", "../shared/data"),
        help=f"folder holding {DATA}/ and {PSEUDO}/ (default: $LUNGAI_SHARED_DATA or ../shared/data)",
    )
    parser.add_argument("--from-checkpoint", help="chsnet checkpoint of the same recipe (mask or channel)")
    parser.add_argument("--size", type=int, default=128, help="infection grid")
    parser.add_argument("--time-scale", type=float, default=1.0, help="divide the infection stage's batches by this")
    parser.add_argument("--pretrain-steps", type=int, help="batches per pre-training epoch (instead of scaling)")
    parser.add_argument("--finetune-epochs", type=int, help="fine-tuning epochs (instead of scaling)")
    parser.add_argument("--pseudo-stride", type=int, help="1 in k pseudo-labelled slices (default: the recipe's 4)")
    parser.add_argument("--tta", action="store_true", help="measure with left-right flip averaging")
    parser.add_argument(
        "--lung-weights", help="reuse the lung stage of a run of the same recipe (its lung/last.pt) instead of training"
    )
    parser.add_argument("--render", action="store_true", help="only rewrite hierarchy.md from hierarchy_runs.csv")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = out / "hierarchy_runs.csv"
    if args.render:
        write_tables(list(csv.DictReader(open(runs))), out)
        return
    if args.from_checkpoint:
        row = row_from_checkpoint(args.mode, Path(args.from_checkpoint))
    else:
        work = Path(args.work) / f"{args.mode}-{args.size}"
        budget = dict(
            pretrain_steps=args.pretrain_steps,
            finetune_epochs=args.finetune_epochs,
            pseudo_stride=args.pseudo_stride,
            tta=args.tta or None,
        )
        row = run_mode(args.mode, Path(args.data_dir), work, args.size, args.time_scale, args.lung_weights, **budget)
    print(row, flush=True)
    rows = [r for r in csv.DictReader(open(runs))] if runs.is_file() else []
    rows = [r for r in rows if run_key(r) != run_key(row)] + [row]
    write_tables(sorted(rows, key=run_key), out)


if __name__ == "__main__":
    main()
