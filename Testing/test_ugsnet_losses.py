"""UGS-Net loss (seed 001 Eq. 2-4) against hand-computed values; padded reader masks do not count."""

import math

import pytest
import torch

from lungai.ugsnet.losses import UGSNetLoss, annotation_fusion_loss, pick_random_annotation


def bce(logit: float, target: float) -> float:
    p = 1 / (1 + math.exp(-logit))
    return -(target * math.log(p) + (1 - target) * math.log(1 - p))


def test_fusion_bce_equals_hand_computed_mean_over_real_readers_only():
    logits = torch.tensor([0.0, 2.0]).view(1, 1, 1, 2)
    masks = torch.tensor([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]).view(1, 4, 1, 2)
    reader = [(bce(0, a) + bce(2, b)) / 2 for a, b in ([1, 1], [0, 1], [1, 0])]
    expected = sum(reader) / 3  # 3 real readers, slot 4 is padding
    got = annotation_fusion_loss(logits, masks, torch.tensor([3]), "bce")
    assert got.item() == pytest.approx(expected, rel=1e-6)
    masks_changed_padding = masks.clone()
    masks_changed_padding[:, 3] = 0.0
    assert annotation_fusion_loss(logits, masks_changed_padding, torch.tensor([3])).item() == pytest.approx(expected)


def test_fusion_dice_equals_hand_computed():
    logits = torch.tensor([0.0, 2.0]).view(1, 1, 1, 2)
    p = [0.5, 1 / (1 + math.exp(-2))]
    masks = torch.zeros(1, 4, 1, 2)
    masks[0, 0] = torch.tensor([1.0, 1.0])
    masks[0, 1] = torch.tensor([0.0, 1.0])
    d1 = 1 - (2 * (p[0] + p[1]) + 1) / (p[0] + p[1] + 2 + 1)
    d2 = 1 - (2 * p[1] + 1) / (p[0] + p[1] + 1 + 1)
    got = annotation_fusion_loss(logits, masks, torch.tensor([2]), "dice")
    assert got.item() == pytest.approx((d1 + d2) / 2, rel=1e-6)


def test_samples_with_different_reader_counts_weigh_equally():
    logits = torch.zeros(2, 1, 1, 1)
    masks = torch.zeros(2, 4, 1, 1)
    masks[0, :2] = 1.0  # 2 readers, both say nodule
    masks[1, :4] = torch.tensor([1.0, 0.0, 0.0, 0.0]).view(4, 1, 1)  # 4 readers
    got = annotation_fusion_loss(logits, masks, torch.tensor([2, 4]))
    assert got.item() == pytest.approx(math.log(2))  # BCE at p=0.5 is log 2 for any target


def test_total_loss_weights_and_parts():
    torch.manual_seed(0)
    out = {k: torch.randn(2, 1, 4, 4) for k in ("final", "union", "intersection", "uni")}
    masks = (torch.rand(2, 4, 4, 4) > 0.5).float()
    n = torch.tensor([2, 3])
    masks[0, 2:] = 0
    masks[1, 3:] = 0
    valid = torch.arange(4)[None, :, None, None] < n[:, None, None, None]
    batch = {
        "masks": masks,
        "n_readers": n,
        "union": (masks * valid).amax(1, keepdim=True),
        "intersection": torch.where(valid, masks, torch.ones_like(masks)).amin(1, keepdim=True),
    }
    total, parts = UGSNetLoss()(out, batch)
    f = torch.nn.functional.binary_cross_entropy_with_logits
    mcm = f(out["union"], batch["union"]) + f(out["intersection"], batch["intersection"])
    phi_a = annotation_fusion_loss(out["uni"], masks, n)
    phi_b = annotation_fusion_loss(out["final"], masks, n)
    assert total.item() == pytest.approx((0.5 * mcm + 0.5 * phi_a + phi_b).item(), rel=1e-6)
    assert parts["loss_mcm"] == pytest.approx(mcm.item(), rel=1e-6)
    weighted, _ = UGSNetLoss(1.0, 0.0, 0.0)(out, batch)
    assert weighted.item() == pytest.approx(mcm.item(), rel=1e-6)


def test_random_annotation_is_always_a_real_one():
    masks = torch.zeros(3, 4, 1, 1)
    for reader in range(4):
        masks[:, reader] = reader + 1  # slot value = reader number
    n = torch.tensor([1, 2, 3])
    seen = set()
    for seed in range(60):
        picked = pick_random_annotation(masks, n, torch.Generator().manual_seed(seed)).view(3)
        assert picked[0] == 1 and picked[1] <= 2 and picked[2] <= 3
        seen.update(picked.tolist())
    assert seen == {1.0, 2.0, 3.0}


def test_sample_without_real_annotation_is_rejected():
    with pytest.raises(ValueError, match="at least one real annotation"):
        annotation_fusion_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 4, 2, 2), torch.tensor([0]))
