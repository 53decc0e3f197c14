"""The simulated active-learning comparison of USS, UVS, RVS and RSS (seed 004, Sec. IV-A), at our scale.

Protocol: an initial model is trained on a few fully annotated pool volumes; then each strategy runs
``iterations`` rounds of *query* (with the previous round's model), *reveal* (the reference labels of the
queried slices or volumes become annotated) and *retrain from scratch* (as the paper), and after every round
the model is evaluated on held-out volumes: Dice, RVE, MSD and HD, each as mean and 5th / 95th percentile.

Equal annotation effort (Sec. IV): a volume strategy adds ``volumes_per_iteration`` volumes; the slice
strategies add N_S = (foreground slices those volumes bring on average) / 3 slices, and RSS draws random
slices until N_S foreground slices are among them. Deviations, chosen for a CPU budget: a 2-D network, a
fixed number of optimiser steps per training instead of "up to 30 epochs", and validation by Jaccard on a
separate volume at a few points of each training.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lungai.al.data import PoolCase
from lungai.al.networks import ALUNet
from lungai.al.scoring import predict_volume, score_volume
from lungai.al.strategies import STRATEGIES, Query, select_rss, select_rvs, select_uss, select_uvs, slice_budget
from lungai.al.training import FitSettings, fit
from lungai.errors import InputError
from lungai.metrics import dice, hausdorff, mean_surface_distance, relative_volume_error
from lungai.progress import CancelToken, ProgressCallback, check_cancel, report, subrange

METRICS = ("dice", "rve", "msd", "hd")


@dataclass(frozen=True)
class SimulationConfig:
    strategies: tuple[str, ...] = STRATEGIES
    iterations: int = 3
    initial_volumes: int = 2
    volumes_per_iteration: int = 1
    slices_per_iteration: int | None = None  # None: the N_S = N/3 rule
    n_samples: int = 20
    box: int = 11
    channels: tuple[int, ...] = (8, 16, 32, 64)
    input_size: int = 64
    fit: FitSettings = field(default_factory=FitSettings)
    seed: int = 0


def evaluate(model: torch.nn.Module, cases: list[PoolCase]) -> dict[str, float]:
    """Dice, RVE (%, absolute, Eq. 4), MSD and HD (mm) per test volume, as mean, p5 and p95 over volumes."""
    values: dict[str, list[float]] = {m: [] for m in METRICS}
    for case in cases:
        pred, ref = predict_volume(model, case.image), case.label > 0
        spacing = tuple(case.spacing)[::-1]  # array axis order (z, y, x)
        values["dice"].append(dice(pred, ref))
        values["rve"].append(100.0 * abs(relative_volume_error(pred, ref)))
        values["msd"].append(mean_surface_distance(pred, ref, spacing=spacing))
        values["hd"].append(hausdorff(pred, ref, spacing=spacing))
    row = {}
    for name, vals in values.items():
        arr = np.asarray(vals, dtype=float)
        arr = arr[np.isfinite(arr)]  # HD and MSD are undefined (NaN) for an empty prediction
        stats = (arr.mean(), *np.percentile(arr, [5, 95])) if arr.size else (float("nan"),) * 3
        row[f"{name}_mean"], row[f"{name}_p5"], row[f"{name}_p95"] = (float(v) for v in stats)
    return row


def _new_model(config: SimulationConfig) -> ALUNet:
    torch.manual_seed(config.seed)
    return ALUNet(channels=config.channels, input_size=config.input_size)


def _annotation_counts(pool: list[PoolCase]) -> dict[str, int]:
    return {
        "annotated_slices": int(sum(c.annotated.sum() for c in pool)),
        "annotated_foreground_slices": int(sum((c.annotated & c.foreground_slices).sum() for c in pool)),
        "annotated_volumes": int(sum(c.annotated.any() for c in pool)),
    }


def query(
    strategy: str,
    model: torch.nn.Module,
    pool: list[PoolCase],
    config: SimulationConfig,
    budget: int,
    seed: int,
    cancel: CancelToken | None = None,
) -> list[Query]:
    """One query round of ``strategy`` on ``pool`` (uncertainty strategies score the unannotated volumes)."""
    annotated = [c.annotated for c in pool]
    if strategy == "rvs":
        return select_rvs(annotated, config.volumes_per_iteration, seed)
    if strategy == "rss":
        return select_rss(annotated, budget, seed, foreground=[c.foreground_slices for c in pool])
    profiles, volume_scores = [], []
    for case in pool:
        check_cancel(cancel)
        if case.annotated.all():  # fully annotated: nothing to score
            profiles.append(np.zeros(len(case.image)))
            volume_scores.append(-np.inf)
            continue
        score = score_volume(model, case.image, n_samples=config.n_samples, seed=seed, box=config.box)
        profiles.append(score.profile)
        volume_scores.append(score.volume_uncertainty)
    if strategy == "uvs":
        return select_uvs(volume_scores, annotated, config.volumes_per_iteration)
    if strategy == "uss":
        return select_uss(profiles, annotated, budget)
    raise InputError(f"unknown strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")


def reveal(pool: list[PoolCase], queries: list[Query]) -> None:
    """The oracle: mark the queried slices or volumes as annotated (their reference labels become known)."""
    for q in queries:
        if q.is_volume:
            pool[q.volume].annotated[:] = True
        else:
            pool[q.volume].annotated[q.slice_index] = True


def simulate(
    pool: list[PoolCase],
    val_cases: list[PoolCase],
    test_cases: list[PoolCase],
    config: SimulationConfig = SimulationConfig(),
    *,
    device: str = "cpu",
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> list[dict]:
    """Run the comparison; one row per (strategy, iteration), iteration 0 being the shared initial model."""
    unknown = set(config.strategies) - set(STRATEGIES)
    if unknown:
        raise InputError(f"unknown strategies {sorted(unknown)}: use {', '.join(STRATEGIES)}")
    needed = config.initial_volumes + config.iterations * config.volumes_per_iteration
    if needed > len(pool):
        raise InputError(
            f"the pool has {len(pool)} volumes; {config.initial_volumes} initial plus "
            f"{config.iterations} x {config.volumes_per_iteration} queried volumes need {needed}"
        )
    rng = np.random.default_rng(config.seed)
    pool = [PoolCase(c.name, c.image, c.label, np.zeros(len(c.image), bool), c.spacing) for c in pool]
    for v in rng.choice(len(pool), config.initial_volumes, replace=False):
        pool[v].annotated[:] = True
    budget = config.slices_per_iteration or slice_budget(
        [int(c.foreground_slices.sum()) for c in pool], config.volumes_per_iteration
    )
    n_trainings = 1 + len(config.strategies) * config.iterations
    step = 0

    def train_new(cases, label):
        nonlocal step
        model = _new_model(config)
        started = time.perf_counter()
        fit(
            model,
            cases,
            val_cases,
            config.fit,
            device=device,
            cancel=cancel,
            progress=subrange(progress, step / n_trainings, (step + 1) / n_trainings),
        )
        step += 1
        report(progress, step / n_trainings, f"trained {label}")
        return model, time.perf_counter() - started

    initial, seconds = train_new(pool, "initial model")
    base = {
        "iteration": 0,
        **_annotation_counts(pool),
        "query_seconds": 0.0,
        "train_seconds": seconds,
        "slices_per_iteration": budget,
        **evaluate(initial, test_cases),
    }
    rows = [{"strategy": s, **base} for s in config.strategies]
    for s_index, strategy in enumerate(config.strategies):
        state = [PoolCase(c.name, c.image, c.label, c.annotated.copy(), c.spacing) for c in pool]
        model = initial
        for iteration in range(1, config.iterations + 1):
            started = time.perf_counter()
            picks = query(
                strategy, model, state, config, budget, seed=config.seed + 1000 * s_index + iteration, cancel=cancel
            )
            query_seconds = time.perf_counter() - started
            reveal(state, picks)
            model, seconds = train_new(state, f"{strategy} iteration {iteration}")
            rows.append(
                {
                    "strategy": strategy,
                    "iteration": iteration,
                    **_annotation_counts(state),
                    "query_seconds": query_seconds,
                    "train_seconds": seconds,
                    "slices_per_iteration": budget,
                    **evaluate(model, test_cases),
                }
            )
    return rows


def plot_learning_curves(rows: list[dict], path: Path) -> Path:
    """Mean and 5th-95th percentile band of each metric against the annotated slice count, per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {"dice": "Dice", "rve": "RVE [%]", "msd": "MSD [mm]", "hd": "HD [mm]"}
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
    for strategy in dict.fromkeys(r["strategy"] for r in rows):
        sub = sorted((r for r in rows if r["strategy"] == strategy), key=lambda r: r["iteration"])
        x = [r["annotated_slices"] for r in sub]
        for ax, metric in zip(axes, METRICS):
            mean = [r[f"{metric}_mean"] for r in sub]
            (line,) = ax.plot(x, mean, marker="o", label=strategy.upper())
            ax.fill_between(
                x,
                [r[f"{metric}_p5"] for r in sub],
                [r[f"{metric}_p95"] for r in sub],
                color=line.get_color(),
                alpha=0.12,
            )
    for ax, metric in zip(axes, METRICS):
        ax.set_xlabel("annotated slices")
        ax.set_title(labels[metric])
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
