"""The fast UGS-Net blocks compute what the plain statements of their equations compute (issue 15).

Each reference below re-states one block the direct way (the formulation the block used before it was made fast:
explicit attention matrix, depthwise bank then 1x1 mix, one Otsu histogram per map, concatenated R'_z); outputs
and gradients must agree to float tolerance.
"""

import copy
import math

import pytest
import torch
from torch.nn import functional as F

from lungai.architectures import build_architecture
from lungai.checkpoint import load_model, save_checkpoint
from lungai.registry import registry_path
from lungai.ugsnet.blocks import (
    FeatureAwareAttentionBlockV1,
    GaborFilter,
    NearestUpsampleConv2d,
    OtsuFilter,
    SelfAttention2d,
    otsu_thresholds,
)
from lungai.ugsnet.networks import UGSNet, UncertaintyAwareModule
from lungai.ugsnet.task import build_model, model_config

TINY = (4, 8, 16, 32, 64)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def attention_reference(block: SelfAttention2d, x: torch.Tensor, scale: float, pool: int) -> torch.Tensor:
    """softmax(q k^T * scale) v with the (HW x HW') matrix built explicitly (bmm), no residual."""
    b, c, h, w = x.shape
    pooled = F.avg_pool2d(x, pool) if pool > 1 else x
    q = block.query(x).flatten(2).transpose(1, 2)  # (B, HW, d)
    k = block.key(pooled).flatten(2)  # (B, d, HW')
    v = block.value(pooled).flatten(2)  # (B, C, HW')
    attention = torch.softmax(torch.bmm(q, k) * scale, dim=-1)
    return torch.bmm(v, attention.transpose(1, 2)).view(b, c, h, w)


@pytest.mark.parametrize("pool,scaled", [(1, True), (1, False), (4, True), (4, False)])
def test_attention_matches_the_explicit_matrix_form(pool, scaled):
    block = SelfAttention2d(16, pool, scaled)
    with torch.no_grad():
        block.gamma.fill_(0.7)
    x = torch.randn(2, 16, 16, 16, requires_grad=True)
    scale = 1 / math.sqrt(2) if scaled else 1.0  # d = 16 / 8
    expected = 0.7 * attention_reference(block, x, scale, pool) + x
    got = block(x)
    assert torch.allclose(got, expected, atol=1e-5)
    grad = torch.randn_like(got)
    grads = torch.autograd.grad(got, [x, block.query.weight, block.value.weight], grad)
    expected_grads = torch.autograd.grad(expected, [x, block.query.weight, block.value.weight], grad)
    assert all(torch.allclose(g, e, atol=1e-4) for g, e in zip(grads, expected_grads))


def test_default_attention_is_full_and_scaled_as_vaswani():
    block = SelfAttention2d(32)
    assert isinstance(block.pool, torch.nn.Identity)
    assert block.scale == pytest.approx(1 / math.sqrt(4))  # d = 32 / 8
    x = torch.randn(1, 32, 8, 8)
    # every output position depends on every input position (no pooling, no locality)
    x.requires_grad_(True)
    block.attend(x)[0, :, 0, 0].sum().backward()
    assert (x.grad[0].abs().sum(0) > 0).all()


@pytest.mark.parametrize("train", [True, False])
def test_gabor_filter_as_one_convolution_matches_bank_then_mix(train):
    gabor = GaborFilter(6).train(train)
    with torch.no_grad():
        gabor.mix[0].weight.normal_()
        gabor.mix[1].running_mean.normal_()
        gabor.mix[1].running_var.uniform_(0.5, 2.0)
    x = torch.randn(3, 6, 20, 20, requires_grad=True)
    expected = gabor.mix(gabor.responses(x))  # grouped Gabor convolution, then 1x1 mix, BN, ReLU
    gabor.mix[1].num_batches_tracked.zero_()
    got = gabor(x)
    assert torch.allclose(got, expected, atol=1e-4)
    grad = torch.randn_like(got)
    grads = torch.autograd.grad(got, [x, gabor.mix[0].weight], grad)
    expected_grads = torch.autograd.grad(expected, [x, gabor.mix[0].weight], grad)
    assert all(torch.allclose(g, e, atol=1e-3, rtol=1e-4) for g, e in zip(grads, expected_grads))


