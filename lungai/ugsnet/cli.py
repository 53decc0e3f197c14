"""``lungai ugsnet train | evaluate | segment``: argument parsing only; the work is in :mod:`lungai.ugsnet.pipeline`."""

from __future__ import annotations

import json

from lungai import clitools
from lungai.io import read_volume
from lungai.training import TrainConfig
from lungai.ugsnet import DESCRIPTOR, pipeline
from lungai.ugsnet.losses import FUSION_LOSSES
from lungai.ugsnet.networks import DEMO_FEATURES
from lungai.ugsnet.task import BUDGET_ATTENTION_POOL, MODELS
from lungai.ugsnet.training import AUGMENTATIONS, BUDGET_TRAIN, PAPER_TRAIN


def register(subparsers) -> None:
    parser = subparsers.add_parser("ugsnet", help=DESCRIPTOR.title)
    commands = parser.add_subparsers(dest="ugsnet_command", metavar="COMMAND", required=True)

    train = commands.add_parser(
        "train",
        help="train on a multi-reader .npz (patient folds)",
        description="Train UGS-Net or a comparison model on lidc_multireader.npz-format "
        "data; with --fold K the patients of fold K are held out and evaluated.",
    )
    train.add_argument("--data", required=True, help="multi-reader .npz (format of lidc_multireader.npz)")
    train.add_argument("--out", required=True, help="output folder for log.csv, last.pt and test metrics")
    train.add_argument("--architecture", default="ugsnet", choices=sorted(MODELS), help="model to train")
    train.add_argument(
        "--features", type=int, nargs=5, default=list(DEMO_FEATURES), help="encoder widths (paper: 64 128 256 512 1024)"
    )
    train.add_argument("--fold", type=int, default=None, help="held-out patient fold 0-4 (default: train on all)")
    train.add_argument("--epochs", type=int, default=BUDGET_TRAIN.epochs)
    train.add_argument("--batch-size", type=int, default=BUDGET_TRAIN.batch_size)
    train.add_argument("--lr", type=float, default=BUDGET_TRAIN.lr)
    train.add_argument("--optimizer", default=BUDGET_TRAIN.optimizer, choices=["adam", "adamw", "sgd"])
    train.add_argument("--scheduler", default=BUDGET_TRAIN.scheduler, choices=["none", "cosine", "sgdr", "step"])
    train.add_argument(
        "--paper-schedule",
        action="store_true",
        help="seed 001's SGDR, lr 1e-5, momentum 0.9, weight decay 1e-4, batch 32, 200 epochs",
    )
    train.add_argument(
        "--fusion",
        default="bce",
        choices=sorted(FUSION_LOSSES),
        help="per-annotation loss: journal BCE, seed 000 Dice, or their sum (dicebce); the baselines' loss on Label1",
    )
    train.add_argument(
        "--final-target",
        default="annotations",
        choices=["annotations", "label1"],
        help="UGS-Net's final output learns every real annotation (Eq. 3) or the crop's own reader (Label1)",
    )
    train.add_argument(
        "--augmentation",
        default="dihedral",
        choices=list(AUGMENTATIONS),
        help="dihedral: random flips and 90-degree turns; monai: those plus small rotations, scalings and "
        "intensity jitter (lungai.augmentation)",
    )
    train.add_argument(
        "--attention-pool",
        type=int,
        default=None,
        help=f"UGS-Net self-attention key/value pooling: 1 = all positions, as the paper (default with "
        f"--paper-schedule); {BUDGET_ATTENTION_POOL} = the CPU-budget default (full attention costs many times the "
        "network on 64 x 64 maps, bench/ugsnet/cost.md)",
    )
    train.add_argument("--min-readers", type=int, default=2, help="drop crops with fewer readers (paper: 2)")
    train.add_argument("--seed", type=int, default=0)
    clitools.add_ema_option(train)
    clitools.add_register_option(train)
    train.set_defaults(func=_train)

    evaluate = commands.add_parser(
        "evaluate", help="evaluate weights on a multi-reader .npz (all crops, or the patients of one fold)"
    )
    evaluate.add_argument("--data", required=True, help="multi-reader .npz (format of lidc_multireader.npz)")
    evaluate.add_argument("--out", required=True, help="folder for metrics.json, per_crop.csv and figures")
    evaluate.add_argument("--min-readers", type=int, default=1, help="evaluate crops with at least this many readers")
    evaluate.add_argument(
        "--fold",
        type=int,
        help="evaluate only the patients of this fold of --data, split as `ugsnet train --fold` splits the same file "
        "(the bundled weights hold out fold 0 of lidc_multireader.npz)",
    )
    evaluate.add_argument("--tta", action="store_true", help="average each crop over flips (left-right, up-down, both)")
    clitools.add_model_options(evaluate, DESCRIPTOR)
    clitools.add_overwrite_option(evaluate)
    evaluate.set_defaults(func=_evaluate)

    segment = commands.add_parser(
        "segment",
        help="segment nodules of a CT at given RAS points",
        description="Segment the nodule at each point: writes nodules.seg.nrrd (final, "
        "high- and low-confidence segments per nodule), nodules.csv and PNGs.",
    )
    segment.add_argument("--volume", required=True, help="CT volume (.nrrd, .nii.gz, .mha or DICOM folder), in HU")
    segment.add_argument(
        "--points",
        required=True,
        help="CSV of RAS points, one nodule each: columns r,a,s (Slicer markups CSV works) or 3 numbers",
    )
    segment.add_argument("--out", required=True, help="output folder")
    clitools.add_model_options(segment, DESCRIPTOR)
    clitools.add_overwrite_option(segment)
    segment.set_defaults(func=_segment)


