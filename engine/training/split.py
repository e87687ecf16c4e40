"""Spatial train/validation split that never shares a pixel between the two sets.

The unit is a *region*: a rectangle of one image, on the :data:`~.sources.CELL` grid.
Three rules, picked by how much labelled data there is (:func:`split`):

- **whole images** -- a folder with ``list/train.txt`` and ``list/val.txt``, or with at
  least :data:`MIN_IMAGES_FOR_IMAGE_SPLIT` images: a seeded draw, stratified by whether
  an image holds change, keeps ``val_fraction`` of the images.
- **blocks** -- images large enough for :data:`MIN_BLOCKS` blocks of ``2 x crop`` px in
  all, and at least 2 x 2 blocks in a typical (median) image -- a large labelled scene or
  a few large tiles: ``val_fraction`` of the labelled blocks, stratified by change, is
  kept. Training crops never overlap a validation block.
- **strips** -- otherwise (a few small images, a hand-labelled patch): every image keeps
  a strip of ``val_fraction`` of its height (or width) along one side, drawn per image,
  so validation samples every image instead of hinging on one. Training crops stay in
  the rest of the image.

Whether the validation is *trustworthy* (:attr:`Split.trusted`) decides how the kept
model is chosen (see :mod:`engine.training.loop`): at least :data:`MIN_VAL_REGIONS`
regions, ``2 x chip²`` labelled pixels and :data:`MIN_VAL_CHANGE_PX` changed pixels.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import InputError
from .sources import CELL, ImageInfo

MIN_IMAGES_FOR_IMAGE_SPLIT = 20
MIN_BLOCKS = 10
MIN_VAL_REGIONS = 3
MIN_VAL_CHANGE_PX = 1000


@dataclasses.dataclass
class Split:
    """Validation regions and, per image, the cells training may use.

    Attributes:
        val: ``(image, row, col, height, width)`` px rectangles kept for validation.
        train_cells: per image, ``(gh, gw)`` bool: cells training crops may cover.
        rule: ``images``, ``blocks`` or ``strips``.
        val_px, val_change_px: labelled and changed pixels (estimated from the cell
            summaries) in validation.
        trusted: enough validation data to pick a checkpoint on.
    """

    val: list[tuple[int, int, int, int, int]]
    train_cells: list[np.ndarray]
    rule: str
    val_px: float = 0.0
    val_change_px: float = 0.0
    trusted: bool = False

    def describe(self) -> str:
        return f"{len(self.val)} validation region(s) by {self.rule}, ~{int(self.val_px):,} labelled px"


def _stratified(items: list[int], has_change: list[bool], fraction: float, rng: np.random.Generator) -> set[int]:
    picked: set[int] = set()
    for flag in (True, False):
        group = [i for i, c in zip(items, has_change) if c == flag]
        if not group:
            continue
        n = int(round(len(group) * fraction))
        if n == 0 and len(group) > 1 and rng.random() < len(group) * fraction:
            n = 1
        picked.update(rng.permutation(group)[: min(n, len(group) - 1)].tolist())
    if not picked and len(items) > 1:
        changed = [i for i, c in zip(items, has_change) if c] or items
        picked.add(int(rng.choice(changed)))
    return picked


def _by_images(images: list[ImageInfo], val_idx: set[int]) -> Split:
    train = [np.full(im.labelled.shape, i not in val_idx) for i, im in enumerate(images)]
    val = [(i, 0, 0, im.height, im.width) for i, im in enumerate(images) if i in val_idx]
    return Split(val, train, "images")


def _by_blocks(images: list[ImageInfo], block: int, fraction: float, rng: np.random.Generator) -> Split:
    g = block // CELL
    blocks, flags = [], []
    for i, im in enumerate(images):
        gh, gw = im.labelled.shape
        for r in range(0, gh, g):
            for c in range(0, gw, g):
                if im.labelled[r : r + g, c : c + g].any():
                    blocks.append((i, r, c))
                    flags.append(bool(im.changed[r : r + g, c : c + g].any()))
    picked = _stratified(list(range(len(blocks))), flags, fraction, rng)
    train = [np.ones(im.labelled.shape, bool) for im in images]
    val = []
    for k in sorted(picked):
        i, r, c = blocks[k]
        train[i][r : r + g, c : c + g] = False
        im = images[i]
        val.append((i, r * CELL, c * CELL, min(block, im.height - r * CELL), min(block, im.width - c * CELL)))
    return Split(val, train, "blocks")


def _by_strips(images: list[ImageInfo], fraction: float, rng: np.random.Generator) -> Split:
    train, val = [], []
    for i, im in enumerate(images):
        gh, gw = im.labelled.shape
        cells = np.ones((gh, gw), bool)
        vertical = gh >= gw
        n = gh if vertical else gw
        k = max(1, int(round(n * fraction)))
        if n - k < 1:
            train.append(cells)  # too small to split: train only
            continue
        first = bool(rng.integers(2))  # strip at the top/left or bottom/right
        sl = slice(0, k) if first else slice(n - k, n)
        if vertical:
            cells[sl, :] = False
            r0 = 0 if first else (n - k) * CELL
            val.append((i, r0, 0, min(k * CELL, im.height - r0), im.width))
        else:
            cells[:, sl] = False
            c0 = 0 if first else (n - k) * CELL
            val.append((i, 0, c0, im.height, min(k * CELL, im.width - c0)))
        train.append(cells)
    return Split(val, train, "strips")


def split(images: list[ImageInfo], *, val_fraction: float, crop: int, chip: int, seed: int,
          lists: tuple[list[int], list[int]] | None = None) -> Split:
    """Split ``images`` into training cells and validation regions (see the module docstring).

    Args:
        images: the source's images.
        val_fraction: share of the labelled area for validation.
        crop: training crop side (px); blocks are ``2 x crop``.
        chip: model chip side (px), for the trust rule.
        seed: seed of the draw.
        lists: image indices of ``list/train.txt`` and ``list/val.txt`` (folder).

    Raises:
        InputError: nothing left to train on, or no validation region possible.
    """
    rng = np.random.default_rng([seed, 7])
    if lists is not None:
        res = _by_images(images, set(lists[1]))
        for i in set(range(len(images))) - set(lists[0]) - set(lists[1]):
            res.train_cells[i][:] = False  # listed in neither: unused
    elif len(images) >= MIN_IMAGES_FOR_IMAGE_SPLIT:
        res = _by_images(images, _stratified(list(range(len(images))), [bool(im.changed.any()) for im in images], val_fraction, rng))
    else:
        block = 2 * crop
        per_image = [int(np.ceil(im.height / block) * np.ceil(im.width / block)) for im in images]
        big = sum(per_image) >= MIN_BLOCKS and float(np.median(per_image)) >= 4
        res = _by_blocks(images, block, val_fraction, rng) if big else _by_strips(images, val_fraction, rng)
    _measure(res, images, chip)
    if not res.val:
        raise InputError("the labelled area is too small to keep a separate validation area; label a larger area or use a smaller --crop")
    if not any((t & (im.labelled > 0)).any() for t, im in zip(res.train_cells, images)):
        raise InputError("no labelled pixel is left for training beside the validation area; label a larger area")
    return res


def _measure(res: Split, images: list[ImageInfo], chip: int) -> None:
    px = change = 0.0
    for i, r, c, h, w in res.val:
        im = images[i]
        sl = (slice(r // CELL, -(-(r + h) // CELL)), slice(c // CELL, -(-(c + w) // CELL)))
        px += float(im.labelled[sl].sum()) / 255.0 * CELL * CELL
        change += float(im.changed[sl].sum()) * CELL * CELL * 0.5  # a changed cell is ~half change: a rough estimate
    res.val_px, res.val_change_px = px, change
    res.trusted = len(res.val) >= MIN_VAL_REGIONS and px >= 2 * chip * chip and change >= MIN_VAL_CHANGE_PX
