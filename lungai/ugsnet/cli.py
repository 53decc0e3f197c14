"""``lungai ugsnet train | evaluate | segment``: UGS-Net from the command line (see lungai.ugsnet.commands)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

from lungai.training import TrainConfig
from lungai.ugsnet.networks import DEMO_FEATURES
from lungai.ugsnet.task import BUDGET_ATTENTION_POOL, MODELS
from lungai.ugsnet.training import BUDGET_TRAIN, with_overrides


def register(subparsers) -> None:
    parser = subparsers.add_parser("ugsnet", help="UGS-Net nodule segmentation with the Multi-Confidence Mask")
    commands = parser.add_subparsers(dest="ugsnet_command", metavar="COMMAND", required=True)

    train = commands.add_parser(
        "train",
        help="train on a multi-reader .npz (patient folds)",
        description="Train UGS-Net or a comparison model on lidc_multireader.npz-format "
        "data; with --fold K the patients of fold K are held out and evaluated.",
    )
    train.add_argument("--data", required=True, help="multi-reader .npz (format of lidc_multireader.npz)")
    train.add_argument("--out", required=True, help="output folder for log.csv, last.pt and test metrics")
    train.add_argument("--model", default="ugsnet", choices=sorted(MODELS))
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
        "--fusion", default="bce", choices=["bce", "dice"], help="fusion loss: journal BCE or seed 000 Dice"
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
    train.add_argument("--register", metavar="ID", help="copy the weights to Resources/Models/ID.pt and register them")
    train.set_defaults(func=_train)

    evaluate = commands.add_parser("evaluate", help="evaluate weights on a multi-reader .npz (all crops are test data)")
    evaluate.add_argument("--data", required=True, help="multi-reader .npz (format of lidc_multireader.npz)")
    evaluate.add_argument("--out", required=True, help="folder for metrics.json, per_crop.csv and figures")
    evaluate.add_argument("--weights", help="checkpoint (default: the bundled UGS-Net weights)")
    evaluate.add_argument("--min-readers", type=int, default=1, help="evaluate crops with at least this many readers")
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
    segment.add_argument("--weights", help="checkpoint (default: the bundled UGS-Net weights)")
    segment.add_argument("--overwrite", action="store_true", help="replace existing output files")
    segment.set_defaults(func=_segment)


def _device(ctx) -> str:
    from lungai.device import resolve_device

    return str(resolve_device(ctx.device))


def _train(args, ctx) -> int:
    from lungai.ugsnet.commands import run_train
    from lungai.ugsnet.training import PAPER_TRAIN

    base = PAPER_TRAIN if args.paper_schedule else BUDGET_TRAIN
    overrides = (
        {}
        if args.paper_schedule
        else dict(
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            optimizer=args.optimizer,
            scheduler=args.scheduler,
        )
    )
    config: TrainConfig = with_overrides(base, device=_device(ctx), seed=args.seed, **overrides)
    command = "lungai " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if args.register else ""
    summary = run_train(
        args.data,
        args.out,
        kind=args.model,
        features=args.features,
        config=config,
        fold=args.fold,
        fusion=args.fusion,
        min_readers=args.min_readers,
        attention_pool=args.attention_pool or (1 if args.paper_schedule else BUDGET_ATTENTION_POOL),
        register_id=args.register,
        command=command,
        progress=ctx.progress,
        cancel=ctx.cancel,
    )
    ctx.close()
    print(json.dumps(summary.get("test", {}).get("scores_of_final", {}), indent=2))
    return 0


def _evaluate(args, ctx) -> int:
    from lungai.ugsnet.commands import run_evaluate

    result = run_evaluate(
        args.data,
        args.out,
        args.weights,
        device=_device(ctx),
        min_readers=args.min_readers,
        progress=ctx.progress,
        cancel=ctx.cancel,
    )
    ctx.close()
    print(json.dumps({**result["scores_of_final"], **{k: v for k, v in result["hu"].items() if "mean" in k}}, indent=2))
    print(f"written: {Path(args.out) / 'metrics.json'}")
    return 0


def _segment(args, ctx) -> int:
    from lungai.ugsnet.commands import run_segment

    written = run_segment(
        args.volume,
        args.points,
        args.out,
        args.weights,
        device=_device(ctx),
        overwrite=args.overwrite,
        progress=ctx.progress,
        cancel=ctx.cancel,
    )
    ctx.close()
    for path in written:
        print(f"written: {path}")
    return 0