def otsu_reference(values: torch.Tensor, bins: int) -> float:
    """Otsu threshold of one map: its own histogram, then the between-class variance at every cut."""
    low, high = float(values.min()), float(values.max())
    width = max(high - low, 1e-12)
    index = ((values - low) / width * bins).long().clamp(0, bins - 1)
    hist = torch.bincount(index, minlength=bins).float()
    centres = low + (torch.arange(bins) + 0.5) / bins * width
    best, best_cut = -1.0, 0
    for cut in range(bins):
        w0, w1 = hist[: cut + 1].sum(), hist[cut + 1 :].sum()
        m0 = (hist[: cut + 1] * centres[: cut + 1]).sum() / max(float(w0), 1e-12)
        m1 = (hist[cut + 1 :] * centres[cut + 1 :]).sum() / max(float(w1), 1e-12)
        between = float(w0 * w1 * (m0 - m1) ** 2)
        if between > best:
            best, best_cut = between, cut
    return low + (best_cut + 1) / bins * width


def test_batched_otsu_matches_one_histogram_per_map():
    x = torch.randn(3, 5, 16, 16) * torch.rand(3, 5, 1, 1) * 4 + torch.randn(3, 5, 1, 1)
    x[0, 0, :8] += 5.0  # a clearly bimodal map
    got = otsu_thresholds(x, bins=32)
    assert got.shape == (3, 5, 1, 1)
    expected = torch.tensor([[otsu_reference(x[b, c].flatten(), 32) for c in range(5)] for b in range(3)])
    assert torch.allclose(got[..., 0, 0], expected, atol=1e-5)


def ugsnet_reference(model: UGSNet, x: torch.Tensor) -> torch.Tensor:
    """X_S the direct way: R'_z = concat(R_z, Gamma(A(R_z))), s_z = ||R'_z - R|| / sqrt(C),
    R_Aug = concat(s_z R'_z), X_S = fusion(concat(R, R_Aug))."""
    r = model.backbone(x)
    feats, _ = model.uam(r)
    augmented = []
    for name in ("uni", "lc", "hc"):
        refined = torch.cat(
            [feats[name], model.iucm.blocks[name].filter(model.iucm.blocks[name].attention(feats[name]))], 1
        )
        distance = torch.linalg.vector_norm(refined - r, dim=1, keepdim=True) / math.sqrt(r.shape[1])
        augmented.append(distance * refined)
    return model.fusion(torch.cat([r, torch.cat(augmented, 1)], 1))


def ugsnet_v1_reference(model: UGSNet, x: torch.Tensor) -> torch.Tensor:
    """V1 code's fusion: concat(R, R_z + gamma * Gamma(softmax(q k^T) v) for LC, HC, Uni) -> fusion conv."""
    r = model.backbone(x)
    feats, _ = model.uam(r)
    attended = []
    for name in ("lc", "hc", "uni"):
        block = model.v1_blocks[name]
        raw = attention_reference(block.attention, feats[name], 1.0, 1)
        attended.append(feats[name] + block.attention.gamma * block.filter(raw))
    return model.fusion(torch.cat([r, *attended], 1))


@pytest.mark.parametrize("name,reference", [("ugsnet", ugsnet_reference), ("ugsnet_v1", ugsnet_v1_reference)])
def test_training_step_matches_the_direct_formulation(name, reference):
    model = build_architecture(name, {"features": list(TINY)}).train()
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.shape == (1,):  # the attention gammas: make the attention and filters matter
                parameter.fill_(0.5)
    twin = copy.deepcopy(model)  # same weights and BN statistics for the reference pass
    x = torch.randn(2, 1, 32, 32)
    got = model(x)["final"]
    expected = reference(twin, x)
    assert torch.allclose(got, expected, atol=1e-5)
    grads = torch.autograd.grad(got.square().mean(), list(model.parameters()), allow_unused=True)
    expected_grads = torch.autograd.grad(expected.square().mean(), list(twin.parameters()), allow_unused=True)
    assert sum(g is not None for g in grads) > 100  # backbone, UAM branches, attention, filters, fusion
    for g, e in zip(grads, expected_grads):
        assert (g is None and e is None) or torch.allclose(g, e, atol=1e-5, rtol=1e-4)


