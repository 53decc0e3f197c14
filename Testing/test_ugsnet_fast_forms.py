"""The faster exact forms of issue 15 (bench/ugsnet/cost.md) against the forms they replaced.

Each reference is the former implementation (kept here only), or the plain statement of the equation; outputs
and gradients must agree to float tolerance, in training and in evaluation mode.
"""

import math

import pytest
import torch
from torch.nn import functional as F

from lungai.ugsnet import blocks
from lungai.ugsnet.blocks import SelfAttention2d, chunked_attention


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def attend_with_sdpa(block: SelfAttention2d, x: torch.Tensor) -> torch.Tensor:
    """The former SelfAttention2d.attend: positions-first tensors, F.scaled_dot_product_attention (full
    attention) or the explicit softmax(q k^T * scale) v (pooled)."""
    b, c, h, w = x.shape
    pooled = block.pool(x)

    def positions(t):
        return t.flatten(2).transpose(1, 2).unsqueeze(1)

    q, k, v = positions(block.query(x)), positions(block.key(pooled)), positions(block.value(pooled))
    if block.full:
        out = F.scaled_dot_product_attention(q, k, v, scale=block.scale)
    else:
        out = torch.softmax(q @ k.transpose(-1, -2) * block.scale, dim=-1) @ v
    return out.squeeze(1).transpose(1, 2).reshape(b, c, h, w)


@pytest.mark.parametrize("budget", [64, 1000, 2**19])  # 1, 3 (uneven) and all queries per chunk of 256 keys
@pytest.mark.parametrize("pool,channels", [(1, 8), (1, 32), (4, 32), (8, 4)])
def test_chunked_attention_matches_the_former_sdpa_form(monkeypatch, budget, pool, channels):
    monkeypatch.setattr(blocks, "ATTENTION_CHUNK_SCORES", budget)
    block = SelfAttention2d(channels, pool)
    with torch.no_grad():
        block.gamma.fill_(0.6)
    x = torch.randn(3, channels, 16, 16, requires_grad=True)
    got = block(x)
    expected = block.gamma * attend_with_sdpa(block, x) + x
    assert torch.allclose(got, expected, atol=1e-5)
    params = [x, *block.parameters()]
    grad = torch.randn_like(got)
    grads = torch.autograd.grad(got, params, grad)
    expected_grads = torch.autograd.grad(expected, params, grad)
    for g, e in zip(grads, expected_grads):
        assert torch.allclose(g, e, atol=1e-4, rtol=1e-4)


def test_chunked_attention_is_the_softmax_equation_in_double_precision(monkeypatch):
    monkeypatch.setattr(blocks, "ATTENTION_CHUNK_SCORES", 100)
    q, k, v = (torch.randn(2, d, n, dtype=torch.float64, requires_grad=True) for d, n in ((3, 50), (3, 40), (5, 40)))
    got = chunked_attention(q, k, v, 0.7)
    weights = torch.softmax(torch.einsum("bdi,bdj->bij", q, k) * 0.7, dim=-1)  # Vaswani et al. Eq. 1
    expected = torch.einsum("bij,bcj->bci", weights, v)
    assert torch.allclose(got, expected, atol=1e-12)
    assert torch.autograd.gradcheck(lambda *t: chunked_attention(*t, 0.7), (q, k, v))


def test_chunked_attention_runs_without_autograd():
    block = SelfAttention2d(8).eval()
    x = torch.randn(2, 8, 8, 8)
    with torch.inference_mode():
        got = block.attend(x)
    with torch.no_grad():
        expected = attend_with_sdpa(block, x)
    assert torch.allclose(got, expected, atol=1e-5)
    assert math.isfinite(float(got.abs().max()))


def upsample_conv_with_strided_copies(conv, x: torch.Tensor) -> torch.Tensor:
    """The former NearestUpsampleConv2d.forward: phase kernels indexed by the output phase (a, b), four strided
    copies into the interleaved output."""
    b, _, h, w = x.shape
    fold = conv.weight.new_tensor([[[1, 0, 0], [0, 1, 1]], [[1, 1, 0], [0, 0, 1]]])
    kernels = torch.einsum("ary,oiyx,bcx->aboirc", fold, conv.weight, fold).reshape(-1, conv.in_channels, 2, 2)
    phases = F.conv2d(F.pad(x, (1, 1, 1, 1)), kernels).view(b, 2, 2, conv.out_channels, h + 1, w + 1)
    out = phases.new_empty(b, conv.out_channels, h, 2, w, 2)
    for row in (0, 1):
        for col in (0, 1):
            out[:, :, :, row, :, col] = phases[:, row, col, :, row : row + h, col : col + w]
    return out.view(b, conv.out_channels, 2 * h, 2 * w)


@pytest.mark.parametrize("shape", [(2, 5, 7, 6), (3, 16, 8, 8)])
def test_pixel_shuffled_upsample_conv_matches_the_former_strided_copies(shape):
    conv = blocks.NearestUpsampleConv2d(shape[1], 4)
    x = torch.randn(*shape, requires_grad=True)
    got, expected = conv(x), upsample_conv_with_strided_copies(conv, x)
    assert got.shape == expected.shape == (shape[0], 4, 2 * shape[2], 2 * shape[3])
    assert torch.allclose(got, expected, atol=1e-6)
    grad = torch.randn_like(got)
    grads = torch.autograd.grad(got, [x, conv.weight], grad)
    expected_grads = torch.autograd.grad(expected, [x, conv.weight], grad)
    assert all(torch.allclose(g, e, atol=1e-5) for g, e in zip(grads, expected_grads))
