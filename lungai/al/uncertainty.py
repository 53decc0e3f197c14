"""Monte Carlo dropout predictive entropy and its slice- and volume-level summaries (seed 004, Sec. II-C).

- :func:`mc_dropout_mode` puts a model in eval mode with only its dropout layers sampling (BatchNorm keeps its
  running statistics; MONAI Label's ``network.train()`` would switch BatchNorm to batch statistics too).
- :func:`mc_mean_probabilities` averages ``n`` sampled probability maps. ``method="batched"`` runs a split
  network's deterministic part once per slice and its stochastic part for many samples in one batch (see
  :mod:`lungai.al.networks` for the ``mc_encode``/``mc_decode`` interface); networks without the split are tiled
  along the batch instead. ``method="loop"`` is the reference: ``n`` plain full forward passes, one after the
  other, as MONAI Label's epistemic scoring does.
- :func:`predictive_entropy` is Eq. 1 with the natural log.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from lungai.errors import InputError
from lungai.progress import CancelToken, ProgressCallback, report

DEFAULT_SAMPLES = 20
METHODS = ("batched", "loop")
MC_BATCH_PIXELS = 10 * 128 * 128
_DROPOUT_TYPES = (nn.modules.dropout._DropoutNd,)


def dropout_layers(model: nn.Module) -> list[nn.Module]:
    """The dropout layers of ``model`` that actually drop (p > 0)."""
    return [m for m in model.modules() if isinstance(m, _DROPOUT_TYPES) and m.p > 0]


@contextlib.contextmanager
def mc_dropout_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode with only the dropout layers in training mode; restores every module's mode on exit."""
    layers = dropout_layers(model)
    if not layers:
        raise InputError(
            f"{type(model).__name__} has no dropout layer with p > 0, so MC dropout cannot sample it: use a "
            "network built with dropout (for example the 'al_unet' architecture, decoder dropout 0.25)"
        )
    modes = {m: m.training for m in model.modules()}
    model.eval()
    for m in layers:
        m.train()
    try:
        yield model
    finally:
        for m, mode in modes.items():
            m.training = mode


def probabilities_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Sigmoid for one output channel, softmax over channels otherwise. (B, C, ...) -> (B, C, ...)."""
    return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)


def predictive_entropy(mean_probability: np.ndarray | torch.Tensor, axis: int = 0):
    """Eq. 1: ``-sum_c p_c ln p_c`` of the MC-mean probabilities, with ``0 ln 0 = 0``.

    ``axis`` is the class axis. A class axis of length 1 holds a sigmoid foreground probability ``p``: the
    two-class entropy ``-p ln p - (1 - p) ln(1 - p)`` (maximal, ln 2, at p = 0.5). Computed in float32 for
    float32 input (entropies are at most ln C, so float32 carries them to about 1e-7) and in float64 otherwise;
    numpy input gives a float32 array, tensors keep their dtype.
    """
    p = torch.as_tensor(mean_probability)
    p = p if p.dtype == torch.float32 else p.to(torch.float64)
    if p.shape[axis] == 1:
        q = 1.0 - p
        entropy = -(torch.special.xlogy(p, p).add_(torch.special.xlogy(q, q))).squeeze(axis)
    else:
        entropy = -torch.special.xlogy(p, p).sum(dim=axis)
    if isinstance(mean_probability, np.ndarray):
        return entropy.numpy().astype(np.float32, copy=False)
    return entropy.to(mean_probability.dtype)


class FullPassSampler:
    """The sampler interface for any network: the state is the input, each sample a full forward pass."""

    def __init__(self, model: nn.Module):
        self.model = model

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        return (x,)

    def sample(self, state: tuple[torch.Tensor], k: int) -> torch.Tensor:
        (x,) = state
        return self.model(x.repeat(k, *([1] * (x.dim() - 1))))


def mc_sampler(model: nn.Module):
    """The network's own fast sampler (``model.mc_sampler()``, see :mod:`lungai.al.networks`), else full passes."""
    factory = getattr(model, "mc_sampler", None)
    return factory() if callable(factory) else FullPassSampler(model)


