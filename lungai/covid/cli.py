"""``lungai covid train | evaluate | segment``: CHS-Net from the command line."""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

DEFAULT_WIDTHS = [8, 16, 32, 64, 128]
TRAIN_COMMAND = (
    "OMP_NUM_THREADS=1 lungai covid train --data ../shared/data/covid_infection_medseg --out /tmp/chsnet "
    "--cv-metrics bench/covid/ablation.csv --register"
)
LICENCE = (
    "Non-commercial research use only: trained on the MedSeg COVID-19 CT segmentation slices (non-commercial "
    "research licence) and the slicerio CTChest4 sample (3D Slicer sample data)."
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("covid", help="CHS-Net: lungs, then COVID-19 infection, and infection burden")
    commands = parser.add_subparsers(dest="covid_command", metavar="COMMAND", required=True)

    train = commands.add_parser("train", help="train both stages and write a chsnet checkpoint")
    train.add_argument("--data", required=True, help="folder in the covid_infection_medseg layout (infection stage)")
    train.add_argument("--out", required=True, help="output folder (stage logs and chsnet.pt)")
    train.add_argument("--size", type=int, default=96, help="square model grid, a multiple of 16 (paper: 256)")
    train.add_argument("--widths", type=int, nargs=5, default=DEFAULT_WIDTHS, help="channels per stage")
    train.add_argument(
        "--variant",
        choices=["BU", "BU+RIB", "BU+RIB+HP", "RAIU-Net"],
        default="RAIU-Net",
        help="ablation variant of both stages (Tables 4-5); RAIU-Net is CHS-Net",
    )
    train.add_argument("--lung-epochs", type=int, default=10)
    train.add_argument("--infection-epochs", type=int, default=30)
    train.add_argument(
        "--lung-input",
        choices=["mask", "channel"],
        default="mask",
        help="stage 2 sees the CT masked by the lungs, or the lung map as a second channel",
    )
    train.add_argument("--batch-size", type=int, default=8)
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--orientation",
        choices=["transposed", "display"],
        default="transposed",
        help="how the --data slices are stored (MedSeg/Inf-Net slices are transposed)",
    )
    train.add_argument(
        "--lung-weights",
        help="reuse a trained lung stage (a raiunet checkpoint, e.g. lung/last.pt of an "
        "earlier run) and train only the infection stage",
    )
    train.add_argument("--limit", type=int, help="use only the first N slices of --data (quick trials and tests)")
    train.add_argument(
        "--cv-metrics",
        help="ablation.csv of bench/covid: its RAIU-Net row for --lung-input is "
        "registered as the infection metrics (cross-validated estimate of this recipe)",
    )
    train.add_argument(
        "--register",
        action="store_true",
        help="copy the checkpoint to Resources/Models and add it to the model registry",
    )
    train.set_defaults(func=_train)

    evaluate = commands.add_parser("evaluate", help="infection metrics of the hierarchical model on a labelled folder")
    evaluate.add_argument("--data", required=True, help="folder in the covid_infection_medseg layout (all test data)")
    evaluate.add_argument("--weights", help="chsnet checkpoint (default: the bundled model)")
    evaluate.add_argument("--out", required=True, help="output folder for metrics.json and per_slice.csv")
    evaluate.add_argument("--orientation", choices=["transposed", "display"], default="transposed")
    evaluate.add_argument("--overwrite", action="store_true", help="replace existing output files")
    evaluate.set_defaults(func=_evaluate)

    segment = commands.add_parser("segment", help="lungs, infection and burden table for a CT volume")
    segment.add_argument("--volume", required=True, help="CT volume in HU (.nrrd, .nii[.gz], .mha or a DICOM folder)")
    segment.add_argument("--out", required=True, help="output folder for segmentation.seg.nrrd and burden.csv")
    segment.add_argument("--weights", help="chsnet checkpoint (default: the bundled model)")
    segment.add_argument("--overwrite", action="store_true", help="replace existing output files")
    segment.set_defaults(func=_segment)


def _check_outputs(paths: list[Path], overwrite: bool) -> None:
    from lungai.errors import LungAIError

    existing = [str(p) for p in paths if p.exists()]
    if existing and not overwrite:
        raise LungAIError(f"{', '.join(existing)} already exist(s); choose another --out or pass --overwrite.")


