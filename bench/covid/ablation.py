"""Hierarchical versus direct infection segmentation and the BU / +RIB / +HP / +SSD ablation.

Tables 4-5 protocol of seed 003 at one CPU training budget:
- lung stage per variant, trained once on the chest CT's training slices (real labels) plus the
  50 MedSeg slices with derived image-only lung labels; lung metrics on the held-out chest CT
  slices 22-33 (real labels);
- infection stage per variant, mode (direct; hierarchical with lung_input mask; for RAIU-Net also
  channel) and fold of a seeded 2-fold cross-validation over the 50 MedSeg slices; infection
  metrics on the held-out fold at the slices' own resolution.

Command (from the repository root, one thread):
    OMP_NUM_THREADS=1 python bench/covid/ablation.py --out bench/covid
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import torch

from lungai.covid.cascade import Cascade
from lungai.covid.data import chest_ct_lung_slices, load_medseg_folder, two_fold_split, with_derived_lungs
from lungai.covid.evaluation import METRIC_NAMES, infection_metrics, lung_metrics
from lungai.covid.training import (
    VARIANTS,
    SegmentationTask,
    StageSettings,
    infection_training_set,
    lung_training_set,
    raiunet_config,
    train_stage,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/covid_infection_medseg")
    parser.add_argument("--out", default="bench/covid")
    parser.add_argument("--work", default="/tmp/covid_ablation")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--lung-epochs", type=int, default=10)
    parser.add_argument("--infection-epochs", type=int, default=30)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    medseg = load_medseg_folder(args.data)
    lung_set = lung_training_set(chest_ct_lung_slices("train") + with_derived_lungs(medseg), args.size)
    chest_test = chest_ct_lung_slices("test")
    rows: list[dict] = []

    def record(row: dict) -> None:
        rows.append(row)
        print(json.dumps(row), flush=True)
        with open(out / "ablation_runs.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[-1]))
            writer.writeheader()
            writer.writerows(rows)

    lung_nets = {}
    for variant in args.variants:
        settings = StageSettings(size=args.size, epochs=args.lung_epochs)
        started = time.perf_counter()
        net = train_stage(
            lung_set,
            SegmentationTask("lung"),
            raiunet_config(variant, settings),
            settings,
            work / f"lung_{variant}",
            "CTChest4 train slices + MedSeg derived lungs",
        )
        seconds = time.perf_counter() - started
        lung_nets[variant] = net
        cascade = Cascade(None, lung=net, lung_input="mask", size=args.size)
        metrics, _ = lung_metrics(cascade, chest_test)
        record(
            {
                "stage": "lung",
                "variant": variant,
                "mode": "-",
                "fold": "-",
                "train_seconds": round(seconds, 1),
                **{k: round(v, 4) for k, v in metrics.items()},
            }
        )

    for fold in (0, 1):
        train_idx, test_idx = two_fold_split(len(medseg), fold)
        train_slices, test_slices = [medseg[i] for i in train_idx], [medseg[i] for i in test_idx]
        for variant in args.variants:
            modes = ["direct", "mask"] + (["channel"] if variant == "RAIU-Net" else [])
            for mode in modes:
                settings = StageSettings(size=args.size, epochs=args.infection_epochs)
                lung_input = None if mode == "direct" else mode
                lung = None if mode == "direct" else lung_nets[variant]
                probe = Cascade(None, lung=lung, lung_input=lung_input, size=args.size)
                dataset = infection_training_set(train_slices, probe, seed=fold)
                config = raiunet_config(variant, settings, in_channels=2 if mode == "channel" else 1)
                started = time.perf_counter()
                net = train_stage(
                    dataset,
                    SegmentationTask("infection", lung_input),
                    config,
                    settings,
                    work / f"inf_{variant}_{mode}_{fold}",
                    f"MedSeg fold {fold} training half",
                )
                seconds = time.perf_counter() - started
                cascade = Cascade(net, lung=lung, lung_input=lung_input, size=args.size)
                metrics, _ = infection_metrics(cascade, test_slices)
                record(
                    {
                        "stage": "infection",
                        "variant": variant,
                        "mode": mode,
                        "fold": fold,
                        "train_seconds": round(seconds, 1),
                        **{k: round(v, 4) for k, v in metrics.items()},
                    }
                )
    write_summary(rows, out, args)


def write_summary(rows: list[dict], out: Path, args: argparse.Namespace) -> None:
    """Mean over folds per (stage, variant, mode) as markdown and CSV."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["stage"], row["variant"], row["mode"]), []).append(row)
    summary = []
    for (stage, variant, mode), members in groups.items():
        summary.append(
            {
                "stage": stage,
                "variant": variant,
                "mode": mode,
                "folds": len(members),
                "train_seconds": round(sum(m["train_seconds"] for m in members), 1),
                **{k: round(sum(m[k] for m in members) / len(members), 3) for k in METRIC_NAMES},
            }
        )
    with open(out / "ablation.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(summary[0]))
        writer.writeheader()
        writer.writerows(summary)
    header = (
        "| stage | variant | mode | Acc. | Pre. | Spe. | Rec. | DSC | JI | train s |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| {s['stage']} | {s['variant']} | {s['mode']} | {s['accuracy']:.3f} | {s['precision']:.3f} | "
        f"{s['specificity']:.3f} | {s['recall']:.3f} | {s['dice']:.3f} | {s['jaccard']:.3f} | {s['train_seconds']} |"
        for s in summary
    ]
    (out / "ablation.md").write_text(
        "# CHS-Net ablation and hierarchical versus direct (seed 003, Tables 4-5 protocol)\n\n"
        f"Input {args.size} x {args.size}, widths 8-16-32-64-128, lung stage {args.lung_epochs} epochs, "
        f"infection stage {args.infection_epochs} epochs, Adam 1e-3, batch 8, one CPU thread. Infection: mean over "
        "the two held-out folds of a seeded 2-fold split of the 50 MedSeg slices (per-slice means, each slice "
        "at its own resolution). Lungs: held-out chest CT slices 22-33 (real labels). mode 'direct' = no lung "
        "stage; 'mask' / 'channel' = hierarchical with the lung map masking the CT / as a second channel.\n\n"
        + header
        + "\n".join(lines)
        + "\n\nPer-run rows: ablation_runs.csv. Command:\n\n"
        f"    OMP_NUM_THREADS=1 python bench/covid/ablation.py --out bench/covid --size {args.size} "
        f"--lung-epochs {args.lung_epochs} --infection-epochs {args.infection_epochs}\n"
    )


if __name__ == "__main__":
    main()
