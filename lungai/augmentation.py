"""Shared data augmentation for 2-D CT slices and crops (issue 13, the training recipe).

Usage, in a module's training code::

    from lungai.augmentation import AugmentSettings, AugmentedDataset

    train_set = AugmentedDataset(CropDataset(...), mask_keys=("label1", "union"), settings=AugmentSettings(), seed=0)
    train(model, task, train_set, val_set, config, ...)  # the trainer calls train_set.set_epoch(epoch)

The wrapped dataset returns dict samples; ``image_key`` holds the image (C, H, W) and each of ``mask_keys`` a mask
(C, H, W) on the same grid. Other keys pass through untouched. The pipeline (:func:`build_augmentation`) is MONAI
dictionary transforms in this order:

1. flips along each axis in ``flip_axes`` independently (image and masks together);
2. one affine per sample: rotation by up to ``rotate_degrees`` and scaling of each axis by up to ``scale`` (mild
   anisotropy, as between scanners' pixel spacings), bilinear for the image, nearest for the masks (masks stay binary
   and aligned), the border value replicated outside the field of view;
3. image only, never the masks: gamma on the image's own range (contrast), intensity scale ``v * (1 + f)``,
   intensity shift ``v + s``, Gaussian noise.

Intensity amounts are in units of the normalised image: lungai windows CT to [0, 1] (the lung window is 1500 HU
wide, so a shift of 0.03 is about 45 HU and noise of standard deviation up to 0.02 about 30 HU, a little above the
noise of a standard-dose scan). Each transform has a probability; probability 0 removes it from the pipeline.

Flips swap anatomical sides: disable them (``flip_prob=0``) when labels are lateralised (right and left lung).

Determinism: :class:`AugmentedDataset` seeds the pipeline per sample from ``(seed, epoch, index)``, so an epoch's
augmentation does not depend on the data order, the worker that loads the sample or the number of processes, and a
training run resumed at epoch ``e`` draws exactly what the uninterrupted run drew.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from lungai.errors import LungAIError


@dataclass(frozen=True)
class AugmentSettings:
    """Probabilities and ranges of each transform; defaults are mild and suited to CT (see the module docstring)."""

    flip_prob: float = 0.5  # per axis, independently
    flip_axes: tuple[int, ...] = (0, 1)  # spatial axes of (H, W): 0 flips up-down, 1 left-right
    affine_prob: float = 0.5
    rotate_degrees: float = 15.0  # angle drawn in [-rotate_degrees, rotate_degrees]
    scale: float = 0.1  # zoom factor of each axis drawn in [1 - scale, 1 + scale]
    gamma_prob: float = 0.2
    gamma: tuple[float, float] = (0.8, 1.25)
    intensity_scale_prob: float = 0.3
    intensity_scale: float = 0.05  # v * (1 + f), f in [-intensity_scale, intensity_scale]
    intensity_shift_prob: float = 0.3
    intensity_shift: float = 0.03  # v + s, s in [-intensity_shift, intensity_shift]
    noise_prob: float = 0.2
    noise_std: float = 0.02  # standard deviation drawn in [0, noise_std]

    def spatial_only(self) -> AugmentSettings:
        """The same flips and affine, without any intensity transform."""
        return replace(self, gamma_prob=0.0, intensity_scale_prob=0.0, intensity_shift_prob=0.0, noise_prob=0.0)


NO_AUGMENTATION = AugmentSettings(
    flip_prob=0.0, affine_prob=0.0, gamma_prob=0.0, intensity_scale_prob=0.0, intensity_shift_prob=0.0, noise_prob=0.0
)


def build_augmentation(
    image_key: str = "image", mask_keys: Sequence[str] = ("mask",), settings: AugmentSettings | None = None
):
    """MONAI ``Compose`` of the transforms ``settings`` enables (default :class:`AugmentSettings`), for dict
    samples of (C, H, W) arrays or tensors. Returns plain ``torch.Tensor`` values for the image and masks.
    """
    from monai import transforms as T

    settings = settings or AugmentSettings()
    mask_keys = list(mask_keys)
    if image_key in mask_keys:
        raise LungAIError(f"'{image_key}' is both the image key and a mask key; a mask never gets intensity changes.")
    keys = [image_key, *mask_keys]
    steps: list[Any] = []
    if settings.flip_prob > 0:
        steps += [T.RandFlipd(keys, prob=settings.flip_prob, spatial_axis=axis) for axis in settings.flip_axes]
    if settings.affine_prob > 0 and (settings.rotate_degrees > 0 or settings.scale > 0):
        steps.append(
            T.RandAffined(
                keys,
                prob=settings.affine_prob,
                rotate_range=np.deg2rad(settings.rotate_degrees),
                scale_range=(settings.scale, settings.scale),
                mode=["bilinear"] + ["nearest"] * len(mask_keys),
                padding_mode="border",
            )
        )
    if settings.gamma_prob > 0:
        steps.append(T.RandAdjustContrastd(image_key, prob=settings.gamma_prob, gamma=settings.gamma))
    if settings.intensity_scale_prob > 0:
        steps.append(
            T.RandScaleIntensityd(image_key, factors=settings.intensity_scale, prob=settings.intensity_scale_prob)
        )
    if settings.intensity_shift_prob > 0:
        steps.append(
            T.RandShiftIntensityd(image_key, offsets=settings.intensity_shift, prob=settings.intensity_shift_prob)
        )
    if settings.noise_prob > 0:
        steps.append(T.RandGaussianNoised(image_key, prob=settings.noise_prob, std=settings.noise_std))
    steps.append(T.ToTensord(keys, track_meta=False))
    return T.Compose(steps)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 32-bit seed that depends only on the run's seed, the epoch and the sample index."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


class AugmentedDataset(Dataset):
    """Wraps a dataset of dict samples and augments each one, reproducibly per ``(seed, epoch, index)``.

    Call :meth:`set_epoch` before each epoch (:func:`lungai.training.train` does) to draw new augmentations.
    """

    def __init__(
        self,
        dataset: Dataset,
        mask_keys: Sequence[str] = ("mask",),
        settings: AugmentSettings | None = None,
        seed: int = 0,
        image_key: str = "image",
    ) -> None:
        self.dataset = dataset
        self.transform = build_augmentation(image_key, mask_keys, settings)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.dataset[index]
        if not isinstance(sample, dict):
            raise LungAIError(f"AugmentedDataset needs dict samples, got {type(sample).__name__}.")
        self.transform.set_random_state(seed=sample_seed(self.seed, self.epoch, index))
        out = self.transform(dict(sample))
        # MONAI records applied transforms under "<key>_transforms" for plain tensors; batches cannot collate them.
        return {key: value for key, value in out.items() if key in sample}
