"""Map-style datasets over window references: pixels are read when a sample is asked for.

:class:`CropDataset` -- sample ``n`` of the run is crop ``n % batch`` of optimizer step
``n // batch`` (:class:`~.sampler.CropSampler`), read from the source, normalised with the
model card's statistics, augmented (:mod:`.augment`) and, in stage 2, captioned with the
S2M quadruples of the augmented label. Every random draw comes from ``(seed, step,
index)``, so any number of loader workers or processes gives the same samples.

:class:`ValDataset` -- the validation regions cut into tiles of at most ``chip`` px, each
read with a margin of context; only the region's own pixels are scored (the margin's
labels are 255). When all tiles fit in ``cache`` they are kept after the first validation
(it repeats); a larger validation set is read afresh each time, so memory stays bounded.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..schema import NODATA_CLASS, ClassSchema
from . import augment
from .sampler import CropSampler
from .sources import Source

#: Caption of a crop without any change class (the S2M templates describe changes only).
NO_CHANGE_CAPTION = "The scene shows no change."


class CropDataset:
    """Training samples, ``batch x world`` per optimizer step.

    Args:
        source: where pixels come from.
        sampler: crop positions.
        mean, std: per-band normalisation, raw units.
        batch: crops per step and process; world, rank: processes and this one's rank.
        schema: class schema (captions).
        seed: base seed.
        photometric: augmentation strength.
        captions: produce S2M sentences (stage 2).
        drop, quantity_scale: caption ablation and quantity threshold scale.
    """

    def __init__(self, source: Source, sampler: CropSampler, mean, std, batch: int, schema: ClassSchema, *, seed: int = 0,
                 world: int = 1, rank: int = 0, photometric: float = 1.0, captions: bool = False,
                 drop: Sequence[str] = (), quantity_scale: float = 1.0) -> None:
        self.source, self.sampler, self.batch, self.schema = source, sampler, int(batch), schema
        self.mean = np.asarray(mean, np.float32).reshape(-1, 1, 1)
        self.std = np.asarray(std, np.float32).reshape(-1, 1, 1)
        self.seed, self.world, self.rank = int(seed), int(world), int(rank)
        self.photometric, self.captions = float(photometric), bool(captions)
        self.drop, self.quantity_scale = tuple(drop), float(quantity_scale)

    def crop(self, n: int):
        step, k = divmod(int(n), self.batch)
        if getattr(self, "_step", None) != step:  # one draw per step, not one per sample
            self._step, self._crops = step, self.sampler.sample(step, self.batch * self.world)
        return self._crops[self.rank * self.batch + k], step, k

    def __getitem__(self, n: int) -> dict[str, Any]:
        import torch

        crop, step, k = self.crop(n)
        b, a, lab = self.source.read(crop.image, crop.row, crop.col, crop.size, crop.size)
        rng = np.random.default_rng([self.seed, 2, step, self.rank * self.batch + k])
        b, a = (b - self.mean) / self.std, (a - self.mean) / self.std
        b, a, lab = augment.geometric([b, a, lab], rng)
        b, a = augment.photometric(b, rng, self.photometric), augment.photometric(a, rng, self.photometric)
        sentences, keys = self.caption(lab, rng) if self.captions else ([], ())
        return {"before": torch.from_numpy(np.ascontiguousarray(b, np.float32)),
                "after": torch.from_numpy(np.ascontiguousarray(a, np.float32)),
                "label": torch.from_numpy(lab.astype(np.int64)), "sentences": sentences, "quads": keys}

    def caption(self, label: np.ndarray, rng: np.random.Generator) -> tuple[list[str], tuple]:
        """S2M sentences of a crop (one per change class) and its set of quadruple keys."""
        from ..captions import caption_chip

        quads, sentences = caption_chip(label, self.schema, int(rng.integers(2**31)), drop=self.drop, quantity_scale=self.quantity_scale)
        keys = tuple(sorted(q.key(self.drop) for q in quads))
        return (sentences or [NO_CHANGE_CAPTION]), keys


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors; keep sentences and quadruple keys as lists."""
    import torch

    out = {k: torch.stack([s[k] for s in samples]) for k in ("before", "after", "label")}
    out["sentences"] = [s["sentences"] for s in samples]
    out["quads"] = [s["quads"] for s in samples]
    return out


class ValDataset:
    """Validation tiles (see the module docstring).

    Args:
        source: where pixels come from.
        regions: ``(image, row, col, height, width)`` of the split.
        mean, std: normalisation.
        chip: largest tile side, px; multiple: tiles are padded to a multiple of this.
        margin: context read around each tile, px.
        cache: tiles kept in memory between validations.
    """

    def __init__(self, source: Source, regions, mean, std, chip: int, multiple: int, margin: int = 32, cache: int = 32) -> None:
        self.source, self.multiple, self.margin = source, int(multiple), int(margin)
        self.mean = np.asarray(mean, np.float32).reshape(-1, 1, 1)
        self.std = np.asarray(std, np.float32).reshape(-1, 1, 1)
        self.tiles = [t for reg in regions for t in self._tiles(reg, int(chip))]
        self._cache: dict = {}
        self._keep = len(self.tiles) <= int(cache)

    @staticmethod
    def _tiles(region, chip: int):
        i, r, c, h, w = region
        nr, nc = math.ceil(h / chip), math.ceil(w / chip)
        th, tw = math.ceil(h / nr), math.ceil(w / nc)
        for rr in range(r, r + h, th):
            for cc in range(c, c + w, tw):
                yield i, rr, cc, min(th, r + h - rr), min(tw, c + w - cc)

    def __len__(self) -> int:
        return len(self.tiles)

    def _read(self, t: int):
        if t in self._cache:
            return self._cache[t]
        i, r, c, h, w = self.tiles[t]
        m = self.margin
        size = lambda n: int(math.ceil((n + 2 * m) / self.multiple) * self.multiple)  # noqa: E731
        hh, ww = size(h), size(w)
        r0, c0 = r - (hh - h) // 2, c - (ww - w) // 2
        b, a, lab = self.source.read(i, r0, c0, hh, ww)
        scored = np.full_like(lab, NODATA_CLASS)
        sl = (slice(r - r0, r - r0 + h), slice(c - c0, c - c0 + w))
        scored[sl] = lab[sl]
        item = ((b - self.mean) / self.std, (a - self.mean) / self.std, scored)
        if self._keep:
            self._cache[t] = item
        return item

    def __getitem__(self, t: int) -> dict[str, Any]:
        import torch

        b, a, lab = self._read(t)
        return {"before": torch.from_numpy(np.ascontiguousarray(b, np.float32)),
                "after": torch.from_numpy(np.ascontiguousarray(a, np.float32)),
                "label": torch.from_numpy(lab.astype(np.int64))}
