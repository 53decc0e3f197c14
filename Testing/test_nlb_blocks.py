"""Non-local blocks of seed 002: shapes, identity at initialisation, the localized grid and the symmetry factor."""

import math

import pytest
import torch

from lungai.nlb.blocks import (
    BLOCK_TYPES,
    GridTokenizer,
    NonLocalBlock,
    grid_distance_weights,
    make_block,
    symmetry_factor,
)

ATTENTION_TYPES = [t for t in BLOCK_TYPES if t != "none"]


@pytest.mark.parametrize("block_type", BLOCK_TYPES)
@pytest.mark.parametrize("size", [(8, 8), (13, 10), (3, 5)])
def test_block_output_shape_equals_input_shape(block_type, size):
    block = make_block(block_type, channels=6, grid=4)
    x = torch.randn(2, 6, *size)
    assert block(x).shape == x.shape


@pytest.mark.parametrize("block_type", ATTENTION_TYPES)
def test_block_is_identity_at_initialisation_and_learns_away_from_it(block_type):
    torch.manual_seed(0)
    block = make_block(block_type, channels=8, grid=4)
    x = torch.randn(2, 8, 12, 12)
    assert torch.equal(block(x), x)
    # The zero gate still receives a gradient, so training can leave the identity.
    block(x).pow(2).sum().backward()
    assert block.gate.grad.abs().sum() > 0
    with torch.no_grad():
        block.gate.fill_(1.0)
    assert not torch.allclose(block(x), x)


def test_tokenizer_round_trip_and_padding_for_sizes_not_divisible_by_the_grid():
    tok = GridTokenizer(4)
    x = torch.randn(2, 3, 10, 7)  # cells of ceil(10/4)=3 x ceil(7/4)=2 after zero padding to 12 x 8
    tokens = tok.tokenize(x)
    assert tokens.shape == (2, 16, 3 * 2 * 3)
    assert torch.equal(tok.untokenize(tokens, 3, 10, 7), x)
    # Token 0 is the top-left cell flattened in (row, column, channel) order.
    assert torch.equal(tokens[0, 0], x[0, :, :3, :2].permute(1, 2, 0).reshape(-1))
    # The last token (bottom-right cell) holds rows 9..11 and columns 6..7: only x[9, 6] is real data.
    last = tokens[0, 15].reshape(3, 2, 3)
    assert torch.equal(last[0, 0], x[0, :, 9, 6])
    assert last.abs().sum() == x[0, :, 9, 6].abs().sum()


def test_tokenizer_handles_maps_smaller_than_the_grid():
    tok = GridTokenizer(4)
    x = torch.randn(1, 2, 2, 3)
    tokens = tok.tokenize(x)
    assert tokens.shape == (1, 16, 2)
    assert torch.equal(tok.untokenize(tokens, 2, 2, 3), x)


def test_localized_weights_match_hand_computed_grid():
    w = grid_distance_weights(3)
    # token 0 = (row 0, col 0); token 4 = centre (1, 1); token 8 = (2, 2); token 2 = (0, 2); token 5 = (1, 2)
    expected_row0 = torch.tensor([1, 1 / 2, 1 / 3, 1 / 2, 1 / 2, 1 / 3, 1 / 3, 1 / 3, 1 / 3])
    assert torch.allclose(w[0], expected_row0)
    assert torch.allclose(w[4], torch.full((9,), 0.5).index_fill(0, torch.tensor([4]), 1.0))
    assert w[2, 5] == pytest.approx(1 / 2)
    assert w[0, 8] == pytest.approx(1 / 3)
    assert torch.equal(w, w.T) and torch.all(torch.isfinite(w))


def test_localized_block_scales_dot_products_by_the_grid_weights():
    torch.manual_seed(0)
    plain = NonLocalBlock(4, grid=2)
    local = NonLocalBlock(4, grid=2, localized=True)
    local.load_state_dict(plain.state_dict())
    x = torch.randn(1, 4, 4, 4)
    q, k = plain._tokens(plain.query(x)), plain._tokens(plain.key(x))
    logits = q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])
    hand = torch.full((4, 4), 0.5).fill_diagonal_(1.0)  # every token of a 2 x 2 grid neighbours every other
    assert torch.allclose(local.attention(x), (logits * hand).softmax(-1), atol=1e-6)
    assert torch.allclose(plain.attention(x), logits.softmax(-1), atol=1e-6)


def test_symmetry_factor_matches_hand_computed_token():
    token = torch.tensor([1.0, 2.0, 0.0, 2.0, 1.0, 2.0])  # a = (1, 2, 0), b = (2, 1, 2)
    expected = (1 * 2 + 2 * 1 + 0 * 2) / (math.sqrt(5) * 3)
    assert symmetry_factor(token).item() == pytest.approx(expected)
    odd = torch.tensor([3.0, 4.0, 99.0, 3.0, 4.0])  # middle entry left out: identical halves
    assert symmetry_factor(odd).item() == pytest.approx(1.0)
    assert symmetry_factor(torch.tensor([1.0, -1.0])).item() == pytest.approx(-1.0)
    assert symmetry_factor(torch.zeros(4)).item() == 0.0


def test_symmetry_block_scales_attention_output_by_theta():
    torch.manual_seed(1)
    plain = NonLocalBlock(4, grid=2)
    sym = NonLocalBlock(4, grid=2, symmetry=True)
    sym.load_state_dict(plain.state_dict())
    with torch.no_grad():
        plain.gate.fill_(1.0)
        sym.gate.fill_(1.0)
        plain.output.bias.zero_()
        sym.output.bias.zero_()
    x = torch.randn(1, 4, 4, 4)
    theta = symmetry_factor(plain._tokens(x))  # (1, 4) one factor per 2 x 2 cell
    cell_theta = theta.reshape(1, 1, 2, 2).repeat_interleave(2, 2).repeat_interleave(2, 3)
    assert torch.allclose(sym(x) - x, (plain(x) - x) * cell_theta, atol=1e-5)


def test_unknown_block_type_and_localized_pixels_are_refused():
    with pytest.raises(ValueError, match="unknown block type"):
        make_block("fancy", 4)
    with pytest.raises(ValueError, match="grid tokens"):
        NonLocalBlock(4, grid=None, localized=True)
