"""``lungai covid train | evaluate | segment``: argument parsing only; the work is in :mod:`lungai.covid.pipeline`."""

from __future__ import annotations

import argparse
import json

from lungai import clitools
from lungai.covid import DESCRIPTOR, pipeline
from lungai.covid.snapshot import read_ct_or_snapshot

ORIENTATIONS = ["transposed", "display"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("covid", help=DESCRIPTOR.title)
    commands = parser.add_subparsers(dest="covid_command", metavar="COMMAND", required=True)

    defaults = pipeline.Training()
    train = commands.add_parser(
        "train",
        help="train both stages (lungs; infection pre-trained on pseudo labels, fine-tuned on doctor labels), "
        "measure on held-out doctor-labelled slices and write a chsnet checkpoint",
    )
    train.add_argument("--data", required=True, help="doctor-labelled slices, covid_infection_medseg layout")
    train.add_argument("--pseudo", help="pseudo-labelled slices, covid_pseudo_infnet layout (pre-training)")
    train.add_argument("--out", required=True, help="output folder (stage logs and chsnet.pt)")
    train.add_argument(
        "--size", type=int, default=defaults.size, help="infection grid, a multiple of 16 (paper: 256; see bench)"
    )
    train.add_argument(
        "--lung-size", type=int, default=defaults.lung_size, help="lung grid (the chest CT it learns from is 128 px)"
    )
    train.add_argument(
        "--widths",
        type=int,
        nargs=5,
        default=list(defaults.widths),
        help="channels per stage (default: our CPU choice, the paper's 50%% growth per stage from 16)",
    )
    train.add_argument("--lung-widths", type=int, nargs=5, default=list(defaults.lung_widths))
    train.add_argument(
        "--paper-widths", action="store_true", help="the paper's widths 49-74-110-165-248 (4.15 M) for both stages"
    )
    train.add_argument(
        "--variant",
        choices=["BU", "BU+RIB", "BU+RIB+HP", "RAIU-Net"],
        default=defaults.variant,
        help="ablation variant of both stages (Tables 4-5); RAIU-Net is CHS-Net",
    )
    train.add_argument("--lung-epochs", type=int, default=defaults.lung_epochs)
    train.add_argument("--pretrain-epochs", type=int, default=defaults.pretrain_epochs)
    train.add_argument(
        "--pretrain-steps", type=int, default=defaults.pretrain_steps, help="batches per pre-training epoch"
    )
    train.add_argument("--finetune-epochs", type=int, default=defaults.finetune_epochs)
    train.add_argument("--pseudo-stride", type=int, default=defaults.pseudo_stride, help="1 in k pseudo slices")
    train.add_argument(
        "--lung-input",
        choices=["channel", "mask"],
        default=defaults.lung_input,
        help="stage 2 sees the lung map as a second channel, or the CT masked by the lungs",
    )
    train.add_argument("--batch-size", type=int, default=defaults.batch_size)
    train.add_argument("--lr", type=float, default=defaults.lr)
    train.add_argument("--finetune-lr", type=float, default=defaults.finetune_lr)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--members",
        type=int,
        default=defaults.members,
        help="infection networks trained one after another with seeds --seed, --seed + 1, ... on the one lung stage; "
        "the model averages their probabilities (members times the infection stage's training and inference time)",
    )
    train.add_argument(
        "--tta",
        action="store_true",
        help="the model averages its infection probability over left-right flips at inference (measured so; "
        "recorded in the checkpoint, so evaluate and segment use it; twice the infection stage's inference time)",
    )
    train.add_argument(
        "--orientation",
        choices=ORIENTATIONS,
        default=defaults.orientation,
        help="how the --data and --pseudo slices are stored (MedSeg/Inf-Net slices are transposed)",
    )
    train.add_argument(
        "--lung-weights",
        metavar="FILE",
        help="reuse a trained lung stage (a raiunet checkpoint, e.g. lung/last.pt of an earlier run, trained at "
        "--lung-size) and train only the infection stage",
    )
    train.add_argument(
        "--held-out-fold",
        type=int,
        choices=(0, 1),
        default=defaults.held_out_fold,
        help="fold of the seeded 2-fold doctor-labelled split to hold out (the bundled model: 1; 0 swaps the folds "
        "to cross-validate a recipe)",
    )
    train.add_argument("--limit", type=int, help="use only the first N slices of each folder (quick trials, tests)")
    clitools.add_ema_option(train)
    clitools.add_register_option(train)
    train.set_defaults(func=_train)

    evaluate = commands.add_parser("evaluate", help="infection metrics of the hierarchical model on a labelled folder")
    evaluate.add_argument("--data", required=True, help="folder in the covid_infection_medseg layout (all test data)")
    evaluate.add_argument("--out", required=True, help="output folder for metrics.json and per_slice.csv")
    evaluate.add_argument("--orientation", choices=ORIENTATIONS, default="transposed")
    evaluate.add_argument(
        "--held-out", action="store_true", help="only the slices the checkpoint lists as held out from its training"
    )
    evaluate.add_argument(
        "--tta",
        action="store_true",
        help="average over left-right flips (test-time augmentation; on for a model trained with --tta)",
    )
    clitools.add_model_options(evaluate, DESCRIPTOR)
    clitools.add_overwrite_option(evaluate)
    evaluate.set_defaults(func=_evaluate)

    segment = commands.add_parser("segment", help="lungs, infection and burden table for a CT volume or slice")
    segment.add_argument(
        "--volume",
        required=True,
        help="CT volume in HU (.nrrd, .nii[.gz], .mha or a DICOM folder) or one 8-bit lung-windowed slice "
        "(.png, .jpg; MedSeg format, anterior at the top, patient's right on the left)",
    )
    segment.add_argument("--out", required=True, help="output folder for segmentation.seg.nrrd and burden.csv")
    clitools.add_model_options(segment, DESCRIPTOR)
    clitools.add_overwrite_option(segment)
    segment.set_defaults(func=_segment)


