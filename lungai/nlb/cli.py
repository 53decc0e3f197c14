"""``lungai nlb train | evaluate | classify``: the NeoplasmNLB command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lungai.nlb.blocks import BLOCK_TYPES
from lungai.nlb.pipeline import DEFAULT_MODEL_ID

EXIT_OK = 0
DEFAULT_TRAIN = {"epochs": 4, "batch_size": 16, "lr": 2e-3, "max_crops": 200, "folds": 2, "seed": 0}


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
    from lungai.checkpoint import load_model
    from lungai.device import resolve_device
    from lungai.nlb.bundle import register_checkpoint
    from lungai.nlb.evaluation import classification_report, predict, seg_threshold_of, segmentation_report
    from lungai.nlb.networks import build_nlb_unet
    from lungai.nlb.training import load_data, make_folds, train_nlb, training_dataset
    from lungai.progress import subrange
    from lungai.training import TrainConfig

    held_out = None if args.held_out_fold < 0 else args.held_out_fold
    out = Path(args.out)
    folds = make_folds(args.iqoth, args.lidc, args.folds, args.seed)
    data = load_data(folds, args.lidc, 128)
    model_config = {"block_type": args.block, "widths": list(args.widths)}
    data_text = (
        f"IQ-OTH/NCCD snapshots + LIDC-IDRI crops (consensus masks, at most {args.max_crops})"
        + ("; normal snapshots as empty segmentation targets; " if args.normal_empty_masks else "; ")
        + ("all data" if held_out is None else f"{args.folds}-fold split seed {args.seed}, fold {held_out} held out")
    )
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        scheduler="cosine",
        seed=args.seed,
        device=ctx.device,
        out_dir=str(out),
    )
    train_nlb(
        build_nlb_unet(**model_config),
        model_config,
        training_dataset(folds, data, held_out, args.max_crops, args.normal_empty_masks),
        config,
        training_data=data_text,
        progress=subrange(ctx.progress, 0.0, 0.9),
        cancel=ctx.cancel,
    )
    device = resolve_device(ctx.device)
    model, header = load_model(out / "last.pt", device, expected_model="nlb_unet")
    metrics: dict = {}
    if held_out is not None:
        snap = folds.snapshot_folds == held_out
        crop = folds.crop_folds == held_out
        probabilities, _ = predict(model, data.snapshot_images[snap], device=device)
        _, maps = predict(model, data.crops.images[crop], device=device)
        cls = classification_report(probabilities, data.snapshot_labels[snap])
        seg = segmentation_report(maps, data.crops.masks[crop, 0].numpy(), seg_threshold_of(header))
        metrics = {
            **{f"held_out_{k}": cls[k] for k in ("precision", "recall", "f1", "accuracy")},
            "held_out_confusion_matrix": cls["confusion_matrix"],
            "held_out_iou": seg["iou"],
            "held_out_dice": seg["dice"],
            "seg_threshold": seg_threshold_of(header),
        }
    (out / "metrics.json").write_text(json.dumps({**metrics, "folds": folds.describe()}, indent=2) + "\n")
    if args.register:
        entry = register_checkpoint(
            out / "last.pt",
            args.register,
            command=_train_command(args),
            metrics={k: v for k, v in metrics.items() if not isinstance(v, list)},
        )
        print(f"registered {entry.id}: {entry.path}")
    ctx.close()
    print(json.dumps(metrics, indent=2))
    return EXIT_OK


def _train_command(args: argparse.Namespace) -> str:
    return (
        f"OMP_NUM_THREADS=1 lungai --device cpu nlb train --iqoth {args.iqoth} --lidc {args.lidc} "
        f"--out {args.out} --block {args.block} --widths {' '.join(map(str, args.widths))} --epochs {args.epochs} "
        f"--batch-size {args.batch_size} "
        f"--lr {args.lr} --max-crops {args.max_crops} --folds {args.folds} --held-out-fold {args.held_out_fold} "
        f"--seed {args.seed}{' --normal-empty-masks' if args.normal_empty_masks else ''} --register {args.register}"
    )


def _evaluate(args: argparse.Namespace, ctx) -> int:
    from lungai.nlb.evaluation import evaluate_snapshot_folder

    model, header = load_nlb_model(args.weights, args.model, ctx.device)
    about = {"model": args.weights or args.model or DEFAULT_MODEL_ID, "block_type": header["config"].get("block_type")}
    metrics = evaluate_snapshot_folder(
        model,
        args.data,
        args.out,
        threshold=args.threshold,
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

    train = commands.add_parser("train", help="train on IQ-OTH/NCCD snapshots and LIDC nodule crops")
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
        "--max-crops",
        type=int,
        default=DEFAULT_TRAIN["max_crops"],
        help="at most this many LIDC crops for the segmentation head",
    )
    train.add_argument(
        "--normal-empty-masks",
        action="store_true",
        help="also train the segmentation head on normal snapshots with empty masks (whole slices "
        "without neoplasm), so it learns to stay empty off nodules",
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
