"""Training data: labelled scenes and dataset folders cut into chips, split, augmented, captioned.

Two sources give the same thing, a :class:`ChipSet` of in-memory chips split into train
and validation:

- :func:`load_scene` -- what an analyst has: a *before* and an *after* raster (any GDAL
  format; *after* is aligned onto *before*'s grid by :func:`engine.raster.open_pair`) and
  labels, either polygons from any OGR source (class field holding schema names or ids)
  or a class raster. The area of interest (AOI) is the labels' extent or an explicit AOI
  polygon layer; inside it unlabelled pixels are *no change* (0), outside they are ignored
  (255), as are nodata pixels of either date.
- :func:`load_folder` -- what a researcher has: ``A/`` (before), ``B/`` (after),
  ``label/`` and optionally ``list/train.txt`` and ``list/val.txt`` (one file name per
  line, with or without extension), PNG or GeoTIFF, with a raw-value -> class map
  (LEVIR-CD: ``{255: 1}``).

Spatial split (scene): the AOI is tiled into non-overlapping *cells* of ``chip`` px (the
last row/column padded with ignored pixels); a seeded, stratified draw (cells with and
without change drawn separately) puts ``val_fraction`` of the cells in validation. Training
windows slide over the AOI with ``stride`` and are dropped when they touch a validation
cell, so no pixel is ever in both sets. Folder: whole images are split (the list files,
or a seeded draw of ``val_fraction`` of the images), then cut into chips.

:class:`ChangeDataset` yields ``{"before": (C, h, w) float32, "after": (C, h, w) float32,
"label": (h, w) int64, "caption": str}``: normalised with the model card's per-band
mean/std (raw units), augmented identically for both dates (flips, 90 degree rotations)
plus a mild per-date gain/offset jitter, and captioned with :mod:`engine.captions` from
the augmented label, a fresh template draw each time the chip is seen. Every random draw
comes from ``(seed, epoch, index)``, so a run is reproducible whatever the number of
loader workers or processes, and a resumed run sees exactly the same samples.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import InputError
from .schema import NODATA_CLASS, ClassSchema

log = logging.getLogger(__name__)

RASTER_SUFFIXES = {".tif", ".tiff", ".png", ".jpg", ".jpeg", ".jp2", ".img", ".vrt", ".bmp"}
#: Caption of a chip without any change class (the S2M templates describe changes only).
NO_CHANGE_CAPTION = "The scene shows no change."


@dataclass
class ChipSet:
    """Chips in memory, split into train and validation.

    Attributes:
        before, after: ``(N, C, h, w)`` float32 raw values (0 where invalid).
        labels: ``(N, h, w)`` uint8 class ids, 255 = ignore.
        train, val: indices into the arrays.
        bands: bands per date.
        source: description for logs and the run's config.
    """

    before: np.ndarray
    after: np.ndarray
    labels: np.ndarray
    train: list[int]
    val: list[int]
    bands: int
    source: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def class_pixels(self, indices: Sequence[int], num_classes: int) -> np.ndarray:
        """Pixel count per class over the chips ``indices`` (ignored pixels excluded)."""
        lab = self.labels[list(indices)]
        return np.bincount(lab[lab != NODATA_CLASS].ravel(), minlength=num_classes)[:num_classes]


# ----------------------------------------------------------------------------- scene


def _cells(height: int, width: int, chip: int) -> list[tuple[int, int]]:
    return [(r, c) for r in range(0, height, chip) for c in range(0, width, chip)]


def _stratified_pick(groups: list[list[int]], fraction: float, rng: np.random.Generator) -> set[int]:
    picked: set[int] = set()
    for g in groups:
        if not g:
            continue
        n = int(round(len(g) * fraction))
        if fraction > 0 and n == 0 and len(g) > 1:
            n = 1
        n = min(n, len(g) - 1) if len(g) > 1 else n
        picked.update(rng.permutation(g)[:n].tolist())
    return picked


def load_scene(
    before: str | Path,
    after: str | Path,
    labels: str | Path,
    schema: ClassSchema,
    *,
    class_field: str = "class",
    layer: str | None = None,
    aoi: str | Path | None = None,
    aoi_layer: str | None = None,
    label_map: dict[int, int] | None = None,
    bands: int | None = None,
    chip: int = 256,
    stride: int | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> ChipSet:
    """Read a labelled scene and cut it into split chips.

    Args:
        before, after: rasters of the two dates.
        labels: label polygons (any OGR source) or a class raster (by file suffix).
        schema: class schema; polygon classes are names or ids of it.
        class_field: attribute of the polygons holding the class.
        layer: layer of ``labels`` (default: the only one, or ``labels``).
        aoi: optional AOI polygon layer; default the labels' extent (a class raster: the
            whole common extent of the images).
        aoi_layer: layer of ``aoi``.
        label_map: raw value -> class id for a class raster.
        bands: band count the model expects (None: take the rasters').
        chip: chip side in pixels.
        stride: step between training windows (default ``chip``).
        val_fraction: share of AOI cells kept for validation.
        seed: seed of the split.

    Raises:
        InputError: any unreadable or inconsistent input (see :mod:`engine.raster`), labels
            without any change pixel, or an AOI too small to split.
    """
    from rasterio.windows import Window

    from .raster import label_extent, open_pair, rasterize_labels, read_class_raster

    stride = stride or chip
    labels = Path(labels)
    is_raster = labels.suffix.lower() in RASTER_SUFFIXES
    with open_pair(before, after, bands) as pair:
        common = pair.window
        if is_raster and aoi is None:
            extent = common  # a class raster labels everything it covers
        else:
            extent = label_extent(labels, pair, layer=layer, aoi=aoi, aoi_layer=aoi_layer)
        c0 = max(int(extent.col_off), int(common.col_off))
        r0 = max(int(extent.row_off), int(common.row_off))
        c1 = min(int(extent.col_off + extent.width), int(common.col_off + common.width))
        r1 = min(int(extent.row_off + extent.height), int(common.row_off + common.height))
        if c1 <= c0 or r1 <= r0:
            raise InputError(
                f"the labelled area of {labels.name} lies outside the part covered by both {Path(before).name} and "
                f"{Path(after).name}; label inside the overlap of the two dates"
            )
        h, w = r1 - r0, c1 - c0
        nr, nc = -(-h // chip), -(-w // chip)
        region = Window(c0, r0, nc * chip, nr * chip)
        b, a, valid = pair.read(region)
        if is_raster:
            lab = read_class_raster(labels, pair, label_map, window=region)
            if aoi is not None:
                inside = rasterize_labels_aoi(aoi, aoi_layer, pair, region)
                lab[~inside] = NODATA_CLASS
            bad = np.setdiff1d(np.unique(lab), np.r_[np.arange(schema.num_classes), NODATA_CLASS])
            if bad.size:
                raise InputError(
                    f"class raster {labels.name} holds values {bad[:10].tolist()} that are not classes of schema "
                    f"{schema.name!r} (0..{schema.num_classes - 1}); map them with --label-map RAW:CLASS"
                )
        else:
            lab = rasterize_labels(labels, schema, pair, class_field=class_field, layer=layer, aoi=aoi, aoi_layer=aoi_layer, window=region)
        # only the AOI part of the padded region counts
        lab[:, w:] = NODATA_CLASS
        lab[h:, :] = NODATA_CLASS
        lab[~valid] = NODATA_CLASS
        count = pair.count
    if not (lab != NODATA_CLASS).any():
        raise InputError(f"no labelled pixel of {labels.name} falls on valid data of both rasters (nodata everywhere?)")
    if not ((lab != NODATA_CLASS) & (lab > 0)).any():
        hint = " (a class raster that marks change with 255, as LEVIR-CD does, needs --label-map 255:1)" if is_raster else ""
        raise InputError(
            f"labels {labels.name} hold no change class inside the valid area; label at least one changed area "
            f"(class ids >= 1){hint}"
        )
    cells = _cells(nr * chip, nc * chip, chip)
    if len(cells) < 2:
        raise InputError(
            f"the labelled area is {w}x{h} px, a single {chip}-px chip: too small to keep a separate validation "
            f"area; use a smaller --chip (e.g. {max(32, chip // 2)}) or label a larger area"
        )
    rng = np.random.default_rng([seed, 7])
    labelled = [i for i, (r, c) in enumerate(cells) if (lab[r : r + chip, c : c + chip] != NODATA_CLASS).any()]
    def has_change(i: int) -> bool:
        r, c = cells[i]
        t = lab[r : r + chip, c : c + chip]
        return bool(((t > 0) & (t != NODATA_CLASS)).any())

    changed = [i for i in labelled if has_change(i)]
    unchanged = [i for i in labelled if not has_change(i)]
    if len(labelled) < 2:
        raise InputError(
            f"only one {chip}-px chip of the labelled area holds valid labels; use a smaller --chip or label more"
        )
    val_cells = _stratified_pick([changed, unchanged], val_fraction, rng)
    if not val_cells:
        val_cells = {int(rng.choice(labelled))}
    if len(val_cells) >= len(labelled):
        val_cells = set(list(val_cells)[: len(labelled) - 1])
    val_mask = np.zeros(lab.shape, bool)
    for i in val_cells:
        r, c = cells[i]
        val_mask[r : r + chip, c : c + chip] = True
    wins: list[tuple[int, int, bool]] = [(cells[i][0], cells[i][1], True) for i in sorted(val_cells)]
    rows = range(0, nr * chip - chip + 1, stride)
    cols = range(0, nc * chip - chip + 1, stride)
    for r in rows:
        for c in cols:
            if val_mask[r : r + chip, c : c + chip].any():
                continue
            if not (lab[r : r + chip, c : c + chip] != NODATA_CLASS).any():
                continue
            wins.append((r, c, False))
    n = len(wins)
    cb = np.empty((n, count, chip, chip), np.float32)
    ca = np.empty((n, count, chip, chip), np.float32)
    cl = np.empty((n, chip, chip), np.uint8)
    train, val = [], []
    for k, (r, c, is_val) in enumerate(wins):
        cb[k] = b[:, r : r + chip, c : c + chip]
        ca[k] = a[:, r : r + chip, c : c + chip]
        cl[k] = lab[r : r + chip, c : c + chip]
        (val if is_val else train).append(k)
    if not train:
        raise InputError("no training chip left beside the validation area; use a smaller --chip or a larger AOI")
    info = {
        "aoi_px": [w, h],
        "region": [c0, r0, nc * chip, nr * chip],
        "val_cells": len(val),
        "train_windows": len(train),
        # (row, col) of each chip's top-left corner on before's grid, index-aligned with the arrays
        "windows": [(r0 + r, c0 + c) for r, c, _ in wins],
    }
    return ChipSet(cb, ca, cl, train, val, count, f"scene {Path(before).name} / {Path(after).name} / {labels.name}", info)


def rasterize_labels_aoi(aoi: str | Path, aoi_layer: str | None, grid: Any, window) -> np.ndarray:
    """Boolean ``(h, w)`` mask of the AOI polygons over ``window`` of ``grid``."""
    import rasterio
    from rasterio import features

    from .raster import _as_grid, _read_geoms

    g = _as_grid(grid)
    geoms = _read_geoms(aoi, aoi_layer, g, "AOI")
    if not geoms:
        raise InputError(f"AOI {Path(aoi).name} has no polygons; draw the area you labelled")
    t = rasterio.windows.transform(window, g.transform)
    return features.rasterize([(geom, 1) for geom, _ in geoms], out_shape=(int(window.height), int(window.width)), transform=t, fill=0, dtype="uint8") > 0


# ----------------------------------------------------------------------------- folder


def _index(folder: Path) -> dict[str, Path]:
    files = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES:
            files[p.stem] = p
    return files


def _read_image(path: Path, what: str) -> np.ndarray:
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as ds:
                return ds.read()
    except RasterioIOError as exc:
        raise InputError(f"cannot read {what} {path}: {exc}; expected a PNG or GeoTIFF") from None


def _read_list(path: Path, known: dict[str, Path]) -> list[str]:
    names = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        stem = Path(line).stem
        if stem not in known:
            raise InputError(f"{path}, line {i}: {line!r} is not an image in {path.parent.parent / 'A'}")
        names.append(stem)
    return names


def load_folder(
    root: str | Path,
    schema: ClassSchema,
    *,
    label_map: dict[int, int] | None = None,
    bands: int | None = None,
    chip: int = 256,
    stride: int | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> ChipSet:
    """Read a change-detection dataset folder (``A/``, ``B/``, ``label/``, optional ``list/``).

    Images are paired by file name (without extension). Images larger than ``chip`` are
    cut into chips (``stride`` for training, non-overlapping for validation); smaller ones
    are padded with ignored pixels.

    Raises:
        InputError: missing sub-folder or counterpart, unreadable image, sizes or band
            counts that differ, label values not in the schema after ``label_map``, a name
            in a list file that is not an image, or no change pixel at all.
    """
    root = Path(root)
    stride = stride or chip
    dirs = {k: root / k for k in ("A", "B", "label")}
    for k, d in dirs.items():
        if not d.is_dir():
            raise InputError(f"dataset folder {root} has no {k}/ sub-folder; expected A/ (before), B/ (after) and label/")
    A, B, L = (_index(dirs[k]) for k in ("A", "B", "label"))
    if not A:
        raise InputError(f"{dirs['A']} holds no PNG or GeoTIFF image")
    for name in A:
        for other, idx in (("B", B), ("label", L)):
            if name not in idx:
                raise InputError(f"{dirs['A'] / A[name].name} has no counterpart in {dirs[other]}; every image needs A/, B/ and label/ files of the same name")
    lists = root / "list"
    if (lists / "train.txt").is_file() and (lists / "val.txt").is_file():
        train_names = _read_list(lists / "train.txt", A)
        val_names = _read_list(lists / "val.txt", A)
        both = set(train_names) & set(val_names)
        if both:
            raise InputError(f"{sorted(both)[:5]} are listed in both list/train.txt and list/val.txt; a validation image must not be trained on")
    else:
        names = sorted(A)
        if len(names) < 2:
            raise InputError(f"{root} holds one image; add list/train.txt and list/val.txt or more images for a validation split")
        rng = np.random.default_rng([seed, 11])
        order = rng.permutation(len(names))
        nval = min(max(1, int(round(len(names) * val_fraction))), len(names) - 1)
        val_names = [names[i] for i in sorted(order[:nval])]
        train_names = [names[i] for i in sorted(order[nval:])]
    bs, as_, ls, train, val = [], [], [], [], []
    count = None
    lmap = label_map or {}
    for split, names in (("train", train_names), ("val", val_names)):
        for name in names:
            ia = _read_image(A[name], "before image").astype(np.float32)
            ib = _read_image(B[name], "after image").astype(np.float32)
            il = _read_image(L[name], "label")
            if ia.shape != ib.shape or ia.shape[1:] != il.shape[1:]:
                raise InputError(
                    f"size mismatch for {name!r} in {root}: A {ia.shape[2]}x{ia.shape[1]}x{ia.shape[0]}, "
                    f"B {ib.shape[2]}x{ib.shape[1]}x{ib.shape[0]}, label {il.shape[2]}x{il.shape[1]} (width x height x bands); "
                    "the three files of a sample must have the same size and A/B the same bands"
                )
            if count is None:
                count = ia.shape[0]
                if bands is not None and count != bands:
                    raise InputError(f"{A[name]} has {count} band(s); the model expects {bands}")
            elif ia.shape[0] != count:
                raise InputError(f"{A[name]} has {ia.shape[0]} band(s) but earlier images have {count}; all images need the same bands")
            raw = il[0].astype(np.int64)
            lab = raw.copy()
            for src, dst in lmap.items():
                lab[raw == src] = dst
            bad = np.setdiff1d(np.unique(lab), np.r_[np.arange(schema.num_classes), NODATA_CLASS])
            if bad.size:
                hint = " (LEVIR-CD and WHU-CD labels: --label-map 255:1)" if 255 in np.unique(raw) or 1 in bad else ""
                raise InputError(
                    f"label {L[name]} holds values {bad[:10].tolist()} that are not classes of schema {schema.name!r} "
                    f"(0..{schema.num_classes - 1}); map them with --label-map RAW:CLASS{hint}"
                )
            lab = lab.astype(np.uint8)
            h, w = lab.shape
            nr, nc = -(-h // chip), -(-w // chip)
            ph, pw = max(nr * chip, h), max(nc * chip, w)
            pa = np.zeros((count, ph, pw), np.float32)
            pb = np.zeros((count, ph, pw), np.float32)
            pl = np.full((ph, pw), NODATA_CLASS, np.uint8)
            pa[:, :h, :w], pb[:, :h, :w], pl[:h, :w] = ia, ib, lab
            step = stride if split == "train" else chip
            rows = sorted(set(list(range(0, ph - chip + 1, step))))
            cols = sorted(set(list(range(0, pw - chip + 1, step))))
            for r in rows:
                for c in cols:
                    tl = pl[r : r + chip, c : c + chip]
                    if not (tl != NODATA_CLASS).any():
                        continue
                    (train if split == "train" else val).append(len(ls))
                    bs.append(pa[:, r : r + chip, c : c + chip])
                    as_.append(pb[:, r : r + chip, c : c + chip])
                    ls.append(tl)
    if not train or not val:
        raise InputError(f"{root}: no labelled {'training' if not train else 'validation'} chip; check the label files and list/")
    labels = np.stack(ls)
    if not ((labels > 0) & (labels != NODATA_CLASS)).any():
        hint = " (LEVIR-CD and WHU-CD store change as 255: use --label-map 255:1)" if not lmap else ""
        raise InputError(f"the labels in {L and dirs['label']} hold no change pixel{hint}")
    info = {"images_train": len(train_names), "images_val": len(val_names)}
    return ChipSet(np.stack(bs), np.stack(as_), labels, train, val, int(count), f"folder {root}", info)


# ----------------------------------------------------------------------------- dataset


def augment(before: np.ndarray, after: np.ndarray, label: np.ndarray, rng: np.random.Generator, jitter: float = 0.1):
    """Same flips and 90 degree rotation on both dates and the label, then per-date jitter.

    Args:
        before, after: ``(C, h, w)`` normalised images.
        label: ``(h, w)`` class ids.
        rng: the sample's generator.
        jitter: maximum relative gain change and offset (normalised units) per date.

    Returns:
        ``(before, after, label)`` (new contiguous arrays).
    """
    k = int(rng.integers(4))
    flip_h, flip_v = bool(rng.integers(2)), bool(rng.integers(2))

    def geo(x: np.ndarray) -> np.ndarray:
        x = np.rot90(x, k, axes=(-2, -1))
        if flip_h:
            x = x[..., ::-1]
        if flip_v:
            x = x[..., ::-1, :]
        return np.ascontiguousarray(x)

    before, after, label = geo(before), geo(after), geo(label)
    if jitter > 0:
        out = []
        for x in (before, after):
            gain = 1.0 + rng.uniform(-jitter, jitter)
            offset = rng.uniform(-jitter, jitter)
            out.append((x * gain + offset).astype(np.float32))
        before, after = out
    return before, after, label


class ChangeDataset:
    """A torch-style map dataset over chips of a :class:`ChipSet`.

    Args:
        chips: the chip set.
        indices: which chips (``chips.train`` or ``chips.val``).
        schema: class schema (captions).
        mean, std: per-band normalisation in raw units (from the model card).
        train: augment and caption when True; plain chips (and no caption draw) otherwise.
        seed: base seed; call :meth:`set_epoch` every epoch for fresh draws.
        captions: produce captions (stage 2) or empty strings (stage 1, validation).
        jitter: radiometric jitter amplitude (0 disables).
    """

    def __init__(
        self,
        chips: ChipSet,
        indices: Sequence[int],
        schema: ClassSchema,
        mean: Sequence[float],
        std: Sequence[float],
        train: bool = True,
        seed: int = 0,
        captions: bool = True,
        jitter: float = 0.1,
    ) -> None:
        if len(mean) != chips.bands or len(std) != chips.bands:
            raise InputError(f"the model card has mean/std for {len(mean)} band(s) but the images have {chips.bands}")
        self.chips = chips
        self.indices = list(indices)
        self.schema = schema
        self.mean = np.asarray(mean, np.float32).reshape(-1, 1, 1)
        self.std = np.asarray(std, np.float32).reshape(-1, 1, 1)
        self.train = train
        self.seed = seed
        self.captions = captions
        self.jitter = jitter
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.indices)

    def caption(self, label: np.ndarray, rng: np.random.Generator) -> str:
        """One text for a chip: its S2M sentences joined, or :data:`NO_CHANGE_CAPTION`."""
        from .captions import caption_chip

        _, sentences = caption_chip(label, self.schema, int(rng.integers(2**31)))
        return " ".join(sentences) if sentences else NO_CHANGE_CAPTION

    def __getitem__(self, i: int) -> dict[str, Any]:
        import torch

        k = self.indices[i]
        b = (self.chips.before[k] - self.mean) / self.std
        a = (self.chips.after[k] - self.mean) / self.std
        lab = self.chips.labels[k]
        rng = np.random.default_rng([self.seed, self.epoch, k])
        if self.train:
            b, a, lab = augment(b, a, lab, rng, self.jitter)
        caption = self.caption(lab, rng) if self.captions else ""
        return {
            "before": torch.from_numpy(np.ascontiguousarray(b, np.float32)),
            "after": torch.from_numpy(np.ascontiguousarray(a, np.float32)),
            "label": torch.from_numpy(lab.astype(np.int64)),
            "caption": caption,
        }
