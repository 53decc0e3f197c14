"""``lungai covid train | evaluate | segment``: CHS-Net from the command line."""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

TRAIN_COMMAND = (
    "OMP_NUM_THREADS=1 lungai covid train --data ../shared/data/covid_infection_medseg "
    "--pseudo ../shared/data/covid_pseudo_infnet --out /tmp/chsnet --register"
)
LICENCE = (
    "Non-commercial research use only: trained on the MedSeg COVID-19 CT segmentation slices (non-commercial "
    "research licence), Semi-Inf-Net pseudo labels of COVID-19 CT slices from coronacases.org and Radiopaedia "
    "(CC BY-NC-SA) as distributed with Inf-Net, and the slicerio CTChest4 sample (3D Slicer sample data)."
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("covid", help="CHS-Net: lungs, then COVID-19 infection, and infection burden")
    commands = parser.add_subparsers(dest="covid_command", metavar="COMMAND", required=True)

    train = commands.add_parser(
        "train",
        help="train both stages (lungs; infection pre-trained on pseudo labels, fine-tuned on doctor labels), "
        "measure on held-out doctor-labelled slices and write a chsnet checkpoint",
    )
    train.add_argument("--data", required=True, help="doctor-labelled slices, covid_infection_medseg layout")
    train.add_argument("--pseudo", help="pseudo-labelled slices, covid_pseudo_infnet layout (pre-training)")
    train.add_argument("--out", required=True, help="output folder (stage logs and chsnet.pt)")
    train.add_argument("--size", type=int, help="infection grid, a multiple of 16 (default 128; paper: 256)")
    train.add_argument("--lung-size", type=int, help="lung grid (default 128: the chest CT is 128 px)")
    train.add_argument(
        "--widths",
        type=int,
        nargs=5,
        help="channels per stage (default: our CPU choice 16-24-36-54-81, the paper's 50%% growth per stage)",
    )
    train.add_argument(
        "--paper-widths", action="store_true", help="the paper's widths 49-74-110-165-248 (4.15 M parameters)"
    )
    train.add_argument("--lung-widths", type=int, nargs=5, help="channels per stage of the lung stage (default 8-...)")
    train.add_argument(
        "--variant",
        choices=["BU", "BU+RIB", "BU+RIB+HP", "RAIU-Net"],
        default="RAIU-Net",
        help="ablation variant of both stages (Tables 4-5); RAIU-Net is CHS-Net",
    )
    train.add_argument("--lung-epochs", type=int)
    train.add_argument("--pretrain-epochs", type=int)
    train.add_argument("--pretrain-steps", type=int, help="batches per pre-training epoch (default: all)")
    train.add_argument("--finetune-epochs", type=int)
    train.add_argument("--pseudo-stride", type=int, help="every k-th pseudo slice")
    train.add_argument(
        "--lung-input",
        choices=["mask", "channel"],
        default="channel",
        help="stage 2 sees the lung map as a second channel (default), or the CT masked by the lungs",
    )
    train.add_argument("--batch-size", type=int)
    train.add_argument("--lr", type=float)
    train.add_argument("--finetune-lr", type=float)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--orientation",
        choices=["transposed", "display"],
        default="transposed",
        help="how the --data and --pseudo slices are stored (MedSeg/Inf-Net slices are transposed)",
    )
    train.add_argument(
        "--lung-weights",
        help="reuse a trained lung stage (a raiunet checkpoint, e.g. lung/last.pt of an earlier run; trained at "
        "--lung-size) and train only the infection stage",
    )
    train.add_argument("--limit", type=int, help="use only the first N slices of each folder (quick trials, tests)")
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
    evaluate.add_argument("--tta", action="store_true", help="average over left-right flips (test-time augmentation)")
    evaluate.add_argument(
        "--held-out",
        action="store_true",
        help="only the slices of --data that the checkpoint lists as held out from its training",
    )
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
    from lungai.covid.bundle import doctor_split, measure, save_trained
    from lungai.covid.data import load_medseg_folder
    from lungai.covid.model import MODEL_ID
    from lungai.covid.raiunet import PAPER_WIDTHS
    from lungai.covid.training import CPU_WIDTHS, LUNG_WIDTHS, Recipe, train_chsnet

    out = Path(args.out)
    _check_outputs([out / "chsnet.pt"], False)
    given = {
        name: getattr(args, name)
        for name in (
            "size",
            "lung_size",
            "lung_epochs",
            "pretrain_epochs",
            "pretrain_steps",
            "finetune_epochs",
            "pseudo_stride",
            "batch_size",
            "lr",
            "finetune_lr",
        )
        if getattr(args, name) is not None
    }
    if not args.pseudo:
        given["pretrain_epochs"] = 0
    recipe = Recipe(
        mode=args.lung_input,
        variant=args.variant,
        widths=tuple(PAPER_WIDTHS if args.paper_widths else (args.widths or CPU_WIDTHS)),
        lung_widths=tuple(PAPER_WIDTHS if args.paper_widths else (args.lung_widths or LUNG_WIDTHS)),
        seed=args.seed,
        device=str(ctx.device),
        **given,
    )
    doctor_source, pseudo_source = Path(args.data).name, Path(args.pseudo).name if args.pseudo else "no pseudo"
    train_slices, held_out = doctor_split(load_medseg_folder(args.data, args.orientation)[: args.limit])
    pseudo = load_medseg_folder(args.pseudo, args.orientation)[: args.limit] if args.pseudo else []
    lung = None
    if args.lung_weights:
        from lungai.checkpoint import load_model

        network, header = load_model(args.lung_weights, "cpu", expected_model="raiunet")
        lung = (network, header["config"], header.get("training_data") or Path(args.lung_weights).name)
    started = time.perf_counter()
    trained = train_chsnet(
        recipe,
        train_slices,
        pseudo,
        out,
        doctor_source=doctor_source,
        pseudo_source=pseudo_source,
        lung=lung,
        progress=ctx.progress,
        cancel=ctx.cancel,
    )
    seconds = time.perf_counter() - started
    metrics = measure(trained, held_out)
    path = save_trained(out / "chsnet.pt", trained, held_out, doctor_source, metrics)
    ctx.close()
    print(f"checkpoint: {path} ({seconds:.0f} s); held-out metrics {json.dumps(metrics)}")
    if args.register:
        from lungai.covid.bundle import SPLIT
        from lungai.registry import register_model, registry_path

        target = registry_path().parent / f"{MODEL_ID}.pt"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        widths = "the paper's widths" if recipe.widths == PAPER_WIDTHS else "widths of our choice"
        lung_widths = "the paper's" if recipe.lung_widths == PAPER_WIDTHS else "our choice"
        entry = register_model(
            {
                "id": MODEL_ID,
                "version": "2",
                "module": "COVIDHierarchical",
                "architecture": "chsnet",
                "file": target.name,
                "sha256": "",
                "licence": LICENCE,
                "training_data": "; ".join(f"{k}: {v}" for k, v in trained.training_data.items()),
                "description": (
                    f"CHS-Net (seed 003): two RAIU-Nets with SSD attention, {widths} {list(recipe.widths)} "
                    f"(50% growth per stage; lung stage {lung_widths} {list(recipe.lung_widths)}), infection grid "
                    f"{recipe.size} px, lung grid {recipe.lung_size} px, "
                    f"lung_input={recipe.mode}"
                ),
                "command": TRAIN_COMMAND,
                "metrics": {
                    f"infection, held-out doctor-labelled slices ({len(held_out)} {doctor_source} slices no "
                    f"training step saw; {SPLIT}; other slices of the same collection, patients not "
                    "identified)": metrics["infection"],
                    "lungs, held-out CTChest4 slices 22-33 (real labels, other slices of the training scan)": metrics[
                        "lung"
                    ],
                },
                "timings": {
                    "train_seconds_cpu_1_thread": round(seconds, 1),
                    **{f"{k}_seconds": round(v, 1) for k, v in trained.seconds.items()},
                },
            }
        )
        print(f"registered {entry.id} ({entry.sha256[:12]}) in {registry_path()}")
    return 0


def _evaluate(args: argparse.Namespace, ctx) -> int:
    from lungai.covid.data import load_medseg_folder
    from lungai.covid.evaluation import infection_metrics
    from lungai.covid.model import load_cascade
    from lungai.io import write_table_csv

    out = Path(args.out)
    _check_outputs([out / "metrics.json", out / "per_slice.csv"], args.overwrite)
    slices = load_medseg_folder(args.data, args.orientation)
    cascade, header = load_cascade(args.weights, ctx.device, tta=args.tta)
    if args.held_out:
        from lungai.covid.bundle import held_out_names
        from lungai.errors import LungAIError

        names = set(held_out_names(header))
        slices = [s for s in slices if s.name in names]
        if not slices:
            raise LungAIError(f"None of the slices in {args.data} is among the checkpoint's held-out slices.")
    metrics, rows = infection_metrics(cascade, slices, ctx.progress, ctx.cancel)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "mode": "hierarchical",
        "lung_input": cascade.lung_input,
        "input_size": cascade.size,
        "slices": len(slices),
        "held_out_only": bool(args.held_out),
        "tta": bool(args.tta),
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
