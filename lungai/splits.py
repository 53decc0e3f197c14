"""The one place for data splits: k folds by group (patient, case), by label, or by item, and a validation split.

Every function is a pure function of its inputs and ``seed`` (numpy ``default_rng``), so a split is reproducible
from the numbers written next to the results. A fold array holds one fold index per sample;
:func:`fold_indices` turns it into (train, test) indices.

Same assignments as the module helpers they replace, for the same inputs: :func:`group_folds` as
``lungai.nlb.data.group_folds`` and as ``lungai.ugsnet.data.patient_folds`` for string patient IDs (the LIDC
``LIDC-IDRI-xxxx``; ``patient_folds`` sorted numeric IDs as text, this sorts them as numbers);
:func:`stratified_folds` as ``lungai.nlb.data.stratified_folds``; ``fold_indices(item_folds(n, 2, seed), k)`` as
``lungai.covid.data.two_fold_split(n, k, seed)``.
"""

from __future__ import annotations

import numpy as np


def group_folds(groups: np.ndarray, n_folds: int = 5, seed: int = 0) -> np.ndarray:
    """Fold index per sample; groups are shuffled with ``seed`` and dealt round-robin, so a group is in one fold."""
    groups = np.asarray(groups)
    unique = np.unique(groups)
    _check_folds(n_folds, len(unique), "groups")
    order = np.random.default_rng(seed).permutation(len(unique))
    fold_of_group = np.empty(len(unique), dtype=int)
    fold_of_group[order] = np.arange(len(unique)) % n_folds
    return fold_of_group[np.searchsorted(unique, groups)]


def stratified_folds(labels: np.ndarray, n_folds: int = 5, seed: int = 0) -> np.ndarray:
    """Fold index per sample for samples without groups: each label value is shuffled and dealt round-robin, so
    every fold has about the same share of each label."""
    labels = np.asarray(labels)
    _check_folds(n_folds, len(labels), "samples")
    rng = np.random.default_rng(seed)
    folds = np.empty(len(labels), dtype=int)
    for value in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == value))
        folds[members] = np.arange(len(members)) % n_folds
    return folds


def item_folds(count: int, n_folds: int = 5, seed: int = 0) -> np.ndarray:
    """Fold index per item for ``count`` independent items: a seeded permutation cut into ``n_folds`` contiguous
    runs (fold k gets positions ``k * count // n_folds`` up to ``(k + 1) * count // n_folds``)."""
    _check_folds(n_folds, count, "items")
    order = np.random.default_rng(seed).permutation(count)
    folds = np.empty(count, dtype=int)
    for k in range(n_folds):
        folds[order[k * count // n_folds : (k + 1) * count // n_folds]] = k
    return folds


def fold_indices(folds: np.ndarray, fold: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted sample indices (train, test) when ``fold`` is held out."""
    folds = np.asarray(folds)
    if fold not in set(folds.tolist()):
        raise ValueError(f"fold {fold} does not occur; the folds are {sorted(set(folds.tolist()))}.")
    return np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)


def validation_split(groups: np.ndarray, fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sorted indices (train, validation) of a training set, whole groups to one side.

    ``round(fraction * n_groups)`` shuffled groups (at least 1, at most all but one) form the validation set: use
    it for early stopping on patients the model does not train on. Pass ``np.arange(n)`` for samples without groups.
    """
    groups = np.asarray(groups)
    unique = np.unique(groups)
    if len(unique) < 2:
        raise ValueError(f"a validation split needs at least 2 groups, got {len(unique)}.")
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the validation fraction must be between 0 and 1, got {fraction}.")
    n_val = min(max(1, round(fraction * len(unique))), len(unique) - 1)
    chosen = unique[np.random.default_rng(seed).permutation(len(unique))[:n_val]]
    in_val = np.isin(groups, chosen)
    return np.flatnonzero(~in_val), np.flatnonzero(in_val)


def _check_folds(n_folds: int, available: int, what: str) -> None:
    if n_folds < 2:
        raise ValueError(f"need at least 2 folds, got {n_folds}.")
    if available < n_folds:
        raise ValueError(f"{n_folds} folds need at least {n_folds} {what}, got {available}.")
