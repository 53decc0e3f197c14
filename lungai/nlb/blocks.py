"""Non-local blocks of seed 002 (Samarin et al., "Specialized Non-local Blocks for Recognizing Tumors on
Computed Tomography Snapshots of Human Lungs"), Sections III.B to III.E.

One module, :class:`NonLocalBlock`, covers the paper's four blocks and the plain self-attention baseline;
they differ only in how tokens are formed and how the attention is weighted:

=====================  ===========  ==========  =========
block type             tokens       localized   symmetry
=====================  ===========  ==========  =========
``self_attention``     pixels       no          no
``basic``              n x n grid   no          no
``localized``          n x n grid   yes         no
``symmetry``           n x n grid   no          yes
``symmetry_localized`` n x n grid   yes         yes
=====================  ===========  ==========  =========

Readings of the paper's equations (each is tested in ``Testing/test_nlb_blocks.py``):

* Grid tokenisation (III.B, Fig. 2): the feature map (B, C, H, W) is cut into n x n rectangular cells; token
  x_i is cell i flattened in (row, column, channel) order, so dim(x_i) = ph * pw * C. When H or W is not a
  multiple of n the map is zero-padded at the bottom and right to the next multiple (cell size ceil(H / n)),
  and the padding is cropped off the output, so any size >= 1 works and the output shape equals the input's.
* Projections f, g, h (Q, K, V) are 1 x 1 convolutions to C / 2 channels applied before tokenisation, i.e.
  linear maps of each token that share their weights across the pixels of a cell (the canonical non-local
  block of Wang et al. 2018 uses the same 1 x 1 projections). Tokens of Q, K therefore have
  d_k = ph * pw * C / 2 and the dot products are divided by sqrt(d_k) (the matrix form of the paper).
* Output: o_i = v(sum_j alpha_ij v_j) with v a 1 x 1 convolution back to C channels, and Y = W O + X with W a
  per-channel (diagonal) scale initialised to zero, so every block starts as the identity (as the
  zero-initialised batch-norm gamma does in Wang et al.).
* Localized NLB (III.C): alpha*_i = SoftMax_j(dist(i, j) q_i k_j / sqrt(d_k)). The paper's
  dist = 1 / min(|dcol|, |drow|) divides by zero for tokens sharing a row or a column (including i = j) and
  does not decrease with distance along a row or column, contrary to the paper's stated intent ("diminishes
  as the regions move away from the focal point"). We use the well-defined form
  dist(i, j) = 1 / (1 + max(|dcol|, |drow|)) (Chebyshev distance on the grid, offset by one): 1 for the token
  itself, 1/2 for its eight neighbours, 1/3 for the next ring, and so on.
* Symmetry-based NLB (III.D): o*_i = v(theta_i * sum_j alpha_ij v_j), with theta_i computed from the *input*
  token x_i split into its first floor(d / 2) and last floor(d / 2) entries a and b (for odd d the middle
  entry is left out so the halves have equal length). With the (row, column, channel) flattening and an even
  cell height, a and b are the upper and lower halves of the cell. The paper writes
  theta_i = (a * b) / |a * b|; read literally as a scalar over its own absolute value it would be only a sign,
  so we read it as the normalised dot product theta_i = <a, b> / (|a| |b|) in [-1, 1] (cosine similarity),
  with theta_i = 0 when a or b is zero.
* Symmetry-localized NLB (III.E): both modifications together.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

BLOCK_TYPES = ("none", "self_attention", "basic", "localized", "symmetry", "symmetry_localized")
"""Block types accepted by :func:`make_block` and the ``nlb_unet`` architecture."""


class GridTokenizer:
    """Cuts a feature map into an n x n grid of tokens and puts tokens back (Section III.B, Fig. 2).

    ``tokenize``: (B, C, H, W) -> (B, n * n, ph * pw * C), tokens in row-major grid order, each token
    flattened in (row, column, channel) order, with ph = ceil(H / n), pw = ceil(W / n) after zero padding at
    the bottom and right. ``untokenize`` is its exact inverse followed by cropping the padding.
    """

    def __init__(self, grid: int) -> None:
        if grid < 1:
            raise ValueError(f"grid must be >= 1, got {grid}")
        self.grid = grid

    def cell_size(self, height: int, width: int) -> tuple[int, int]:
        return math.ceil(height / self.grid), math.ceil(width / self.grid)

    def tokenize(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n = self.grid
        ph, pw = self.cell_size(h, w)
        x = F.pad(x, (0, n * pw - w, 0, n * ph - h))
        x = x.reshape(b, c, n, ph, n, pw).permute(0, 2, 4, 3, 5, 1)  # B, gr, gc, ph, pw, C
        return x.reshape(b, n * n, ph * pw * c)

    def untokenize(self, tokens: torch.Tensor, channels: int, height: int, width: int) -> torch.Tensor:
        b = tokens.shape[0]
        n = self.grid
        ph, pw = self.cell_size(height, width)
        x = tokens.reshape(b, n, n, ph, pw, channels).permute(0, 5, 1, 3, 2, 4)  # B, C, gr, ph, gc, pw
        return x.reshape(b, channels, n * ph, n * pw)[:, :, :height, :width]


def grid_distance_weights(grid: int) -> torch.Tensor:
    """Localized-NLB weights dist(i, j) = 1 / (1 + max(|col_i - col_j|, |row_i - row_j|)), shape (n*n, n*n).

    Tokens are numbered row-major (token i sits at row i // n, column i % n). See the module docstring for
    why this replaces the paper's 1 / min(|dcol|, |drow|).
    """
    idx = torch.arange(grid * grid)
    rows, cols = idx // grid, idx % grid
    chebyshev = torch.maximum((rows[:, None] - rows[None, :]).abs(), (cols[:, None] - cols[None, :]).abs())
    return 1.0 / (1.0 + chebyshev.float())


def symmetry_factor(tokens: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """theta_i of the symmetry-based NLB: cosine similarity of the two halves of each token.

    tokens: (..., d) -> (...,). The halves are ``tokens[..., :d // 2]`` and ``tokens[..., d - d // 2:]``
    (the middle entry of an odd-length token is left out). Zero halves give 0.
    """
    half = tokens.shape[-1] // 2
    if half == 0:
        return torch.zeros(tokens.shape[:-1], dtype=tokens.dtype, device=tokens.device)
    a, b = tokens[..., :half], tokens[..., tokens.shape[-1] - half :]
    norms = a.norm(dim=-1) * b.norm(dim=-1)
    return (a * b).sum(dim=-1) / norms.clamp_min(eps)


class NonLocalBlock(nn.Module):
    """Residual non-local block Y = W O + X on (B, C, H, W) feature maps; output shape equals input shape.

    Args:
        channels: C.
        grid: n for grid tokens (n x n tokens); ``None`` makes every pixel a token (plain self-attention).
        localized: scale the dot products by :func:`grid_distance_weights` (Localized NLB). Grid only.
        symmetry: scale each attention output by :func:`symmetry_factor` of its input token (S-B NLB).
    """

    def __init__(self, channels: int, grid: int | None = 4, *, localized: bool = False, symmetry: bool = False) -> None:
        super().__init__()
        if grid is None and localized:
            raise ValueError("the localized weighting needs grid tokens (grid=None means pixel tokens)")
        inner = max(channels // 2, 1)
        self.tokenizer = GridTokenizer(grid) if grid is not None else None
        self.localized = localized
        self.symmetry = symmetry
        self.query = nn.Conv2d(channels, inner, 1)  # f
        self.key = nn.Conv2d(channels, inner, 1)  # g
        self.value = nn.Conv2d(channels, inner, 1)  # h
        self.output = nn.Conv2d(inner, channels, 1)  # v
        self.gate = nn.Parameter(torch.zeros(1, channels, 1, 1))  # W (diagonal, zero: identity at start)
        if localized:
            self.register_buffer("distance", grid_distance_weights(grid), persistent=False)

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        if self.tokenizer is None:
            return x.flatten(2).transpose(1, 2)  # B, H*W, C
        return self.tokenizer.tokenize(x)

    def _untokens(self, tokens: torch.Tensor, channels: int, height: int, width: int) -> torch.Tensor:
        if self.tokenizer is None:
            return tokens.transpose(1, 2).reshape(tokens.shape[0], channels, height, width)
        return self.tokenizer.untokenize(tokens, channels, height, width)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """Attention weights alpha (B, N, N) (rows sum to one), including the localized scaling."""
        q, k = self._tokens(self.query(x)), self._tokens(self.key(x))
        logits = q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])
        if self.localized:
            logits = logits * self.distance
        return logits.softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, h, w = x.shape
        v = self._tokens(self.value(x))
        attended = self.attention(x) @ v  # B, N, d_v
        if self.symmetry:
            attended = attended * symmetry_factor(self._tokens(x)).unsqueeze(-1)
        o = self.output(self._untokens(attended, v.shape[-1] // self._cell_pixels(h, w), h, w))
        return self.gate * o + x

    def _cell_pixels(self, height: int, width: int) -> int:
        if self.tokenizer is None:
            return 1
        ph, pw = self.tokenizer.cell_size(height, width)
        return ph * pw


def make_block(block_type: str, channels: int, grid: int = 4) -> nn.Module:
    """The block of ``block_type`` (one of :data:`BLOCK_TYPES`) for ``channels`` channels."""
    if block_type == "none":
        return nn.Identity()
    if block_type == "self_attention":
        return NonLocalBlock(channels, grid=None)
    if block_type not in BLOCK_TYPES:
        raise ValueError(f"unknown block type {block_type!r}; expected one of {', '.join(BLOCK_TYPES)}")
    return NonLocalBlock(channels, grid, localized="localized" in block_type, symmetry="symmetry" in block_type)
