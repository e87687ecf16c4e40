"""Open, validate and align georeferenced rasters and labels (heavy module: rasterio, fiona).

The *before* raster defines the pixel grid everything else is put on:

- :func:`open_pair` opens *before* and *after*; *after* is warped on the fly onto
  *before*'s grid with :class:`rasterio.vrt.WarpedVRT` (another CRS, resolution or
  extent is fine), no temporary file is written. :meth:`RasterPair.read` reads any
  window of that grid, also partly or wholly outside it, with a validity mask that is
  false outside either raster and on nodata in either.
- :func:`rasterize_labels` burns label polygons from any OGR source (GeoPackage,
  Shapefile, GeoJSON ...) onto a grid: class ids from a field holding schema names or
  ids, 0 (*no change*) on unlabelled pixels inside the area of interest (AOI), 255
  (ignore) outside it. The AOI is the labels' extent or an explicit polygon layer.
- :func:`read_class_raster` reads a class raster (values = class ids) onto a grid, with
  an optional raw-value -> class-id map (LEVIR-CD: ``{255: 1}``).

rasterio datasets are not thread-safe: open them in the thread that reads them.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from .errors import InputError
from .schema import NODATA_CLASS, ClassSchema

log = logging.getLogger(__name__)

__all__ = [
    "Grid",
    "RasterPair",
    "open_pair",
    "open_raster",
    "grid_of",
    "rasterize_labels",
    "label_extent",
    "read_class_raster",
    "window_of_bounds",
    "write_class_raster",
]


@dataclass(frozen=True)
class Grid:
    """A pixel grid: CRS (may be None for plain images), affine transform and size in pixels."""

    crs: Any
    transform: Any
    width: int
    height: int

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in CRS units."""
        return _bounds(self)

    @property
    def res(self) -> tuple[float, float]:
        return (abs(self.transform.a), abs(self.transform.e))


def _bounds(grid: Any) -> tuple[float, float, float, float]:
    west, south, east, north = rasterio.transform.array_bounds(grid.height, grid.width, grid.transform)
    return (min(west, east), min(south, north), max(west, east), max(south, north))


def _as_grid(grid: Any) -> Grid:
    """A :class:`Grid` from a Grid, a RasterPair, an open dataset or a raster path."""
    if isinstance(grid, Grid):
        return grid
    if isinstance(grid, (str, Path)):
        return grid_of(grid)
    try:
        return Grid(grid.crs, grid.transform, int(grid.width), int(grid.height))
    except AttributeError:
        raise TypeError(f"expected a Grid, a RasterPair, a dataset or a raster path, got {type(grid).__name__}") from None