def _train(args, ctx) -> int:
    schedule: TrainConfig = PAPER_TRAIN
    if not args.paper_schedule:
        schedule = clitools.replace(
            BUDGET_TRAIN,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            optimizer=args.optimizer,
            scheduler=args.scheduler,
        )
    config = pipeline.Training(
        out=args.out,
        register=args.register,
        command=clitools.command_line(ctx.argv),
        device=ctx.device,
        seed=args.seed,
        ema=args.ema,
        data=args.data,
        kind=args.architecture,
        features=tuple(args.features),
        fold=args.fold,
        fusion=args.fusion,
        min_readers=args.min_readers,
        augmentation=args.augmentation,
        final_target=args.final_target,
        attention_pool=args.attention_pool or (1 if args.paper_schedule else BUDGET_ATTENTION_POOL),
        schedule=schedule,
    )
    outcome = pipeline.train(config, progress=ctx.progress, cancel=ctx.cancel)
    ctx.close()
    print(json.dumps(outcome.metrics.get("scores_of_final", {}), indent=2))
    clitools.print_written([outcome.checkpoint], outcome.registered)
    return 0


def _evaluate(args, ctx) -> int:
    model = pipeline.load(args.weights, args.model, ctx.device)
    result = pipeline.evaluate(
        args.data,
        args.out,
        model,
        min_readers=args.min_readers,
        fold=args.fold,
        overwrite=args.overwrite,
        tta=args.tta,
        progress=ctx.progress,
        cancel=ctx.cancel,
    )
    ctx.close()
    print(json.dumps({**result["scores_of_final"], **{k: v for k, v in result["hu"].items() if "mean" in k}}, indent=2))
    clitools.print_written([f"{args.out}/metrics.json"])
    return 0


def _segment(args, ctx) -> int:
    volume = read_volume(args.volume)
    points = pipeline.read_points_csv(args.points)
    clitools.check_outputs(args.out, DESCRIPTOR.outputs[:2], args.overwrite)
    model = pipeline.load(args.weights, args.model, ctx.device)
    result = pipeline.run(volume, model, points=points, progress=ctx.progress, cancel=ctx.cancel)
    written = pipeline.write(result, args.out, overwrite=args.overwrite)
    ctx.close()
    clitools.print_written(written)
    return 0