def _train(args: argparse.Namespace, ctx) -> int:
    from lungai.covid.raiunet import PAPER_WIDTHS

    config = pipeline.Training(
        out=args.out,
        register=args.register,
        command=clitools.command_line(ctx.argv),
        device=ctx.device,
        seed=args.seed,
        ema=args.ema,
        data=args.data,
        pseudo=args.pseudo,
        size=args.size,
        lung_size=args.lung_size,
        widths=tuple(PAPER_WIDTHS if args.paper_widths else args.widths),
        lung_widths=tuple(PAPER_WIDTHS if args.paper_widths else args.lung_widths),
        variant=args.variant,
        lung_epochs=args.lung_epochs,
        pretrain_epochs=args.pretrain_epochs,
        pretrain_steps=args.pretrain_steps,
        finetune_epochs=args.finetune_epochs,
        pseudo_stride=args.pseudo_stride,
        lung_input=args.lung_input,
        batch_size=args.batch_size,
        lr=args.lr,
        finetune_lr=args.finetune_lr,
        orientation=args.orientation,
        lung_weights=args.lung_weights,
        limit=args.limit,
        tta=args.tta,
        members=args.members,
        held_out_fold=args.held_out_fold,
    )
    outcome = pipeline.train(config, progress=ctx.progress, cancel=ctx.cancel)
    ctx.close()
    print(f"held-out metrics {json.dumps(outcome.metrics)}")
    clitools.print_written([outcome.checkpoint], outcome.registered)
    return 0


def _evaluate(args: argparse.Namespace, ctx) -> int:
    model = pipeline.load(args.weights, args.model, ctx.device)
    result = pipeline.evaluate(
        args.data,
        args.out,
        model,
        orientation=args.orientation,
        held_out=args.held_out,
        tta=args.tta,
        overwrite=args.overwrite,
        progress=ctx.progress,
        cancel=ctx.cancel,
    )
    ctx.close()
    print(json.dumps(result["infection"]))
    return 0


def _segment(args: argparse.Namespace, ctx) -> int:
    volume = read_ct_or_snapshot(args.volume)
    clitools.check_outputs(args.out, DESCRIPTOR.outputs, args.overwrite)
    model = pipeline.load(args.weights, args.model, ctx.device)
    result = pipeline.run(volume, model, progress=ctx.progress, cancel=ctx.cancel)
    paths = pipeline.write(result, args.out, overwrite=args.overwrite)
    ctx.close()
    for row in result.burden.table:
        print(", ".join(f"{k}: {v}" for k, v in row.items()))
    clitools.print_written(paths)
    return 0