def test_v1_has_its_attention_and_filter_blocks():
    model = build_architecture("ugsnet_v1", {"features": list(TINY)})
    blocks = model.v1_blocks
    assert all(isinstance(b, FeatureAwareAttentionBlockV1) for b in blocks.values())
    assert isinstance(blocks["lc"].filter, GaborFilter) and isinstance(blocks["uni"].filter, GaborFilter)
    assert isinstance(blocks["hc"].filter, OtsuFilter)
    assert all(b.attention.scale == 1.0 and isinstance(b.attention.pool, torch.nn.Identity) for b in blocks.values())
    assert model.fusion[0][0].in_channels == 4 + 3 * 2  # R and the three attended branches


def test_checkpoints_keep_their_attention(tmp_path):
    # a header without the attention options is an earlier model: 8x pooled, unscaled attention
    legacy = UGSNet(1, TINY, attention_pool=8, attention_scaled=False)
    save_checkpoint(tmp_path / "legacy.pt", legacy, model_name="ugsnet", config={"features": list(TINY)})
    loaded, _ = load_model(tmp_path / "legacy.pt")
    attention = loaded.iucm.blocks["hc"].attention
    assert attention.pool.kernel_size == 8 and attention.scale == 1.0
    # new checkpoints store them: full scaled attention stays full
    model = build_model("ugsnet", TINY, attention_pool=1)
    save_checkpoint(tmp_path / "new.pt", model, model_name="ugsnet", config=model_config("ugsnet", TINY, 1))
    loaded, header = load_model(tmp_path / "new.pt")
    assert header["config"]["attention_pool"] == 1
    assert isinstance(loaded.iucm.blocks["hc"].attention.pool, torch.nn.Identity)
    # the bundled model was trained with the pooled attention
    bundled, _ = load_model(registry_path().parent / "ugsnet-lidc-w8.pt")
    assert bundled.iucm.blocks["uni"].attention.pool.kernel_size == 8


def test_upsample_conv_at_input_resolution_matches_upsample_then_conv():
    conv = NearestUpsampleConv2d(5, 3)
    x = torch.randn(2, 5, 7, 6, requires_grad=True)
    expected = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), conv.weight, padding=1)
    got = conv(x)
    assert got.shape == (2, 3, 14, 12)
    assert torch.allclose(got, expected, atol=1e-5)
    grad = torch.randn_like(got)
    grads = torch.autograd.grad(got, [x, conv.weight], grad)
    expected_grads = torch.autograd.grad(expected, [x, conv.weight], grad)
    assert all(torch.allclose(g, e, atol=1e-4) for g, e in zip(grads, expected_grads))


def test_uam_as_one_convolution_matches_three_branches():
    uam = UncertaintyAwareModule(8).train()
    twin = copy.deepcopy(uam)
    r = torch.randn(2, 8, 16, 16, requires_grad=True)
    feats, logits = uam(r)
    expected = {name: branch(r) for name, branch in twin.branches.items()}  # each branch on its own
    assert all(torch.allclose(feats[name], expected[name], atol=1e-5) for name in expected)
    assert torch.allclose(logits["intersection"], twin.heads["intersection"](expected["hc"]), atol=1e-5)
    grads = torch.autograd.grad(sum(f.square().sum() for f in feats.values()), [r, uam.branches["hc"][0].weight])
    expected_grads = torch.autograd.grad(
        sum(f.square().sum() for f in expected.values()), [r, twin.branches["hc"][0].weight]
    )
    assert all(torch.allclose(g, e, atol=1e-4) for g, e in zip(grads, expected_grads))
