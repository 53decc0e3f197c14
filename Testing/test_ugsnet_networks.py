"""Shapes and documented behaviour of the UGS-Net blocks (seed 001, Sec. III)."""

import math

import numpy as np
import pytest
import torch
from skimage.filters import threshold_otsu

from lungai.architectures import build_architecture
from lungai.ugsnet.blocks import (
    AttentionGate,
    DoubleConv,
    FeatureAwareAttentionBlock,
    GaborFilter,
    OtsuFilter,
    SelfAttention2d,
    UpConv,
    gabor_bank,
    otsu_thresholds,
)
from lungai.ugsnet.inference import confidence_masks
from lungai.ugsnet.networks import (
    AttentionUNetBackbone,
    IntersectionUnionConstrainingModule,
    UncertaintyAwareModule,
    multi_confidence_mask,
)

TINY = (4, 8, 16, 32, 64)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_basic_block_shapes():
    x = torch.randn(2, 6, 16, 16)
    assert DoubleConv(6, 10)(x).shape == (2, 10, 16, 16)
    assert UpConv(6, 3)(x).shape == (2, 3, 32, 32)
    assert AttentionGate(6)(x, x).shape == (2, 6, 16, 16)
    for pool in (1, 4, 8):
        assert SelfAttention2d(6, pool)(x).shape == (2, 6, 16, 16)
    assert GaborFilter(6)(x).shape == (2, 6, 16, 16)
    assert GaborFilter(6).responses(x).shape == (2, 24, 16, 16)
    assert OtsuFilter()(x).shape == (2, 6, 16, 16)
    assert FeatureAwareAttentionBlock(6, OtsuFilter())(x).shape == (2, 12, 16, 16)


def test_self_attention_starts_as_identity_and_attends_once_gamma_moves():
    block = SelfAttention2d(8, pool=4)
    x = torch.randn(1, 8, 16, 16)
    assert torch.equal(block(x), x)
    with torch.no_grad():
        block.gamma.fill_(1.0)
    assert not torch.allclose(block(x), x)


def test_faab_keeps_its_input_as_the_first_half():
    block = FeatureAwareAttentionBlock(4, GaborFilter(4))
    x = torch.randn(2, 4, 16, 16)
    assert torch.equal(block(x)[:, :4], x)


def test_backbone_uam_iucm_shapes():
    x = torch.randn(2, 1, 64, 64)
    for attention in (True, False):
        assert AttentionUNetBackbone(1, TINY, attention)(x).shape == (2, 4, 64, 64)
    r = torch.randn(2, 8, 32, 32)
    feats, logits = UncertaintyAwareModule(8)(r)
    assert {k: tuple(v.shape) for k, v in feats.items()} == {k: (2, 4, 32, 32) for k in ("lc", "hc", "uni")}
    assert {k: tuple(v.shape) for k, v in logits.items()} == {
        k: (2, 1, 32, 32) for k in ("union", "intersection", "uni")
    }
    iucm = IntersectionUnionConstrainingModule(4)
    augmented, distances = iucm(r, feats)
    assert augmented.shape == (2, 24, 32, 32)
    assert all(d.shape == (2, 1, 32, 32) for d in distances.values())
    # s_z is the per-pixel L2 distance between R'_z and R over channels, divided by sqrt(C)
    refined = iucm.blocks["hc"](feats["hc"])
    expected = ((refined - r) ** 2).sum(1, keepdim=True).sqrt() / math.sqrt(8)
    assert torch.allclose(distances["hc"], expected, atol=1e-5)
    assert torch.allclose(augmented[:, 16:], expected * refined, atol=1e-5)


@pytest.mark.parametrize(
    "name,heads",
    [
        ("ugsnet", {"final", "union", "intersection", "uni"}),
        ("ugsnet_v1", {"final", "union", "intersection", "uni"}),
        ("ugsnet_unet", {"final"}),
        ("ugsnet_attention_unet", {"final"}),
    ],
)
def test_registered_architectures_output_logits_per_head(name, heads):
    model = build_architecture(name, {"features": list(TINY)})
    out = model(torch.randn(3, 1, 64, 64))
    assert set(out) == heads
    assert all(v.shape == (3, 1, 64, 64) for v in out.values())


def test_v1_has_no_iucm_and_ugsnet_has_three_faabs():
    assert build_architecture("ugsnet_v1", {"features": list(TINY)}).iucm is None
    blocks = build_architecture("ugsnet", {"features": list(TINY)}).iucm.blocks
    assert isinstance(blocks["uni"].filter, GaborFilter) and isinstance(blocks["lc"].filter, GaborFilter)
    assert isinstance(blocks["hc"].filter, OtsuFilter)


def test_gabor_bank_is_zero_mean_and_orientation_selective():
    bank = gabor_bank(4, 7)
    assert bank.shape == (4, 7, 7)
    assert torch.allclose(bank.sum((1, 2)), torch.zeros(4), atol=1e-6)
    gabor = GaborFilter(1)
    assert torch.allclose(gabor.responses(torch.full((1, 1, 32, 32), 3.0))[..., 8:-8, 8:-8], torch.zeros(1), atol=1e-5)
    cols = torch.arange(32.0)
    stripes = torch.cos(2 * math.pi * 0.25 * cols).expand(32, 32)[None, None]  # varies along x
    energy = gabor.responses(stripes)[0, :, 8:-8, 8:-8].pow(2).mean((1, 2))
    assert energy.argmax() == 0  # theta = 0: the wave along x
    assert energy[0] > 20 * energy[2]  # theta = 90 degrees barely responds
    assert not any(p.requires_grad for p in gabor.buffers())


def test_otsu_threshold_matches_skimage_and_soft_mask_keeps_the_bright_class():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0.0, 0.3, 700), rng.normal(3.0, 0.3, 324)]).astype(np.float32)
    x = torch.from_numpy(values.reshape(1, 1, 32, 32))
    t = float(otsu_thresholds(x, bins=256))
    assert abs(t - threshold_otsu(values, nbins=256)) < 2 * (values.max() - values.min()) / 256
    x.requires_grad_(True)
    y = OtsuFilter()(x)
    bright, dark = x.detach() > t + 0.5, x.detach() < t - 0.5
    assert torch.allclose(y[bright], x[bright], rtol=1e-2)
    assert y[dark].abs().max() < 0.05 * x.detach()[dark].abs().max() + 1e-3
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_mcm_and_confidence_regions():
    union = torch.tensor([[[[5.0, 5.0, -5.0]]]])
    inter = torch.tensor([[[[5.0, -5.0, 5.0]]]])
    mcm = multi_confidence_mask(union, inter)
    assert mcm[0, 0, 0, 0] > 0.99 and 0.45 < mcm[0, 0, 0, 1] < 0.55 and float(mcm.min()) >= 0
    probs = {
        "final": np.array([[[0.9, 0.6, 0.1]]]),
        "union": np.array([[[0.9, 0.9, 0.1]]]),
        "intersection": np.array([[[0.9, 0.1, 0.9]]]),
    }
    regions = confidence_masks(probs)
    # HC lies in the union by construction: the intersection head firing outside the union is not HC
    assert regions.high.tolist() == [[[True, False, False]]]
    assert regions.low.tolist() == [[[False, True, False]]]
    assert not (regions.high & ~regions.union).any() and not (regions.high & regions.low).any()
