"""Query strategies (seed 004, Sec. II-D and IV-A): USS, UVS, RVS, RSS, and the equal-effort slice budget.

A pool is a list of volumes; ``annotated[v]`` is a boolean per axial slice of volume ``v`` (True: its reference
is known). Volume strategies return whole volumes, slice strategies single slices; both as :class:`Query` rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lungai.errors import InputError

STRATEGIES = ("uss", "uvs", "rvs", "rss")
MIN_PEAK_DISTANCE = 5
ANNOTATION_RATIO = 3  # N slices of one volume cost as much as N/3 slices from different volumes (Sec. IV)


@dataclass(frozen=True)
class Query:
    """One selected item: a slice (``slice_index`` >= 0) or a whole volume (``slice_index`` = -1)."""

    volume: int
    slice_index: int
    uncertainty: float
    strategy: str

    @property
    def is_volume(self) -> bool:
        return self.slice_index < 0


def slice_candidates(
    profile: Sequence[float], min_distance: int = MIN_PEAK_DISTANCE, include_end_slices: bool = True
) -> np.ndarray:
    """Local maxima of a slice-uncertainty profile at least ``min_distance`` slices apart (Fig. 2).

    Where peaks are closer, the higher one wins (scipy's ``find_peaks`` ``distance`` rule). End slices: a
    first or last slice higher than its single neighbour is a candidate when ``include_end_slices`` (the
    profile is padded with -inf); otherwise the ends never are. Plateaus count once (their middle slice).
    """
    from scipy.signal import find_peaks  # scipy.signal imports scipy.stats (a second): only where used

    p = np.asarray(profile, dtype=np.float64)
    if p.ndim != 1 or p.size == 0:
        raise InputError(f"a slice profile must be a non-empty 1-D sequence, got shape {p.shape}")
    if len(p) == 1:
        return np.array([0]) if include_end_slices else np.array([], dtype=int)
    if include_end_slices:
        peaks, _ = find_peaks(np.concatenate([[-np.inf], p, [-np.inf]]), distance=min_distance)
        return np.sort(peaks - 1)
    peaks, _ = find_peaks(p, distance=min_distance)
    return np.sort(peaks)


def select_uss(
    profiles: Sequence[np.ndarray],
    annotated: Sequence[np.ndarray],
    budget: int,
    min_distance: int = MIN_PEAK_DISTANCE,
    include_end_slices: bool = True,
) -> list[Query]:
    """USS: the ``budget`` highest slice candidates of all volumes, excluding annotated slices.

    Candidates come from each volume's full profile (annotated slices still shape the peaks, so a new pick is
    never a near neighbour of an annotated peak) and are then dropped if already annotated. Returns fewer
    than ``budget`` queries when the pool has fewer candidates.
    """
    _check_pool(profiles, annotated, budget, per_slice=True)
    pool = [
        Query(v, int(i), float(profile[i]), "uss")
        for v, (profile, done) in enumerate(zip(profiles, annotated))
        for i in slice_candidates(profile, min_distance, include_end_slices)
        if not done[i]
    ]
    return sorted(pool, key=lambda q: (-q.uncertainty, q.volume, q.slice_index))[:budget]


def select_uvs(volume_scores: Sequence[float], annotated: Sequence[np.ndarray], budget: int) -> list[Query]:
    """UVS: the ``budget`` not yet annotated volumes with the largest volume-level uncertainty."""
    _check_pool(volume_scores, annotated, budget, per_slice=False)
    free = [v for v, done in enumerate(annotated) if not np.all(done)]
    ranked = sorted(free, key=lambda v: (-volume_scores[v], v))[:budget]
    return [Query(v, -1, float(volume_scores[v]), "uvs") for v in ranked]


def select_rvs(annotated: Sequence[np.ndarray], budget: int, seed: int | np.random.Generator = 0) -> list[Query]:
    """RVS: ``budget`` not yet annotated volumes at random (seeded)."""
    _check_pool(annotated, annotated, budget, per_slice=False)
    free = [v for v, done in enumerate(annotated) if not np.all(done)]
    picks = np.random.default_rng(seed).choice(free, size=budget, replace=False)
    return [Query(int(v), -1, math.nan, "rvs") for v in picks]


def select_rss(
    annotated: Sequence[np.ndarray],
    budget: int,
    seed: int | np.random.Generator = 0,
    foreground: Sequence[np.ndarray] | None = None,
) -> list[Query]:
    """RSS: random not yet annotated slices from the whole pool (seeded).

    Without ``foreground`` it returns ``budget`` slices. With ``foreground`` (per-slice booleans from the
    reference, known only in simulation) it draws until ``budget`` foreground slices are among the picks, as
    the paper did, so its annotation effort matches USS; background slices drawn on the way are kept.
    """
    _check_pool(annotated, annotated, budget, per_slice=True)
    free = [(v, i) for v, done in enumerate(annotated) for i in np.flatnonzero(~np.asarray(done, bool))]
    order = np.random.default_rng(seed).permutation(len(free))
    picks, n_fg = [], 0
    for j in order:
        v, i = free[j]
        picks.append(Query(int(v), int(i), math.nan, "rss"))
        n_fg += bool(foreground[v][i]) if foreground is not None else 1
        if n_fg >= budget:
            break
    return picks


def slice_budget(
    foreground_slices_per_volume: Sequence[int], volumes_per_iteration: int, ratio: int = ANNOTATION_RATIO
) -> int:
    """Equal-effort slice budget N_S = N~/3 (Sec. IV-A).

    N~ is the average number of foreground slices a volume strategy adds per iteration: here
    ``volumes_per_iteration`` times the mean foreground-slice count of the pool's volumes.
    """
    if volumes_per_iteration < 1 or not len(foreground_slices_per_volume):
        raise InputError("the slice budget needs at least one volume per iteration and a non-empty pool")
    return max(1, round(volumes_per_iteration * float(np.mean(foreground_slices_per_volume)) / ratio))


def _check_pool(items: Sequence, annotated: Sequence[np.ndarray], budget: int, per_slice: bool) -> None:
    if len(items) != len(annotated):
        raise InputError(f"{len(items)} uncertainty entries for {len(annotated)} pool volumes")
    if budget < 1:
        raise InputError(f"the budget must be at least 1, got {budget}")
    if per_slice:
        free = sum(int((~np.asarray(a, bool)).sum()) for a in annotated)
        unit = "unannotated slices"
    else:
        free = sum(not np.all(a) for a in annotated)
        unit = "unannotated volumes"
    if budget > free:
        raise InputError(
            f"budget {budget} is larger than the pool: only {free} {unit} are left; "
            "lower the budget or add volumes to the pool"
        )