def open_raster(path: str | Path, what: str = "raster"):
    """Open a raster with rasterio, turning failures into an :class:`InputError` that names the file."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{what} {p} does not exist; check the path")
    try:
        return rasterio.open(p)
    except RasterioIOError as exc:
        raise InputError(f"cannot read {what} {p}: {exc}. Expected a raster GDAL can open (GeoTIFF, PNG, JP2, VRT ...)") from None


def grid_of(path: str | Path) -> Grid:
    """The pixel grid of a raster file."""
    with open_raster(path) as ds:
        return Grid(ds.crs, ds.transform, ds.width, ds.height)


def _is_georeferenced(ds) -> bool:
    return ds.crs is not None


class RasterPair:
    """*before* and *after* on *before*'s grid. Use as a context manager (see :func:`open_pair`).

    Attributes:
        before: the *before* dataset (the reference grid).
        after: *after* warped onto *before*'s grid (a ``WarpedVRT``; the plain dataset when
            neither raster has a CRS, in which case both must have the same size).
        crs, transform, width, height, res: *before*'s grid.
        count: bands per date; dtype: *before*'s data type.
        window: the common extent of the two footprints on *before*'s grid, rounded inward.
        nodata_before, nodata_after: nodata values (None when the raster has none).
    """

    def __init__(self, before_path: str | Path, after_path: str | Path, bands: int | None = None) -> None:
        self.before_path = Path(before_path)
        self.after_path = Path(after_path)
        self.before = open_raster(before_path, "before raster")
        self._after_src = None
        self.after = None
        try:
            self._after_src = open_raster(after_path, "after raster")
            self._setup(bands)
            self._masked = (_has_masks(self.before), _has_masks(self.after))
            dtypes = {np.dtype(d) for d in (*self.before.dtypes, *self.after.dtypes)}
            self._floating = any(d.kind == "f" for d in dtypes)
            #: 8 or 16 when both dates hold unsigned integers of at most that many bits (what
            #: ``read(raw=True)`` returns: prediction normalises the integers itself), else None
            self.integer_bits = (8 if dtypes <= {np.dtype(np.uint8)} else 16) if dtypes <= {np.dtype(np.uint8), np.dtype(np.uint16)} else None
        except BaseException:
            self.close()
            raise

    def _setup(self, bands: int | None) -> None:
        b, a = self.before, self._after_src
        bn, an = self.before_path.name, self.after_path.name
        if b.count != a.count:
            raise InputError(
                f"{bn} has {b.count} band(s) but {an} has {a.count}; both dates need the same bands in the same order"
            )
        if bands is not None and b.count != bands:
            raise InputError(
                f"{bn} has {b.count} band(s); the model expects {bands}. Choose a model trained on {b.count}-band "
                f"imagery or export {bands} bands"
            )
        self.crs, self.transform, self.width, self.height = b.crs, b.transform, b.width, b.height
        self.res = b.res
        self.count, self.dtype = b.count, b.dtypes[0]
        self.nodata_before, self.nodata_after = b.nodata, a.nodata
        if _is_georeferenced(b) != _is_georeferenced(a):
            has, lacks = (bn, an) if _is_georeferenced(b) else (an, bn)
            raise InputError(
                f"{has} has a coordinate reference system but {lacks} has none; assign the CRS to {lacks} "
                "(QGIS: Raster > Projections > Assign Projection) so the two can be aligned"
            )
        if not _is_georeferenced(b):
            if (b.width, b.height) != (a.width, a.height):
                raise InputError(
                    f"{bn} is {b.width}x{b.height} px and {an} is {a.width}x{a.height} px, and neither has a CRS, "
                    "so they cannot be aligned; georeference both or give images of the same size"
                )
            self.after = a
            self._after_alpha = False
            self.window = Window(0, 0, b.width, b.height)
            return
        if _same_grid(a, b):
            # the common case (two exports of one area): read *after* directly; a warp onto
            # an identical grid costs as much as decoding the file and changes nothing
            self.after = a
            self._after_alpha = False
            self.window = Window(0, 0, b.width, b.height)
            return
        # Nodata in the after raster stays nodata; without one, an alpha band marks where
        # the warped raster has data (outside its footprint GDAL would write plain zeros).
        has_mask = a.nodata is not None or any(
            rasterio.enums.MaskFlags.per_dataset in f or rasterio.enums.MaskFlags.alpha in f for f in a.mask_flag_enums
        )
        kwargs = dict(crs=b.crs, transform=b.transform, width=b.width, height=b.height, resampling=Resampling.bilinear)
        if a.nodata is not None:
            kwargs.update(src_nodata=a.nodata, nodata=a.nodata)
        elif not has_mask:
            kwargs.update(add_alpha=True)
        self._after_alpha = bool(kwargs.get("add_alpha"))
        self.after = WarpedVRT(a, **kwargs)
        self.window = self._common_window()

    def _common_window(self) -> Window:
        from rasterio.warp import transform_bounds

        a = self._after_src
        left, bottom, right, top = transform_bounds(a.crs, self.crs, *a.bounds, densify_pts=21)
        bl, bb, br, bt = self.before.bounds
        il, ib, ir, it = max(left, bl), max(bottom, bb), min(right, br), min(top, bt)
        win = None
        if il < ir and ib < it:
            win = window_of_bounds(self, (il, ib, ir, it))
        if win is None or win.width <= 0 or win.height <= 0:
            raise InputError(
                f"{self.before_path.name} and {self.after_path.name} do not overlap: before covers "
                f"{_fmt_bounds(self.before.bounds)}, after covers {_fmt_bounds((left, bottom, right, top))} "
                f"(in {self.crs}). Give two rasters of the same place"
            )
        return win

    def read(self, window: Window, raw: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Read one window of *before*'s grid from both dates.

        Args:
            window: any window on *before*'s grid; parts outside the raster are allowed.
            raw: return the values as ``uint16`` when :attr:`integer_bits` is 16, ``uint8``
                when it is 8 (no float conversion by GDAL: prediction casts while it
                normalises); ignored when it is None.

        Returns:
            ``(before (C, h, w) float32, after (C, h, w) float32, valid (h, w) bool)``; pixels
            outside either raster or nodata in either are ``valid == False`` and 0 in both arrays.
        """
        dtype = np.dtype(np.uint8 if self.integer_bits == 8 else np.uint16) if raw and self.integer_bits else np.dtype(np.float32)
        w, h = int(round(window.width)), int(round(window.height))
        inner, sl = _clip_window(window, self.width, self.height)
        if inner is None:
            return np.zeros((self.count, h, w), dtype), np.zeros((self.count, h, w), dtype), np.zeros((h, w), bool)
        bands = list(range(1, self.count + 1))
        b = self.before.read(bands, window=inner, out_dtype=dtype)
        a = self.after.read(bands, window=inner, out_dtype=dtype)
        v = _valid_mask(self.before, self._masked[0], bands, inner)
        if self._after_alpha:
            v &= self.after.read(self.count + 1, window=inner) > 0
        else:
            v &= _valid_mask(self.after, self._masked[1], bands, inner)
        if self._floating:
            v &= np.isfinite(b).all(0) & np.isfinite(a).all(0)
        if not v.all():
            if self._floating:  # NaN * 0 is NaN: a masked store
                b[:, ~v] = 0
                a[:, ~v] = 0
            else:  # a multiply: several times faster than a masked store
                b *= v
                a *= v
        if (int(inner.width), int(inner.height)) == (w, h):
            return b, a, v  # the window lies inside the raster: no padded copy
        out_b = np.zeros((self.count, h, w), dtype)
        out_a = np.zeros((self.count, h, w), dtype)
        valid = np.zeros((h, w), bool)
        out_b[(slice(None),) + sl] = b
        out_a[(slice(None),) + sl] = a
        valid[sl] = v
        return out_b, out_a, valid

    def close(self) -> None:
        for ds in (self.after if self.after is not self._after_src else None, self._after_src, self.before):
            if ds is not None:
                try:
                    ds.close()
                except Exception:  # noqa: BLE001 - closing is best effort
                    pass

    def __enter__(self) -> "RasterPair":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_pair(before: str | Path, after: str | Path, bands: int | None = None) -> RasterPair:
    """Open *before* and *after*, *after* aligned on *before*'s grid.

    Args:
        before: path of the reference raster (any GDAL format).
        after: path of the later raster; any CRS, resolution or extent overlapping *before*.
        bands: band count the model expects, or None to skip that check.

    Raises:
        InputError: unreadable file (named), different band counts, ``bands`` mismatch,
            a CRS on one raster but not the other, or no overlap between the footprints.
    """
    return RasterPair(before, after, bands)


