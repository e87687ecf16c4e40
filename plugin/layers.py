"""QGIS layers <-> the files the engine reads and writes.

Inputs: the engine reads files (GDAL rasters, OGR vectors). Any layer becomes one here:

- a raster layer that is a local GDAL file is used as it is; anything else (WMS/XYZ tiles,
  virtual rasters, other providers) is exported for an extent at a resolution to a
  temporary GeoTIFF (:class:`RasterExport`: prepared on the main thread, written in a worker
  thread). Alpha bands of rendered sources (web tiles) become a GDAL mask, so the engine
  sees RGB plus "no data where transparent";
- a vector layer is exported to a temporary GeoPackage (:func:`export_vector`) unless it is
  an unfiltered, unmodified single-layer OGR file: memory layers, edited but unsaved layers
  and filtered layers are written as the user sees them. The user's layers are never
  modified;
- vector labels can be rasterised on a reference grid for the caption command
  (:func:`rasterize_labels`).

Outputs: a change raster styled with the schema's colour table (paletted renderer), the
``changes`` and ``captions`` layers of a detection, and a ``captions`` layer built from
the caption command's chips, all added in a layer group (:func:`add_to_group`).

Temporary files live in one :class:`TempFolder` per job, removed when the job ends.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeature,
    QgsField,
    QgsFillSymbol,
    QgsGeometry,
    QgsLayerTreeGroup,
    QgsPalettedRasterRenderer,
    QgsProject,
    QgsProviderRegistry,
    QgsRasterFileWriter,
    QgsRasterLayer,
    QgsRasterPipe,
    QgsRectangle,
    QgsReferencedRectangle,
    QgsRendererCategory,
    QgsVectorFileWriter,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QVariant
from qgis.PyQt.QtGui import QColor

log = logging.getLogger("masktalk.layers")

#: Refuse exports larger than this many pixels a side (a typo in the resolution, a world extent).
MAX_EXPORT_SIDE = 40000


class LayerProblem(ValueError):
    """A layer cannot be used as an engine input; the message says why and what to do."""


# -- temporary files --------------------------------------------------------------------
class TempFolder:
    """One temporary folder per job; :meth:`cleanup` removes it and everything in it."""

    def __init__(self, prefix: str = "masktalk-") -> None:
        self.path = Path(tempfile.mkdtemp(prefix=prefix))

    def file(self, name: str) -> Path:
        return self.path / name

    def cleanup(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> "TempFolder":
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()


# -- rasters in ----------------------------------------------------------------------------
def local_raster_path(layer: QgsRasterLayer) -> str | None:
    """The file behind a raster layer if the engine can read it directly, else None."""
    if layer.providerType() != "gdal":
        return None
    parts = QgsProviderRegistry.instance().decodeUri("gdal", layer.source())
    path = parts.get("path") or layer.source()
    if parts.get("layerName"):  # a table of a GeoPackage etc.: not a plain file path
        return None
    provider = layer.dataProvider()
    if provider is not None and layer.crs() != provider.crs():
        # The user assigned a CRS in QGIS (a file without one, or a wrong one): the engine
        # would read the file's own; export it so the GeoTIFF carries the layer's CRS.
        return None
    return path if path and os.path.isfile(path) else None


def native_resolution(layer: QgsRasterLayer) -> float | None:
    """Pixel size of a layer that has one (files), None for web tiles and services."""
    provider = layer.dataProvider()
    if provider is None or not (provider.capabilities() & provider.Size):
        return None
    if layer.width() <= 0:
        return None
    return layer.extent().width() / layer.width()


def extent_in_crs(extent: QgsRectangle | QgsReferencedRectangle, crs: QgsCoordinateReferenceSystem, project=None) -> QgsRectangle:
    """``extent`` expressed in ``crs`` (a plain QgsRectangle is taken to be in ``crs`` already)."""
    if isinstance(extent, QgsReferencedRectangle) and extent.crs().isValid() and extent.crs() != crs:
        ct = QgsCoordinateTransform(extent.crs(), crs, (project or QgsProject.instance()).transformContext())
        return ct.transformBoundingBox(QgsRectangle(extent))
    return QgsRectangle(extent)


@dataclass
class RasterExport:
    """A raster layer to write to a GeoTIFF, prepared on the main thread.

    The provider is cloned at preparation, so :meth:`write` may run in a worker thread
    (a task's ``run()``, a Processing algorithm) while the user keeps using the layer.
    """

    provider: Any  # QgsRasterDataProvider clone
    crs: QgsCoordinateReferenceSystem
    extent: QgsRectangle
    width: int
    height: int
    path: Path
    transform_context: Any
    name: str = ""

    def write(self, feedback=None) -> Path:
        """Write the GeoTIFF (RGB + mask for rendered sources); returns its path.

        Raises:
            LayerProblem: the provider could not deliver the data or the file not be written.
        """
        from osgeo import gdal

        raw = self.path.with_name(self.path.stem + ".raw.tif")
        pipe = QgsRasterPipe()
        if not pipe.set(self.provider):
            raise LayerProblem(f"{self.name}: its data provider cannot be read for export")
        self.provider = None  # the pipe owns it now
        writer = QgsRasterFileWriter(str(raw))
        writer.setOutputFormat("GTiff")
        writer.setCreateOptions(["COMPRESS=DEFLATE", "TILED=YES", "BIGTIFF=IF_SAFER"])
        err = writer.writeRaster(pipe, self.width, self.height, self.extent, self.crs, self.transform_context, feedback)
        if err != QgsRasterFileWriter.NoError or not raw.is_file():
            raise LayerProblem(
                f"{self.name}: exporting {self.width}x{self.height} px failed (QgsRasterFileWriter error {int(err)}); "
                "check that the layer draws for this extent, or save it as a GeoTIFF first"
            )
        ds = gdal.Open(str(raw))
        alpha = None
        if ds is not None:
            for i in range(1, ds.RasterCount + 1):
                if ds.GetRasterBand(i).GetColorInterpretation() == gdal.GCI_AlphaBand:
                    alpha = i
        if ds is not None and alpha is not None:
            bands = [i for i in range(1, ds.RasterCount + 1) if i != alpha]
            # Mask inside the GeoTIFF (GDAL < 3.9 writes a side-car .msk by default); thread-local.
            previous = gdal.GetThreadLocalConfigOption("GDAL_TIFF_INTERNAL_MASK", None)
            gdal.SetThreadLocalConfigOption("GDAL_TIFF_INTERNAL_MASK", "YES")
            try:
                out = gdal.Translate(
                    str(self.path),
                    ds,
                    options=gdal.TranslateOptions(
                        bandList=bands, maskBand=alpha, creationOptions=["COMPRESS=DEFLATE", "TILED=YES", "BIGTIFF=IF_SAFER"]
                    ),
                )
                ok = out is not None
                out = None
            finally:
                gdal.SetThreadLocalConfigOption("GDAL_TIFF_INTERNAL_MASK", previous)
            ds = None
            raw.unlink(missing_ok=True)
            if not ok:
                raise LayerProblem(f"{self.name}: could not write {self.path}")
        else:
            ds = None
            raw.replace(self.path)
        return self.path


@dataclass
class PreparedRaster:
    """A raster input: a path the engine can read now, or an export to run first."""

    path: Path
    export: RasterExport | None = None

    def ensure(self, feedback=None) -> str:
        """Run the export if there is one (worker thread is fine); returns the file path."""
        if self.export is not None:
            self.export.write(feedback)
            self.export = None
        return str(self.path)


def prepare_raster(
    source: Any,
    temp: TempFolder,
    name: str,
    extent: QgsRectangle | QgsReferencedRectangle | None = None,
    resolution: float | None = None,
    project=None,
) -> PreparedRaster:
    """Turn a raster layer (or a path) into a file the engine reads. Main thread only.

    Args:
        source: ``QgsRasterLayer`` or a path.
        temp: where exports go.
        name: a short name for the file and messages (``before``, ``after``).
        extent: area to export (any CRS when referenced); default: the layer's extent
            (only for layers with a finite size, not for web tiles).
        resolution: pixel size in the layer CRS's units; default: the layer's own.

    Raises:
        LayerProblem: invalid layer, no extent or resolution for a service, export too large.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise LayerProblem(f"{name}: {path} does not exist")
        return PreparedRaster(path)
    layer = source
    if layer is None or not layer.isValid():
        raise LayerProblem(f"{name}: the layer is missing or invalid")
    path = local_raster_path(layer)
    if path is not None:
        return PreparedRaster(Path(path))
    crs = layer.crs()
    native = native_resolution(layer)
    if extent is None:
        if native is None:
            raise LayerProblem(
                f"{name}: layer '{layer.name()}' is a {layer.providerType()} service without a fixed size; "
                "choose an extent (map canvas, AOI layer) to export"
            )
        rect = layer.extent()
    else:
        rect = extent_in_crs(extent, crs, project)
        if native is not None:
            rect = rect.intersect(layer.extent())
    if rect.isEmpty():
        raise LayerProblem(f"{name}: the requested extent does not overlap layer '{layer.name()}'")
    res = resolution or native
    if not res or res <= 0:
        raise LayerProblem(
            f"{name}: layer '{layer.name()}' has no native resolution; give a resolution "
            f"(pixel size in {crs.mapUnits() and crs.authid() or 'layer'} units) for the export"
        )
    # 1e-6 px of slack: an extent that is a whole number of pixels must not gain one from rounding noise
    width = max(1, int(math.ceil(rect.width() / res - 1e-6)))
    height = max(1, int(math.ceil(rect.height() / res - 1e-6)))
    if max(width, height) > MAX_EXPORT_SIDE:
        raise LayerProblem(
            f"{name}: exporting layer '{layer.name()}' at {res:g} units/px would make {width}x{height} px "
            f"(limit {MAX_EXPORT_SIDE} a side); choose a smaller extent or a coarser resolution"
        )
    # Snap to whole pixels so the exported grid has exactly the requested resolution.
    rect = QgsRectangle(rect.xMinimum(), rect.yMaximum() - height * res, rect.xMinimum() + width * res, rect.yMaximum())
    provider = layer.dataProvider().clone()
    if provider is None:
        raise LayerProblem(f"{name}: the data provider of layer '{layer.name()}' cannot be copied for export")
    export = RasterExport(
        provider=provider,
        crs=crs,
        extent=rect,
        width=width,
        height=height,
        path=temp.file(f"{name}.tif"),
        transform_context=(project or QgsProject.instance()).transformContext(),
        name=f"{name} ({layer.name()})",
    )
    return PreparedRaster(export.path, export)


# -- vectors in ------------------------------------------------------------------------------
def local_vector_path(layer: QgsVectorLayer) -> str | None:
    """The file behind a vector layer when the engine may read it as it is, else None.

    Only an unmodified, unfiltered OGR layer whose URI names no sub-layer qualifies;
    everything else is exported so the engine sees exactly what QGIS shows.
    """
    if layer.providerType() != "ogr" or layer.isModified() or layer.subsetString():
        return None
    parts = QgsProviderRegistry.instance().decodeUri("ogr", layer.source())
    if parts.get("layerName") or parts.get("layerId") not in (None, "", 0, "0"):
        return None
    path = parts.get("path") or ""
    return path if os.path.isfile(path) else None


def export_vector(
    source: Any,
    temp: TempFolder,
    name: str,
    fields: Sequence[str] | None = None,
    selected_only: bool = False,
    crs: QgsCoordinateReferenceSystem | None = None,
) -> str:
    """A vector layer as a file the engine reads (a temporary GeoPackage when needed).

    Main thread (reads the layer and its edit buffer). The layer in the GeoPackage is
    called ``name``.

    Args:
        source: ``QgsVectorLayer`` (any provider) or a path.
        fields: attribute names to keep (None = all).
        selected_only: export only the selected features.
        crs: reproject to this CRS (None = keep the layer's).

    Raises:
        LayerProblem: invalid layer, a missing field, no features, or a write error.
    """
    if isinstance(source, (str, os.PathLike)):
        if not Path(source).exists():
            raise LayerProblem(f"{name}: {source} does not exist")
        return str(source)
    layer = source
    if layer is None or not layer.isValid():
        raise LayerProblem(f"{name}: the layer is missing or invalid")
    names = layer.fields().names()
    for f in fields or ():
        if f not in names:
            raise LayerProblem(f"{name}: layer '{layer.name()}' has no field '{f}' (fields: {', '.join(names) or 'none'})")
    if not selected_only and crs is None and fields is None:
        path = local_vector_path(layer)
        if path is not None:
            return path
    if layer.featureCount() == 0 or (selected_only and layer.selectedFeatureCount() == 0):
        raise LayerProblem(f"{name}: layer '{layer.name()}' has no {'selected ' if selected_only else ''}features")
    out = temp.file(f"{name}.gpkg")
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.layerName = name
    options.fileEncoding = "UTF-8"
    options.onlySelectedFeatures = selected_only
    if fields is not None:
        options.attributes = [layer.fields().indexOf(f) for f in fields]
    if crs is not None and crs.isValid() and crs != layer.crs():
        options.ct = QgsCoordinateTransform(layer.crs(), crs, QgsProject.instance().transformContext())
    result = QgsVectorFileWriter.writeAsVectorFormatV3(layer, str(out), QgsProject.instance().transformContext(), options)
    code, message = result[0], result[1]
    if code != QgsVectorFileWriter.NoError:
        raise LayerProblem(f"{name}: could not export layer '{layer.name()}' to {out}: {message}")
    return str(out)


@dataclass(frozen=True)
class Grid:
    """A north-up pixel grid: origin (top-left corner), pixel size, size and CRS."""

    crs: QgsCoordinateReferenceSystem
    x0: float
    y0: float
    res: float
    width: int
    height: int

    def geotransform(self) -> tuple[float, float, float, float, float, float]:
        return (self.x0, self.res, 0.0, self.y0, 0.0, -self.res)

    def window_rect(self, row_off: int, col_off: int, height: int, width: int) -> QgsRectangle:
        """Map rectangle of a pixel window."""
        x = self.x0 + col_off * self.res
        y = self.y0 - row_off * self.res
        return QgsRectangle(x, y - height * self.res, x + width * self.res, y)


def label_grid(labels: QgsVectorLayer, reference: Any = None, resolution: float | None = None, project=None) -> Grid:
    """The grid vector labels are rasterised on: the labels' extent snapped to the reference.

    With a reference raster (layer or path) the grid has its CRS and pixel size and is
    aligned to its pixels; otherwise ``resolution`` in the label layer's CRS.

    Raises:
        LayerProblem: no reference and no resolution, or a geographic CRS without a reference.
    """
    if reference is not None:
        if isinstance(reference, (str, os.PathLike)):
            reference = QgsRasterLayer(str(reference), "reference", "gdal")
        if not reference.isValid():
            raise LayerProblem("labels: the reference raster for rasterising the labels is invalid")
        crs = reference.crs()
        res = resolution or native_resolution(reference)
        ref_extent = reference.extent()
        origin = (ref_extent.xMinimum(), ref_extent.yMaximum())
    else:
        crs = labels.crs()
        res = resolution
        origin = None
        if crs.isGeographic():
            raise LayerProblem(
                f"labels: layer '{labels.name()}' is in a geographic CRS ({crs.authid()}); give a reference raster "
                "(the before image) so the labels are rasterised on its grid"
            )
    if not res:
        raise LayerProblem("labels: give a reference raster or a resolution to rasterise the label polygons")
    rect = extent_in_crs(QgsReferencedRectangle(labels.extent(), labels.crs()), crs, project)
    if rect.isEmpty():
        raise LayerProblem(f"labels: layer '{labels.name()}' has no extent (no features?)")
    ox, oy = origin if origin is not None else (rect.xMinimum(), rect.yMaximum())
    c0 = math.floor((rect.xMinimum() - ox) / res)
    c1 = math.ceil((rect.xMaximum() - ox) / res)
    r0 = math.floor((oy - rect.yMaximum()) / res)
    r1 = math.ceil((oy - rect.yMinimum()) / res)
    width, height = max(1, c1 - c0), max(1, r1 - r0)
    if max(width, height) > MAX_EXPORT_SIDE:
        raise LayerProblem(f"labels: rasterising at {res:g} units/px would make {width}x{height} px; use a coarser resolution")
    return Grid(crs, ox + c0 * res, oy - r0 * res, res, width, height)


def rasterize_labels(labels: QgsVectorLayer, class_field: str, schema, grid: Grid, path: Path) -> Path:
    """Burn label polygons as class ids (schema lookup of names or ids) into a uint8 GeoTIFF.

    Pixels of the grid not covered by a polygon are 0 (*no change*): the grid is the
    labels' extent, i.e. the labelled area. Main thread (reads the layer).

    Raises:
        LayerProblem: missing field, or a value that is not a class of the schema
            (the message names the feature and lists the classes).
    """
    from osgeo import gdal, ogr, osr

    if class_field not in labels.fields().names():
        raise LayerProblem(f"labels: layer '{labels.name()}' has no field '{class_field}'")
    ct = None
    if labels.crs() != grid.crs:
        ct = QgsCoordinateTransform(labels.crs(), grid.crs, QgsProject.instance().transformContext())
    srs = osr.SpatialReference()
    srs.ImportFromWkt(grid.crs.toWkt(QgsCoordinateReferenceSystem.WKT_PREFERRED_GDAL))
    mem = ogr.GetDriverByName("Memory").CreateDataSource("labels")
    lyr = mem.CreateLayer("labels", srs, ogr.wkbMultiPolygon)
    lyr.CreateField(ogr.FieldDefn("cid", ogr.OFTInteger))
    n = 0
    for feat in labels.getFeatures():
        value = feat[class_field]
        if value is None or (isinstance(value, QVariant) and value.isNull()):
            continue
        try:
            cid = schema.lookup(value, where=f"feature {feat.id()} of layer '{labels.name()}'")
        except ValueError as exc:
            raise LayerProblem(f"labels: {exc}") from exc
        geom = QgsGeometry(feat.geometry())
        if geom.isEmpty():
            continue
        if ct is not None:
            geom.transform(ct)
        f = ogr.Feature(lyr.GetLayerDefn())
        f.SetField("cid", int(cid))
        f.SetGeometry(ogr.CreateGeometryFromWkb(bytes(geom.asWkb())))
        lyr.CreateFeature(f)
        n += 1
    if n == 0:
        raise LayerProblem(f"labels: layer '{labels.name()}' has no polygon with a class in field '{class_field}'")
    ds = gdal.GetDriverByName("GTiff").Create(str(path), grid.width, grid.height, 1, gdal.GDT_Byte, ["COMPRESS=DEFLATE"])
    ds.SetGeoTransform(grid.geotransform())
    ds.SetProjection(srs.ExportToWkt())
    band = ds.GetRasterBand(1)
    band.SetNoDataValue(255)
    band.Fill(0)
    gdal.RasterizeLayer(ds, [1], lyr, options=["ATTRIBUTE=cid"])
    ds.FlushCache()
    ds = None
    mem = None
    return path


def raster_grid(path: str | Path) -> Grid:
    """The grid of a north-up raster file (for placing caption chips on the map)."""
    layer = QgsRasterLayer(str(path), "grid", "gdal")
    if not layer.isValid():
        raise LayerProblem(f"{path}: not a raster QGIS can open")
    ext = layer.extent()
    return Grid(layer.crs(), ext.xMinimum(), ext.yMaximum(), ext.width() / layer.width(), layer.width(), layer.height())


def class_raster_source(layer: "QgsRasterLayer | str | Path") -> tuple[str, Grid] | None:
    """The file of a class-raster layer and its grid in the *layer's* CRS, or None.

    Captioning reads only pixel values, so the file is used as it is even when the user
    assigned the layer another CRS in QGIS; the chip footprints are placed with the CRS
    the layer shows (a path gives the file's own grid). None when the layer is not a
    plain local file.
    """
    if isinstance(layer, (str, Path)):
        return (str(layer), raster_grid(layer)) if os.path.isfile(layer) else None
    if layer.providerType() != "gdal":
        return None
    parts = QgsProviderRegistry.instance().decodeUri("gdal", layer.source())
    path = parts.get("path") or layer.source()
    if parts.get("layerName") or not (path and os.path.isfile(path)):
        return None
    grid = raster_grid(path)
    return path, Grid(layer.crs(), grid.x0, grid.y0, grid.res, grid.width, grid.height)


# -- outputs -------------------------------------------------------------------------------
def paletted_renderer(layer: QgsRasterLayer, schema, band: int = 1, show_no_change: bool = False) -> QgsPalettedRasterRenderer:
    """A paletted renderer with the schema's class colours (no change transparent by default)."""
    classes = []
    for c in schema.classes:
        color = QColor(c.color)
        if c.id == 0 and not show_no_change:
            color.setAlpha(0)
        classes.append(QgsPalettedRasterRenderer.Class(c.id, color, c.name))
    return QgsPalettedRasterRenderer(layer.dataProvider(), band, classes)


def change_raster_layer(path: str | Path, schema, name: str = "changes") -> QgsRasterLayer:
    """The detection's class raster, styled with the schema's colour table."""
    layer = QgsRasterLayer(str(path), name, "gdal")
    if not layer.isValid():
        raise LayerProblem(f"the change raster {path} cannot be opened")
    layer.setRenderer(paletted_renderer(layer, schema))
    layer.triggerRepaint()
    return layer


def style_changes(layer: QgsVectorLayer, schema, field: str = "class_id") -> None:
    """Categorised fill by class id with the schema's colours."""
    categories = []
    for c in schema.change_classes:
        symbol = QgsFillSymbol.createSimple({"color": c.color, "outline_color": c.color, "outline_width": "0.4"})
        symbol.setOpacity(0.6)
        categories.append(QgsRendererCategory(c.id, symbol, c.name))
    layer.setRenderer(QgsCategorizedSymbolRenderer(field, categories))


def style_captions(layer: QgsVectorLayer) -> None:
    """Chip outlines labelled with their caption (one style for every captions layer)."""
    from .styles import style_captions_layer

    style_captions_layer(layer)


def detection_layers(raster: str | None, vectors: str | None, schema) -> list:
    """Layers of a detection: change raster, ``changes`` and ``captions`` (those that exist)."""
    layers: list = []
    if raster and Path(raster).is_file():
        layers.append(change_raster_layer(raster, schema, "change classes"))
    if vectors and Path(vectors).is_file():
        changes = QgsVectorLayer(f"{vectors}|layername=changes", "changes", "ogr")
        if changes.isValid():
            style_changes(changes, schema)
            layers.append(changes)
        captions = QgsVectorLayer(f"{vectors}|layername=captions", "captions", "ogr")
        if captions.isValid():
            style_captions(captions)
            layers.append(captions)
    return layers


def caption_fields():
    """Fields of a captions layer: :data:`engine.captions.CHIP_CAPTION_FIELDS`, as in the
    engine's ``captions`` GeoPackage layer, so both kinds of captions layer read alike."""
    from qgis.core import QgsFields

    from ..engine.captions import CHIP_CAPTION_FIELDS

    ints = ("chip_row", "chip_col", "changed_pixels")
    fields = QgsFields()
    for name in CHIP_CAPTION_FIELDS:
        fields.append(QgsField(name, QVariant.Int if name in ints else QVariant.String))
    return fields


def caption_features(chips: Iterable[dict], grid: Grid, fields=None, chip: int | None = None) -> list[QgsFeature]:
    """One polygon per captioned chip (its footprint on ``grid``), with the attributes of
    :func:`engine.captions.chip_caption_attributes`: ``chip_row``/``chip_col`` are the
    chip's row and column in the grid of ``chip``-pixel chips (None: the largest window
    given, i.e. the whole raster when it was captioned as one chip)."""
    from ..engine.captions import CHIP_CAPTION_FIELDS, chip_caption_attributes

    chips = list(chips)
    fields = fields or caption_fields()
    chip_h = chip or max((int(c["window"]["height"]) for c in chips), default=1)
    chip_w = chip or max((int(c["window"]["width"]) for c in chips), default=1)
    features = []
    for chip in chips:
        w = chip["window"]
        rect = grid.window_rect(int(w["row_off"]), int(w["col_off"]), int(w["height"]), int(w["width"]))
        attrs = chip_caption_attributes(int(w["row_off"]) // chip_h, int(w["col_off"]) // chip_w,
                                        chip.get("quadruples") or [], chip.get("sentences") or [])
        f = QgsFeature(fields)
        f.setGeometry(QgsGeometry.fromRect(rect))
        f.setAttributes([attrs[name] for name in CHIP_CAPTION_FIELDS])
        features.append(f)
    return features


def captions_layer(chips: Iterable[dict], grid: Grid, name: str = "captions", chip: int | None = None) -> QgsVectorLayer:
    """A styled memory layer of :func:`caption_features`, labelled with the captions."""
    layer = QgsVectorLayer("Polygon", name, "memory")
    layer.setCrs(grid.crs)
    provider = layer.dataProvider()
    provider.addAttributes(list(caption_fields()))
    layer.updateFields()
    provider.addFeatures(caption_features(chips, grid, layer.fields(), chip))
    layer.updateExtents()
    style_captions(layer)
    return layer


def add_to_group(layers: Sequence, group_name: str, project=None) -> QgsLayerTreeGroup:
    """Add layers to the project inside a group at the top of the layer tree (main thread)."""
    project = project or QgsProject.instance()
    root = project.layerTreeRoot()
    group = root.findGroup(group_name) or root.insertGroup(0, group_name)
    for layer in layers:
        project.addMapLayer(layer, False)
        group.addLayer(layer)
    return group


def rect_tuple(rect: QgsRectangle) -> tuple[float, float, float, float]:
    return (rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum())
