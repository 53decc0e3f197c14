"""Score a CT volume: MC-dropout mean probability, entropy (Eq. 1), slice profile and volume uncertainty."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lungai.al.data import preprocess_slices, resize
from lungai.al.uncertainty import (
    DEFAULT_SAMPLES,
    mc_mean_probabilities,
    predictive_entropy,
    slice_uncertainty,
    volume_uncertainty,
)
from lungai.errors import InputError
from lungai.progress import CancelToken, ProgressCallback
from lungai.timing import stage

DEFAULT_BOX = 11
POSTPROCESS_VOXELS = 2**22


@dataclass
class VolumeScore:
    """Per-voxel maps on the input's own grid (Z, Y, X) and their summaries."""

    probability: np.ndarray  # foreground probability (1 - background for several classes), MC mean
    entropy: np.ndarray  # predictive entropy, nats
    profile: np.ndarray  # (Z,) slice-level uncertainty
    volume_uncertainty: float

    @property
    def prediction(self) -> np.ndarray:
        return self.probability >= 0.5


def model_input_size(model: nn.Module) -> int:
    """The square slice size a network expects (``input_size`` attribute; 128 for networks without it)."""
    return int(getattr(model, "input_size", 128))


def postprocess_chunk(in_plane: tuple[int, int]) -> int:
    """Slices per chunk when maps go back to the slice grid: about 4 M voxels, so memory stays bounded on any CT
    (a 512 x 512 x 300 volume's float64 class maps would take 1.3 GB at once)."""
    return max(1, POSTPROCESS_VOXELS // (in_plane[0] * in_plane[1]))


def score_volume(
    model: nn.Module,
    image_hu: np.ndarray,
    *,
    n_samples: int = DEFAULT_SAMPLES,
    method: str = "batched",
    max_batch: int | None = None,
    seed: int | None = 0,
    box: int = DEFAULT_BOX,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> VolumeScore:
    """MC-dropout scoring of one (Z, Y, X) HU volume, slice by slice.

    The mean class probabilities are resized back to the slice grid before the entropy is taken, so every map
    has the input's geometry; that step runs in chunks of :func:`postprocess_chunk` slices. Volume-level
    uncertainty uses the predicted foreground dilated by ``box`` voxels.
    """
    image_hu = np.asarray(image_hu)
    if image_hu.ndim != 3:
        raise InputError(f"expected a 3-D volume (slices, rows, columns), got shape {image_hu.shape}")
    in_plane = tuple(image_hu.shape[1:])
    chunk = postprocess_chunk(in_plane)
    size = model_input_size(model)
    with stage("preprocess"):
        x = torch.cat([preprocess_slices(image_hu[z : z + chunk], size) for z in range(0, len(image_hu), chunk)])
    with stage("network"):
        mean = mc_mean_probabilities(
            model, x, n_samples, method=method, max_batch=max_batch, seed=seed, progress=progress, cancel=cancel
        )
    with stage("postprocess"), torch.inference_mode():
        foreground = np.empty(image_hu.shape, np.float32)
        entropy = np.empty(image_hu.shape, np.float32)
        for z in range(0, len(image_hu), chunk):
            m = resize(mean[z : z + chunk].float(), in_plane).clamp_(0.0, 1.0)
            if m.shape[1] > 1:
                m = m / m.sum(dim=1, keepdim=True)
            entropy[z : z + chunk] = predictive_entropy(m, axis=1).numpy()
            foreground[z : z + chunk] = (m[:, 0] if m.shape[1] == 1 else 1.0 - m[:, 0]).numpy()
        summary = slice_uncertainty(entropy), volume_uncertainty(entropy, foreground >= 0.5, box)
    return VolumeScore(foreground, entropy, *summary)


def predict_volume(model: nn.Module, image_hu: np.ndarray, max_batch: int = 32) -> np.ndarray:
    """Deterministic (eval mode, dropout off) foreground mask of a (Z, Y, X) HU volume."""
    x = preprocess_slices(image_hu, model_input_size(model))
    device = next(model.parameters()).device
    model.eval()
    with torch.inference_mode():
        logits = torch.cat([model(chunk.to(device)).cpu() for chunk in x.split(max_batch)])
    logits = resize(logits, tuple(np.shape(image_hu)[1:]))
    return (logits[:, 0] > 0).numpy() if logits.shape[1] == 1 else (logits.argmax(1) > 0).numpy()
