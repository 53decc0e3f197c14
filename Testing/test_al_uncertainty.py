"""MC dropout, predictive entropy (Eq. 1) and the slice/volume uncertainty summaries."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from lungai.al.networks import ALUNet, FastDropout, keep_mask
from lungai.al.uncertainty import (
    mc_dropout_mode,
    mc_mean_probabilities,
    predictive_entropy,
    slice_uncertainty,
    volume_uncertainty,
)
from lungai.errors import InputError


def _trained_bn_model(seed=0) -> ALUNet:
    """A tiny ALUNet whose BatchNorm running statistics are no longer the defaults."""
    torch.manual_seed(seed)
    model = ALUNet(channels=(4, 8, 16))
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(4, 1, 32, 32) * 3 + 1)
    return model.eval()


def test_binary_entropy_closed_form_and_maximum():
    p = np.array([0.0, 0.1, 0.25, 0.5, 0.9, 1.0], dtype=np.float32)[None]
    expected = [0.0] + [-q * math.log(q) - (1 - q) * math.log(1 - q) for q in (0.1, 0.25, 0.5, 0.9)] + [0.0]
    np.testing.assert_allclose(predictive_entropy(p, axis=0), expected, atol=1e-6)
    grid = np.linspace(0, 1, 101, dtype=np.float32)[None]
    entropy = predictive_entropy(grid, axis=0)
    assert np.argmax(entropy) == 50 and entropy[50] == pytest.approx(math.log(2), abs=1e-6)


def test_multiclass_entropy_sums_over_classes():
    p = torch.tensor([[1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0], [0.5, 0.5, 0.0]]).T  # classes on axis 0
    np.testing.assert_allclose(predictive_entropy(p, axis=0).numpy(), [math.log(3), 0.0, math.log(2)], atol=1e-6)
    # a sigmoid output p is the same as two softmax classes (p, 1 - p)
    q = torch.tensor([[0.2, 0.7]])
    np.testing.assert_allclose(predictive_entropy(q), predictive_entropy(torch.cat([q, 1 - q])), atol=1e-7)


def test_mc_mode_keeps_batchnorm_statistics_and_restores_modes():
    model = _trained_bn_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    probs = mc_mean_probabilities(model, torch.rand(3, 1, 32, 32) * 3, n_samples=4, method="batched")
    mc_mean_probabilities(model, torch.rand(3, 1, 32, 32) * 3, n_samples=3, method="loop")
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed during MC sampling"
    assert not any(m.training for m in model.modules())
    assert probs.shape == (3, 1, 32, 32) and float(probs.min()) >= 0 and float(probs.max()) <= 1
    # inside the context only dropout layers train, and samples differ
    with mc_dropout_mode(model):
        assert all(m.training == isinstance(m, nn.Dropout) for m in model.modules())
        x = torch.rand(1, 1, 32, 32)
        assert not torch.equal(model(x), model(x))


@pytest.mark.parametrize("channels", [(4, 8), (4, 8, 16), (4, 8, 16, 32)])
def test_folded_sampler_equals_forward_and_encoder_is_deterministic(channels):
    """Without dropout, the sampler's folded decoder (BatchNorm, dropout scale and the sub-pixel convolution
    folded into weights) gives eval-mode forward's logits for every sample."""
    torch.manual_seed(0)
    model = ALUNet(channels=channels).train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(4, 1, 32, 32) * 3 + 1)
    model.eval()
    x = torch.rand(2, 1, 32, 32) * 3
    with torch.inference_mode():
        sampler = model.mc_sampler()
        reference = model(x)
        folded = sampler.sample(sampler.encode(x), 3, dropout=False)
        torch.testing.assert_close(folded, reference.repeat(3, 1, 1, 1), rtol=1e-5, atol=1e-5 * reference.abs().max())
        with mc_dropout_mode(model):
            a, b = sampler.encode(x), sampler.encode(x)
            assert all(torch.equal(s, t) for s, t in zip(a, b))
            assert not torch.equal(sampler.sample(a, 1), sampler.sample(a, 1))


def _sharp_model() -> ALUNet:
    """A tiny ALUNet whose logits are large, so that decoder dropout visibly changes each sample."""
    model = _trained_bn_model()
    with torch.no_grad():
        model.head.weight.mul_(300)
        model.head.bias.zero_()
    return model


def test_batched_and_loop_sample_the_same_distribution():
    model = _sharp_model()
    x = torch.rand(3, 1, 16, 16) * 3
    # same mean (n = 60) within MC noise, whatever the chunking
    loop = mc_mean_probabilities(model, x, n_samples=60, method="loop", max_batch=8)
    batched = mc_mean_probabilities(model, x, n_samples=60, method="batched", max_batch=64)
    chunked = mc_mean_probabilities(model, x, n_samples=60, method="batched", max_batch=7, seed=5)
    assert float((loop - batched).abs().mean()) < 0.04 and float((chunked - batched).abs().mean()) < 0.04
    # same spread: the variance over seeds of 2-sample means matches (no sampling at all would make it 0)
    spreads = {}
    for method in ("loop", "batched"):
        means = torch.stack([mc_mean_probabilities(model, x, n_samples=2, method=method, seed=s) for s in range(40)])
        spreads[method] = float(means.var(dim=0).mean())
    assert spreads["loop"] > 1e-3
    assert 0.5 < spreads["batched"] / spreads["loop"] < 2.0
    # seeded: identical again, different under another seed
    again = mc_mean_probabilities(model, x, n_samples=60, method="batched", max_batch=64)
    torch.testing.assert_close(batched, again, rtol=0, atol=0)
    assert not torch.equal(batched, mc_mean_probabilities(model, x, n_samples=60, method="batched", seed=1))