def _train(args: argparse.Namespace, ctx) -> int:
    import torch

    from lungai.covid.cascade import Cascade
    from lungai.covid.data import chest_ct_lung_slices, load_medseg_folder, with_derived_lungs
    from lungai.covid.evaluation import lung_metrics
    from lungai.covid.model import MODEL_ID, assemble_chsnet, save_chsnet
    from lungai.covid.training import (
        SegmentationTask,
        StageSettings,
        infection_training_set,
        lung_training_set,
        raiunet_config,
        train_stage,
    )
    from lungai.errors import LungAIError
    from lungai.progress import subrange

    if args.size % 16:
        raise LungAIError(f"--size must be a multiple of 16 (four halvings), not {args.size}.")
    out = Path(args.out)
    _check_outputs([out / "chsnet.pt"], False)
    torch.manual_seed(args.seed)
    medseg = load_medseg_folder(args.data, args.orientation)[: args.limit]
    started = time.perf_counter()
    settings = StageSettings(
        size=args.size,
        widths=tuple(args.widths),
        epochs=args.lung_epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=ctx.device,
    )
    lung_data = "CTChest4 (slicerio) training slices + derived lungs of " + str(args.data)
    if args.lung_weights:
        from lungai.checkpoint import load_model

        lung, lung_header = load_model(args.lung_weights, "cpu", expected_model="raiunet")
        lung_config, lung_data = lung_header["config"], lung_header.get("training_data") or lung_data
    else:
        lung_config = raiunet_config(args.variant, settings)
        lung = train_stage(
            lung_training_set(chest_ct_lung_slices("train") + with_derived_lungs(medseg), args.size, args.seed),
            SegmentationTask("lung"),
            lung_config,
            settings,
            out / "lung",
            lung_data,
            subrange(ctx.progress, 0.0, 0.4),
            ctx.cancel,
        )
    probe = Cascade(None, lung=lung, lung_input=args.lung_input, size=args.size, device=settings.device)
    settings.epochs = args.infection_epochs
    infection_config = raiunet_config(args.variant, settings, in_channels=2 if args.lung_input == "channel" else 1)
    infection = train_stage(
        infection_training_set(medseg, probe, args.seed),
        SegmentationTask("infection", args.lung_input),
        infection_config,
        settings,
        out / "infection",
        f"{args.data} (all {len(medseg)} slices)",
        subrange(ctx.progress, 0.4, 0.95),
        ctx.cancel,
    )
    seconds = time.perf_counter() - started
    model, config = assemble_chsnet(lung, lung_config, infection, infection_config, args.lung_input)
    cascade = Cascade.from_chsnet(model, args.size)
    lungs, _ = lung_metrics(cascade, chest_ct_lung_slices("test"))
    metrics = {f"lung_{k}": round(v, 4) for k, v in lungs.items()}
    infection_cv = _cv_metrics(args.cv_metrics, args.lung_input) if args.cv_metrics else {}
    metrics.update({f"infection_cv_{k}": v for k, v in infection_cv.items()})
    training_data = f"lungs: {lung_data}; infection: {args.data}"
    path = save_chsnet(
        out / "chsnet.pt", model, config, input_size=args.size, training_data=training_data, metrics=metrics
    )
    ctx.close()
    print(f"checkpoint: {path} ({seconds:.0f} s); held-out lung metrics {metrics}")
    if args.register:
        from lungai.registry import register_model, registry_path

        target = registry_path().parent / f"{MODEL_ID}.pt"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        entry = register_model(
            {
                "id": MODEL_ID,
                "version": "1",
                "module": "COVIDHierarchical",
                "architecture": "chsnet",
                "file": target.name,
                "sha256": "",
                "licence": LICENCE,
                "training_data": training_data,
                "description": (
                    f"CHS-Net (seed 003): two RAIU-Nets, widths {args.widths}, {args.size}x{args.size} grid, "
                    f"lung_input={args.lung_input}"
                ),
                "command": TRAIN_COMMAND,
                "metrics": {
                    "lungs (held-out CTChest4 slices 22-33, real labels)": {k: round(v, 4) for k, v in lungs.items()},
                    "infection (2-fold cross-validation of this recipe, bench/covid/ablation.md)": infection_cv,
                },
                "timings": {"train_seconds_cpu_1_thread": round(seconds, 1)},
            }
        )
        print(f"registered {entry.id} ({entry.sha256[:12]}) in {registry_path()}")
    return 0


def _cv_metrics(path: str, lung_input: str) -> dict[str, float]:
    import csv

    from lungai.covid.evaluation import METRIC_NAMES
    from lungai.errors import LungAIError

    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            if row["stage"] == "infection" and row["variant"] == "RAIU-Net" and row["mode"] == lung_input:
                return {name: float(row[name]) for name in METRIC_NAMES}
    raise LungAIError(f"{path} has no RAIU-Net infection row for mode '{lung_input}'.")


def _evaluate(args: argparse.Namespace, ctx) -> int:
    from lungai.covid.data import load_medseg_folder
    from lungai.covid.evaluation import infection_metrics
    from lungai.covid.model import load_cascade
    from lungai.io import write_table_csv

    out = Path(args.out)
    _check_outputs([out / "metrics.json", out / "per_slice.csv"], args.overwrite)
    slices = load_medseg_folder(args.data, args.orientation)
    cascade, header = load_cascade(args.weights, ctx.device)
    metrics, rows = infection_metrics(cascade, slices, ctx.progress, ctx.cancel)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "mode": "hierarchical",
        "lung_input": cascade.lung_input,
        "input_size": cascade.size,
        "slices": len(slices),
        "data": str(args.data),
        "weights": str(args.weights or "bundled chsnet-covid"),
        "infection": {k: round(v, 4) for k, v in metrics.items()},
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    write_table_csv(
        out / "per_slice.csv",
        [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()} for row in rows],
        overwrite=True,
    )
    ctx.close()
    print(json.dumps(result["infection"]))
    return 0


def _segment(args: argparse.Namespace, ctx) -> int:
    from lungai.covid.model import load_cascade
    from lungai.covid.pipeline import segment_volume, write_outputs
    from lungai.io import read_volume

    out = Path(args.out)
    volume = read_volume(args.volume)
    cascade, _ = load_cascade(args.weights, ctx.device)
    result = segment_volume(volume, cascade, ctx.progress, ctx.cancel)
    paths = write_outputs(result, volume, out, overwrite=args.overwrite)
    ctx.close()
    for row in result.table:
        print(", ".join(f"{k}: {v}" for k, v in row.items()))
    print("written: " + ", ".join(str(p) for p in paths))
    return 0
