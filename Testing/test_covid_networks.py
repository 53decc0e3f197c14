"""CHS-Net building blocks, networks and loss (seed 003): shapes, references and choices."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lungai.covid.blocks import (
    HybridPool2d,
    InceptionConv,
    ResidualInceptionBlock,
    SpectralDepthAttention,
    SpectralSpatialAttention,
    SSDAttention,
    max_pool_2x2,
    max_pool_3x3_same,
)
from lungai.covid.losses import bce_dice_loss, soft_dice_loss
from lungai.covid.raiunet import PAPER_WIDTHS, CHSNet, RAIUNet
from lungai.covid.spectral import global_spectral_pool, spectral_lowpass2d, spectral_pool2d
from lungai.timing import count_parameters

TINY = (4, 8, 8, 8, 8)


def numpy_spectral_pool(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Reference: centred DFT crop with numpy, scaled so the mean is kept."""
    h, w = image.shape
    spectrum = np.fft.fftshift(np.fft.fft2(image))
    top, left = h // 2 - out_h // 2, w // 2 - out_w // 2
    kept = spectrum[top : top + out_h, left : left + out_w]
    return np.real(np.fft.ifft2(np.fft.ifftshift(kept))) * (out_h * out_w) / (h * w)


@pytest.mark.parametrize("shape", [(8, 8), (6, 10), (7, 9)])
def test_spectral_pool_matches_numpy_fft_and_halves_size(shape):
    rng = np.random.default_rng(0)
    image = rng.normal(size=shape)
    out = (shape[0] // 2, shape[1] // 2)
    pooled = spectral_pool2d(torch.tensor(image)[None, None], out)[0, 0].numpy()
    assert pooled.shape == out
    np.testing.assert_allclose(pooled, numpy_spectral_pool(image, *out), atol=1e-10)
    assert pooled.mean() == pytest.approx(image.mean(), abs=0.2)  # low-pass keeps the DC term


def test_spectral_pool_keeps_a_smooth_image_and_a_constant_exactly():
    y, x = np.mgrid[0:16, 0:16]
    smooth = np.cos(2 * np.pi * x / 16) + 3.0  # one low frequency plus DC
    pooled = spectral_pool2d(torch.tensor(smooth)[None, None], (8, 8))[0, 0].numpy()
    np.testing.assert_allclose(pooled, smooth[::2, ::2], atol=1e-10)


def test_spectral_lowpass_keeps_size_and_removes_high_frequencies():
    y, x = np.mgrid[0:16, 0:16]
    low, high = np.cos(2 * np.pi * x / 16), np.cos(2 * np.pi * 7 * y / 16)
    filtered = spectral_lowpass2d(torch.tensor(low + high)[None, None])[0, 0].numpy()
    assert filtered.shape == (16, 16)
    np.testing.assert_allclose(filtered, low, atol=1e-10)


def test_spectral_lowpass_equals_the_2d_fft_band_limit_and_trains_after_inference_mode():
    """The separable form against the 2-D FFT definition (numpy), on sizes even and odd."""
    rng = np.random.default_rng(1)
    for shape in [(16, 16), (12, 20), (9, 7)]:
        image = rng.normal(size=(2, 3, *shape))
        spectrum = np.fft.rfft2(image)
        rows = np.abs(np.fft.fftfreq(shape[0])) < 0.25
        cols = np.fft.rfftfreq(shape[1]) < 0.25
        expected = np.fft.irfft2(spectrum * (rows[:, None] & cols[None, :]), s=shape)
        np.testing.assert_allclose(spectral_lowpass2d(torch.tensor(image)).numpy(), expected, atol=1e-10)
    x = torch.rand(2, 3, 12, 20)
    with torch.inference_mode():  # the cached operators are built here first ...
        spectral_lowpass2d(x), spectral_pool2d(x, (6, 10)), global_spectral_pool(x, (1,))
    leaf = x.clone().requires_grad_()  # ... and still serve training
    (
        spectral_lowpass2d(leaf).sum() + spectral_pool2d(leaf, (6, 10)).sum() + global_spectral_pool(leaf).sum()
    ).backward()
    assert leaf.grad is not None and torch.isfinite(leaf.grad).all()


@pytest.mark.parametrize("shape", [(16, 16), (9, 14), (1, 5)])
def test_max_pools_equal_pytorch_pooling(shape):
    x = torch.randn(2, 3, *shape)
    x[0, 0] = 0.0  # ties, as after a ReLU
    assert torch.equal(max_pool_3x3_same(x), F.max_pool2d(x, 3, stride=1, padding=1))
    if min(shape) >= 2:
        assert torch.equal(max_pool_2x2(x), F.max_pool2d(x, 2))


def numpy_band_energy(values: np.ndarray, axes: tuple[int, ...], band: int = 3) -> np.ndarray:
    """Reference P_gsp: energy of the centred band x band block of the mean-normalised DFT over ``axes``."""
    spectrum = np.fft.fftshift(np.fft.fftn(values, axes=axes), axes=axes) / np.prod([values.shape[a] for a in axes])
    for axis in axes:
        size = values.shape[axis]
        spectrum = np.take(spectrum, range(size // 2 - band // 2, size // 2 - band // 2 + band), axis=axis)
    return np.sqrt((np.abs(spectrum) ** 2).sum(axis=axes, keepdims=True))


def test_global_spectral_pool_over_space_is_low_band_energy_not_the_mean():
    y, x = np.mgrid[0:16, 0:16]
    flat = np.ones((16, 16))
    structured = 1 + np.cos(2 * np.pi * x / 16)  # same mean, coarse structure
    fine = flat + np.cos(np.pi * x) * np.cos(np.pi * y)  # same mean, checkerboard (highest frequency)
    maps = torch.tensor(np.stack([flat, structured, fine]))[None]
    values = global_spectral_pool(maps, (-2, -1), band=3)[0, :, 0, 0].numpy()
    # Average pooling gives 1, 1, 1; max pooling 1, 2, 2. The band energy: DC 1 and two coefficients of 1/2 for
    # the cosine; the checkerboard is outside the band.
    np.testing.assert_allclose(values, [1.0, np.sqrt(1 + 2 * 0.5**2), 1.0], atol=1e-12)
    assert global_spectral_pool(maps, (-2, -1), band=1)[0, 1].item() == pytest.approx(1.0)  # band 1 = |mean|
    rng = np.random.default_rng(0)
    random = rng.normal(size=(2, 5, 9, 12))
    np.testing.assert_allclose(
        global_spectral_pool(torch.tensor(random), (-2, -1)).numpy(), numpy_band_energy(random, (2, 3)), atol=1e-12
    )


def test_global_spectral_pool_over_channels_gives_one_map():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(2, 6, 5, 4))
    pooled = global_spectral_pool(torch.tensor(features), (1,), band=3).numpy()
    assert pooled.shape == (2, 1, 5, 4)
    np.testing.assert_allclose(pooled, numpy_band_energy(features, (1,)), atol=1e-12)
    assert not np.allclose(pooled, np.abs(features.mean(axis=1, keepdims=True)))  # not channel average pooling


@pytest.mark.parametrize("spectral", [True, False])
def test_hybrid_pooling_shapes(spectral):
    x = torch.randn(2, 5, 12, 16)
    assert HybridPool2d(5, 7, mode="valid", spectral=spectral)(x).shape == (2, 7, 6, 8)
    assert HybridPool2d(5, 7, mode="same", spectral=spectral)(x).shape == (2, 7, 12, 16)
    assert len(list(HybridPool2d(5, 7, spectral=spectral).fuse.parameters())[0][0]) == (10 if spectral else 5)


def test_inception_and_residual_block_shapes():
    x = torch.randn(2, 3, 16, 16)
    assert InceptionConv(3, 6)(x).shape == (2, 6, 16, 16)
    block = ResidualInceptionBlock(3, 6)
    assert block(x).shape == (2, 6, 16, 16)
    assert (block(x) >= 0).all()  # ReLU after the residual sum
    kernels = sorted(branch[0].depthwise.kernel_size[0] for branch in InceptionConv(3, 6).branches)
    assert kernels == [1, 3, 5]  # Eq. 3 kernel sizes


def set_conv(conv: torch.nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
    with torch.no_grad():
        conv.weight.copy_(weight.reshape(conv.weight.shape))
        if bias is not None:
            conv.bias.copy_(bias)


def bn_eval(x: torch.Tensor) -> torch.Tensor:
    """A fresh BatchNorm in eval mode: x / sqrt(1 + eps)."""
    return x / np.sqrt(1 + 1e-5)


def test_depth_descriptor_and_volume_follow_eqs_8_9():
    torch.manual_seed(0)
    p = 4
    depth = SpectralDepthAttention(p).eval()
    w1, b1 = torch.rand(p // 2, p) + 0.5, torch.full((p // 2,), 0.1)  # positive: the hidden ReLU passes
    w2, b2 = torch.randn(p, p // 2), torch.tensor([2.0, -50.0, 0.5, 1.0])  # channel 1 is switched off by ReLU
    w3 = torch.randn(p, p)
    set_conv(depth.squeeze, w1, b1)
    set_conv(depth.excite, w2, b2)
    set_conv(depth.refine[0], w3)
    features = torch.randn(2, p, 8, 8)

    def descriptor(pooled: np.ndarray) -> np.ndarray:
        hidden = np.maximum(pooled @ w1.numpy().T + b1.numpy(), 0)  # Eq. 8, first ReLU 1x1 convolution
        return np.maximum(hidden @ w2.numpy().T + b2.numpy(), 0)  # second ReLU 1x1 convolution

    expected = descriptor(numpy_band_energy(features.numpy(), (2, 3))[:, :, 0, 0])
    a_d = depth.attention(features)[:, :, 0, 0].detach().numpy()
    np.testing.assert_allclose(a_d, expected, rtol=1e-5, atol=1e-5)
    assert (a_d[:, 1] == 0).all() and a_d.max() > 1  # ReLU gates: exactly 0 and above 1, which no sigmoid gives
    with_average_pooling = descriptor(features.numpy().mean(axis=(2, 3)))
    assert not np.allclose(a_d, with_average_pooling, atol=1e-3)  # average pooling would not pass this test
    volume = depth(features).detach()
    expected_volume = torch.relu(
        bn_eval(torch.einsum("oc,nchw->nohw", w3, torch.tensor(expected).float()[..., None, None] * features))
    )
    torch.testing.assert_close(volume, expected_volume, rtol=1e-4, atol=1e-5)


def test_spatial_descriptor_and_volume_follow_eqs_10_12():
    torch.manual_seed(1)
    cs, p = 3, 4
    spatial = SpectralSpatialAttention(cs, p).eval()
    w_down, w_gate, w_desc, b_desc, w_out = (
        torch.randn(p, cs, 2, 2),
        torch.randn(p, p),
        torch.randn(p, p),
        torch.randn(p),
        torch.randn(cs, cs),
    )
    set_conv(spatial.skip_down, w_down)
    set_conv(spatial.gate_proj, w_gate)
    set_conv(spatial.descriptor, w_desc, b_desc)
    set_conv(spatial.refine[0], w_out)
    skip, gate = torch.randn(2, cs, 8, 8), torch.randn(2, p, 4, 4)

    gamma = torch.relu(bn_eval(F.conv2d(skip, w_down, stride=2) + torch.einsum("oc,nchw->nohw", w_gate, gate)))
    activated = torch.relu(torch.einsum("oc,nchw->nohw", w_desc, gamma) + b_desc[None, :, None, None]).numpy()

    def descriptor(pooled: np.ndarray) -> torch.Tensor:  # Eq. 11: Up(sigma(.)) to the skip's grid
        return F.interpolate(torch.sigmoid(torch.tensor(pooled)).float(), size=(8, 8), mode="bilinear")

    expected = descriptor(numpy_band_energy(activated, (1,)))
    a_s = spatial.attention(skip, gate).detach()
    assert a_s.shape == (2, 1, 8, 8) and (a_s >= 0.5).all() and (a_s < 1).all()  # sigmoid of a non-negative
    torch.testing.assert_close(a_s, expected, rtol=1e-4, atol=1e-5)
    with_average_pooling = descriptor(activated.mean(axis=1, keepdims=True))
    assert not torch.allclose(a_s, with_average_pooling, atol=1e-3)  # average pooling would not pass
    volume = spatial(skip, gate).detach()
    expected_volume = torch.relu(bn_eval(torch.einsum("oc,nchw->nohw", w_out, expected * skip)))
    torch.testing.assert_close(volume, expected_volume, rtol=1e-4, atol=1e-5)


def test_ssd_attention_chains_depth_then_spatial():
    skip, gate = torch.randn(2, 4, 16, 16), torch.randn(2, 8, 8, 8)
    ssd = SSDAttention(4, 8).eval()
    assert ssd(skip, gate).shape == (2, 4, 16, 16)
    torch.testing.assert_close(ssd(skip, gate), ssd.spatial(ssd.depth(skip), gate))


@pytest.mark.parametrize(
    "switches",
    [dict(), dict(rib=False, hybrid_pool=False, ssd=False), dict(ssd=False), dict(hybrid_pool=False, ssd=False)],
)
def test_raiunet_shapes_for_every_ablation_variant(switches):
    model = RAIUNet(1, 1, TINY, **switches)
    assert model(torch.randn(2, 1, 32, 48)).shape == (2, 1, 32, 48)
    with pytest.raises(ValueError, match="divisible by 16"):
        model(torch.randn(1, 1, 40, 40))


def test_ablation_switches_change_the_network():
    bu = RAIUNet(1, 1, TINY, rib=False, hybrid_pool=False, ssd=False)
    assert not any(isinstance(m, (ResidualInceptionBlock, HybridPool2d, SSDAttention)) for m in bu.modules())
    full = RAIUNet(1, 1, TINY)
    kinds = {type(m) for m in full.modules()}
    assert {ResidualInceptionBlock, HybridPool2d, SSDAttention} <= kinds


def test_paper_widths_grow_by_half_and_give_about_4_2_million_parameters():
    assert PAPER_WIDTHS == (49, 74, 110, 165, 248) == RAIUNet().widths
    assert all(1.45 < b / a < 1.55 for a, b in zip(PAPER_WIDTHS, PAPER_WIDTHS[1:]))  # "increase depth by 50%"
    assert count_parameters(RAIUNet()) == pytest.approx(4.2e6, rel=0.02)  # Table 3
    assert count_parameters(CHSNet(lung_input="channel")) > count_parameters(CHSNet(lung_input="mask"))


def test_decoder_dropout_is_active_only_in_training():
    model = RAIUNet(1, 1, TINY, dropout=0.5).eval()
    x = torch.randn(1, 1, 32, 32)
    assert torch.equal(model(x), model(x))
    model.train()
    torch.manual_seed(0)
    assert not torch.allclose(model(x), model(x))


def test_loss_equals_hand_computed_value():
    logits = torch.tensor([[[[0.0, 2.0], [-1.0, 1.0]]]])
    target = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])
    p = torch.sigmoid(logits).flatten().tolist()
    y = [0.0, 1.0, 0.0, 1.0]
    bce = -sum(t * np.log(q) + (1 - t) * np.log(1 - q) for t, q in zip(y, p)) / 4
    dice = 1 - (2 * sum(t * q for t, q in zip(y, p)) + 1) / (sum(t * t for t in y) + sum(q * q for q in p) + 1)
    assert bce_dice_loss(logits, target).item() == pytest.approx(0.5 * bce + 0.5 * dice, rel=1e-6)


def test_dice_loss_is_zero_for_empty_target_predicted_empty():
    assert soft_dice_loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4)).item() == 0.0


def test_cascade_mask_mode_never_reports_infection_outside_the_lungs():
    torch.manual_seed(0)
    model = CHSNet(lung=dict(widths=TINY), infection=dict(widths=TINY), lung_input="mask").eval()
    with torch.no_grad():
        model.lung = torch.nn.Conv2d(1, 1, 1)  # a stage 1 with known output: "lung" where the image > 0.5
        model.lung.weight.fill_(20.0)
        model.lung.bias.fill_(-10.0)
        model.infection.head.bias.fill_(50.0)  # stage 2 alone would say "infection" everywhere
        image = torch.rand(2, 1, 32, 32)
        out = model(image)
        lungs = torch.sigmoid(out["lung"]) > 0.5
        infection = torch.sigmoid(out["infection"]) > 0.5
    assert lungs.any() and (~lungs).any()
    assert not (infection & ~lungs).any()
    assert infection[lungs].all()


def test_member_ensemble_is_the_mean_probability_of_its_members():
    from lungai.ensemble import ProbabilityMean

    torch.manual_seed(0)
    members = [RAIUNet(widths=TINY) for _ in range(3)]
    ensemble = ProbabilityMean(members).eval()
    image = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        expected = torch.stack([torch.sigmoid(m.eval()(image)) for m in members]).mean(0)
        got = torch.sigmoid(ensemble(image))
    assert torch.allclose(got, expected, atol=1e-6)
    assert not torch.allclose(got, torch.sigmoid(members[0](image)), atol=1e-3)  # not just the first member
    with pytest.raises(ValueError, match="at least 2"):
        ProbabilityMean(members[:1])


def test_chsnet_with_two_infection_members_round_trips_through_a_checkpoint(tmp_path):
    from lungai.checkpoint import load_model
    from lungai.covid.model import assemble_chsnet, save_chsnet
    from lungai.ensemble import ProbabilityMean

    torch.manual_seed(0)
    config = dict(widths=TINY)
    lung, members = RAIUNet(**config), ProbabilityMean([RAIUNet(in_channels=2, **config) for _ in range(2)])
    model, chsnet_config = assemble_chsnet(lung, config, members, dict(config, in_channels=2), "channel")
    assert chsnet_config["infection_members"] == 2
    save_chsnet(tmp_path / "m.pt", model, chsnet_config, input_size=32, training_data="test")
    loaded, _ = load_model(tmp_path / "m.pt", "cpu", expected_model="chsnet")
    image = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(image)["infection"], model(image)["infection"])
    with pytest.raises(ValueError, match="infection_members"):
        CHSNet(infection_members=0)


