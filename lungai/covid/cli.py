"""``lungai covid train | evaluate | segment``: argument parsing only; the work is in :mod:`lungai.covid.pipeline`."""

from __future__ import annotations

import argparse
import json

from lungai import clitools
from lungai.covid import DESCRIPTOR, pipeline
from lungai.io import read_volume

ORIENTATIONS = ["transposed", "display"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("covid", help=DESCRIPTOR.title)
    commands = parser.add_subparsers(dest="covid_command", metavar="COMMAND", required=True)

    defaults = pipeline.Training()
    train = commands.add_parser("train", help="train both stages and write a chsnet checkpoint")
    train.add_argument("--data", required=True, help="folder in the covid_infection_medseg layout (infection stage)")
    train.add_argument("--out", required=True, help="output folder (stage logs and chsnet.pt)")
    train.add_argument(
        "--size", type=int, default=defaults.size, help="square model grid, a multiple of 16 (paper: 256)"
    )
    train.add_argument("--widths", type=int, nargs=5, default=list(defaults.widths), help="channels per stage")
    train.add_argument(
        "--variant",
        choices=["BU", "BU+RIB", "BU+RIB+HP", "RAIU-Net"],
        default=defaults.variant,
        help="ablation variant of both stages (Tables 4-5); RAIU-Net is CHS-Net",
    )
    train.add_argument("--lung-epochs", type=int, default=defaults.lung_epochs)
    train.add_argument("--infection-epochs", type=int, default=defaults.infection_epochs)
    train.add_argument(
        "--lung-input",
        choices=["mask", "channel"],
        default=defaults.lung_input,
        help="stage 2 sees the CT masked by the lungs, or the lung map as a second channel",
    )
    train.add_argument("--batch-size", type=int, default=defaults.batch_size)
    train.add_argument("--lr", type=float, default=defaults.lr)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--orientation",
        choices=ORIENTATIONS,
        default=defaults.orientation,
        help="how the --data slices are stored (MedSeg/Inf-Net slices are transposed)",
    )
    train.add_argument(
        "--lung-weights",
        metavar="FILE",
        help="reuse a trained lung stage (a raiunet checkpoint, e.g. lung/last.pt of an "
        "earlier run) and train only the infection stage",
    )
    train.add_argument("--limit", type=int, help="use only the first N slices of --data (quick trials and tests)")
    train.add_argument(
        "--cv-metrics",
        metavar="CSV",
        help="ablation.csv of bench/covid: its RAIU-Net row for --lung-input is "
        "registered as the infection metrics (cross-validated estimate of this recipe)",
    )
    clitools.add_register_option(train)
    train.set_defaults(func=_train)

    evaluate = commands.add_parser("evaluate", help="infection metrics of the hierarchical model on a labelled folder")
    evaluate.add_argument("--data", required=True, help="folder in the covid_infection_medseg layout (all test data)")
    evaluate.add_argument("--out", required=True, help="output folder for metrics.json and per_slice.csv")
    evaluate.add_argument("--orientation", choices=ORIENTATIONS, default="transposed")
    clitools.add_model_options(evaluate, DESCRIPTOR)
    clitools.add_overwrite_option(evaluate)
    evaluate.set_defaults(func=_evaluate)

    segment = commands.add_parser("segment", help="lungs, infection and burden table for a CT volume")
    segment.add_argument("--volume", required=True, help="CT volume in HU (.nrrd, .nii[.gz], .mha or a DICOM folder)")
    segment.add_argument("--out", required=True, help="output folder for segmentation.seg.nrrd and burden.csv")
    clitools.add_model_options(segment, DESCRIPTOR)
    clitools.add_overwrite_option(segment)
    segment.set_defaults(func=_segment)


def _train(args: argparse.Namespace, ctx) -> int:
    config = pipeline.Training(
        out=args.out,
        register=args.register,
        command=clitools.command_line(ctx.argv),
        device=ctx.device,
        seed=args.seed,
        data=args.data,
        size=args.size,
        widths=tuple(args.widths),
        variant=args.variant,
        lung_epochs=args.lung_epochs,
        infection_epochs=args.infection_epochs,
        lung_input=args.lung_input,
        batch_size=args.batch_size,
        lr=args.lr,
        orientation=args.orientation,
        lung_weights=args.lung_weights,
        limit=args.limit,
        cv_metrics=args.cv_metrics,
    )
    outcome = pipeline.train(config, progress=ctx.progress, cancel=ctx.cancel)
    ctx.close()
    print(f"held-out lung metrics {outcome.metrics}")
    clitools.print_written([outcome.checkpoint], outcome.registered)
    return 0


def _evaluate(args: argparse.Namespace, ctx) -> int:
    model = pipeline.load(args.weights, args.model, ctx.device)
    result = pipeline.evaluate(
        args.data,
        args.out,
        model,
        orientation=args.orientation,
        overwrite=args.overwrite,
        progress=ctx.progress,
        cancel=ctx.cancel,
    )
    ctx.close()
    print(json.dumps(result["infection"]))
    return 0


def _segment(args: argparse.Namespace, ctx) -> int:
    volume = read_volume(args.volume)
    clitools.check_outputs(args.out, DESCRIPTOR.outputs, args.overwrite)
    model = pipeline.load(args.weights, args.model, ctx.device)
    result = pipeline.run(volume, model, progress=ctx.progress, cancel=ctx.cancel)
    paths = pipeline.write(result, args.out, overwrite=args.overwrite)
    ctx.close()
    for row in result.burden.table:
        print(", ".join(f"{k}: {v}" for k, v in row.items()))
    clitools.print_written(paths)
    return 0