def _same_grid(a, b) -> bool:
    """Whether two open rasters lie on the same grid (CRS, transform and size)."""
    return (a.width, a.height) == (b.width, b.height) and a.crs == b.crs and a.transform.almost_equals(b.transform)


def _has_masks(ds) -> bool:
    """Whether any band of ``ds`` has a mask (nodata, alpha, per-dataset) GDAL must read."""
    return not all(f == [rasterio.enums.MaskFlags.all_valid] for f in ds.mask_flag_enums)


def _valid_mask(ds, masked: bool, bands: list, window: Window) -> np.ndarray:
    """``(h, w)`` bool: GDAL's masks of every band set (no read when ``masked`` is False)."""
    if not masked:
        return np.ones((int(window.height), int(window.width)), bool)
    return np.all(ds.read_masks(bands, window=window) > 0, axis=0)


def _clip_window(window: Window, width: int, height: int) -> tuple[Window | None, tuple[slice, slice]]:
    """The part of ``window`` inside a ``width x height`` grid and where it goes in the window's array."""
    col, row = int(round(window.col_off)), int(round(window.row_off))
    w, h = int(round(window.width)), int(round(window.height))
    c0, r0 = max(col, 0), max(row, 0)
    c1, r1 = min(col + w, width), min(row + h, height)
    if c1 <= c0 or r1 <= r0:
        return None, (slice(0, 0), slice(0, 0))
    return Window(c0, r0, c1 - c0, r1 - r0), (slice(r0 - row, r1 - row), slice(c0 - col, c1 - col))


