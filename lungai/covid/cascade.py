"""Slice-level CHS-Net inference: lungs on the whole slice, infection in a box around the lungs.

Stage 1 sees the whole slice (square-padded, resized to its grid ``lung_size``, by default the
model grid ``size``). Stage 2 sees a square
box around the predicted lungs grown by 10 % each way (:class:`GridBox`), resized to the grid,
with the lung map either masking the CT or added as a channel (``lung_input``). The box makes
whole-body slices of a CT volume look like the lung-centred MedSeg slices stage 2 learns from.
With ``tta`` the infection probability is averaged over the slice and its left-right mirror
(:func:`lungai.tta.flip_average`; up-down is not a flip the networks train with).
In ``direct`` mode (the paper's non-hierarchical ablation) the infection network sees the whole
slice and no lung stage runs. A slice with no predicted lung gets no infection in the
hierarchical modes. With ``mask`` the infection probability is zero outside the predicted lungs.
On the CPU, batches run side by side, one per thread torch was given (:mod:`lungai.parallel`).
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lungai.covid.grid import GridBox
from lungai.covid.raiunet import CHSNet, stage2_input
from lungai.device import resolve_device
from lungai.parallel import cpu_workers, map_in_threads
from lungai.progress import CancelToken, ProgressCallback, report
from lungai.tta import flip_average

LUNG_MARGIN = 0.1
# Slices per network call. Measured on one CPU thread (bench/e2e): 4 slices of 128 x 128 keep the widest activations
# (4 x 64 x 128 x 128 float32, 17 MB) under glibc's largest heap allocation, where 8 slices (34 MB) are mapped
# and page-faulted afresh for every tensor: 48 slices took 5.5 s at 4 and 6.2 s (0.6 s of it system time) at 8.
BATCH_SIZE = 4
THRESHOLD = 0.5
LEFT_RIGHT = ((), (-1,))  # test-time flips: the slice as given and mirrored left-right (as in training)


@dataclass
class SliceResult:
    """Probabilities on the input slice's pixel grid; ``lung`` is None in direct mode."""

    lung: np.ndarray | None
    infection: np.ndarray


def _probabilities(network: nn.Module, batch: np.ndarray, device: torch.device, tta: bool = False) -> np.ndarray:
    """Sigmoid probabilities ``(N, S, S)``; with ``tta`` the mean over the slice and its left-right mirror."""
    x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(device)
    if tta:
        return flip_average(network, x, LEFT_RIGHT)[:, 0].cpu().numpy()
    with torch.no_grad():
        logits = network(x)
    return torch.sigmoid(logits)[:, 0].cpu().numpy()


class Cascade:
    """Run a lung network then an infection network on 2-D slices in [0, 1] (any size)."""

    def __init__(
        self,
        infection: nn.Module | None,
        *,
        lung: nn.Module | None,
        lung_input: str | None,
        size: int,
        lung_size: int | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = BATCH_SIZE,
        tta: bool = False,
        workers: int | None = None,
    ) -> None:
        """``infection`` may be None while only lung maps and stage-2 inputs are needed (training stage 2);
        ``workers``: batches computed at once (default :func:`lungai.parallel.cpu_workers`)."""
        if (lung is None) != (lung_input is None):
            raise ValueError("give both a lung network and lung_input (hierarchical), or neither (direct)")
        self.lung, self.infection, self.lung_input = lung, infection, lung_input
        self.size, self.device, self.batch_size = int(size), resolve_device(str(device)), batch_size
        self.lung_size = int(lung_size or size)
        self.tta = tta
        self.workers = cpu_workers(self.device) if workers is None else workers
        for network in (lung, infection):
            if network is not None:
                network.to(self.device).eval()

    @classmethod
    def from_chsnet(
        cls, model: CHSNet, size: int, device: str | torch.device = "cpu", lung_size: int | None = None
    ) -> Cascade:
        return cls(
            model.infection, lung=model.lung, lung_input=model.lung_input, size=size, lung_size=lung_size, device=device
        )

    @property
    def hierarchical(self) -> bool:
        return self.lung is not None

    def segment(
        self, images: list[np.ndarray], progress: ProgressCallback | None = None, cancel: CancelToken | None = None
    ) -> list[SliceResult]:
        """Probabilities for each slice; progress per batch, cancellable between batches."""
        batches = [images[start : start + self.batch_size] for start in range(0, len(images), self.batch_size)]
        results: list[SliceResult] = []
        with closing(map_in_threads(self._segment_batch, batches, self.workers, cancel)) as done:
            for batch in done:
                results += batch
                report(progress, len(results) / len(images), f"slice {len(results)}/{len(images)}")
        return results

    def lung_probabilities(self, images: list[np.ndarray]) -> list[np.ndarray]:
        boxes = [GridBox.whole(image.shape) for image in images]
        grid = np.stack([box.extract(image, self.lung_size) for box, image in zip(boxes, images)])[:, None]
        probabilities = _probabilities(self.lung, grid, self.device)
        return [box.paste(p, image.shape) for box, p, image in zip(boxes, probabilities, images)]

    def stage2_grid(self, image: np.ndarray, lung_mask: np.ndarray | None) -> tuple[GridBox, np.ndarray] | None:
        """The box and stage-2 input ``(C, S, S)`` of one slice; None if the lungs are empty."""
        if lung_mask is None:
            box = GridBox.whole(image.shape)
            return box, box.extract(image, self.size)[None]
        box = GridBox.around(lung_mask, LUNG_MARGIN)
        if box is None:
            return None
        ct = torch.from_numpy(box.extract(image, self.size))[None, None]
        lung_map = torch.from_numpy(box.extract(lung_mask.astype(np.float32), self.size, order=0) > 0.5)
        return box, stage2_input(ct, lung_map[None, None].float(), self.lung_input)[0].numpy()

    def _segment_batch(self, images: list[np.ndarray]) -> list[SliceResult]:
        if self.infection is None:
            raise ValueError("this cascade has no infection network")
        lungs = self.lung_probabilities(images) if self.hierarchical else [None] * len(images)
        masks = [None if p is None else p > THRESHOLD for p in lungs]
        prepared = [self.stage2_grid(image, mask) for image, mask in zip(images, masks)]
        ready = [i for i, item in enumerate(prepared) if item is not None]
        infection = [np.zeros(image.shape, dtype=np.float32) for image in images]
        if ready:
            stage2 = np.stack([prepared[i][1] for i in ready])
            probabilities = _probabilities(self.infection, stage2, self.device, self.tta)
            for i, p in zip(ready, probabilities):
                infection[i] = prepared[i][0].paste(p, images[i].shape)
                if self.lung_input == "mask":
                    infection[i] = infection[i] * masks[i]
        return [SliceResult(lung, inf) for lung, inf in zip(lungs, infection)]
