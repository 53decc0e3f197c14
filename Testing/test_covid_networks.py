"""CHS-Net building blocks, networks and loss (seed 003): shapes, references and choices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lungai.covid.blocks import (
    HybridPool2d,
    InceptionConv,
    ResidualInceptionBlock,
    SpectralDepthAttention,
    SpectralSpatialAttention,
    SSDAttention,
)
from lungai.covid.losses import bce_dice_loss, soft_dice_loss
from lungai.covid.raiunet import CHSNet, RAIUNet
from lungai.covid.spectral import global_spectral_pool2d, spectral_lowpass2d, spectral_pool2d
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


def test_global_spectral_pool_is_low_band_energy_not_the_mean():
    y, x = np.mgrid[0:16, 0:16]
    flat = np.ones((16, 16))
    structured = 1 + np.cos(2 * np.pi * x / 16)  # same mean, coarse structure
    values = global_spectral_pool2d(torch.tensor(np.stack([flat, structured]))[None], band=3)[0, :, 0, 0].numpy()
    assert values[0] == pytest.approx(1.0)
    assert values[1] == pytest.approx(np.sqrt(1 + 2 * 0.5**2))  # DC 1 and two coefficients of 1/2
    assert global_spectral_pool2d(torch.tensor(structured)[None, None], band=1).item() == pytest.approx(1.0)


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


def test_ssd_attention_shapes_and_ranges():
    skip, gate = torch.randn(2, 4, 16, 16), torch.randn(2, 8, 8, 8)
    depth = SpectralDepthAttention(4)
    descriptor = depth.attention(skip)
    assert descriptor.shape == (2, 4, 1, 1) and ((descriptor > 0) & (descriptor < 1)).all()
    spatial = SpectralSpatialAttention(4, 8)
    a_s = spatial.attention(skip, gate)
    assert a_s.shape == (2, 1, 16, 16) and ((a_s > 0) & (a_s < 1)).all()
    assert SSDAttention(4, 8)(skip, gate).shape == (2, 4, 16, 16)


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


def test_default_widths_parameter_count():
    # Reported next to the paper's 4.2 M (Table 3) in bench/covid/latency.md.
    assert count_parameters(RAIUNet()) == 2_560_761
    assert count_parameters(CHSNet(lung_input="mask")) == 2 * 2_560_761
    assert count_parameters(CHSNet(lung_input="channel")) > 2 * 2_560_761  # stage 2 takes a second channel


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


def test_cascade_channel_mode_feeds_two_channels():
    model = CHSNet(lung=dict(widths=TINY), infection=dict(widths=TINY), lung_input="channel")
    assert model.infection.encoders[0].inception[0].branches[0][0].depthwise.in_channels == 2
    assert model(torch.rand(1, 1, 32, 32))["infection"].shape == (1, 1, 32, 32)
    with pytest.raises(ValueError, match="lung_input"):
        CHSNet(lung_input="both")
