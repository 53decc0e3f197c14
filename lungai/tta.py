"""Optional test-time flip averaging (issue 13, the training recipe).

:func:`flip_average` runs a 2-D segmentation model on the image as given and flipped left-right, up-down and both,
flips each output back and averages the sigmoid probabilities. It often gains a little Dice and smooths borders at
the cost of four forward passes; whether to use it is the caller's choice (off unless a command asks for it). It
suits models trained with flip augmentation (:mod:`lungai.augmentation`); a model whose outputs are lateralised
(right and left lung as separate channels) must not be flip-averaged left-right, so pass ``flips`` accordingly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import torch
from torch import nn

ModelOutput = Union[torch.Tensor, dict[str, torch.Tensor]]

ALL_FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))  # none, left-right, up-down, both


def flip_average(
    model: nn.Module,
    image: torch.Tensor,
    flips: Sequence[tuple[int, ...]] = ALL_FLIPS,
    per_image: Sequence[str] = (),
) -> ModelOutput:
    """Mean sigmoid probability of ``model`` over ``flips`` of ``image`` (B, C, H, W), each output flipped back.

    ``model`` returns logits: a tensor (B, K, H, W) or a dict of such tensors; the result has the same form, with
    probabilities. Each entry of ``flips`` lists the dims to flip (-1 width, -2 height; ``()`` the image as is).
    ``per_image``: keys of a dict output that score the whole image (e.g. a class logit of shape (B,)): averaged over
    the flips as they are, without flipping back. Runs without gradients and leaves the model's train/eval mode
    alone (MC dropout stays on if the caller set it).
    """
    if image.dim() != 4:
        raise ValueError(f"flip_average expects a (B, C, H, W) batch, got shape {tuple(image.shape)}.")
    if not flips:
        raise ValueError("flip_average needs at least one flip (use () for the image as given).")
    sums: dict[str, torch.Tensor] = {}
    returns_dict = False
    with torch.no_grad():
        for dims in flips:
            output = model(torch.flip(image, dims) if dims else image)
            returns_dict = isinstance(output, dict)
            for key, logits in (output if returns_dict else {"": output}).items():
                if key in per_image:
                    probability = torch.sigmoid(logits.float())
                    sums[key] = probability if key not in sums else sums[key] + probability
                    continue
                if logits.dim() != 4:
                    raise ValueError(f"flip averaging needs (B, K, H, W) outputs, got shape {tuple(logits.shape)}.")
                probability = torch.sigmoid(logits.float())
                probability = torch.flip(probability, dims) if dims else probability
                sums[key] = probability if key not in sums else sums[key] + probability
    means = {key: total / len(flips) for key, total in sums.items()}
    return means if returns_dict else means[""]
