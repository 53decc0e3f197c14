"""Query strategies (USS, UVS, RVS, RSS), the slice budget and the weighted soft Dice loss."""

import numpy as np
import pytest
import torch

from lungai.al.losses import partial_annotation_loss, weighted_soft_dice_loss
from lungai.al.strategies import select_rss, select_rvs, select_uss, select_uvs, slice_budget, slice_candidates
from lungai.errors import InputError


def test_candidates_are_local_maxima_at_least_five_apart():
    profile = np.zeros(30)
    profile[[3, 6, 12, 14, 22]] = [0.5, 0.9, 0.4, 0.6, 0.3]
    # 3 and 6 are 3 apart: 6 (higher) wins; 12 and 14: 14 wins; 22 stands alone
    np.testing.assert_array_equal(slice_candidates(profile), [6, 14, 22])
    np.testing.assert_array_equal(slice_candidates(profile, min_distance=2), [3, 6, 12, 14, 22])
    picks = slice_candidates(np.random.default_rng(0).random(60))
    assert np.all(np.diff(picks) >= 5)


def test_end_slices_rule():
    rising = np.arange(10, dtype=float)  # maximum at the last slice
    falling = rising[::-1].copy()  # maximum at the first slice
    np.testing.assert_array_equal(slice_candidates(rising), [9])
    np.testing.assert_array_equal(slice_candidates(falling), [0])
    assert slice_candidates(rising, include_end_slices=False).size == 0
    # an end slice still respects the distance rule against a higher inner peak
    profile = np.array([0.5, 0.1, 0.2, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.6])
    np.testing.assert_array_equal(slice_candidates(profile), [3, 9])


def test_uss_ranks_candidates_across_volumes_and_skips_annotated():
    a = np.zeros(20)
    a[[2, 10, 17]] = [0.3, 0.8, 0.5]
    b = np.zeros(15)
    b[[4, 11]] = [0.7, 0.2]
    annotated = [np.zeros(20, bool), np.zeros(15, bool)]
    annotated[0][10] = True
    picks = select_uss([a, b], annotated, budget=3)
    assert [(q.volume, q.slice_index) for q in picks] == [(1, 4), (0, 17), (0, 2)]
    assert [q.uncertainty for q in picks] == sorted((q.uncertainty for q in picks), reverse=True)
    assert all(q.strategy == "uss" for q in picks)


def test_uvs_rvs_rss_counts_and_seeded_determinism():
    annotated = [np.zeros(10, bool) for _ in range(6)]
    annotated[2][:] = True  # volume 2 fully annotated already
    uvs = select_uvs([0.1, 0.5, 0.9, 0.3, 0.7, 0.2], annotated, budget=2)
    assert [q.volume for q in uvs] == [4, 1] and all(q.is_volume for q in uvs)
    rvs = select_rvs(annotated, budget=3, seed=7)
    assert len(rvs) == 3 and len({q.volume for q in rvs}) == 3 and 2 not in {q.volume for q in rvs}
    assert rvs == select_rvs(annotated, budget=3, seed=7)
    assert {q.volume for q in select_rvs(annotated, 5, seed=1)} == {0, 1, 3, 4, 5}
    rss = select_rss(annotated, budget=8, seed=3)
    assert len(rss) == 8 and len({(q.volume, q.slice_index) for q in rss}) == 8
    assert all(q.volume != 2 for q in rss) and rss == select_rss(annotated, budget=8, seed=3)
    assert rss != select_rss(annotated, budget=8, seed=4)


def test_rss_with_reference_draws_until_budget_foreground_slices():
    annotated = [np.zeros(10, bool) for _ in range(3)]
    foreground = [np.arange(10) < 3 for _ in range(3)]  # 9 foreground slices of 30
    picks = select_rss(annotated, budget=4, seed=0, foreground=foreground)
    assert sum(foreground[q.volume][q.slice_index] for q in picks) == 4
    assert foreground[picks[-1].volume][picks[-1].slice_index]


def test_budget_larger_than_pool_is_rejected():
    annotated = [np.zeros(4, bool), np.ones(4, bool)]
    with pytest.raises(InputError, match="larger than the pool"):
        select_rvs(annotated, budget=2)
    with pytest.raises(InputError, match="larger than the pool"):
        select_rss(annotated, budget=5)
    with pytest.raises(InputError, match="larger than the pool"):
        select_uss([np.zeros(4), np.zeros(4)], annotated, budget=5)


def test_slice_budget_is_a_third_of_the_volume_strategy_foreground_slices():
    assert slice_budget([24, 27, 30], volumes_per_iteration=1) == 9
    assert slice_budget([24, 27, 30], volumes_per_iteration=2) == 18


def test_weighted_dice_matches_eq2_and_ignores_unannotated_slices():
    torch.manual_seed(0)
    p = torch.rand(2, 1, 3, 8, 8, requires_grad=True)  # (B, C, Z, Y, X)
    y = (torch.rand(2, 1, 3, 8, 8) > 0.5).float()
    w = torch.zeros_like(y)
    w[:, :, 1] = 1.0  # only the middle slice is annotated
    loss = weighted_soft_dice_loss(p, y, w, eps=0.0)
    expected = 1 - 2 * (p[:, :, 1] * y[:, :, 1]).sum() / (y[:, :, 1].sum() + p[:, :, 1].sum())
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert torch.all(p.grad[:, :, [0, 2]] == 0) and torch.any(p.grad[:, :, 1] != 0)
    # no annotated voxel: loss 0, no gradient, no NaN
    q = torch.rand(1, 1, 4, 4, requires_grad=True)
    empty = weighted_soft_dice_loss(q, torch.ones_like(q), torch.zeros_like(q))
    empty.backward()
    assert float(empty.detach()) == 0.0 and torch.all(q.grad == 0)


def test_dice_plus_bce_also_ignores_unannotated_slices():
    torch.manual_seed(1)
    logits = torch.randn(2, 1, 3, 8, 8, requires_grad=True)
    y = (torch.rand(2, 1, 3, 8, 8) > 0.5).float()
    w = torch.zeros_like(y)
    w[:, :, 2] = 1.0
    loss = partial_annotation_loss(logits, y, w, "dice+bce")
    expected = partial_annotation_loss(logits, y, w, "dice") + torch.nn.functional.binary_cross_entropy_with_logits(
        logits[:, :, 2], y[:, :, 2]
    )
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert torch.all(logits.grad[:, :, :2] == 0) and torch.any(logits.grad[:, :, 2] != 0)
    with pytest.raises(ValueError, match="unknown loss"):
        partial_annotation_loss(logits, y, w, "focal")
