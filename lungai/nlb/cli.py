"""``lungai nlb train | evaluate | classify``: argument parsing only; the work is in :mod:`lungai.nlb.pipeline`."""

from __future__ import annotations

import argparse
import json

from lungai import clitools
from lungai.nlb import DESCRIPTOR, pipeline
from lungai.nlb.blocks import BLOCK_TYPES


def _train(args: argparse.Namespace, ctx) -> int:
    config = pipeline.Training(
        out=args.out,
        register=args.register,
        command=clitools.command_line(ctx.argv),
        device=ctx.device,
        seed=args.seed,
        ema=args.ema,
        iqoth=args.iqoth,
        lidc=args.lidc,
        block=args.block,
        widths=tuple(args.widths),
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        inserted_per_normal=args.inserted_per_normal,
        degrade_prob=args.degrade_prob,
        lung_view=args.lung_view,
        inserted_class_share=args.inserted_class_share,
        patience=args.patience,
        keep=args.keep,
        folds=args.folds,
        held_out_fold=args.held_out_fold,
    )
    outcome = pipeline.train(config, progress=ctx.progress, cancel=ctx.cancel)
    ctx.close()
    print(json.dumps(outcome.metrics, indent=2))
    clitools.print_written([outcome.checkpoint], outcome.registered)
    return 0


def _evaluate(args: argparse.Namespace, ctx) -> int:
    model = pipeline.load(args.weights, args.model, ctx.device)
    metrics = pipeline.evaluate(
        args.data,
        args.out,
        model,
        threshold=args.threshold,
        fold=args.fold,
        folds=args.folds,
        seed=args.seed,
        overwrite=args.overwrite,
        progress=ctx.progress,
        cancel=ctx.cancel,
        tta=args.tta,
    )
    ctx.close()
    print(json.dumps({k: metrics[k] for k in ("precision", "recall", "f1", "accuracy", "confusion_matrix")}))
    return 0


def _classify(args: argparse.Namespace, ctx) -> int:
    volume = pipeline.read_input(args.volume)
    clitools.check_outputs(args.out, DESCRIPTOR.outputs, args.overwrite)
    model = pipeline.load(args.weights, args.model, ctx.device)
    result = pipeline.run(volume, model, threshold=args.threshold, progress=ctx.progress, cancel=ctx.cancel)
    result.about["input"] = args.volume
    written = pipeline.write(result, args.out, overwrite=args.overwrite)
    ctx.close()
    print(json.dumps(result.scores.summary()))
    clitools.print_written(written)
    return 0


def register(subparsers) -> None:
    nlb = subparsers.add_parser("nlb", help=DESCRIPTOR.title, description="U-Net with specialised non-local blocks.")
    commands = nlb.add_subparsers(dest="nlb_command", metavar="COMMAND", required=True)

    defaults = pipeline.Training()
    train = commands.add_parser(
        "train", help="train on IQ-OTH/NCCD snapshots, with LIDC nodules inserted into normal ones"
    )
    train.add_argument("--iqoth", required=True, help="folder in the iqoth_nccd layout (normal/ benign/ malignant/)")
    train.add_argument("--lidc", required=True, help="lidc_multireader.npz")
    train.add_argument("--out", required=True, help="output folder (log.csv, last.pt, metrics.json)")
    train.add_argument("--block", default=defaults.block, choices=BLOCK_TYPES, help="non-local block type")
    train.add_argument(
        "--widths",
        type=int,
        nargs="+",
        default=list(defaults.widths),
        help="channels per U-Net level (the last is the bottleneck)",
    )
    train.add_argument("--epochs", type=int, default=defaults.epochs)
    train.add_argument("--batch-size", type=int, default=defaults.batch_size)
    train.add_argument("--lr", type=float, default=defaults.lr)
    train.add_argument(
        "--inserted-per-normal",
        type=float,
        default=defaults.inserted_per_normal,
        help="slices with an inserted LIDC nodule per normal training snapshot and epoch",
    )
    train.add_argument(
        "--degrade-prob",
        type=float,
        default=defaults.degrade_prob,
        help="share of training slices resampled to coarser pixels and back, as on CT with large pixels (0: none)",
    )
    train.add_argument(
        "--lung-view",
        action=argparse.BooleanOptionalAction,
        default=defaults.lung_view,
        help="second input channel: the lungs below the snapshot window, (-1000, -50) HU (lungai/nlb/lungview.py)",
    )
    train.add_argument(
        "--inserted-class-share",
        type=float,
        default=defaults.inserted_class_share,
        help="weight of all inserted-nodule slices in the class loss, relative to the normal snapshots",
    )
    train.add_argument(
        "--patience",
        type=int,
        default=defaults.patience,
        help="stop after this many epochs without a lower validation loss (with --keep best)",
    )
    train.add_argument(
        "--keep",
        choices=("best", "last"),
        default=defaults.keep,
        help="ship the epoch with the lowest validation loss (early stopping by --patience) or the last epoch of "
        "the schedule (no early stopping; validation only logged and used for the segmentation threshold)",
    )
    train.add_argument("--folds", type=int, default=defaults.folds)
    train.add_argument(
        "--held-out-fold",
        type=int,
        default=defaults.held_out_fold,
        help="fold kept out of training and evaluated at the end (-1: train on everything)",
    )
    train.add_argument("--seed", type=int, default=defaults.seed)
    clitools.add_ema_option(train)
    clitools.add_register_option(train)
    train.set_defaults(func=_train)

    evaluate = commands.add_parser("evaluate", help="classification metrics on a folder in the iqoth_nccd layout")
    evaluate.add_argument("--data", required=True, help="folder with normal/ benign/ malignant/ images (all test data)")
    evaluate.add_argument("--out", required=True, help="output folder for metrics.json and predictions.csv")
    evaluate.add_argument("--threshold", type=float, default=0.5)
    evaluate.add_argument(
        "--fold",
        type=int,
        help="evaluate only this fold of the training split (the bundled model holds out fold 0 of 5, seed 0)",
    )
    evaluate.add_argument(
        "--tta", action="store_true", help="average each image and its left-right flip (test-time flip averaging)"
    )
    evaluate.add_argument("--folds", type=int, default=defaults.folds)
    evaluate.add_argument("--seed", type=int, default=defaults.seed)
    clitools.add_model_options(evaluate, DESCRIPTOR)
    clitools.add_overwrite_option(evaluate)
    evaluate.set_defaults(func=_evaluate)

    classify = commands.add_parser("classify", help="score every slice of a CT (or a 2-D image) and segment")
    classify.add_argument("--volume", required=True, help="CT volume (.nrrd .nii.gz .mha, DICOM folder) or image")
    classify.add_argument("--out", required=True, help="output folder (slices.csv, neoplasm.seg.nrrd, PNGs, json)")
    classify.add_argument("--threshold", type=float, default=0.5, help="decision threshold on the probability")
    clitools.add_model_options(classify, DESCRIPTOR)
    clitools.add_overwrite_option(classify)
    classify.set_defaults(func=_classify)
