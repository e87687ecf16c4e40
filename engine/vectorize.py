"""Change polygons that talk: a class raster -> GeoPackage with S2M captions.

:func:`vectorize` reads a prediction GeoTIFF (band 1 = class ids, 255 = nodata; an
optional band 2 = confidence in percent) strip by strip and writes a GeoPackage with two
layers:

``changes``
    one polygon per 4-connected region of one change class (regions cut by strip
    borders are joined again), kept when it has at least ``min_pixels`` pixels and
    ``min_area`` square metres. Fields: ``class_id``, ``class_name``, ``category``,
    ``change_type``, ``area_m2``, ``pixels``, ``confidence`` (mean blended probability of
    the class over the region, 0-1), ``direction``, ``quantity`` and ``caption``.
    The region is described as the paper describes a change in an image: in the caption
    chip (the model's training chip, on a grid from the raster's top-left corner) that
    holds its centroid -- direction of the centroid on that chip's 3 x 3 grid, quantity
    from its pixel count with the thresholds scaled to the chip's area -- and rendered
    with the first template of Table 1 (or the neutral centre variant).

``captions``
    one feature per caption chip with a change: its footprint and
    :data:`engine.captions.CHIP_CAPTION_FIELDS` -- ``chip_row``/``chip_col`` (the chip's
    row and column in the chip grid), ``caption`` (the S2M sentences of the chip,
    joined), ``classes``/``directions``/``quantities`` (readable, ``;``-separated),
    ``changed_pixels`` and ``quadruples`` (JSON list). The sentences come
    from :func:`engine.captions.caption_chip`, the captioner used for training, applied
    to the predicted classes, with a template drawn per chip from a seeded generator.

Memory holds one strip of the raster and the regions still open at its bottom row.
Polygons are built in pixel coordinates (exact integers, so pieces from two strips
join exactly) and moved to the raster's CRS when written.

Heavy module (rasterio, fiona, shapely, scipy).
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np

from .captions import CHIP_CAPTION_FIELDS, QUANTITIES, Quadruple, caption_chip, chip_caption_attributes, direction_of, quantity_of, render
from .errors import InputError
from .progress import NullProgress, Progress
from .schema import ClassSchema

log = logging.getLogger(__name__)

CHANGES_LAYER = "changes"
CAPTIONS_LAYER = "captions"

CHANGES_FIELDS = {
    "class_id": "int",
    "class_name": "str",
    "category": "str",
    "change_type": "str",
    "area_m2": "float",
    "pixels": "int",
    "confidence": "float",
    "direction": "str",
    "quantity": "str",
    "caption": "str",
}
CAPTIONS_FIELDS = {name: ("int" if name in ("chip_row", "chip_col", "changed_pixels") else "str") for name in CHIP_CAPTION_FIELDS}


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def add(self, x: int) -> None:
        self.parent.setdefault(x, x)

    def find(self, x: int) -> int:
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: int, b: int) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            if rb < ra:
                ra, rb = rb, ra
            self.parent[rb] = ra
        return ra


class _Area:
    """Pixel count -> square metres for the raster's CRS."""

    def __init__(self, crs, transform) -> None:
        self.pixel_area = abs(transform.a * transform.e - transform.b * transform.d)
        self.geod = None
        self.factor = 1.0
        if crs is not None and getattr(crs, "is_geographic", False):
            from pyproj import Geod

            self.geod = Geod(ellps="WGS84")
        elif crs is not None:
            try:
                self.factor = float(crs.linear_units_factor[1])
            except Exception:  # noqa: BLE001 - unknown units: keep CRS units
                self.factor = 1.0

    def __call__(self, pixels: int, geom_crs) -> float:
        if self.geod is not None:
            area, _ = self.geod.geometry_area_perimeter(geom_crs)
            return abs(float(area))
        return float(pixels * self.pixel_area * self.factor * self.factor)


