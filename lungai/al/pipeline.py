"""Active learning's module contract (:mod:`lungai.contract`): load, run (score a pool), write, read, train,
and the loop's own steps: select (rank), retrain, simulate.

The annotate-retrain loop on named volumes, shared by the command line and the Slicer logic.

score -> select (ranked table) -> the user annotates the selected slices -> retrain on annotated slices only.
Volumes are :class:`lungai.volume.Volume` objects keyed by name; annotated slices are ``{name: (Z,) bool}``.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lungai.al import DESCRIPTOR
from lungai.al.data import PoolCase, load_folder_pool, synthesize_pool
from lungai.al.networks import ALUNet
from lungai.al.scoring import VolumeScore, score_volume
from lungai.al.simulation import SimulationConfig, evaluate, plot_learning_curves, simulate
from lungai.al.strategies import STRATEGIES, select_rss, select_rvs, select_uss, select_uvs
from lungai.al.training import ARCHITECTURE, FitSettings, fit
from lungai.checkpoint import save_checkpoint
from lungai.contract import LoadedModel, SavedResult, TrainOptions, TrainOutcome
from lungai.device import resolve_device
from lungai.errors import InputError, LungAIError
from lungai.io import read_table_csv, read_volume, write_table_csv, write_volume
from lungai.outputs import staged_file, staged_folder
from lungai.plotting import save_line_chart
from lungai.progress import CancelToken, ProgressCallback, check_cancel, report, subrange
from lungai.registry import get_model_entry, load_for_module, next_version_id, publish
from lungai.sample_data import chest_ct, chest_lungs
from lungai.validation import validate_ct
from lungai.volume import Volume

DEFAULT_MODEL = DESCRIPTOR.default_model_id
PROFILES_CSV, VOLUMES_CSV, PROFILES_PNG = "profiles.csv", "volumes.csv", "profiles.png"
LICENCE = "Apache-2.0 (weights); training data: 3D Slicer sample data via slicerio"


def load(weights: str | Path | None = None, model_id: str | None = None, device="auto") -> LoadedModel:
    """An ``al_unet`` (decoder dropout for MC sampling) from a file, a registry id, or the bundled default."""
    return load_for_module(DESCRIPTOR, weights, model_id, device)


def check_pool(volumes: dict[str, Volume]) -> None:
    """Each pool volume must be a CT with axial slices. Volumes may differ in size and spacing: every slice is
    resized to the network's input and every result is returned on its own volume's grid."""
    if not volumes:
        raise InputError("the pool is empty: give at least one CT volume")
    for name, volume in volumes.items():
        try:
            validate_ct(volume)
        except InputError as error:
            raise InputError(f"{name}: {error}") from error
        if not volume.is_axial():
            raise InputError(
                f"{name} is not axial (its k axis is not along z); the 2-D network needs axial slices: reslice it first"
            )


def score_pool(
    model: nn.Module,
    volumes: dict[str, Volume],
    *,
    n_samples: int = 20,
    method: str = "batched",
    max_batch: int | None = None,
    seed: int = 0,
    box: int = 11,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> dict[str, VolumeScore]:
    """MC-dropout scores of every pool volume."""
    check_pool(volumes)
    scores = {}
    for i, (name, volume) in enumerate(volumes.items()):
        scores[name] = score_volume(
            model,
            volume.array,
            n_samples=n_samples,
            method=method,
            max_batch=max_batch,
            seed=seed,
            box=box,
            cancel=cancel,
            progress=subrange(progress, i / len(volumes), (i + 1) / len(volumes)),
        )
    return scores


def rank(
    strategy: str,
    profiles: dict[str, np.ndarray],
    volume_scores: dict[str, float],
    annotated: dict[str, np.ndarray] | None,
    budget: int,
    seed: int = 0,
) -> list[dict]:
    """Ranked query table rows: rank, volume, slice (-1: whole volume), uncertainty, strategy."""
    if strategy not in STRATEGIES:
        raise InputError(f"unknown strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
    names = list(profiles)
    done = [np.asarray((annotated or {}).get(n, np.zeros(len(profiles[n]), bool)), bool) for n in names]
    for n, d in zip(names, done):
        if d.shape != (len(profiles[n]),):
            raise InputError(f"{n}: {d.shape[0]} annotated-slice flags for {len(profiles[n])} slices")
    if strategy == "uss":
        picks = select_uss([profiles[n] for n in names], done, budget)
    elif strategy == "uvs":
        picks = select_uvs([volume_scores[n] for n in names], done, budget)
    elif strategy == "rvs":
        picks = select_rvs(done, budget, seed)
    else:
        picks = select_rss(done, budget, seed)
    return [
        {
            "rank": r + 1,
            "volume": names[q.volume],
            "slice": q.slice_index,
            "uncertainty": round(q.uncertainty, 6) if q.uncertainty == q.uncertainty else "",
            "strategy": strategy,
        }
        for r, q in enumerate(picks)
    ]


def write_scores(
    out_dir: Path, volumes: dict[str, Volume], scores: dict[str, VolumeScore], overwrite: bool = False
) -> list[Path]:
    """``<name>_entropy.nrrd`` (input geometry), ``profiles.csv`` and ``volumes.csv`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [
        write_volume(volumes[n].like(s.entropy), out_dir / f"{n}_entropy.nrrd", overwrite) for n, s in scores.items()
    ]
    profile_rows = [
        {"volume": n, "slice": i, "uncertainty": float(u)} for n, s in scores.items() for i, u in enumerate(s.profile)
    ]
    volume_rows = [
        {
            "volume": n,
            "slices": len(s.profile),
            "volume_uncertainty": s.volume_uncertainty,
            "predicted_foreground_ml": float(s.prediction.sum() * volumes[n].voxel_volume_mm3 / 1000),
        }
        for n, s in scores.items()
    ]
    files.append(write_table_csv(out_dir / "profiles.csv", profile_rows, overwrite))
    files.append(write_table_csv(out_dir / "volumes.csv", volume_rows, overwrite))
    return files


def read_scores(score_dir: Path) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Profiles and volume-level uncertainties written by :func:`write_scores`."""
    for required in ("profiles.csv", "volumes.csv"):
        if not (score_dir / required).is_file():
            raise InputError(f"{score_dir} has no {required}: run 'lungai al score --out {score_dir}' first")
    profiles: dict[str, list[float]] = {}
    for row in read_table_csv(score_dir / "profiles.csv"):
        profiles.setdefault(row["volume"], []).append(float(row["uncertainty"]))
    volume_scores = {
        row["volume"]: float(row["volume_uncertainty"]) for row in read_table_csv(score_dir / "volumes.csv")
    }
    return {n: np.asarray(p) for n, p in profiles.items()}, volume_scores


def read_annotated(path: Path, slice_counts: dict[str, int]) -> dict[str, np.ndarray]:
    """Annotated slices from a CSV with columns ``volume, slice`` (slice -1: the whole volume)."""
    annotated = {n: np.zeros(c, bool) for n, c in slice_counts.items()}
    for row in read_table_csv(path):
        name, index = row["volume"], int(row["slice"])
        if name not in annotated:
            raise InputError(f"{path}: volume {name!r} is not in the pool ({', '.join(annotated)})")
        if index >= len(annotated[name]):
            raise InputError(f"{path}: slice {index} is outside {name} ({len(annotated[name])} slices)")
        annotated[name][slice(None) if index < 0 else index] = True
    return annotated


@dataclass
class RetrainResult:
    model: nn.Module
    annotated_slices: int
    history: list[dict]


def retrain(
    model: nn.Module,
    volumes: dict[str, Volume],
    labels: dict[str, np.ndarray],
    annotated: dict[str, np.ndarray],
    settings: FitSettings = FitSettings(steps=100, lr=3e-4, loss="dice+bce"),
    *,
    device: str = "cpu",
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> RetrainResult:
    """Fine-tune a **copy** of ``model`` on the annotated slices only (weighted soft Dice, Eq. 2).

    ``labels`` are (Z, Y, X) foreground masks on each volume's grid; only the annotated slices are read. The
    input model is never modified, so a cancelled retrain leaves the previous version in use.
    """
    check_pool(volumes)
    cases = []
    for name, volume in volumes.items():
        flags = np.asarray(annotated.get(name, np.zeros(volume.shape[0], bool)), bool)
        if not flags.any():
            continue
        if name not in labels:
            raise InputError(f"{name} has annotated slices but no labelmap")
        label = np.asarray(labels[name])
        if label.shape != volume.shape:
            raise InputError(f"{name}: labelmap shape {label.shape} differs from the volume's {volume.shape}")
        cases.append(
            PoolCase(name, volume.array.astype(np.float32), (label > 0).astype(np.uint8), flags, volume.spacing)
        )
    if not cases:
        raise InputError("no annotated slice: mark the slices you annotated before retraining")
    check_cancel(cancel)
    tuned = copy.deepcopy(model)
    result = fit(
        tuned,
        cases,
        None,
        settings,
        device=device,
        progress=progress,
        cancel=cancel,
        training_data="annotated slices: "
        + ", ".join(f"{c.name} {np.flatnonzero(c.annotated).tolist()}" for c in cases),
    )
    return RetrainResult(tuned, int(sum(c.annotated.sum() for c in cases)), result.history)


def save_version(
    model: nn.Module,
    path: Path,
    *,
    base_id: str,
    register: bool | str,
    training_data: str,
    metrics: dict | None = None,
    command: str = "",
    overwrite: bool = False,
) -> str:
    """Save a retrained model to ``path``; with ``register``, publish it under that id, or as ``<base_id>-v<N>``
    (the next free N) when ``register`` is True."""
    try:
        base = get_model_entry(base_id)
    except LungAIError:  # the base is not registered (a checkpoint file)
        base = None
    new_id, version = next_version_id(base_id) if register else (base_id, 1)
    if isinstance(register, str) and register:
        new_id = register
    with staged_file(path, overwrite) as staged:
        save_checkpoint(
            staged,
            model,
            model_name=ARCHITECTURE,
            config=model.config,
            version=str(version),
            training_data=training_data,
            metrics=metrics or {},
        )
        if register:
            publish(
                staged,
                new_id,
                module=DESCRIPTOR.slicer_module,
                licence=base.licence if base else "",
                description=f"{base_id} fine-tuned on annotated slices (active learning)",
                command=command,
                metrics=metrics or {},
            )
    return new_id


# --- the contract ------------------------------------------------------------------------------------------


@dataclass
class PoolScores:
    """What :func:`run` found: each named volume and its MC-dropout scores."""

    volumes: dict[str, Volume]
    scores: dict[str, VolumeScore]
    seconds: float = 0.0


def run(
    volume: Volume | dict[str, Volume],
    model: LoadedModel,
    *,
    n_samples: int = 20,
    method: str = "batched",
    max_batch: int = 64,
    seed: int = 0,
    box: int = 11,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> PoolScores:
    """MC-dropout entropy, slice profile and volume uncertainty of one volume or a pool of named volumes."""
    volumes = volume if isinstance(volume, dict) else {"volume": volume}
    started = time.perf_counter()
    scores = score_pool(
        model.network,
        volumes,
        n_samples=n_samples,
        method=method,
        max_batch=max_batch,
        seed=seed,
        box=box,
        progress=progress,
        cancel=cancel,
    )
    return PoolScores(volumes, scores, time.perf_counter() - started)


def write(result: PoolScores, out_dir: str | Path, overwrite: bool = False) -> list[Path]:
    """``<name>_entropy.nrrd`` per volume, ``profiles.csv``, ``volumes.csv`` and ``profiles.png``."""
    out_dir = Path(out_dir)
    entropies = [f"{name}_entropy.nrrd" for name in result.scores]
    with staged_folder(out_dir, overwrite, expected=[*entropies, PROFILES_CSV, VOLUMES_CSV, PROFILES_PNG]) as work:
        write_scores(work, result.volumes, result.scores)
        plot_profiles({n: s.profile for n, s in result.scores.items()}, {}, work / PROFILES_PNG)
    return [out_dir / name for name in (*entropies, PROFILES_CSV, VOLUMES_CSV, PROFILES_PNG)]


def plot_profiles(profiles: dict[str, np.ndarray], selected: dict[str, list[int]], path: Path) -> Path:
    """The paper's Fig. 2: slice index against mean entropy per volume; selected slices circled."""
    return save_line_chart(
        path,
        {name: (np.arange(len(p)), np.asarray(p)) for name, p in profiles.items()},
        xlabel="slice index",
        ylabel="slice-level uncertainty (mean entropy)",
        markers={
            "selected": (
                [i for n, picks in selected.items() for i in picks],
                [float(profiles[n][i]) for n, picks in selected.items() for i in picks],
            )
        }
        if selected
        else None,
    )


def read(out_dir: str | Path) -> SavedResult:
    """The tables and entropy volumes :func:`write` put into ``out_dir``."""
    out_dir = Path(out_dir)
    profiles, _ = read_scores(out_dir)
    tables = {name: read_table_csv(out_dir / name) for name in (PROFILES_CSV, VOLUMES_CSV)}
    volumes = {name: read_volume(out_dir / f"{name}_entropy.nrrd") for name in profiles}
    return SavedResult(out_dir, tables=tables, volumes=volumes)


def select(
    scores_dir: str | Path,
    strategy: str,
    budget: int,
    annotated_csv: str | Path | None = None,
    seed: int = 0,
) -> list[dict]:
    """Ranked slices (or volumes) to annotate next from a folder written by :func:`write`."""
    profiles, volume_scores = read_scores(Path(scores_dir))
    counts = {n: len(p) for n, p in profiles.items()}
    annotated = read_annotated(Path(annotated_csv), counts) if annotated_csv else None
    return rank(strategy, profiles, volume_scores, annotated, budget, seed)


@dataclass
class Pool:
    """Where pool, validation and test volumes come from: a user folder, or simulated from the bundled chest CT."""

    folder: str | None = None  # images/ and labels/ with the same file names
    pool_size: int = 10
    val_size: int = 1
    test_size: int = 4
    seed: int = 0

    def cases(self) -> tuple[list[PoolCase], list[PoolCase], list[PoolCase]]:
        """(pool, validation, test): a folder split in order, or volumes simulated from the bundled chest CT."""
        if self.folder:
            cases = load_folder_pool(self.folder)
            n_eval = self.val_size + self.test_size
            if len(cases) <= n_eval:
                raise InputError(
                    f"{self.folder} has {len(cases)} volumes; {n_eval} go to validation and test, "
                    "so the pool would be empty"
                )
            return cases[n_eval:], cases[: self.val_size], cases[self.val_size : n_eval]
        ct, (lungs, _) = chest_ct(), chest_lungs()
        image, label = ct.array.astype(np.float32), (lungs.array > 0).astype(np.uint8)

        def make(n: int, seed: int, prefix: str) -> list[PoolCase]:
            return synthesize_pool(image, label, n, seed=seed, prefix=prefix, spacing=ct.spacing)

        return (
            make(self.pool_size, self.seed + 1, "pool"),
            make(self.val_size, self.seed + 2, "val"),
            make(self.test_size, self.seed + 3, "test"),
        )

    def describe(self, count: int) -> str:
        if self.folder:
            return f"{count} volumes of {Path(self.folder).name}"
        return (
            f"{count} volumes simulated from the slicerio chest CT CTChest4 (lungs = right + left lung segments); "
            "all derive from one scan"
        )


@dataclass
class Training(TrainOptions):
    """``lungai al train``: an ``al_unet`` from scratch on fully labelled volumes (``out`` is the checkpoint);
    ``ema`` (the shared option) sets ``fit.ema_decay``."""

    pool: Pool = field(default_factory=Pool)
    input_size: int = 128
    channels: tuple[int, ...] = (8, 16, 32, 64)
    fit: FitSettings = field(default_factory=lambda: FitSettings(steps=600, lr=1e-3, loss="dice+bce"))
    overwrite: bool = False


def train(config: Training, *, progress: ProgressCallback | None = None, cancel=None) -> TrainOutcome:
    """Train, measure Dice/RVE/MSD/HD on the held-out test volumes, save; optionally publish."""
    out = Path(config.out)
    pool, val, test = config.pool.cases()
    for case in pool:
        case.annotated[:] = True
    torch.manual_seed(config.seed)
    model = ALUNet(channels=tuple(config.channels), input_size=config.input_size)
    source = config.pool.describe(len(pool))
    started = time.perf_counter()
    with staged_file(out, config.overwrite) as staged:
        fit(
            model,
            pool,
            val,
            replace(config.fit, ema_decay=config.ema),
            device=str(resolve_device(config.device)),
            progress=progress,
            cancel=cancel,
            training_data=source,
        )
        seconds = time.perf_counter() - started
        model = model.cpu()
        metrics = {k: round(v, 4) for k, v in evaluate(model, test).items()}
        save_checkpoint(
            staged, model, model_name=ARCHITECTURE, config=model.config, training_data=source, metrics=metrics
        )
        registered = None
        if config.register:
            registered = publish(
                staged,
                config.register,
                module=DESCRIPTOR.slicer_module,
                licence=LICENCE,
                description="2-D U-Net with decoder dropout 0.25 for lung segmentation and MC-dropout "
                "uncertainty (active learning)",
                command=config.command,
                metrics={**metrics, "test_set": f"{len(test)} held-out volumes"},
                timings={
                    "train_wall_seconds_1_thread_shared_cpu": round(seconds, 1),
                    "steps": config.fit.steps,
                    "parameters": sum(p.numel() for p in model.parameters()),
                },
            )
    report(progress, 1.0, "done")
    return TrainOutcome(out, metrics, registered=registered)


def simulation_plan(config: SimulationConfig) -> str:
    """What a simulation will do, so a user knows the cost before it starts."""
    trainings = 1 + len(config.strategies) * config.iterations
    return (
        f"{trainings} trainings of {config.fit.steps} optimiser steps (1 initial + {len(config.strategies)} "
        f"strategies x {config.iterations} iterations) and {len(config.strategies) * config.iterations} MC-dropout "
        f"scorings of the pool ({config.n_samples} samples); the progress bar estimates the time left"
    )


def run_simulation(
    pool: Pool,
    config: SimulationConfig,
    out_dir: str | Path,
    *,
    device="auto",
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> list[dict]:
    """USS, UVS, RVS, RSS in a simulated annotation loop: ``simulation.csv`` and ``learning_curves.png``."""
    with staged_folder(out_dir, overwrite, expected=["simulation.csv", "learning_curves.png"]) as work:
        cases, val, test = pool.cases()
        rows = simulate(cases, val, test, config, device=str(resolve_device(device)), progress=progress, cancel=cancel)
        write_table_csv(work / "simulation.csv", rows)
        plot_learning_curves(rows, work / "learning_curves.png")
    return rows