def test_cascade_channel_mode_feeds_two_channels():
    model = CHSNet(lung=dict(widths=TINY), infection=dict(widths=TINY), lung_input="channel")
    assert model.infection.encoders[0].inception[0].branches[0][0].depthwise.in_channels == 2
    assert model(torch.rand(1, 1, 32, 32))["infection"].shape == (1, 1, 32, 32)
    with pytest.raises(ValueError, match="lung_input"):
        CHSNet(lung_input="both")


def test_folded_batchnorm_copy_gives_the_same_logits_and_leaves_the_network_alone():
    from lungai.covid.folding import fold_batchnorm

    torch.manual_seed(0)
    model = CHSNet(lung={"widths": TINY}, infection={"widths": TINY}, lung_input="channel").train()
    with torch.no_grad():
        for _ in range(3):  # running statistics away from their defaults
            model(torch.rand(4, 1, 32, 32) * 2 + 0.5)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_batchnorm(model)
    x = torch.rand(3, 1, 32, 32)
    with torch.inference_mode():
        reference, result = model(x), folded(x)
    for key in ("lung", "infection"):
        scale = float(reference[key].abs().max())
        torch.testing.assert_close(result[key], reference[key], rtol=1e-4, atol=1e-4 * scale)
    norms = [m for m in folded.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) < sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) / 4
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_inception_convolution_without_autograd_equals_the_concatenating_path():
    torch.manual_seed(0)
    block = InceptionConv(3, 5).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        fast = block(x)
    assert torch.equal(fast, block(x).detach())  # autograd on: the torch.cat path
