"""Between an image of any size and the square model grid: square box, pad, resize, and back.

A :class:`GridBox` is a square region of an image (it may reach outside it: the outside reads as
0, the air value). Taking a box and resizing it to ``size x size`` keeps the aspect ratio; the
inverse resizes back and pastes into the image frame. The hierarchical cascade uses a box around
the predicted lungs (the region of interest of stage 2), the lung stage the whole image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lungai.resampling import resize_slices


@dataclass(frozen=True)
class GridBox:
    top: int
    left: int
    side: int

    @classmethod
    def whole(cls, shape: tuple[int, int]) -> GridBox:
        """The smallest square box centred on an image of ``shape`` that contains all of it."""
        side = max(shape)
        return cls((shape[0] - side) // 2, (shape[1] - side) // 2, side)

    @classmethod
    def around(cls, mask: np.ndarray, margin: float = 0.1) -> GridBox | None:
        """Square box around the nonzero pixels of ``mask``, grown by ``margin`` of its side each way."""
        rows, cols = np.nonzero(mask)
        if rows.size == 0:
            return None
        height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        side = int(np.ceil(max(height, width) * (1 + 2 * margin)))
        centre_y, centre_x = (rows.max() + rows.min() + 1) / 2, (cols.max() + cols.min() + 1) / 2
        return cls(int(round(centre_y - side / 2)), int(round(centre_x - side / 2)), side)

    def extract(self, image: np.ndarray, size: int, order: int = 1) -> np.ndarray:
        """The box of ``image`` (2-D) resized to ``size x size``; outside the image reads 0."""
        crop = np.zeros((self.side, self.side), dtype=np.float32)
        y0, x0 = max(self.top, 0), max(self.left, 0)
        y1, x1 = min(self.top + self.side, image.shape[0]), min(self.left + self.side, image.shape[1])
        crop[y0 - self.top : y1 - self.top, x0 - self.left : x1 - self.left] = image[y0:y1, x0:x1]
        return resize_slices(crop, (size, size), order=order).astype(np.float32)

    def paste(self, grid: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """Inverse of :meth:`extract` for a ``size x size`` map: back to an image of ``shape`` (0 outside the box)."""
        crop = resize_slices(np.asarray(grid, dtype=np.float32), (self.side, self.side), order=1)
        out = np.zeros(shape, dtype=np.float32)
        y0, x0 = max(self.top, 0), max(self.left, 0)
        y1, x1 = min(self.top + self.side, shape[0]), min(self.left + self.side, shape[1])
        out[y0:y1, x0:x1] = crop[y0 - self.top : y1 - self.top, x0 - self.left : x1 - self.left]
        return out