def window_of_bounds(grid: Any, bounds: tuple[float, float, float, float], clip: bool = True) -> Window | None:
    """The window of ``grid`` covering ``bounds`` (left, bottom, right, top), rounded inward.

    Args:
        grid: anything with ``transform``, ``width``, ``height``.
        bounds: in the grid's CRS.
        clip: clip the window to the grid.

    Returns:
        A window with integer offsets and size, or None when it is empty.
    """
    inv = ~grid.transform
    xs, ys = zip(*[inv * (x, y) for x in (bounds[0], bounds[2]) for y in (bounds[1], bounds[3])])
    eps = 1e-6
    c0, c1 = math.ceil(min(xs) - eps), math.floor(max(xs) + eps)
    r0, r1 = math.ceil(min(ys) - eps), math.floor(max(ys) + eps)
    if clip:
        c0, r0 = max(c0, 0), max(r0, 0)
        c1, r1 = min(c1, grid.width), min(r1, grid.height)
    if c1 <= c0 or r1 <= r0:
        return None
    return Window(c0, r0, c1 - c0, r1 - r0)


def _fmt_bounds(b) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in b) + ")"


# ----------------------------------------------------------------------------- labels


def _open_layer(path: str | Path, layer: str | None, what: str):
    import fiona

    p = Path(path)
    if not p.exists():
        raise InputError(f"{what} {p} does not exist; check the path")
    try:
        layers = fiona.listlayers(str(p))
    except Exception as exc:  # noqa: BLE001 - fiona raises several kinds
        raise InputError(f"cannot read {what} {p}: {exc}. Expected a vector file OGR can open (GeoPackage, Shapefile, GeoJSON ...)") from None
    if layer is None:
        if len(layers) == 1:
            layer = layers[0]
        elif "labels" in layers and what == "labels":
            layer = "labels"
        elif "aoi" in layers and what == "AOI":
            layer = "aoi"
        else:
            raise InputError(f"{what} {p} has several layers ({', '.join(layers)}); name the one to use")
    elif layer not in layers:
        raise InputError(f"{what} {p} has no layer {layer!r}; its layers are {', '.join(layers)}")
    try:
        return fiona.open(str(p), layer=layer)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"cannot read layer {layer!r} of {what} {p}: {exc}") from None


def _read_geoms(path, layer, grid: Grid, what: str, field: str | None = None, schema: ClassSchema | None = None):
    """Geometries of a layer in the grid's CRS, with class ids when ``field`` is given."""
    from fiona.transform import transform_geom
    from shapely.geometry import mapping, shape

    out: list[tuple[dict, int]] = []
    with _open_layer(path, layer, what) as src:
        src_crs = src.crs_wkt or None
        if field is not None:
            props = list(src.schema.get("properties", {}))
            if field not in props:
                raise InputError(
                    f"{what} {Path(path).name} has no field {field!r}; its fields are {', '.join(props) or '(none)'}. "
                    "Name the field that holds the class with --class-field"
                )
        if not src_crs and grid.crs is not None:
            log.warning("%s %s has no CRS; assuming the raster's CRS", what, path)
        for feat in src:
            geom = feat.geometry
            if geom is None:
                continue
            g = dict(geom) if not hasattr(geom, "__geo_interface__") else geom.__geo_interface__
            if src_crs and grid.crs is not None:
                g = transform_geom(src_crs, grid.crs.to_wkt(), g)
                g = dict(g) if not hasattr(g, "__geo_interface__") else g.__geo_interface__
            if shape(g).is_empty:
                continue
            cid = 1
            if field is not None:
                value = feat.properties.get(field)
                where = f"{Path(path).name}, feature {feat.id}, field {field!r}"
                if value is None:
                    raise InputError(f"label value missing in {where}; give every polygon a class name or id")
                cid = schema.lookup(value, where=where)
            out.append((mapping(shape(g)), cid))
    return out


