"""Random training crops, drawn afresh for every optimizer step.

A crop is a ``crop x crop`` window of one image whose top-left corner is drawn uniformly
over the positions where it (a) covers no validation cell and (b) covers at least one
labelled cell; an image is drawn with probability proportional to its number of such
positions, so every labelled pixel of the training area is as likely to be seen. Images
smaller than the crop are read with padding (ignored pixels). Each step's draws come
from ``numpy.random.default_rng([seed, step])``: a run is reproducible and a resumed run
draws exactly the crops the uninterrupted run would have.

Class-balanced change crops: a share ``focus`` of each step's crops (default 0.5) is
centred on a changed cell instead: a change class is drawn uniformly among the classes
present in the training area, then one of its training cells (over all images, each cell
equally likely), and the crop placed at a random offset around that cell. Few labelled
pixels of a rare class (a few destroyed buildings among many damaged ones, a thin new
road) are then seen about as often as the common ones, and every step sees change. The
other crops stay uniform over the training area, so the no-change surroundings keep their
weight. This is our choice (the paper trains on full benchmark chips and does not say how
to sample); ``--change-crops 0`` restores uniform crops.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import InputError
from .sources import CELL, ImageInfo
from .split import Split


@dataclasses.dataclass(frozen=True)
class Crop:
    """A window reference: image index and pixel window."""

    image: int
    row: int
    col: int
    size: int


def _integral(mask: np.ndarray) -> np.ndarray:
    out = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), np.int64)
    out[1:, 1:] = mask.astype(np.int64).cumsum(0).cumsum(1)
    return out


def _box(ii: np.ndarray, r0: int, c0: int, r1: int, c1: int) -> int:
    return int(ii[r1, c1] - ii[r0, c1] - ii[r1, c0] + ii[r0, c0])


class CropSampler:
    """Draws training crops inside the training area.

    Args:
        images: the source's images.
        split: the train/validation split.
        crop: crop side, px.
        seed: base seed.

    Raises:
        InputError: no position holds a crop of this size inside the training area.
    """

    def __init__(self, images: list[ImageInfo], split: Split, crop: int, seed: int, focus: float = 0.0) -> None:
        self.images, self.crop, self.seed = images, int(crop), int(seed)
        self.focus = float(focus)
        self._blocked = [_integral(~t) for t in split.train_cells]
        self._known = [_integral((im.labelled > 0) & t) for im, t in zip(images, split.train_cells)]
        self._positions = [self._grid_positions(i) for i in range(len(images))]
        weights = np.array([len(p) for p in self._positions], np.float64)
        if weights.sum() == 0:
            raise InputError(
                f"no {crop}x{crop} px training crop fits in the labelled area beside the validation area; "
                f"use a smaller --crop (e.g. {max(32, crop // 2)}) or label a larger area"
            )
        # an image's chance is proportional to its area of valid positions
        self._weights = weights / weights.sum()
        self._class_cells = self._change_cells(split) if self.focus > 0 else []

    def _change_cells(self, split: Split) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per change class present in training: (image index, flat cell index) of its cells."""
        out = []
        bits = [im.classes if im.classes is not None else im.changed.astype(np.uint32) for im in self.images]
        present = np.uint32(0)
        for b, t in zip(bits, split.train_cells):
            present |= np.bitwise_or.reduce(b[t], initial=np.uint32(0)) if t.any() else np.uint32(0)
        for k in range(32):
            bit = np.uint32(1) << np.uint32(k)
            if not present & bit:
                continue
            idx = [np.flatnonzero((b & bit).astype(bool) & t).astype(np.int64) for b, t in zip(bits, split.train_cells)]
            img = np.concatenate([np.full(len(x), i, np.int32) for i, x in enumerate(idx)])
            out.append((img, np.concatenate(idx)))
        return out

    def _ok(self, i: int, row: int, col: int) -> bool:
        r0, c0 = max(row, 0) // CELL, max(col, 0) // CELL
        r1 = -(-min(row + self.crop, self.images[i].height) // CELL)
        c1 = -(-min(col + self.crop, self.images[i].width) // CELL)
        return _box(self._blocked[i], r0, c0, r1, c1) == 0 and _box(self._known[i], r0, c0, r1, c1) > 0

    def _range(self, i: int) -> tuple[int, int]:
        im = self.images[i]
        return max(im.height - self.crop, 0), max(im.width - self.crop, 0)

    def _grid_positions(self, i: int) -> list[tuple[int, int]]:
        """Valid top-left corners on a CELL grid (plus the far edges): the fallback set and the weights."""
        hr, wr = self._range(i)
        rows = sorted(set(range(0, hr + 1, CELL)) | {hr})
        cols = sorted(set(range(0, wr + 1, CELL)) | {wr})
        return [(r, c) for r in rows for c in cols if self._ok(i, r, c)]

    def sample(self, step: int, n: int, stream: int = 1) -> list[Crop]:
        """``n`` crops of optimizer step ``step`` (``stream`` 0 is for statistics, 1 for training)."""
        rng = np.random.default_rng([self.seed, int(stream), int(step)])
        images = rng.choice(len(self.images), size=n, p=self._weights)
        focused = rng.random(n) < self.focus if self._class_cells else np.zeros(n, bool)
        out = []
        for i, f in zip(images, focused):
            crop = self._draw_change(rng) if f else None
            out.append(crop if crop is not None else self._draw(int(i), rng))
        return out

    def _draw_change(self, rng: np.random.Generator) -> Crop | None:
        """A crop around a training cell of a uniformly drawn change class (None: none fits)."""
        img, cells = self._class_cells[int(rng.integers(len(self._class_cells)))]
        for _ in range(8):
            j = int(rng.integers(len(cells)))
            i = int(img[j])
            gw = self.images[i].changed.shape[1]
            cr, cc = divmod(int(cells[j]), gw)
            hr, wr = self._range(i)
            # a pixel of the cell, then a crop holding it at a random place
            pr, pc = cr * CELL + int(rng.integers(CELL)), cc * CELL + int(rng.integers(CELL))
            r = min(max(pr - int(rng.integers(self.crop)), 0), hr)
            c = min(max(pc - int(rng.integers(self.crop)), 0), wr)
            if self._ok(i, r, c):
                return Crop(i, r, c, self.crop)
        return None

    def _draw(self, i: int, rng: np.random.Generator) -> Crop:
        hr, wr = self._range(i)
        for _ in range(32):  # uniform over pixels: rejection, then the grid fallback
            r, c = int(rng.integers(hr + 1)), int(rng.integers(wr + 1))
            if self._ok(i, r, c):
                return Crop(i, r, c, self.crop)
        r, c = self._positions[i][int(rng.integers(len(self._positions[i])))]
        return Crop(i, r, c, self.crop)

    @property
    def positions(self) -> int:
        """Number of valid crop positions on the CELL grid (a size of the training area)."""
        return int(sum(len(p) for p in self._positions))
