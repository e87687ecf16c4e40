"""Where training pixels come from: labelled images as *references*, read lazily.

A :class:`Source` is a list of :class:`ImageInfo` (name, size, a coarse summary of its
labels) plus ``read(index, window)`` that reads one window of one image from disk. No
image is held in memory: a training run keeps only the summaries (one byte per
:data:`CELL` x :data:`CELL` px cell) and a small LRU cache of open files, so memory does
not grow with the size of the data.

- :class:`FolderSource` -- a research dataset folder ``A/`` (before), ``B/`` (after),
  ``label/`` (PNG or GeoTIFF, paired by file name), with a raw-value -> class map.
- :class:`SceneSource` -- an analyst's scene: *before* and *after* rasters (any GDAL
  format, *after* aligned on *before*'s grid by :class:`engine.raster.RasterPair`) and
  labels (polygons or a class raster). The labelled area is one image: the AOI (or the
  labels' extent) clipped to the part both dates cover; its labels are rasterised once
  (one byte per pixel of the labelled area, which an analyst draws by hand).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import InputError
from ..schema import NODATA_CLASS, ClassSchema

log = logging.getLogger(__name__)

#: Side of the cells of the label summaries and of the validation split, px.
CELL = 16
RASTER_SUFFIXES = {".tif", ".tiff", ".png", ".jpg", ".jpeg", ".jp2", ".img", ".vrt", ".bmp"}


@dataclasses.dataclass
class ImageInfo:
    """One labelled image, by reference.

    Attributes:
        name: for logs and errors.
        height, width: size in px.
        labelled: ``(ceil(H/CELL), ceil(W/CELL))`` uint8, labelled pixels per cell in
            1/255 units (0 = nothing labelled).
        changed: same shape, bool, True where a cell holds a change pixel.
        origin: ``(row, col)`` of the image's top-left pixel on the source grid (scenes).
        classes: same shape, uint32 bit set of the change classes in each cell (bit
            ``c - 1`` for class ``c``; classes above 32 share bit 31), or None. Used to
            draw class-balanced change crops (:mod:`.sampler`).
    """

    name: str
    height: int
    width: int
    labelled: np.ndarray
    changed: np.ndarray
    origin: tuple[int, int] = (0, 0)
    classes: np.ndarray | None = None

    @property
    def labelled_px(self) -> float:
        return float(self.labelled.sum()) / 255.0 * CELL * CELL


#: Change classes with a bit of their own in :attr:`ImageInfo.classes` (more share the last bit).
CLASS_BITS = 32


def summarise(label: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cell summaries of a class raster ``(H, W)``.

    Returns:
        ``(labelled, changed, classes)``: labelled share per cell (uint8, 1/255 units),
        change presence (bool) and the bit set of change classes present (uint32, see
        :attr:`ImageInfo.classes`), each ``(ceil(H/CELL), ceil(W/CELL))``.
    """
    h, w = label.shape
    gh, gw = -(-h // CELL), -(-w // CELL)
    pad = np.full((gh * CELL, gw * CELL), NODATA_CLASS, np.uint8)
    pad[:h, :w] = label
    cells = pad.reshape(gh, CELL, gw, CELL)
    known = (cells != NODATA_CLASS).sum(axis=(1, 3))
    changed = ((cells != NODATA_CLASS) & (cells > 0)).any(axis=(1, 3))
    classes = np.zeros((gh, gw), np.uint32)
    for c in np.unique(pad[(pad != NODATA_CLASS) & (pad > 0)]):
        bit = np.uint32(1) << np.uint32(min(int(c), CLASS_BITS) - 1)
        classes[(cells == c).any(axis=(1, 3))] |= bit
    return np.round(known * 255.0 / (CELL * CELL)).astype(np.uint8), changed, classes


class _LRU:
    """A tiny least-recently-used cache, private to each process (file handles do not survive fork)."""

    def __init__(self, size: int, close: Callable[[Any], None] | None = None) -> None:
        self.size, self.close = size, close
        self._items: OrderedDict = OrderedDict()
        self._pid = os.getpid()

    def get(self, key, make: Callable[[], Any]):
        if self._pid != os.getpid():
            self._items, self._pid = OrderedDict(), os.getpid()
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = make()
        self._items[key] = value
        while len(self._items) > self.size:
            _, old = self._items.popitem(last=False)
            if self.close:
                self.close(old)
        return value

    def clear(self) -> None:
        while self._items:
            _, old = self._items.popitem()
            if self.close:
                self.close(old)


class Source:
    """Base: ``images``, ``bands``, ``dtype``, ``read(i, window)``."""

    images: list[ImageInfo]
    bands: int
    dtype: str
    description: str
    res: float | None = None

    def read(self, index: int, row: int, col: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(before (C, h, w) float32, after (C, h, w) float32, label (h, w) uint8)``.

        The window may reach outside the image: those pixels are 0 with label 255, as are
        pixels that are nodata in either date.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Release open files."""

    def __getstate__(self) -> dict:  # picklable for DataLoader workers: caches are per process
        state = dict(self.__dict__)
        for k, v in list(state.items()):
            if isinstance(v, _LRU):
                state[k] = _LRU(v.size, v.close)
        return state


# ----------------------------------------------------------------------------- folder


def _index(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES}


def _open(path: Path, what: str):
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioIOError as exc:
        raise InputError(f"cannot read {what} {path}: {exc}; expected a PNG or GeoTIFF") from None


def _read_window(ds, row: int, col: int, height: int, width: int, bands: list[int] | int, fill: float = 0):
    from rasterio.windows import Window

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ds.read(bands, window=Window(col, row, width, height), boundless=True, fill_value=fill)


def map_labels(raw: np.ndarray, label_map: dict[int, int], schema: ClassSchema, where: str) -> np.ndarray:
    """Raw label values -> class ids (uint8, 255 = ignore); InputError on values outside the schema."""
    lab = raw.astype(np.int64)
    out = lab.copy()
    for src, dst in label_map.items():
        out[lab == src] = dst
    bad = np.setdiff1d(np.unique(out), np.r_[np.arange(schema.num_classes), NODATA_CLASS])
    if bad.size:
        hint = " (LEVIR-CD and WHU-CD labels: --label-map 255:1)" if 255 in np.unique(lab) and not label_map else ""
        raise InputError(
            f"label {where} holds values {bad[:10].tolist()} that are not classes of schema {schema.name!r} "
            f"(0..{schema.num_classes - 1}); map them with --label-map RAW:CLASS{hint}"
        )
    return out.astype(np.uint8)


class FolderSource(Source):
    """A dataset folder ``A/ B/ label/ [list/train.txt list/val.txt]``, read lazily.

    Args:
        root: the folder.
        schema: class schema.
        label_map: raw value -> class id.
        bands: band count the model expects (None: the images').

    Raises:
        InputError: missing sub-folder or counterpart, unreadable image, sizes or band
            counts that differ, label values outside the schema, no change pixel at all.
    """

    def __init__(self, root: str | Path, schema: ClassSchema, label_map: dict[int, int] | None = None, bands: int | None = None) -> None:
        self.root = Path(root)
        self.schema = schema
        self.label_map = dict(label_map or {})
        self.files = self._pair_files()
        self.names = list(self.files)
        self._handles = _LRU(24, lambda ds: ds.close())
        self.images = [self._describe(name, bands) for name in self.names]
        self.description = f"folder {self.root} ({len(self.images)} images)"
        if not any(im.changed.any() for im in self.images):
            hint = " (LEVIR-CD and WHU-CD store change as 255: use --label-map 255:1)" if not self.label_map else ""
            raise InputError(f"the labels in {self.root / 'label'} hold no change pixel{hint}")

    def _pair_files(self) -> dict[str, tuple[Path, Path, Path]]:
        dirs = {k: self.root / k for k in ("A", "B", "label")}
        for k, d in dirs.items():
            if not d.is_dir():
                raise InputError(f"dataset folder {self.root} has no {k}/ sub-folder; expected A/ (before), B/ (after) and label/")
        a, b, lab = (_index(dirs[k]) for k in ("A", "B", "label"))
        if not a:
            raise InputError(f"{dirs['A']} holds no PNG or GeoTIFF image")
        for name in a:
            for other, idx in (("B", b), ("label", lab)):
                if name not in idx:
                    raise InputError(f"{a[name]} has no counterpart in {dirs[other]}; every image needs A/, B/ and label/ files of the same name")
        return {n: (a[n], b[n], lab[n]) for n in a}

    def _describe(self, name: str, bands: int | None) -> ImageInfo:
        pa, pb, pl = self.files[name]
        with _open(pa, "before image") as da, _open(pb, "after image") as db, _open(pl, "label") as dl:
            if (da.height, da.width, da.count) != (db.height, db.width, db.count) or (da.height, da.width) != (dl.height, dl.width):
                raise InputError(
                    f"size mismatch for {name!r} in {self.root}: A {da.width}x{da.height}x{da.count}, B {db.width}x{db.height}x{db.count}, "
                    f"label {dl.width}x{dl.height} (width x height x bands); the three files of a sample must have the same size and A/B the same bands"
                )
            if not hasattr(self, "bands"):
                self.bands, self.dtype = da.count, da.dtypes[0]
                if bands is not None and da.count != bands:
                    raise InputError(f"{pa} has {da.count} band(s); the model expects {bands}")
            elif da.count != self.bands:
                raise InputError(f"{pa} has {da.count} band(s) but earlier images have {self.bands}; all images need the same bands")
            try:
                raw = dl.read(1)
            except Exception as exc:  # noqa: BLE001 - any decoding error of a user file
                raise InputError(f"cannot read label {pl}: {exc}") from None
        label = map_labels(raw, self.label_map, self.schema, str(pl))
        labelled, changed, classes = summarise(label)
        return ImageInfo(name, int(label.shape[0]), int(label.shape[1]), labelled, changed, classes=classes)

    def split_lists(self) -> tuple[list[str], list[str]] | None:
        """Names of ``list/train.txt`` and ``list/val.txt`` when both exist."""
        lists = self.root / "list"
        if not ((lists / "train.txt").is_file() and (lists / "val.txt").is_file()):
            return None
        train, val = (self._read_list(lists / f) for f in ("train.txt", "val.txt"))
        both = set(train) & set(val)
        if both:
            raise InputError(f"{sorted(both)[:5]} are listed in both list/train.txt and list/val.txt; a validation image must not be trained on")
        return train, val

    def _read_list(self, path: Path) -> list[str]:
        names = []
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            line = line.strip()
            if line and not line.startswith("#"):
                if Path(line).stem not in self.files:
                    raise InputError(f"{path}, line {i}: {line!r} is not an image in {self.root / 'A'}")
                names.append(Path(line).stem)
        return names

    def read(self, index, row, col, height, width):
        name = self.names[index]
        pa, pb, pl = self.files[name]
        bands = list(range(1, self.bands + 1))
        try:
            b = _read_window(self._handles.get(pa, lambda: _open(pa, "before image")), row, col, height, width, bands).astype(np.float32)
            a = _read_window(self._handles.get(pb, lambda: _open(pb, "after image")), row, col, height, width, bands).astype(np.float32)
            raw = _read_window(self._handles.get(pl, lambda: _open(pl, "label")), row, col, height, width, 1, fill=NODATA_CLASS)
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - corrupt data of a user file
            raise InputError(f"cannot read a window of {name!r} in {self.root}: {exc}") from None
        label = map_labels(raw, self.label_map, self.schema, str(pl))
        inside = np.zeros((height, width), bool)
        inside[max(0, -row) : max(0, self.images[index].height - row), max(0, -col) : max(0, self.images[index].width - col)] = True
        label[~inside | ~np.isfinite(b).all(0) | ~np.isfinite(a).all(0)] = NODATA_CLASS
        b[:, ~inside] = 0
        a[:, ~inside] = 0
        return np.nan_to_num(b), np.nan_to_num(a), label

    def close(self) -> None:
        self._handles.clear()


# ----------------------------------------------------------------------------- scene


class SceneSource(Source):
    """A labelled scene: before/after rasters and labels (polygons or a class raster).

    Args:
        before, after: rasters of the two dates.
        labels: label polygons (any OGR source) or a class raster (by file suffix).
        schema: class schema.
        class_field, layer: attribute and layer of the label polygons.
        aoi, aoi_layer: optional AOI polygons (inside, unlabelled pixels are *no change*;
            outside they are ignored); default: the labels' extent (a class raster:
            everything it covers).
        label_map: raw value -> class id for a class raster.
        bands: band count the model expects.
    """

    def __init__(self, before, after, labels, schema: ClassSchema, *, class_field: str = "class", layer: str | None = None,
                 aoi=None, aoi_layer: str | None = None, label_map: dict[int, int] | None = None, bands: int | None = None) -> None:
        from ..raster import open_pair

        self.paths = (Path(before), Path(after))
        self.labels_path = Path(labels)
        self.schema = schema
        self._pair = _LRU(1, lambda p: p.close())
        with open_pair(before, after, bands) as pair:
            self.bands, self.dtype = pair.count, str(pair.dtype)
            self.res = float(abs(pair.res[0])) if pair.crs is not None else None
            self.crs = pair.crs.to_string() if pair.crs is not None else None
            self.region = self._region(pair, aoi, aoi_layer, layer)
            self.label = self._rasterise(pair, schema, class_field, layer, aoi, aoi_layer, label_map)
        r0, c0, h, w = self.region
        labelled, changed, classes = summarise(self.label)
        self.images = [ImageInfo(f"{self.paths[0].name} labelled area", h, w, labelled, changed, (r0, c0), classes)]
        self.description = f"scene {self.paths[0].name} / {self.paths[1].name} / {self.labels_path.name} ({w}x{h} px labelled area)"

    @property
    def is_raster(self) -> bool:
        return self.labels_path.suffix.lower() in RASTER_SUFFIXES

    def _region(self, pair, aoi, aoi_layer, layer) -> tuple[int, int, int, int]:
        from ..raster import label_extent

        common = pair.window
        extent = common if (self.is_raster and aoi is None) else label_extent(self.labels_path, pair, layer=layer, aoi=aoi, aoi_layer=aoi_layer)
        c0, r0 = max(int(extent.col_off), int(common.col_off)), max(int(extent.row_off), int(common.row_off))
        c1 = min(int(extent.col_off + extent.width), int(common.col_off + common.width))
        r1 = min(int(extent.row_off + extent.height), int(common.row_off + common.height))
        if c1 <= c0 or r1 <= r0:
            raise InputError(
                f"the labelled area of {self.labels_path.name} lies outside the part covered by both {self.paths[0].name} and "
                f"{self.paths[1].name}; label inside the overlap of the two dates"
            )
        return r0, c0, r1 - r0, c1 - c0

    def _rasterise(self, pair, schema, class_field, layer, aoi, aoi_layer, label_map) -> np.ndarray:
        from rasterio.windows import Window

        from ..raster import rasterize_aoi, rasterize_labels, read_class_raster

        r0, c0, h, w = self.region
        win = Window(c0, r0, w, h)
        if self.is_raster:
            lab = read_class_raster(self.labels_path, pair, label_map, window=win)
            if aoi is not None:
                lab[~rasterize_aoi(aoi, aoi_layer, pair, win)] = NODATA_CLASS
            bad = np.setdiff1d(np.unique(lab), np.r_[np.arange(schema.num_classes), NODATA_CLASS])
            if bad.size:
                raise InputError(
                    f"class raster {self.labels_path.name} holds values {bad[:10].tolist()} that are not classes of schema "
                    f"{schema.name!r} (0..{schema.num_classes - 1}); map them with --label-map RAW:CLASS"
                )
        else:
            lab = rasterize_labels(self.labels_path, schema, pair, class_field=class_field, layer=layer, aoi=aoi, aoi_layer=aoi_layer, window=win)
        if not (lab != NODATA_CLASS).any():
            raise InputError(f"no labelled pixel of {self.labels_path.name} falls inside the rasters")
        if not ((lab != NODATA_CLASS) & (lab > 0)).any():
            hint = " (a class raster that marks change with 255, as LEVIR-CD does, needs --label-map 255:1)" if self.is_raster else ""
            raise InputError(f"labels {self.labels_path.name} hold no change class inside the labelled area; label at least one changed area (class ids >= 1){hint}")
        return lab

    def _open_pair(self):
        from ..raster import open_pair

        return self._pair.get("pair", lambda: open_pair(*self.paths, self.bands))

    def read(self, index, row, col, height, width):
        from rasterio.windows import Window

        r0, c0, h, w = self.region
        try:
            b, a, valid = self._open_pair().read(Window(c0 + col, r0 + row, width, height))
        except Exception as exc:  # noqa: BLE001 - corrupt blocks of a user file
            raise InputError(f"cannot read pixels of {self.paths[0].name} / {self.paths[1].name} at row {r0 + row}, column {c0 + col}: {exc}") from None
        label = np.full((height, width), NODATA_CLASS, np.uint8)
        rs, cs = max(0, row), max(0, col)
        re, ce = min(h, row + height), min(w, col + width)
        if re > rs and ce > cs:
            label[rs - row : re - row, cs - col : ce - col] = self.label[rs:re, cs:ce]
        label[~valid] = NODATA_CLASS
        return b, a, label

    def close(self) -> None:
        self._pair.clear()


def open_source(config, schema: ClassSchema, bands: int | None = None) -> Source:
    """The source a :class:`~engine.training.config.TrainConfig` names."""
    from ..schema import parse_label_map

    lmap = parse_label_map(config.label_map)
    if config.dataset:
        return FolderSource(config.dataset, schema, lmap, bands)
    return SceneSource(config.before, config.after, config.labels, schema, class_field=config.class_field, layer=config.labels_layer,
                       aoi=config.aoi, aoi_layer=config.aoi_layer, label_map=lmap, bands=bands)