def label_extent(labels_path: str | Path, grid: Any, layer: str | None = None, aoi: str | Path | None = None, aoi_layer: str | None = None) -> Window:
    """The AOI window on ``grid``: the extent of the AOI polygons, or else of the labels.

    Raises:
        InputError: empty layer, or the AOI/labels do not overlap the grid.
    """
    g = _as_grid(grid)
    path, lyr, what = (aoi, aoi_layer, "AOI") if aoi is not None else (labels_path, layer, "labels")
    geoms = _read_geoms(path, lyr, g, what)
    if not geoms:
        raise InputError(f"{what} {Path(path).name} has no polygons; draw at least one")
    return _geoms_window(geoms, g, path, what)


def _geoms_window(geoms, g: Grid, path, what: str) -> Window:
    from shapely.geometry import shape
    from shapely.ops import unary_union

    bounds = unary_union([shape(x) for x, _ in geoms]).bounds
    win = window_of_bounds(g, bounds)
    if win is None:
        raise InputError(
            f"{what} {Path(path).name} lie outside the rasters: they cover {_fmt_bounds(bounds)} but the rasters "
            f"cover {_fmt_bounds(_bounds(g))} (in {g.crs}). Check that they show the same place and their CRS is set"
        )
    return win


def rasterize_labels(
    labels_path: str | Path,
    schema: ClassSchema,
    grid: Any,
    class_field: str = "class",
    layer: str | None = None,
    aoi: str | Path | None = None,
    aoi_layer: str | None = None,
    window: Window | None = None,
) -> np.ndarray:
    """Burn label polygons onto a grid.

    Args:
        labels_path: any OGR vector source of polygons.
        schema: the class schema; ``class_field`` values are class names or ids of it.
        grid: target grid (a :class:`Grid`, :class:`RasterPair`, dataset or raster path).
        class_field: attribute holding the class.
        layer: layer name (default: the only layer, or ``labels``).
        aoi: optional polygon layer bounding the labelled area; default the labels' extent.
        aoi_layer: layer of ``aoi``.
        window: rasterise only this window of the grid (default: the whole grid).

    Returns:
        ``uint8 (H, W)`` class ids: label classes where polygons are, 0 (no change) elsewhere
        inside the AOI, 255 (ignore) outside it. Where polygons overlap, the higher id wins.

    Raises:
        InputError: unreadable file, missing field, a value not in the schema, no polygons,
            or labels/AOI outside the grid.
    """
    from rasterio import features
    from shapely.geometry import box, mapping

    g = _as_grid(grid)
    labels = _read_geoms(labels_path, layer, g, "labels", class_field, schema)
    if not labels:
        raise InputError(f"labels {Path(labels_path).name} hold no polygons; draw at least one labelled polygon")
    full = Window(0, 0, g.width, g.height)
    win = window or full
    sub_t = rasterio.windows.transform(win, g.transform)
    shape_hw = (int(win.height), int(win.width))
    if aoi is not None:
        aoi_geoms = _read_geoms(aoi, aoi_layer, g, "AOI")
        if not aoi_geoms:
            raise InputError(f"AOI {Path(aoi).name} has no polygons; draw the area you labelled")
        _geoms_window(aoi_geoms, g, aoi, "AOI")
        aoi_shapes = [(geom, 1) for geom, _ in aoi_geoms]
    else:
        lw = _geoms_window(labels, g, labels_path, "labels")
        b = rasterio.windows.bounds(lw, g.transform)
        aoi_shapes = [(mapping(box(*b)), 1)]
    # labels overlapping the grid at all?
    _geoms_window(labels, g, labels_path, "labels")
    inside = features.rasterize(aoi_shapes, out_shape=shape_hw, transform=sub_t, fill=0, dtype="uint8") > 0
    labels_sorted = sorted(labels, key=lambda t: t[1])
    burned = features.rasterize(
        [(geom, cid) for geom, cid in labels_sorted], out_shape=shape_hw, transform=sub_t, fill=0, dtype="uint8"
    )
    out = np.where(inside, burned, NODATA_CLASS).astype(np.uint8)
    return out


