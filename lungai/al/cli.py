"""``lungai al``: score | select | retrain | simulate | train (active learning by uncertainty slice sampling)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from lungai.errors import InputError

STRATEGY_CHOICES = ("uss", "uvs", "rvs", "rss")


def register(subparsers) -> None:
    al = subparsers.add_parser("al", help="active learning: MC-dropout uncertainty, slice ranking, retraining")
    commands = al.add_subparsers(dest="al_command", metavar="COMMAND", required=True)

    score = commands.add_parser("score", help="MC-dropout entropy volumes and slice-uncertainty profiles")
    _add_volume_inputs(score)
    _add_model_inputs(score)
    score.add_argument("--samples", type=int, default=20, help="MC-dropout samples (paper: 20)")
    score.add_argument(
        "--method",
        choices=("batched", "loop"),
        default="batched",
        help="batched: encoder once, decoder samples in batches; loop: n full passes (reference)",
    )
    score.add_argument("--max-batch", type=int, default=64, help="slice-samples per network call (memory bound)")
    score.add_argument("--box", type=int, default=11, help="dilation box (voxels) for volume-level uncertainty")
    score.add_argument("--seed", type=int, default=0)
    score.add_argument("--out", required=True, help="output folder")
    score.add_argument("--overwrite", action="store_true")
    score.set_defaults(func=_score)

    select = commands.add_parser("select", help="rank slices or volumes to annotate next from 'score' output")
    select.add_argument("--scores", required=True, help="folder written by 'lungai al score'")
    select.add_argument("--strategy", choices=STRATEGY_CHOICES, default="uss")
    select.add_argument("--budget", type=int, required=True, help="slices (uss, rss) or volumes (uvs, rvs)")
    select.add_argument("--annotated", help="CSV with columns volume,slice of slices already annotated")
    select.add_argument("--seed", type=int, default=0, help="seed of the random strategies")
    select.add_argument("--out", required=True, help="ranked table (CSV)")
    select.add_argument("--overwrite", action="store_true")
    select.set_defaults(func=_select)

    retrain = commands.add_parser("retrain", help="fine-tune on annotated slices only (weighted soft Dice)")
    retrain.add_argument("--volume", nargs="+", required=True, help="CT volumes")
    retrain.add_argument(
        "--labels",
        nargs="+",
        required=True,
        help="labelmaps (or .seg.nrrd), one per volume, same order; non-zero is foreground",
    )
    retrain.add_argument("--annotated", required=True, help="CSV with columns volume,slice (volume = file stem)")
    _add_model_inputs(retrain)
    _add_training_options(retrain, steps=100, lr=3e-4, loss="dice+bce")
    retrain.add_argument("--out", required=True, help="new checkpoint (.pt)")
    retrain.add_argument("--register", action="store_true", help="add it to the registry as <model>-v<N>")
    retrain.add_argument("--overwrite", action="store_true")
    retrain.set_defaults(func=_retrain)

    simulate = commands.add_parser("simulate", help="compare USS, UVS, RVS, RSS in a simulated annotation loop")
    _add_pool_inputs(simulate)
    simulate.add_argument("--strategies", nargs="+", choices=STRATEGY_CHOICES, default=list(STRATEGY_CHOICES))
    simulate.add_argument("--iterations", type=int, default=3)
    simulate.add_argument("--initial-volumes", type=int, default=2)
    simulate.add_argument("--volumes-per-iteration", type=int, default=1)
    simulate.add_argument("--slices-per-iteration", type=int, help="default: the paper's N_S = N/3 rule")
    simulate.add_argument("--samples", type=int, default=20)
    simulate.add_argument("--box", type=int, default=11)
    simulate.add_argument("--input-size", type=int, default=64, help="slices are resized to this square size")
    simulate.add_argument("--channels", type=int, nargs="+", default=[8, 16, 32, 64])
    _add_training_options(simulate, steps=300, lr=1e-3, loss="dice")
    simulate.add_argument("--out", required=True, help="output folder: simulation.csv, learning_curves.png")
    simulate.add_argument("--overwrite", action="store_true")
    simulate.set_defaults(func=_simulate)

    train = commands.add_parser("train", help="train an al_unet from scratch on fully labelled volumes")
    _add_pool_inputs(train)
    train.add_argument("--input-size", type=int, default=128)
    train.add_argument("--channels", type=int, nargs="+", default=[8, 16, 32, 64])
    _add_training_options(train, steps=600, lr=1e-3, loss="dice+bce")
    train.add_argument("--out", required=True, help="checkpoint (.pt)")
    train.add_argument("--register", metavar="ID", help="register the checkpoint (in Resources/Models) under ID")
    train.add_argument("--overwrite", action="store_true")
    train.set_defaults(func=_train)


def _add_training_options(parser, *, steps: int, lr: float, loss: str) -> None:
    """Optimiser steps, learning rate, batch size, loss and seed, with this command's defaults."""
    parser.add_argument("--steps", type=int, default=steps, help="optimiser steps per training")
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--loss",
        choices=("dice", "dice+bce"),
        default=loss,
        help=f"dice: weighted soft Dice (paper, Eq. 2); dice+bce: plus weighted cross-entropy, which "
        f"calibrates the background so entropy maps show real doubt (default: {loss})",
    )
    parser.add_argument("--seed", type=int, default=0)