def default_max_batch(slice_shape: tuple[int, ...]) -> int:
    """Slice-samples per network call: :data:`MC_BATCH_PIXELS` pixels (10 slices of 128 x 128).

    Small calls keep the decoder's activations near the CPU caches: on the bundled model 10 slice-samples per call
    sampled faster than 20, 40 or 80 (bench/al), and memory stays a few MB per call whatever the volume's size.
    """
    return max(1, MC_BATCH_PIXELS // math.prod(slice_shape))


def mc_mean_probabilities(
    model: nn.Module,
    images: torch.Tensor,
    n_samples: int = DEFAULT_SAMPLES,
    *,
    method: str = "batched",
    max_batch: int | None = None,
    seed: int | None = 0,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> torch.Tensor:
    """Mean of ``n_samples`` MC-dropout probability maps. ``images`` (B, C_in, H, W) -> (B, C_out, H, W).

    ``max_batch`` bounds how many slice-samples go through the network at once (memory); None chooses it from
    the slice size (:func:`default_max_batch`). ``seed`` makes the dropout masks reproducible without touching
    the caller's random state (None: not seeded).
    """
    if method not in METHODS:
        raise InputError(f"unknown MC method {method!r}: use one of {', '.join(METHODS)}")
    if n_samples < 2:
        raise InputError(f"MC dropout needs at least 2 samples to estimate uncertainty, got {n_samples}")
    if max_batch is None:
        max_batch = default_max_batch(images.shape[-2:])
    if max_batch < 1:
        raise InputError(f"max_batch must be >= 1, got {max_batch}")
    device = next(model.parameters()).device
    with contextlib.ExitStack() as stack:
        stack.enter_context(mc_dropout_mode(model))
        stack.enter_context(torch.random.fork_rng(devices=[device] if device.type == "cuda" else []))
        if seed is not None:
            torch.manual_seed(seed)
        if method == "loop":
            stack.enter_context(torch.no_grad())  # what MONAI Label uses
            return _loop(model, images.to(device), n_samples, max_batch, progress, cancel)
        stack.enter_context(torch.inference_mode())
        return _batched(model, images.to(device), n_samples, max_batch, progress, cancel)


def _loop(model, images, n_samples, max_batch, progress, cancel) -> torch.Tensor:
    total = None
    for s in range(n_samples):
        if cancel is not None:
            cancel.raise_if_cancelled()
        probs = torch.cat([probabilities_from_logits(model(chunk)) for chunk in images.split(max_batch)])
        total = probs if total is None else total + probs
        report(progress, (s + 1) / n_samples, f"MC sample {s + 1}/{n_samples}")
    return total / n_samples


def _batched(model, images, n_samples, max_batch, progress, cancel) -> torch.Tensor:
    sampler = mc_sampler(model)
    slices_per_chunk = max(1, max_batch // n_samples)
    chunks = images.split(slices_per_chunk)
    outputs = []
    for i, chunk in enumerate(chunks):
        if cancel is not None:
            cancel.raise_if_cancelled()
        state = sampler.encode(chunk)
        b = chunk.shape[0]
        total, done = None, 0
        while done < n_samples:
            k = min(n_samples - done, max(1, max_batch // b))
            probs = probabilities_from_logits(sampler.sample(state, k))
            probs = probs.view(k, b, *probs.shape[1:]).sum(0)
            total = probs if total is None else total + probs
            done += k
        outputs.append(total / n_samples)
        report(
            progress,
            (i + 1) / len(chunks),
            f"MC dropout: {min((i + 1) * slices_per_chunk, len(images))}/{len(images)} slices",
        )
    return torch.cat(outputs)


def slice_uncertainty(entropy: np.ndarray) -> np.ndarray:
    """Slice-level uncertainty: mean entropy of every axial slice. (Z, Y, X) -> (Z,)."""
    entropy = np.asarray(entropy)
    return entropy.reshape(entropy.shape[0], -1).mean(axis=1, dtype=np.float64)


def volume_uncertainty(entropy: np.ndarray, foreground: np.ndarray, box: int | tuple[int, int, int] = 11) -> float:
    """Volume-level uncertainty: mean entropy inside the predicted foreground dilated by a box (paper: 11^3 voxels).

    ``box`` is in voxels, (z, y, x) or one size for all axes. The paper's box on 1 x 1 x 1.5 mm voxels covers
    about 11 x 11 x 16 mm; on the 3 x 3 x 10 mm chest CT 11 voxels are far wider, so callers may pass a
    smaller box. Empty prediction: the mask is empty and the mean over **all** voxels is returned instead
    (the paper's reason for the mask, slice-count normalisation, still holds approximately, and a model that
    sees no foreground at all is worth annotating rather than skipping).
    """
    entropy = np.asarray(entropy)
    foreground = np.asarray(foreground, dtype=bool)
    if entropy.shape != foreground.shape:
        raise InputError(f"entropy shape {entropy.shape} differs from foreground shape {foreground.shape}")
    if not foreground.any():
        return float(entropy.mean())
    size = (box,) * 3 if isinstance(box, int) else tuple(box)
    mask = ndimage.maximum_filter(foreground, size=size, mode="constant", cval=False)  # box dilation, separable
    return float(entropy[mask].mean())