def rasterize_aoi(aoi: str | Path, aoi_layer: str | None, grid: Any, window: Window) -> np.ndarray:
    """Boolean ``(h, w)`` mask of the AOI polygons over ``window`` of ``grid``."""
    from rasterio import features

    g = _as_grid(grid)
    geoms = _read_geoms(aoi, aoi_layer, g, "AOI")
    if not geoms:
        raise InputError(f"AOI {Path(aoi).name} has no polygons; draw the area you labelled")
    t = rasterio.windows.transform(window, g.transform)
    return features.rasterize([(geom, 1) for geom, _ in geoms], out_shape=(int(window.height), int(window.width)), transform=t, fill=0, dtype="uint8") > 0


def read_class_raster(
    path: str | Path, grid: Any, label_map: dict[int, int] | None = None, window: Window | None = None
) -> np.ndarray:
    """Read a class raster onto a grid (nearest neighbour), applying ``label_map``.

    Args:
        path: single-band raster of class ids (or raw values mapped by ``label_map``).
        grid: target grid; a raster with no CRS must have the grid's size.
        label_map: raw value -> class id (``{255: 1}`` for LEVIR-CD); unmapped values are kept.
        window: read only this window of the grid.

    Returns:
        ``uint8 (h, w)``; 255 outside the raster, on its nodata and on values > 255.
    """
    g = _as_grid(grid)
    win = window or Window(0, 0, g.width, g.height)
    h, w = int(win.height), int(win.width)
    with open_raster(path, "class raster") as ds:
        if ds.crs is None or g.crs is None:
            if (ds.width, ds.height) != (g.width, g.height):
                raise InputError(
                    f"class raster {Path(path).name} is {ds.width}x{ds.height} px but the images are "
                    f"{g.width}x{g.height} px, and there is no CRS to align them; give a raster of the same size"
                )
            raw = ds.read(1, window=win, boundless=True, fill_value=ds.nodata if ds.nodata is not None else 0)
            valid = ds.read_masks(1, window=win, boundless=True) > 0
        else:
            kwargs: dict[str, Any] = dict(crs=g.crs, transform=g.transform, width=g.width, height=g.height, resampling=Resampling.nearest)
            if ds.nodata is None:
                kwargs["add_alpha"] = True
            else:
                kwargs.update(src_nodata=ds.nodata, nodata=ds.nodata)
            raw = np.zeros((h, w), ds.dtypes[0])
            valid = np.zeros((h, w), bool)
            inner, sl = _clip_window(win, g.width, g.height)
            if inner is not None:
                with WarpedVRT(ds, **kwargs) as vrt:
                    raw[sl] = vrt.read(1, window=inner)
                    valid[sl] = (vrt.read(2, window=inner) > 0) if ds.nodata is None else (vrt.read_masks(1, window=inner) > 0)
    raw = raw.astype(np.int64)
    out = raw.copy()
    for src, dst in (label_map or {}).items():
        out[raw == src] = dst
    out[~valid | (out < 0) | (out > NODATA_CLASS)] = NODATA_CLASS
    return out.astype(np.uint8).reshape(h, w)


def write_class_raster(path: str | Path, classes: np.ndarray, grid: Any, schema: ClassSchema | None = None) -> Path:
    """Write a ``uint8 (H, W)`` class raster as a GeoTIFF with nodata 255 (and a colour table).

    Args:
        path: output file.
        classes: class ids, 255 = nodata.
        grid: the grid the array lies on.
        schema: optional, adds a colour map from the class colours.
    """
    g = _as_grid(grid)
    p = Path(path)
    profile = dict(driver="GTiff", width=classes.shape[1], height=classes.shape[0], count=1, dtype="uint8",
                   crs=g.crs, transform=g.transform, nodata=NODATA_CLASS, compress="deflate")
    with rasterio.open(p, "w", **profile) as dst:
        dst.write(classes.astype(np.uint8), 1)
        if schema is not None:
            dst.write_colormap(1, {c.id: c.rgb() + (255,) for c in schema.classes})
    return p


def iter_windows(width: int, height: int, size: int, stride: int) -> Iterable[Window]:
    """Windows of ``size`` px every ``stride`` px covering a ``width x height`` area (last ones flush to the edge)."""
    cols = list(range(0, max(width - size, 0) + 1, stride))
    rows = list(range(0, max(height - size, 0) + 1, stride))
    if cols[-1] + size < width:
        cols.append(width - size)
    if rows[-1] + size < height:
        rows.append(height - size)
    for r in rows:
        for c in cols:
            yield Window(c, r, size, size)
