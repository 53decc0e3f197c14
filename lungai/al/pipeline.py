"""The annotate-retrain loop on named volumes, shared by the command line and the Slicer logic.

score -> select (ranked table) -> the user annotates the selected slices -> retrain on annotated slices only.
Volumes are :class:`lungai.volume.Volume` objects keyed by name; annotated slices are ``{name: (Z,) bool}``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from lungai.al.data import PoolCase
from lungai.al.scoring import VolumeScore, score_volume
from lungai.al.strategies import STRATEGIES, select_rss, select_rvs, select_uss, select_uvs
from lungai.al.training import ARCHITECTURE, FitSettings, fit
from lungai.checkpoint import load_model, save_checkpoint
from lungai.errors import InputError, LungAIError
from lungai.io import read_table_csv, write_table_csv, write_volume
from lungai.progress import CancelToken, ProgressCallback, check_cancel, subrange
from lungai.registry import get_model_entry, load_registered_model, load_registry, register_model
from lungai.validation import validate_ct
from lungai.volume import Volume

DEFAULT_MODEL = "al_unet_lungs"


def load_al_model(
    model_id: str | None = None, checkpoint: str | Path | None = None, device: str = "cpu"
) -> tuple[nn.Module, dict]:
    """A registered model (``model_id``) or a checkpoint file; the network must be an ``al_unet``."""
    if checkpoint is not None:
        return load_model(checkpoint, device, expected_model=ARCHITECTURE)
    return load_registered_model(model_id or DEFAULT_MODEL, device)


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
    max_batch: int = 64,
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
    register: bool,
    training_data: str,
    metrics: dict | None = None,
    command: str = "",
) -> str:
    """Save a retrained model; with ``register``, add it to the registry as ``<base_id>-v<N>`` (next free N)."""
    try:
        base = get_model_entry(base_id)
        version = int(str(base.version).split(".")[0])
    except LungAIError:  # the base is not registered (a checkpoint file)
        base, version = None, 1
    new_id = base_id
    if register:
        taken = {e.id for e in load_registry()}
        version += 1
        while f"{base_id}-v{version}" in taken:
            version += 1
        new_id = f"{base_id}-v{version}"
    save_checkpoint(
        path,
        model,
        model_name=ARCHITECTURE,
        config=model.config,
        version=str(version),
        training_data=training_data,
        metrics=metrics or {},
    )
    if register:
        register_model(
            {
                "id": new_id,
                "version": str(version),
                "module": "ActiveLearningSampler",
                "architecture": ARCHITECTURE,
                "file": str(Path(path).resolve()),
                "sha256": "",
                "licence": base.licence if base else "",
                "training_data": training_data,
                "description": f"{base_id} fine-tuned on annotated slices (active learning)",
                "command": command,
                "metrics": metrics or {},
                "timings": {},
            }
        )
    return new_id