def _add_volume_inputs(parser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--volume", nargs="+", help="CT volumes (NRRD, NIfTI, MHA or DICOM folders)")
    group.add_argument("--sample-data", action="store_true", help="the bundled chest CT")


def _add_model_inputs(parser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--model", help="registered model id (default al_unet_lungs)")
    group.add_argument("--checkpoint", help="checkpoint file of an al_unet")


def _add_pool_inputs(parser) -> None:
    parser.add_argument(
        "--pool-folder",
        help="folder with images/ and labels/ (same file names); default: a pool simulated from the bundled chest CT",
    )
    parser.add_argument("--pool-size", type=int, default=10, help="simulated pool volumes")
    parser.add_argument("--val-size", type=int, default=1, help="validation volumes")
    parser.add_argument("--test-size", type=int, default=4, help="held-out test volumes")


def _stem(path: str) -> str:
    name = Path(path.rstrip("/")).name
    for suffix in (".seg.nrrd", ".nii.gz", ".nrrd", ".nhdr", ".nii", ".mha", ".mhd"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _volumes(args) -> dict:
    from lungai.io import read_volume
    from lungai.sample_data import chest_ct

    if args.sample_data:
        return {"CTChest4": chest_ct()}
    volumes = {}
    for path in args.volume:
        if _stem(path) in volumes:
            raise InputError(f"two pool volumes are named {_stem(path)!r}; rename one")
        volumes[_stem(path)] = read_volume(path)
    return volumes


def _output_dir(path: str, overwrite: bool) -> Path:
    out = Path(path)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise InputError(f"{out} is not empty; choose a new folder or pass --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _score(args, ctx) -> int:
    from lungai.al.pipeline import load_al_model, score_pool, write_scores
    from lungai.al.plots import plot_profiles
    from lungai.device import resolve_device

    out = _output_dir(args.out, args.overwrite)
    volumes = _volumes(args)
    model, _ = load_al_model(args.model, args.checkpoint, resolve_device(ctx.device))
    started = time.perf_counter()
    scores = score_pool(
        model,
        volumes,
        n_samples=args.samples,
        method=args.method,
        max_batch=args.max_batch,
        seed=args.seed,
        box=args.box,
        progress=ctx.progress,
        cancel=ctx.cancel,
    )
    seconds = time.perf_counter() - started
    write_scores(out, volumes, scores, overwrite=args.overwrite)
    plot_profiles({n: s.profile for n, s in scores.items()}, {}, out / "profiles.png")
    ctx.close()
    for name, s in scores.items():
        print(
            f"{name}: volume uncertainty {s.volume_uncertainty:.4f}, most uncertain slice "
            f"{int(np.argmax(s.profile))} ({s.profile.max():.4f})"
        )
    print(f"scored {len(volumes)} volume(s) with {args.samples} MC samples ({args.method}) in {seconds:.1f} s: {out}")
    return 0


def _select(args, ctx) -> int:
    from lungai.al.pipeline import rank, read_annotated, read_scores
    from lungai.io import write_table_csv

    profiles, volume_scores = read_scores(Path(args.scores))
    annotated = (
        read_annotated(Path(args.annotated), {n: len(p) for n, p in profiles.items()}) if args.annotated else None
    )
    rows = rank(args.strategy, profiles, volume_scores, annotated, args.budget, args.seed)
    write_table_csv(args.out, rows, overwrite=args.overwrite)
    for row in rows:
        where = "whole volume" if row["slice"] < 0 else f"slice {row['slice']}"
        print(f"{row['rank']:3d}. {row['volume']} {where} {row['uncertainty']}")
    return 0


def _read_label(path: str) -> np.ndarray:
    from lungai.io import read_segmentation, read_volume

    if path.endswith(".seg.nrrd"):
        labelmap, _ = read_segmentation(path)
        array = labelmap.array if labelmap.array.ndim == 3 else labelmap.array.any(axis=0)
        return np.asarray(array) > 0
    return read_volume(path).array > 0


def _retrain(args, ctx) -> int:
    from lungai.al.pipeline import DEFAULT_MODEL, load_al_model, read_annotated, retrain, save_version
    from lungai.al.training import FitSettings
    from lungai.device import resolve_device

    if len(args.labels) != len(args.volume):
        raise InputError(f"{len(args.volume)} volumes but {len(args.labels)} labelmaps: give one labelmap per volume")
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise InputError(f"{out} exists; choose a new file or pass --overwrite")
    volumes = _volumes(argparse.Namespace(sample_data=False, volume=args.volume))
    labels = {name: _read_label(path) for name, path in zip(volumes, args.labels)}
    annotated = read_annotated(Path(args.annotated), {n: v.shape[0] for n, v in volumes.items()})
    device = resolve_device(ctx.device)
    model, _ = load_al_model(args.model, args.checkpoint, device)
    result = retrain(
        model,
        volumes,
        labels,
        annotated,
        FitSettings(steps=args.steps, lr=args.lr, batch_size=args.batch_size, seed=args.seed, loss=args.loss),
        device=str(device),
        progress=ctx.progress,
        cancel=ctx.cancel,
    )
    base = args.model or (Path(args.checkpoint).stem if args.checkpoint else DEFAULT_MODEL)
    new_id = save_version(
        result.model,
        out,
        base_id=base,
        register=args.register,
        training_data=f"{result.annotated_slices} annotated slices of {', '.join(volumes)}",
        command="lungai al retrain " + " ".join(f"--volume {v}" for v in args.volume),
    )
    ctx.close()
    print(
        f"retrained on {result.annotated_slices} annotated slices: {out}"
        + (f" (registered as {new_id})" if args.register else "")
    )
    return 0


def _pool(args):
    """(pool, validation, test) cases: a user folder split in order, or simulated from the bundled chest CT."""
    from lungai.al.data import load_folder_pool, synthesize_pool
    from lungai.sample_data import chest_ct, chest_lungs

    if args.pool_folder:
        cases = load_folder_pool(args.pool_folder)
        n_eval = args.val_size + args.test_size
        if len(cases) <= n_eval:
            raise InputError(
                f"{args.pool_folder} has {len(cases)} volumes; {n_eval} go to validation and test, "
                "so the pool would be empty"
            )
        return cases[n_eval:], cases[: args.val_size], cases[args.val_size : n_eval]
    ct, (lungs, _) = chest_ct(), chest_lungs()
    image, label = ct.array.astype(np.float32), (lungs.array > 0).astype(np.uint8)
    make = lambda n, seed, prefix: synthesize_pool(image, label, n, seed=seed, prefix=prefix, spacing=ct.spacing)  # noqa: E731
    return (
        make(args.pool_size, args.seed + 1, "pool"),
        make(args.val_size, args.seed + 2, "val"),
        make(args.test_size, args.seed + 3, "test"),
    )


def _simulate(args, ctx) -> int:
    from lungai.al.simulation import SimulationConfig, plot_learning_curves, simulate
    from lungai.al.training import FitSettings
    from lungai.device import resolve_device
    from lungai.io import write_table_csv

    out = _output_dir(args.out, args.overwrite)
    pool, val, test = _pool(args)
    config = SimulationConfig(
        strategies=tuple(args.strategies),
        iterations=args.iterations,
        initial_volumes=args.initial_volumes,
        volumes_per_iteration=args.volumes_per_iteration,
        slices_per_iteration=args.slices_per_iteration,
        n_samples=args.samples,
        box=args.box,
        channels=tuple(args.channels),
        input_size=args.input_size,
        seed=args.seed,
        fit=FitSettings(steps=args.steps, lr=args.lr, batch_size=args.batch_size, seed=args.seed, loss=args.loss),
    )
    started = time.perf_counter()
    rows = simulate(
        pool, val, test, config, device=str(resolve_device(ctx.device)), progress=ctx.progress, cancel=ctx.cancel
    )
    write_table_csv(out / "simulation.csv", rows, overwrite=args.overwrite)
    plot_learning_curves(rows, out / "learning_curves.png")
    ctx.close()
    print(
        f"simulation of {', '.join(args.strategies)} x {args.iterations} iterations in "
        f"{time.perf_counter() - started:.0f} s: {out}"
    )
    return 0


def _train(args, ctx) -> int:
    import torch

    from lungai.al.networks import ALUNet
    from lungai.al.simulation import evaluate
    from lungai.al.training import ARCHITECTURE, FitSettings, fit
    from lungai.checkpoint import save_checkpoint
    from lungai.device import resolve_device
    from lungai.registry import register_model, registry_path

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise InputError(f"{out} exists; choose a new file or pass --overwrite")
    pool, val, test = _pool(args)
    for case in pool:
        case.annotated[:] = True
    torch.manual_seed(args.seed)
    model = ALUNet(channels=tuple(args.channels), input_size=args.input_size)
    started = time.perf_counter()
    source = args.pool_folder or (
        f"{len(pool)} volumes simulated from the slicerio chest CT CTChest4 (lungs "
        "= right + left lung segments); all derive from one scan"
    )
    fit(
        model,
        pool,
        val,
        FitSettings(steps=args.steps, lr=args.lr, batch_size=args.batch_size, seed=args.seed, loss=args.loss),
        device=str(resolve_device(ctx.device)),
        progress=ctx.progress,
        cancel=ctx.cancel,
        training_data=source,
    )
    seconds = time.perf_counter() - started
    model = model.cpu()
    metrics = {k: round(v, 4) for k, v in evaluate(model, test).items()}
    save_checkpoint(out, model, model_name=ARCHITECTURE, config=model.config, training_data=source, metrics=metrics)
    ctx.close()
    if args.register:
        if out.resolve().parent != registry_path().parent.resolve():
            raise InputError(f"--register needs the checkpoint inside {registry_path().parent}")
        register_model(
            {
                "id": args.register,
                "version": "1",
                "module": "ActiveLearningSampler",
                "architecture": ARCHITECTURE,
                "file": out.name,
                "sha256": "",
                "licence": "Apache-2.0 (weights); training data: 3D Slicer sample data via slicerio",
                "training_data": source,
                "description": "2-D U-Net with decoder dropout 0.25 for lung segmentation and MC-dropout "
                "uncertainty (active learning)",
                "command": "lungai al train " + " ".join(_argv_tail(args)),
                "metrics": {**metrics, "test_set": f"{len(test)} held-out simulated volumes"},
                "timings": {
                    "train_wall_seconds_1_thread_shared_cpu": round(seconds, 1),
                    "steps": args.steps,
                    "parameters": sum(p.numel() for p in model.parameters()),
                },
            }
        )
    print(f"trained in {seconds:.0f} s, test Dice {metrics['dice_mean']:.3f}: {out}")
    return 0


def _argv_tail(args) -> list[str]:
    keys = ("pool_size", "val_size", "test_size", "input_size", "steps", "lr", "batch_size", "seed", "loss")
    return [f"--{k.replace('_', '-')} {getattr(args, k)}" for k in keys] + [
        f"--out {args.out}",
        f"--register {args.register}",
    ]
