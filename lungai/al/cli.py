"""``lungai al score | select | retrain | simulate | train``: argument parsing only; the work is in
:mod:`lungai.al.pipeline` (active learning by uncertainty slice sampling)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from lungai import clitools
from lungai.al import DESCRIPTOR, pipeline
from lungai.al.simulation import SimulationConfig
from lungai.al.training import FitSettings
from lungai.errors import InputError
from lungai.io import read_segmentation, read_volume, write_table_csv
from lungai.outputs import check_outputs
from lungai.sample_data import chest_ct

STRATEGY_CHOICES = ("uss", "uvs", "rvs", "rss")
VOLUME_SUFFIXES = (".seg.nrrd", ".nii.gz", ".nrrd", ".nhdr", ".nii", ".mha", ".mhd")


def register(subparsers) -> None:
    al = subparsers.add_parser("al", help=DESCRIPTOR.title)
    commands = al.add_subparsers(dest="al_command", metavar="COMMAND", required=True)

    score = commands.add_parser("score", help="MC-dropout entropy volumes and slice-uncertainty profiles")
    _add_volume_inputs(score)
    clitools.add_model_options(score, DESCRIPTOR)
    score.add_argument("--samples", type=int, default=20, help="MC-dropout samples (paper: 20)")
    score.add_argument(
        "--method",
        choices=("batched", "loop"),
        default="batched",
        help="batched: encoder once, decoder samples in batches; loop: n full passes (reference)",
    )
    score.add_argument(
        "--max-batch", type=int, help="slice-samples per network call (memory bound; default: from the slice size)"
    )
    score.add_argument("--box", type=int, default=11, help="dilation box (voxels) for volume-level uncertainty")
    score.add_argument("--seed", type=int, default=0)
    score.add_argument("--out", required=True, help="output folder")
    clitools.add_overwrite_option(score)
    score.set_defaults(func=_score)

    select = commands.add_parser("select", help="rank slices or volumes to annotate next from 'score' output")
    select.add_argument("--scores", required=True, help="folder written by 'lungai al score'")
    select.add_argument("--strategy", choices=STRATEGY_CHOICES, default="uss")
    select.add_argument("--budget", type=int, required=True, help="slices (uss, rss) or volumes (uvs, rvs)")
    select.add_argument("--annotated", help="CSV with columns volume,slice of slices already annotated")
    select.add_argument("--seed", type=int, default=0, help="seed of the random strategies")
    select.add_argument("--out", required=True, help="ranked table (CSV)")
    clitools.add_overwrite_option(select)
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
    clitools.add_model_options(retrain, DESCRIPTOR)
    _add_training_options(retrain, steps=100, lr=3e-4, loss="dice+bce")
    retrain.add_argument("--out", required=True, help="new checkpoint (.pt)")
    retrain.add_argument(
        "--register",
        metavar="ID",
        nargs="?",
        const=True,
        help="publish it in your model registry under ID (without ID: as <model>-v<N>, the next version)",
    )
    clitools.add_overwrite_option(retrain)
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
    clitools.add_overwrite_option(simulate)
    simulate.set_defaults(func=_simulate)

    train = commands.add_parser("train", help="train an al_unet from scratch on fully labelled volumes")
    _add_pool_inputs(train)
    train.add_argument("--input-size", type=int, default=128)
    train.add_argument("--channels", type=int, nargs="+", default=[8, 16, 32, 64])
    _add_training_options(train, steps=600, lr=1e-3, loss="dice+bce")
    train.add_argument("--out", required=True, help="checkpoint (.pt)")
    clitools.add_register_option(train)
    clitools.add_overwrite_option(train)
    train.set_defaults(func=_train)


def _add_training_options(parser, *, steps: int, lr: float, loss: str) -> None:
    """Optimiser steps, learning rate, batch size, loss, seed and weight averaging, with this command's defaults."""
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
    clitools.add_ema_option(parser)


def _fit_settings(args) -> FitSettings:
    return FitSettings(
        steps=args.steps, lr=args.lr, batch_size=args.batch_size, seed=args.seed, loss=args.loss, ema_decay=args.ema
    )


