"""``lungai nlb train | evaluate | classify``: the NeoplasmNLB command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lungai.nlb.blocks import BLOCK_TYPES
from lungai.nlb.pipeline import DEFAULT_MODEL_ID

EXIT_OK = 0
DEFAULT_TRAIN = {
    "epochs": 14,
    "batch_size": 16,
    "lr": 2e-3,
    "inserted_per_normal": 1.0,
    "patience": 4,
    "folds": 5,
    "seed": 0,
}


def load_nlb_model(weights: str | None, model_id: str | None, device: str):
    """(model, header) from a checkpoint file, a registered model id, or the bundled default model."""
    from lungai.checkpoint import load_model
    from lungai.device import resolve_device
    from lungai.registry import load_registered_model

    torch_device = resolve_device(device)
    if weights:
        return load_model(weights, torch_device, expected_model="nlb_unet")
    return load_registered_model(model_id or DEFAULT_MODEL_ID, str(torch_device))


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--weights", help="checkpoint file (.pt) of an nlb_unet model")
    group.add_argument("--model", help=f"registered model id (default: the bundled {DEFAULT_MODEL_ID})")


def _train(args: argparse.Namespace, ctx) -> int:
    from lungai.nlb.bundle import register_checkpoint
    from lungai.nlb.networks import build_nlb_unet
    from lungai.nlb.training import NLBData, evaluate_split, make_split, train_nlb
    from lungai.progress import subrange
    from lungai.training import TrainConfig, seed_everything

    held_out = None if args.held_out_fold < 0 else args.held_out_fold
    out = Path(args.out)
    data = NLBData.load(args.iqoth, args.lidc)
    split = make_split(data.categories, data.nodule_patients, args.folds, held_out, args.seed)
    model_config = {"block_type": args.block, "widths": list(args.widths)}
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        scheduler="cosine",
        min_lr=args.lr / 50,
        seed=args.seed,
        device=ctx.device,
        out_dir=str(out),
        monitor="loss",
        monitor_mode="min",
        patience=args.patience,
        restore_best=True,
    )
    seed_everything(args.seed)
    model = build_nlb_unet(**model_config)
    checkpoint, seg_threshold = train_nlb(
        model,
        model_config,
        data,
        split,
        config,
        inserted_per_normal=args.inserted_per_normal,
        progress=subrange(ctx.progress, 0.0, 0.9),
        cancel=ctx.cancel,
    )
    held = evaluate_split(model, data, split.test, split.test_nodules, seg_threshold, args.seed + 3)
    metrics = {f"held_out_{k}": v for k, v in held.items()}
    metrics["seg_threshold"] = seg_threshold
    (out / "metrics.json").write_text(json.dumps({**metrics, "split": split.record}, indent=2) + "\n")
    if args.register:
        entry = register_checkpoint(
            checkpoint,
            args.register,
            command=_train_command(args),
            metrics={k: v for k, v in metrics.items() if not isinstance(v, list)},
            held_out=split.record,
        )
        print(f"registered {entry.id}: {entry.path}")
    ctx.close()
    print(json.dumps(metrics, indent=2))
    return EXIT_OK


def _train_command(args: argparse.Namespace) -> str:
    return (
        f"OMP_NUM_THREADS=1 lungai --device cpu nlb train --iqoth {args.iqoth} --lidc {args.lidc} "
        f"--out {args.out} --block {args.block} --widths {' '.join(map(str, args.widths))} --epochs {args.epochs} "
        f"--batch-size {args.batch_size} --lr {args.lr} --inserted-per-normal {args.inserted_per_normal} "
        f"--patience {args.patience} --folds {args.folds} --held-out-fold {args.held_out_fold} --seed {args.seed} "
        f"--register {args.register}"
    )


def _evaluate(args: argparse.Namespace, ctx) -> int:
    from lungai.nlb.evaluation import evaluate_snapshot_folder, seg_threshold_of

    model, header = load_nlb_model(args.weights, args.model, ctx.device)
    about = {"model": args.weights or args.model or DEFAULT_MODEL_ID, "block_type": header["config"].get("block_type")}
    metrics = evaluate_snapshot_folder(
        model,
        args.data,
        args.out,
        threshold=args.threshold,
        seg_threshold=seg_threshold_of(header),
        fold=args.fold,
        n_folds=args.folds,
        seed=args.seed,
        device=next(model.parameters()).device,
        progress=ctx.progress,
        cancel=ctx.cancel,
        overwrite=args.overwrite,
        about=about,
    )
    ctx.close()
    print(json.dumps({k: metrics[k] for k in ("precision", "recall", "f1", "accuracy", "confusion_matrix")}))
    return EXIT_OK


def _classify(args: argparse.Namespace, ctx) -> int:
    from lungai.nlb.evaluation import seg_threshold_of
    from lungai.nlb.pipeline import read_input, score_volume
    from lungai.nlb.report import write_outputs
    from lungai.progress import report, subrange

    report(ctx.progress, 0.0, "reading input")
    volume = read_input(args.volume)
    model, header = load_nlb_model(args.weights, args.model, ctx.device)
    scores = score_volume(
        model,
        volume,
        threshold=args.threshold,
        seg_threshold=seg_threshold_of(header),
        device=next(model.parameters()).device,
        progress=subrange(ctx.progress, 0.05, 0.9),
        cancel=ctx.cancel,
    )
    report(ctx.progress, 0.9, "writing results")
    write_outputs(
        args.out,
        volume,
        scores,
        overwrite=args.overwrite,
        about={
            "input": str(args.volume),
            "model": args.weights or args.model or DEFAULT_MODEL_ID,
            "block_type": header["config"].get("block_type"),
        },
    )
    report(ctx.progress, 1.0, "done")
    ctx.close()
    print(json.dumps(scores.summary()))
    return EXIT_OK


def register(subparsers) -> None:
    nlb = subparsers.add_parser(
        "nlb",
        help="NeoplasmNLB: neoplasm presence per CT slice and its segmentation",
        description="U-Net with specialised non-local blocks (seed 002).",
    )
    commands = nlb.add_subparsers(dest="nlb_command", metavar="COMMAND", required=True)

    train = commands.add_parser(
        "train", help="train on IQ-OTH/NCCD snapshots, with LIDC nodules inserted into normal ones"
    )
    train.add_argument("--iqoth", required=True, help="folder in the iqoth_nccd layout (normal/ benign/ malignant/)")
    train.add_argument("--lidc", required=True, help="lidc_multireader.npz")
    train.add_argument("--out", required=True, help="output folder (log.csv, last.pt, metrics.json)")
    train.add_argument("--block", default="symmetry_localized", choices=BLOCK_TYPES, help="non-local block type")
    train.add_argument(
        "--widths",
        type=int,
        nargs="+",
        default=[8, 16, 32, 64, 128],
        help="channels per U-Net level (the last is the bottleneck)",
    )
    train.add_argument("--epochs", type=int, default=DEFAULT_TRAIN["epochs"])
    train.add_argument("--batch-size", type=int, default=DEFAULT_TRAIN["batch_size"])
    train.add_argument("--lr", type=float, default=DEFAULT_TRAIN["lr"])
    train.add_argument(
        "--inserted-per-normal",
        type=float,
        default=DEFAULT_TRAIN["inserted_per_normal"],
        help="slices with an inserted LIDC nodule per normal training snapshot and epoch",
    )
    train.add_argument(
        "--patience",
        type=int,
        default=DEFAULT_TRAIN["patience"],
        help="stop after this many epochs without a lower validation loss",
    )
    train.add_argument("--folds", type=int, default=DEFAULT_TRAIN["folds"])
    train.add_argument(
        "--held-out-fold",
        type=int,
        default=0,
        help="fold kept out of training and evaluated at the end (-1: train on everything)",
    )
    train.add_argument("--seed", type=int, default=DEFAULT_TRAIN["seed"])
    train.add_argument("--register", metavar="ID", help="copy the weights to Resources/Models/ID.pt and register them")
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
    evaluate.add_argument("--folds", type=int, default=DEFAULT_TRAIN["folds"])
    evaluate.add_argument("--seed", type=int, default=DEFAULT_TRAIN["seed"])
    evaluate.add_argument("--overwrite", action="store_true")
    _add_model_options(evaluate)
    evaluate.set_defaults(func=_evaluate)

    classify = commands.add_parser("classify", help="score every slice of a CT (or a 2-D image) and segment")
    classify.add_argument("--volume", required=True, help="CT volume (.nrrd .nii.gz .mha, DICOM folder) or image")
    classify.add_argument("--out", required=True, help="output folder (slices.csv, neoplasm.seg.nrrd, PNGs, json)")
    classify.add_argument("--threshold", type=float, default=0.5, help="decision threshold on the probability")
    classify.add_argument("--overwrite", action="store_true")
    _add_model_options(classify)
    classify.set_defaults(func=_classify)