def _describe(schema: ClassSchema, class_id: int, pixels: int, row: float, col: float, height: int, width: int, chip: int) -> Quadruple:
    """The S2M quadruple of one region, in the caption chip holding its centroid."""
    r0 = int(row // chip) * chip
    c0 = int(col // chip) * chip
    h, w = min(chip, height - r0), min(chip, width - c0)
    cls = schema[class_id]
    quantity = quantity_of(pixels)
    return Quadruple(
        class_id=class_id,
        category=cls.singular if quantity == QUANTITIES[0] else cls.category,
        type=cls.type,
        direction=direction_of(row - r0, col - c0, h, w),
        quantity=quantity,
        pixels=int(pixels),
    )


def vectorize(
    raster: str | os.PathLike,
    out: str | os.PathLike,
    schema: ClassSchema,
    chip_size: int = 512,
    min_area: float = 0.0,
    min_pixels: int = 4,
    seed: int = 0,
    progress: Progress | None = None,
    overwrite: bool = True,
) -> dict[str, Any]:
    """Write the ``changes`` and ``captions`` layers of a class raster to a GeoPackage.

    Args:
        raster: class GeoTIFF (band 1 class ids, 255 nodata; band 2 confidence % if any).
        out: GeoPackage to write, under a temporary name renamed when complete
            (:class:`engine.outputs.OutputSet`); an existing file is replaced only
            with ``overwrite``, and never when the run fails.
        schema: the class schema of the raster.
        chip_size: caption chip side, pixels (the model's training chip).
        min_area: smallest region kept, square metres.
        min_pixels: smallest region kept, pixels.
        seed: seed of the per-chip template draw of the captions.
        progress: progress reporter and cancel flag.
        overwrite: replace an existing ``out``.

    Returns:
        ``{"path", "changes": N polygons, "captions": N chips, "dropped": N small regions}``.

    Raises:
        InputError: unreadable raster, ``out`` is the raster, a folder, exists without
            ``overwrite``, or cannot be written.
    """
    from .outputs import OutputSet

    with OutputSet({"out": out}, {"raster": raster}, overwrite=overwrite) as outputs:
        result = write_vectors(raster, outputs.temp("out"), schema, chip_size, min_area, min_pixels, seed, progress, final=Path(out))
        outputs.commit()
    return {**result, "path": str(out)}


def write_vectors(
    raster: str | os.PathLike,
    path: Path,
    schema: ClassSchema,
    chip_size: int = 512,
    min_area: float = 0.0,
    min_pixels: int = 4,
    seed: int = 0,
    progress: Progress | None = None,
    final: Path | None = None,
) -> dict[str, Any]:
    """:func:`vectorize` into ``path`` as it is (the caller owns temporary names and commits).

    Args:
        final: the path ``path`` will be moved to, for messages (default ``path``).

    Raises:
        InputError: unreadable raster, bad chip size, or a GeoPackage that cannot be written.
    """
    import rasterio
    from fiona.errors import DataIOError, DriverIOError, FionaError
    from rasterio.errors import RasterioError

    progress = progress or NullProgress()
    if chip_size < 1:
        raise InputError(f"caption chip size must be > 0 pixels, got {chip_size}")
    try:
        src = rasterio.open(raster)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"cannot read the class raster {raster}: {exc}") from None
    try:
        result = _vectorize(src, Path(path), schema, chip_size, min_area, min_pixels, seed, progress)
    except RasterioError as exc:
        raise InputError(f"cannot read the class raster {raster}: {str(exc.__cause__ or exc).splitlines()[0]}") from None
    except (FionaError, DataIOError, DriverIOError, OSError) as exc:
        target = final or path
        raise InputError(f"cannot write {target}: {str(exc).splitlines()[0]}. Check the free space and permissions of "
                         f"{Path(target).parent}, or choose another --vectors; nothing was replaced") from None
    finally:
        src.close()
    log.info("wrote %d change polygons and %d chip captions to %s", result["changes"], result["captions"], final or path)
    return {"path": str(final or path), **result}


def _vectorize(src, tmp: Path, schema: ClassSchema, chip_size: int, min_area: float, min_pixels: int, seed: int, progress) -> dict:
    import fiona
    import rasterio
    from rasterio.features import shapes
    from rasterio.windows import Window
    from scipy import ndimage
    from shapely.affinity import affine_transform
    from shapely.geometry import box, mapping, shape
    from shapely.ops import unary_union

    height, width, transform, crs = src.height, src.width, src.transform, src.crs
    has_conf = src.count >= 2
    area_of = _Area(crs, transform)
    t = transform
    to_crs = [t.a, t.b, t.d, t.e, t.c, t.f]
    crs_wkt = crs.to_wkt() if crs is not None else None
    K = schema.num_classes
    uf = _UnionFind()
    comps: dict[int, dict] = {}  # global id -> stats and pixel-space pieces
    prev_bottom: np.ndarray | None = None  # (width,) global ids of the previous strip's last row
    prev_cls: np.ndarray | None = None  # (width,) classes of that row
    next_id = 1
    n_changes = n_dropped = 0
    captions: list[dict] = []
    change_feats_schema = {"geometry": "Polygon", "properties": dict(CHANGES_FIELDS)}
    caption_schema = {"geometry": "Polygon", "properties": dict(CAPTIONS_FIELDS)}

    def finish(root: int, members: list[int], sink) -> None:
        nonlocal n_changes, n_dropped
        parts = [comps.pop(m) for m in members]
        pixels = sum(p["n"] for p in parts)
        cid = parts[0]["cls"]
        geom_px = unary_union([g for p in parts for g in p["geoms"]])
        geom = affine_transform(geom_px, to_crs)
        area = area_of(pixels, geom)
        if pixels < min_pixels or area < min_area:
            n_dropped += 1
            return
        row = sum(p["rs"] for p in parts) / pixels
        col = sum(p["cs"] for p in parts) / pixels
        conf = sum(p["conf"] for p in parts) / pixels / 100.0 if has_conf else float("nan")
        q = _describe(schema, cid, pixels, row, col, height, width, chip_size)
        c = schema[cid]
        if geom.geom_type != "Polygon":  # cannot happen for 4-connected regions; be safe
            geom = max(getattr(geom, "geoms", [geom]), key=lambda g: g.area)
        sink.write(
            {
                "geometry": mapping(geom),
                "properties": {
                    "class_id": cid,
                    "class_name": c.name,
                    "category": c.category,
                    "change_type": c.type,
                    "area_m2": round(area, 3),
                    "pixels": int(pixels),
                    "confidence": round(conf, 4) if has_conf else None,
                    "direction": q.direction,
                    "quantity": q.quantity,
                    "caption": render(q, 0),
                },
            }
        )
        n_changes += 1

    def flush(sink, keep_roots: set[int]) -> None:
        groups: dict[int, list[int]] = {}
        for gid in list(comps):
            groups.setdefault(uf.find(gid), []).append(gid)
        for root, members in groups.items():
            if root not in keep_roots:
                finish(root, members, sink)

    with fiona.open(tmp, "w", driver="GPKG", layer=CHANGES_LAYER, schema=change_feats_schema, crs_wkt=crs_wkt) as sink:
        n_strips = (height + chip_size - 1) // chip_size
        for s, r0 in enumerate(range(0, height, chip_size)):
            progress.check()
            h = min(chip_size, height - r0)
            win = Window(0, r0, width, h)
            cls = src.read(1, window=win)
            conf = src.read(2, window=win).astype(np.float64) if has_conf else None
            # -- captions of the chips in this strip
            for cj, c0 in enumerate(range(0, width, chip_size)):
                w = min(chip_size, width - c0)
                label = cls[:, c0 : c0 + w]
                quads, sentences = caption_chip(label, schema, random.Random(f"{seed}:{s}:{cj}"))
                if quads:
                    x0, y0 = transform * (c0, r0)
                    x1, y1 = transform * (c0 + w, r0 + h)
                    captions.append(
                        {
                            "geometry": mapping(box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))),
                            "properties": chip_caption_attributes(s, cj, quads, sentences),
                        }
                    )
            # -- connected regions per change class
            bottom = np.zeros(width, np.int64)
            rows = np.arange(r0, r0 + h, dtype=np.float64)[:, None]
            cols = np.arange(width, dtype=np.float64)[None, :]
            present = np.flatnonzero(np.bincount(cls.ravel(), minlength=256)[1:K]) + 1
            for cid in present:
                mask = cls == cid
                labels, n = ndimage.label(mask)  # 4-connectivity
                if n == 0:
                    continue
                lab = labels[mask]
                counts = np.bincount(lab, minlength=n + 1)
                rs = np.bincount(lab, weights=np.broadcast_to(rows, mask.shape)[mask], minlength=n + 1)
                cs = np.bincount(lab, weights=np.broadcast_to(cols, mask.shape)[mask], minlength=n + 1)
                cf = np.bincount(lab, weights=conf[mask], minlength=n + 1) if conf is not None else np.zeros(n + 1)
                base = next_id - 1
                next_id += n
                for k in range(1, n + 1):
                    gid = base + k
                    uf.add(gid)
                    comps[gid] = {"cls": int(cid), "n": int(counts[k]), "rs": rs[k], "cs": cs[k], "conf": cf[k], "geoms": []}
                px_transform = rasterio.Affine(1, 0, 0, 0, 1, r0)
                for geom, value in shapes(labels.astype(np.int32), mask=mask, connectivity=4, transform=px_transform):
                    comps[base + int(value)]["geoms"].append(shape(geom))
                top_ids = np.where(labels[0] > 0, labels[0] + base, 0)
                if prev_bottom is not None:
                    # 4-connected across the strip border: same column, same class
                    joined = (top_ids > 0) & (prev_bottom > 0) & (prev_cls == cid)
                    for a, b in set(zip(prev_bottom[joined].tolist(), top_ids[joined].tolist())):
                        uf.union(a, b)
                bottom = np.where(labels[-1] > 0, labels[-1] + base, bottom)
            # regions that reach the strip's bottom row stay open for the next strip
            keep = {uf.find(int(g)) for g in np.unique(bottom) if g > 0} if r0 + h < height else set()
            flush(sink, keep)
            uf.parent = {g: uf.find(g) for g in comps}  # forget finished regions
            prev_bottom, prev_cls = bottom, cls[-1].copy()
            progress.report((s + 1) / n_strips, f"strip {s + 1}/{n_strips}")
    with fiona.open(tmp, "w", driver="GPKG", layer=CAPTIONS_LAYER, schema=caption_schema, crs_wkt=crs_wkt) as sink:
        sink.writerecords(captions)
    return {"changes": n_changes, "captions": len(captions), "dropped": n_dropped}