def _add_volume_inputs(parser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--volume", nargs="+", help="CT volumes (NRRD, NIfTI, MHA or DICOM folders)")
    group.add_argument("--sample-data", action="store_true", help="the bundled chest CT (named chest_ct)")


def _add_pool_inputs(parser) -> None:
    parser.add_argument(
        "--pool-folder",
        help="folder with images/ and labels/ (same file names); default: a pool simulated from the bundled chest CT",
    )
    parser.add_argument("--pool-size", type=int, default=10, help="simulated pool volumes")
    parser.add_argument("--val-size", type=int, default=1, help="validation volumes")
    parser.add_argument("--test-size", type=int, default=4, help="held-out test volumes")


def _pool(args) -> pipeline.Pool:
    return pipeline.Pool(args.pool_folder, args.pool_size, args.val_size, args.test_size, args.seed)


def _stem(path: str) -> str:
    """A volume's name in tables: its file name without the image suffix (``chest_ct.nrrd`` -> ``chest_ct``)."""
    name = Path(path.rstrip("/")).name
    for suffix in VOLUME_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _volumes(paths: list[str] | None) -> dict:
    if paths is None:  # --sample-data: named like the file 'lungai demo' writes (chest_ct/chest_ct.nrrd)
        return {"chest_ct": chest_ct()}
    volumes = {}
    for path in paths:
        if _stem(path) in volumes:
            raise InputError(f"two pool volumes are named {_stem(path)!r}; rename one")
        volumes[_stem(path)] = read_volume(path)
    return volumes


def _score(args, ctx) -> int:
    volumes = _volumes(None if args.sample_data else args.volume)
    model = pipeline.load(args.weights, args.model, ctx.device)
    result = pipeline.run(
        volumes,
        model,
        n_samples=args.samples,
        method=args.method,
        max_batch=args.max_batch,
        seed=args.seed,
        box=args.box,
        progress=ctx.progress,
        cancel=ctx.cancel,
    )
    written = pipeline.write(result, args.out, overwrite=args.overwrite)
    ctx.close()
    for name, s in result.scores.items():
        print(
            f"{name}: volume uncertainty {s.volume_uncertainty:.4f}, most uncertain slice "
            f"{int(np.argmax(s.profile))} ({s.profile.max():.4f})"
        )
    print(f"scored {len(volumes)} volume(s) with {args.samples} MC samples ({args.method}) in {result.seconds:.1f} s")
    clitools.print_written(written)
    return 0


def _select(args, ctx) -> int:
    check_outputs([args.out], args.overwrite)
    rows = pipeline.select(args.scores, args.strategy, args.budget, args.annotated, args.seed)
    write_table_csv(args.out, rows, overwrite=args.overwrite)
    for row in rows:
        where = "whole volume" if row["slice"] < 0 else f"slice {row['slice']}"
        print(f"{row['rank']:3d}. {row['volume']} {where} {row['uncertainty']}")
    return 0


def _read_label(path: str) -> np.ndarray:
    if path.endswith(".seg.nrrd"):
        labelmap, _ = read_segmentation(path)
        array = labelmap.array if labelmap.array.ndim == 3 else labelmap.array.any(axis=0)
        return np.asarray(array) > 0
    return read_volume(path).array > 0


def _retrain(args, ctx) -> int:
    if len(args.labels) != len(args.volume):
        raise InputError(f"{len(args.volume)} volumes but {len(args.labels)} labelmaps: give one labelmap per volume")
    check_outputs([args.out], args.overwrite)
    volumes = _volumes(args.volume)
    labels = {name: _read_label(path) for name, path in zip(volumes, args.labels)}
    annotated = pipeline.read_annotated(Path(args.annotated), {n: v.shape[0] for n, v in volumes.items()})
    model = pipeline.load(args.weights, args.model, ctx.device)
    result = pipeline.retrain(
        model.network,
        volumes,
        labels,
        annotated,
        _fit_settings(args),
        device=str(model.device),
        progress=ctx.progress,
        cancel=ctx.cancel,
    )
    base = args.model or (Path(args.weights).stem if args.weights else DESCRIPTOR.default_model_id)
    new_id = pipeline.save_version(
        result.model,
        Path(args.out),
        base_id=base,
        register=args.register,
        training_data=f"{result.annotated_slices} annotated slices of {', '.join(volumes)}",
        command=clitools.command_line(ctx.argv),
        overwrite=args.overwrite,
    )
    ctx.close()
    print(
        f"retrained on {result.annotated_slices} annotated slices: {args.out}"
        + (f" (registered as {new_id})" if args.register else "")
    )
    return 0


def _simulate(args, ctx) -> int:
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
        fit=_fit_settings(args),
    )
    check_outputs([Path(args.out) / "simulation.csv"], args.overwrite)
    print(f"simulation: {pipeline.simulation_plan(config)}", flush=True)
    started = time.perf_counter()
    pipeline.run_simulation(
        _pool(args),
        config,
        args.out,
        device=ctx.device,
        overwrite=args.overwrite,
        progress=ctx.progress,
        cancel=ctx.cancel,
    )
    ctx.close()
    seconds = time.perf_counter() - started
    print(f"simulation of {', '.join(args.strategies)} x {args.iterations} iterations in {seconds:.0f} s: {args.out}")
    return 0


def _train(args, ctx) -> int:
    config = pipeline.Training(
        out=args.out,
        register=args.register,
        command=clitools.command_line(ctx.argv),
        device=ctx.device,
        seed=args.seed,
        ema=args.ema,
        pool=_pool(args),
        input_size=args.input_size,
        channels=tuple(args.channels),
        fit=_fit_settings(args),
        overwrite=args.overwrite,
    )
    outcome = pipeline.train(config, progress=ctx.progress, cancel=ctx.cancel)
    ctx.close()
    print(f"trained, test Dice {outcome.metrics['dice_mean']:.3f}")
    clitools.print_written([outcome.checkpoint], outcome.registered)
    return 0