def test_full_pass_fallback_for_networks_without_split():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Dropout(0.5), nn.Conv2d(4, 1, 1))
    x = torch.rand(3, 1, 8, 8)
    batched = mc_mean_probabilities(net, x, n_samples=100, method="batched", max_batch=50)
    loop = mc_mean_probabilities(net, x, n_samples=100, method="loop")
    assert batched.shape == (3, 1, 8, 8) and float((batched - loop).abs().mean()) < 0.01
    with torch.no_grad():
        deterministic = torch.sigmoid(net.eval()(x))
    pairs = torch.stack([mc_mean_probabilities(net, x, n_samples=2, method="batched", seed=s) for s in range(8)])
    assert float(pairs.var(dim=0).mean()) > 1e-4 and not torch.allclose(pairs[0], deterministic)


def test_bad_inputs_give_clear_errors():
    with pytest.raises(InputError, match="no dropout"):
        mc_mean_probabilities(nn.Conv2d(1, 1, 1), torch.rand(1, 1, 4, 4))
    with pytest.raises(InputError, match="at least 2 samples"):
        mc_mean_probabilities(ALUNet(channels=(4, 8)), torch.rand(1, 1, 8, 8), n_samples=1)
    with pytest.raises(InputError, match="unknown MC method"):
        mc_mean_probabilities(ALUNet(channels=(4, 8)), torch.rand(1, 1, 8, 8), method="fast")


def test_slice_and_volume_uncertainty():
    entropy = np.zeros((4, 20, 20), np.float32)
    entropy[1] = 0.4
    entropy[2, :10] = 0.2
    np.testing.assert_allclose(slice_uncertainty(entropy), [0.0, 0.4, 0.1, 0.0])
    foreground = np.zeros_like(entropy, dtype=bool)
    foreground[1, 10, 10] = True
    # box 3: slices 0..2, rows and columns 9..11 -> 27 voxels: 9 on slice 1 (0.4), 3 on slice 2 row 9 (0.2)
    assert volume_uncertainty(entropy, foreground, box=3) == pytest.approx((9 * 0.4 + 3 * 0.2) / 27)
    # empty prediction: documented fallback to the mean over all voxels
    assert volume_uncertainty(entropy, np.zeros_like(foreground), box=11) == pytest.approx(float(entropy.mean()))


def test_fast_dropout_matches_torch_dropout_statistics():
    layer = FastDropout(0.25).train()
    x = torch.ones(400_000, requires_grad=True)
    y = layer(x)
    kept = y != 0
    assert abs(float(kept.float().mean()) - 0.75) < 0.005
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / 0.75))
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.float() / 0.75)
    assert torch.equal(layer.eval()(x), x)


@pytest.mark.parametrize("p", [0.25, 0.1])  # 8-bit fields (p a multiple of 1/256), 16-bit fields
def test_keep_masks_are_bernoulli_as_booleans_and_as_numbers(p):
    for dtype in (torch.bool, torch.float32):
        mask = keep_mask((500, 1000), p, dtype=dtype)
        assert mask.dtype == dtype and set(mask.unique().tolist()) <= {0, 1}
        assert abs(float(mask.float().mean()) - (1 - p)) < 0.003
        neighbours = (mask[:, 1:].float() * mask[:, :-1].float()).mean()  # fields of one word are independent
        assert abs(float(neighbours) - (1 - p) ** 2) < 0.003


def test_batched_entropy_equals_loop_within_mc_noise_floor(chest_ct):
    """The bundled model on real CT slices, 20 samples: batched versus loop entropy differs no more than two loop
    runs with different seeds do (the MC noise floor), voxel-wise and in the slice profile USS ranks."""
    from lungai.al.pipeline import load
    from lungai.al.scoring import score_volume

    model = load(model_id="al_unet_lungs", device="cpu").network
    image = chest_ct.array[6:12]  # lung apex: the profile rises from 0.20 to 0.24 nats

    def entropy(method, seed):
        return score_volume(model, image, n_samples=20, method=method, seed=seed).entropy

    loop, loop_other_seed, batched = entropy("loop", 0), entropy("loop", 1), entropy("batched", 2)
    floor = float(np.abs(loop_other_seed - loop).mean())
    assert floor > 1e-3  # the samples differ at all
    assert float(np.abs(batched - loop).mean()) < 1.25 * floor
    # the slice profile USS ranks: differences far below its spread over these slices
    profile, reference = slice_uncertainty(batched), slice_uncertainty(loop)
    assert np.abs(profile - reference).max() < 0.1 * np.ptp(reference)
