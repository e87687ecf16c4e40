"""QGIS layers <-> the files the engine reads and writes.

Inputs: the engine reads files (GDAL rasters, OGR vectors). Any layer becomes one here, in
two steps: *prepared* on the main thread (cheap: the provider is cloned, a thread-safe
feature source taken), *written* in a worker thread (a task's ``run()``), cancellable and
with progress through a ``QgsFeedback``:

- a raster layer that is a local GDAL file is used as it is; anything else (WMS/XYZ tiles,
  virtual rasters, other providers) is exported for an extent at a resolution to a
  temporary GeoTIFF (:class:`RasterExport`, written by ``QgsRasterFileWriter`` with a
  ``QgsRasterBlockFeedback``). Alpha bands of rendered sources (web tiles) become a GDAL
  mask, so the engine sees RGB plus "no data where transparent";
- a vector layer is exported to a temporary GeoPackage (:class:`VectorExport`) unless it
  is an unfiltered, unmodified single-layer OGR file used whole: memory layers, edited but
  unsaved layers, filtered layers and selections are written as the user sees them. The
  user's layers are never modified;
- vector labels are rasterised on a reference grid for the caption command
  (:func:`rasterize_label_file`, GDAL only: runs in the worker thread).

Outputs: a change raster styled with the schema's colour table (paletted renderer), its
confidence band as a layer of its own, the ``changes`` and ``captions`` layers of a
detection, and the ``captions`` GeoPackage written from the caption command's chips, all
added in a layer group (:func:`add_to_group`).

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
    QgsFeatureRequest,
    QgsField,
    QgsFields,
    QgsFillSymbol,
    QgsGeometry,
    QgsLayerTreeGroup,
    QgsPalettedRasterRenderer,
    QgsProject,
    QgsProviderRegistry,
    QgsRasterDataProvider,
    QgsRasterFileWriter,
    QgsRasterLayer,
    QgsRasterPipe,
    QgsRectangle,
    QgsReferencedRectangle,
    QgsRendererCategory,
    QgsUnitTypes,
    QgsVectorFileWriter,
    QgsVectorLayer,
    QgsVectorLayerFeatureSource,
    QgsWkbTypes,
)
from qgis.PyQt.QtGui import QColor

from .compat import INT, STRING
from .i18n import tr

log = logging.getLogger("masktalk.layers")

#: Refuse exports larger than this many pixels a side (a typo in the resolution, a world extent).
MAX_EXPORT_SIDE = 40000
RESOURCES = Path(__file__).resolve().parent.parent / "resources"
CONFIDENCE_QML = RESOURCES / "styles" / "confidence.qml"
#: Name of the captions layer inside the captions GeoPackage (as in a detection's GeoPackage).
CAPTIONS_LAYER = "captions"


class LayerProblem(ValueError):
    """A layer cannot be used as an engine input; the message says why and what to do."""


class ExportCancelled(Exception):
    """The user cancelled while an input was being exported (nothing is left behind)."""


def _cancelled(feedback) -> bool:
    return feedback is not None and feedback.isCanceled()


def _progress(feedback, percent: float) -> None:
    if feedback is not None:
        feedback.setProgress(max(0.0, min(100.0, percent)))


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


def check_writable_folder(folder: str | Path, what: str) -> Path:
    """Create ``folder`` if needed and prove it takes files (a real probe file).

    Raises:
        LayerProblem: the folder cannot be created or written; the message names it and
            says what to do.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".masktalk-write-test-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise LayerProblem(
            tr("cannot write the {what} to {folder}: {reason}; choose another folder").format(
                what=what, folder=folder, reason=exc.strerror or exc)
        ) from None
    return folder


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
    if provider is None or not (provider.capabilities() & QgsRasterDataProvider.Capability.Size):
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


def resolution_in_crs(resolution: float, source_crs: QgsCoordinateReferenceSystem, target_crs: QgsCoordinateReferenceSystem,
                      at: QgsRectangle, project=None) -> float | None:
    """A pixel size in ``source_crs`` units, expressed in ``target_crs`` units near ``at``'s centre."""
    if not resolution or resolution <= 0:
        return None
    if source_crs == target_crs or not (source_crs.isValid() and target_crs.isValid()):
        return float(resolution)
    centre = at.center()
    half = resolution / 2
    pixel = QgsRectangle(centre.x() - half, centre.y() - half, centre.x() + half, centre.y() + half)
    try:
        box = extent_in_crs(QgsReferencedRectangle(pixel, source_crs), target_crs, project)
    except Exception:  # noqa: BLE001 - QgsCsException: no sensible conversion
        return None
    if box.width() <= 0 or box.height() <= 0:
        return None
    return min(box.width(), box.height())


def resolution_text(resolution: float | None, crs: QgsCoordinateReferenceSystem) -> str:
    """``0.5 m`` / ``1e-05 degrees`` for messages and the dock's resolution field."""
    if not resolution:
        return ""
    unit = QgsUnitTypes.toAbbreviatedString(crs.mapUnits()) if crs.isValid() else ""
    return f"{resolution:g} {unit}".strip()


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

        Args:
            feedback: a ``QgsRasterBlockFeedback`` (progress 0..100, cancel); None = none.

        Raises:
            ExportCancelled: ``feedback`` was cancelled (no file is left).
            LayerProblem: the provider could not deliver the data or the file not be written.
        """
        from osgeo import gdal

        if _cancelled(feedback):
            raise ExportCancelled()
        raw = self.path.with_name(self.path.stem + ".raw.tif")
        pipe = QgsRasterPipe()
        if not pipe.set(self.provider):
            raise LayerProblem(tr("{name}: its data provider cannot be read for export").format(name=self.name))
        self.provider = None  # the pipe owns it now
        writer = QgsRasterFileWriter(str(raw))
        writer.setOutputFormat("GTiff")
        writer.setCreateOptions(["COMPRESS=DEFLATE", "TILED=YES", "BIGTIFF=IF_SAFER"])
        err = writer.writeRaster(pipe, self.width, self.height, self.extent, self.crs, self.transform_context, feedback)
        if err == QgsRasterFileWriter.WriterError.WriteCanceled or _cancelled(feedback):
            _unlink(raw)
            raise ExportCancelled()
        if err != QgsRasterFileWriter.WriterError.NoError or not raw.is_file():
            _unlink(raw)
            raise LayerProblem(
                tr("{name}: exporting {width}x{height} px failed (QgsRasterFileWriter error {err}); "
                   "check that the layer draws for this extent, or save it as a GeoTIFF first").format(
                    name=self.name, width=self.width, height=self.height, err=int(err))
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
                        bandList=bands, maskBand=alpha, creationOptions=["COMPRESS=DEFLATE", "TILED=YES", "BIGTIFF=IF_SAFER"],
                        callback=lambda *_: 0 if _cancelled(feedback) else 1,
                    ),
                )
                ok = out is not None
                out = None
            finally:
                gdal.SetThreadLocalConfigOption("GDAL_TIFF_INTERNAL_MASK", previous)
            ds = None
            _unlink(raw)
            if _cancelled(feedback):
                _unlink(self.path)
                raise ExportCancelled()
            if not ok:
                raise LayerProblem(tr("{name}: could not write {path}").format(name=self.name, path=self.path))
        else:
            ds = None
            raw.replace(self.path)
        _progress(feedback, 100.0)
        return self.path


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


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
            raise LayerProblem(tr("{name}: {path} does not exist").format(name=name, path=path))
        return PreparedRaster(path)
    layer = source
    if layer is None or not layer.isValid():
        raise LayerProblem(tr("{name}: the layer is missing or invalid").format(name=name))
    path = local_raster_path(layer)
    if path is not None:
        return PreparedRaster(Path(path))
    crs = layer.crs()
    native = native_resolution(layer)
    if extent is None:
        if native is None:
            raise LayerProblem(
                tr("{name}: layer '{layer}' is a {provider} service without a fixed size; "
                   "choose an extent (map canvas, AOI layer) to export").format(
                    name=name, layer=layer.name(), provider=layer.providerType())
            )
        rect = layer.extent()
    else:
        rect = extent_in_crs(extent, crs, project)
        if native is not None:
            rect = rect.intersect(layer.extent())
    if rect.isEmpty():
        raise LayerProblem(tr("{name}: the requested extent does not overlap layer '{layer}'").format(name=name, layer=layer.name()))
    res = resolution or native
    if not res or res <= 0:
        raise LayerProblem(
            tr("{name}: layer '{layer}' has no native resolution; give a resolution "
               "(pixel size in {units}) for the export").format(
                name=name, layer=layer.name(), units=QgsUnitTypes.toString(crs.mapUnits()) if crs.isValid() else tr("layer units"))
        )
    # 1e-6 px of slack: an extent that is a whole number of pixels must not gain one from rounding noise
    width = max(1, int(math.ceil(rect.width() / res - 1e-6)))
    height = max(1, int(math.ceil(rect.height() / res - 1e-6)))
    if max(width, height) > MAX_EXPORT_SIDE:
        raise LayerProblem(
            tr("{name}: exporting layer '{layer}' at {res} units/px would make {width}x{height} px "
               "(limit {limit} a side); choose a smaller extent or a coarser resolution").format(
                name=name, layer=layer.name(), res=f"{res:g}", width=width, height=height, limit=MAX_EXPORT_SIDE)
        )
    # Snap to whole pixels so the exported grid has exactly the requested resolution.
    rect = QgsRectangle(rect.xMinimum(), rect.yMaximum() - height * res, rect.xMinimum() + width * res, rect.yMaximum())
    provider = layer.dataProvider().clone()
    if provider is None:
        raise LayerProblem(tr("{name}: the data provider of layer '{layer}' cannot be copied for export").format(name=name, layer=layer.name()))
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


def vector_file_path(layer: QgsVectorLayer) -> str | None:
    """The file an OGR layer reads (also a sub-layer of a GeoPackage), else None (memory, databases)."""
    if layer is None or layer.providerType() != "ogr":
        return None
    path = QgsProviderRegistry.instance().decodeUri("ogr", layer.source()).get("path") or ""
    return path if os.path.isfile(path) else None


@dataclass
class VectorExport:
    """A vector layer to write to a GeoPackage, prepared on the main thread.

    ``source`` is a ``QgsVectorLayerFeatureSource``: a snapshot of the layer (its edit
    buffer and filter included) that may be read in a worker thread.
    """

    source: Any
    fields: QgsFields
    attributes: list[int]
    wkb_type: int
    transform: Any  # QgsCoordinateTransform or None
    crs: QgsCoordinateReferenceSystem
    transform_context: Any
    fids: list[int] | None
    count: int
    path: Path
    layer_name: str
    name: str = ""

    def write(self, feedback=None) -> Path:
        """Write the GeoPackage (worker thread is fine); returns its path.

        Raises:
            ExportCancelled: ``feedback`` was cancelled (no file is left).
            LayerProblem: the file could not be written.
        """
        if _cancelled(feedback):
            raise ExportCancelled()
        options = QgsVectorFileWriter.SaveVectorOptions()
        options.driverName = "GPKG"
        options.layerName = self.layer_name
        options.fileEncoding = "UTF-8"
        writer = QgsVectorFileWriter.create(str(self.path), self.fields, self.wkb_type, self.crs, self.transform_context, options)
        if writer.hasError() != QgsVectorFileWriter.WriterError.NoError:
            message = writer.errorMessage()
            writer = None
            raise LayerProblem(tr("{name}: could not export to {path}: {message}").format(name=self.name, path=self.path, message=message))
        request = QgsFeatureRequest()
        if self.fids is not None:
            request.setFilterFids(self.fids)
        written = 0
        try:
            for feat in self.source.getFeatures(request):
                if _cancelled(feedback):
                    raise ExportCancelled()
                out = QgsFeature(self.fields)
                geom = QgsGeometry(feat.geometry())
                if not geom.isNull():
                    if self.transform is not None:
                        geom.transform(self.transform)
                    if QgsWkbTypes.isMultiType(self.wkb_type) and not geom.isMultipart():
                        geom.convertToMultiType()
                    out.setGeometry(geom)
                attrs = feat.attributes()
                out.setAttributes([attrs[i] for i in self.attributes])
                writer.addFeature(out)
                written += 1
                if self.count and written % 200 == 0:
                    _progress(feedback, 100.0 * written / self.count)
        except ExportCancelled:
            writer = None  # closes the file
            _unlink(self.path)
            raise
        writer = None  # closes the file
        self.source = None
        _progress(feedback, 100.0)
        return self.path


@dataclass
class PreparedVector:
    """A vector input: a path the engine can read now, or an export to run first."""

    path: Path
    export: VectorExport | None = None
    name: str = ""

    def ensure(self, feedback=None) -> str:
        if self.export is not None:
            self.export.write(feedback)
            self.export = None
        return str(self.path)


def prepare_vector(
    source: Any,
    temp: TempFolder,
    name: str,
    fields: Sequence[str] | None = None,
    selected_only: bool = False,
    crs: QgsCoordinateReferenceSystem | None = None,
    project=None,
) -> PreparedVector:
    """A vector layer (or path) as a file the engine reads, exported later when needed. Main thread.

    The layer in the exported GeoPackage is called ``name``.

    Args:
        source: ``QgsVectorLayer`` (any provider) or a path.
        fields: attribute names to keep (None = all).
        selected_only: only the selected features.
        crs: reproject to this CRS (None = keep the layer's).

    Raises:
        LayerProblem: invalid layer, a missing field, or no (selected) features.
    """
    if isinstance(source, (str, os.PathLike)):
        if not Path(source).exists():
            raise LayerProblem(tr("{name}: {path} does not exist").format(name=name, path=source))
        return PreparedVector(Path(source), None, name)
    layer = source
    if layer is None or not layer.isValid():
        raise LayerProblem(tr("{name}: the layer is missing or invalid").format(name=name))
    names = layer.fields().names()
    for f in fields or ():
        if f not in names:
            raise LayerProblem(tr("{name}: layer '{layer}' has no field '{field}' (fields: {fields})").format(
                name=name, layer=layer.name(), field=f, fields=", ".join(names) or tr("none")))
    if not selected_only and crs is None and fields is None:
        path = local_vector_path(layer)
        if path is not None:
            return PreparedVector(Path(path), None, name)
    if selected_only and layer.selectedFeatureCount() == 0:
        raise LayerProblem(tr("{name}: layer '{layer}' has no selected features; select some or untick 'selected features only'").format(
            name=name, layer=layer.name()))
    if layer.featureCount() == 0:
        raise LayerProblem(tr("{name}: layer '{layer}' has no features").format(name=name, layer=layer.name()))
    keep = [layer.fields().indexOf(f) for f in fields] if fields is not None else list(range(len(names)))
    out_fields = QgsFields()
    for i in keep:
        out_fields.append(layer.fields().at(i))
    context = (project or QgsProject.instance()).transformContext()
    target = crs if crs is not None and crs.isValid() else layer.crs()
    transform = QgsCoordinateTransform(layer.crs(), target, context) if target != layer.crs() else None
    fids = sorted(layer.selectedFeatureIds()) if selected_only else None
    export = VectorExport(
        source=QgsVectorLayerFeatureSource(layer),
        fields=out_fields,
        attributes=keep,
        wkb_type=QgsWkbTypes.multiType(layer.wkbType()),
        transform=transform,
        crs=target,
        transform_context=context,
        fids=fids,
        count=len(fids) if fids is not None else max(layer.featureCount(), 0),
        path=temp.file(f"{name}.gpkg"),
        layer_name=name,
        name=f"{name} ({layer.name()})",
    )
    return PreparedVector(export.path, export, name)


def export_vector(
    source: Any,
    temp: TempFolder,
    name: str,
    fields: Sequence[str] | None = None,
    selected_only: bool = False,
    crs: QgsCoordinateReferenceSystem | None = None,
) -> str:
    """:func:`prepare_vector` and write it at once (for callers already off the main thread's
    event loop, e.g. Processing). Returns the file path."""
    return prepare_vector(source, temp, name, fields, selected_only, crs).ensure()


def features_extent(layer: QgsVectorLayer, selected_only: bool = False) -> QgsReferencedRectangle:
    """The extent of a layer's (selected) features, with its CRS; unsaved edits included."""
    if selected_only and layer.selectedFeatureCount():
        return QgsReferencedRectangle(layer.boundingBoxOfSelected(), layer.crs())
    rect = layer.extent()
    if layer.isModified() or rect.isNull() or not all(map(math.isfinite, rect_tuple(rect))):
        # a layer being edited: its provider's extent does not hold the new features yet
        rect = QgsRectangle()
        rect.setMinimal()
        request = QgsFeatureRequest().setNoAttributes()
        for feature in layer.getFeatures(request):
            if not feature.geometry().isNull():
                rect.combineExtentWith(feature.geometry().boundingBox())
    return QgsReferencedRectangle(rect, layer.crs())


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

    With a reference raster (layer or path) the grid has its CRS; its pixel size is
    ``resolution`` (in the reference CRS's units) or the reference's own, and the grid is
    aligned to the reference's pixels when it has a fixed size. A reference without one
    (web tiles, services) needs ``resolution``. Without a reference: ``resolution`` in the
    label layer's CRS.

    Raises:
        LayerProblem: no usable resolution, or a geographic CRS without a reference.
    """
    origin = None
    if reference is not None:
        if isinstance(reference, (str, os.PathLike)):
            reference = QgsRasterLayer(str(reference), "reference", "gdal")
        if not reference.isValid():
            raise LayerProblem(tr("labels: the reference raster for rasterising the labels is invalid"))
        crs = reference.crs()
        native = native_resolution(reference)
        res = resolution or native
        if native is not None:
            ref_extent = reference.extent()
            origin = (ref_extent.xMinimum(), ref_extent.yMaximum())
        elif not res:
            raise LayerProblem(
                tr("labels: layer '{layer}' is a {provider} service without a pixel size; give a resolution "
                   "(pixel size in {units}) to rasterise the label polygons").format(
                    layer=reference.name(), provider=reference.providerType(), units=QgsUnitTypes.toString(crs.mapUnits())))
    else:
        crs = labels.crs()
        res = resolution
        if crs.isGeographic():
            raise LayerProblem(
                tr("labels: layer '{layer}' is in a geographic CRS ({crs}); give a reference raster "
                   "(the before image) so the labels are rasterised on its grid").format(layer=labels.name(), crs=crs.authid())
            )
    if not res:
        raise LayerProblem(tr("labels: give a reference raster or a resolution to rasterise the label polygons"))
    labelled = features_extent(labels)
    if labelled.isNull() or labelled.isEmpty():
        raise LayerProblem(tr("labels: layer '{layer}' has no extent (no features?)").format(layer=labels.name()))
    rect = extent_in_crs(labelled, crs, project)
    if rect.isEmpty():
        raise LayerProblem(tr("labels: layer '{layer}' has no extent (no features?)").format(layer=labels.name()))
    ox, oy = origin if origin is not None else (rect.xMinimum(), rect.yMaximum())
    c0 = math.floor((rect.xMinimum() - ox) / res)
    c1 = math.ceil((rect.xMaximum() - ox) / res)
    r0 = math.floor((oy - rect.yMaximum()) / res)
    r1 = math.ceil((oy - rect.yMinimum()) / res)
    width, height = max(1, c1 - c0), max(1, r1 - r0)
    if max(width, height) > MAX_EXPORT_SIDE:
        raise LayerProblem(tr("labels: rasterising at {res} units/px would make {width}x{height} px; use a coarser resolution").format(
            res=f"{res:g}", width=width, height=height))
    return Grid(crs, ox + c0 * res, oy - r0 * res, res, width, height)


def _srs_of(crs: QgsCoordinateReferenceSystem):
    from osgeo import osr

    srs = osr.SpatialReference()
    srs.ImportFromWkt(crs.toWkt(QgsCoordinateReferenceSystem.WktVariant.WKT_PREFERRED_GDAL))
    return srs


def rasterize_label_file(path: str | Path, layer_name: str | None, class_field: str, schema, grid: Grid, out: Path,
                         feedback=None, label: str = "labels") -> Path:
    """Burn label polygons of an OGR file (already in ``grid``'s CRS) as class ids into a uint8 GeoTIFF.

    GDAL/OGR only, so it runs in a worker thread. Pixels of the grid not covered by a
    polygon are 0 (*no change*): the grid is the labels' extent, i.e. the labelled area.

    Raises:
        LayerProblem: missing field, or a value that is not a class of the schema (the
            message names the feature and lists the classes), or no labelled polygon.
        ExportCancelled: ``feedback`` was cancelled.
    """
    from osgeo import gdal, ogr

    src = ogr.Open(str(path))
    if src is None:
        raise LayerProblem(tr("labels: cannot read {path}").format(path=path))
    lyr_in = src.GetLayerByName(layer_name) if layer_name else src.GetLayer(0)
    if lyr_in is None:
        lyr_in = src.GetLayer(0)
    defn = lyr_in.GetLayerDefn()
    if defn.GetFieldIndex(class_field) < 0:
        raise LayerProblem(tr("labels: layer '{layer}' has no field '{field}'").format(layer=label, field=class_field))
    srs = _srs_of(grid.crs)
    mem = ogr.GetDriverByName("Memory").CreateDataSource("labels")
    lyr = mem.CreateLayer("labels", srs, ogr.wkbMultiPolygon)
    lyr.CreateField(ogr.FieldDefn("cid", ogr.OFTInteger))
    n = 0
    for feat in lyr_in:
        if _cancelled(feedback):
            raise ExportCancelled()
        if not feat.IsFieldSetAndNotNull(class_field):
            continue
        value = feat.GetField(class_field)
        try:
            cid = schema.lookup(value, where=tr("feature {fid} of layer '{layer}'").format(fid=feat.GetFID(), layer=label))
        except ValueError as exc:
            raise LayerProblem(tr("labels: {error}").format(error=exc)) from exc
        geom = feat.GetGeometryRef()
        if geom is None or geom.IsEmpty():
            continue
        f = ogr.Feature(lyr.GetLayerDefn())
        f.SetField("cid", int(cid))
        f.SetGeometry(geom.Clone())
        lyr.CreateFeature(f)
        n += 1
    src = None
    if n == 0:
        raise LayerProblem(tr("labels: layer '{layer}' has no polygon with a class in field '{field}'").format(layer=label, field=class_field))
    ds = gdal.GetDriverByName("GTiff").Create(str(out), grid.width, grid.height, 1, gdal.GDT_Byte, ["COMPRESS=DEFLATE"])
    ds.SetGeoTransform(grid.geotransform())
    ds.SetProjection(srs.ExportToWkt())
    band = ds.GetRasterBand(1)
    band.SetNoDataValue(255)
    band.Fill(0)
    gdal.RasterizeLayer(ds, [1], lyr, options=["ATTRIBUTE=cid"], callback=lambda *_: 0 if _cancelled(feedback) else 1)
    ds.FlushCache()
    ds = None
    mem = None
    if _cancelled(feedback):
        _unlink(out)
        raise ExportCancelled()
    return out


@dataclass
class PreparedLabels:
    """Vector labels to rasterise on ``grid``: prepared on the main thread, burnt in a worker."""

    vector: PreparedVector
    class_field: str
    schema: Any
    grid: Grid
    out: Path
    label: str

    def ensure(self, feedback=None) -> str:
        path = self.vector.ensure(feedback)
        layer_name = self.vector.name if Path(path).suffix.lower() == ".gpkg" else None
        return str(rasterize_label_file(path, layer_name, self.class_field, self.schema, self.grid, self.out, feedback, self.label))


def prepare_labels(labels: QgsVectorLayer, class_field: str, schema, grid: Grid, temp: TempFolder, project=None) -> PreparedLabels:
    """Snapshot label polygons (main thread) for :func:`rasterize_label_file` in a worker."""
    vector = prepare_vector(labels, temp, "labels", fields=[class_field], crs=grid.crs, project=project)
    return PreparedLabels(vector, class_field, schema, grid, temp.file("labels.tif"), labels.name())


def rasterize_labels(labels: QgsVectorLayer, class_field: str, schema, grid: Grid, path: Path) -> Path:
    """Burn label polygons as class ids (schema lookup of names or ids) into a uint8 GeoTIFF, now.

    Raises:
        LayerProblem: missing field, or a value that is not a class of the schema.
    """
    if class_field not in labels.fields().names():
        raise LayerProblem(tr("labels: layer '{layer}' has no field '{field}'").format(layer=labels.name(), field=class_field))
    with TempFolder() as temp:
        prepared = prepare_labels(labels, class_field, schema, grid, temp)
        prepared.out = Path(path)
        prepared.ensure()
    return Path(path)


def raster_grid(path: str | Path) -> Grid:
    """The grid of a north-up raster file (for placing caption chips on the map)."""
    layer = QgsRasterLayer(str(path), "grid", "gdal")
    if not layer.isValid():
        raise LayerProblem(tr("{path}: not a raster QGIS can open").format(path=path))
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
        raise LayerProblem(tr("the change raster {path} cannot be opened").format(path=path))
    layer.setRenderer(paletted_renderer(layer, schema))
    layer.triggerRepaint()
    return layer


def confidence_layer(path: str | Path, name: str = "confidence") -> QgsRasterLayer | None:
    """Band 2 of a detection raster (confidence, percent) as a layer styled with
    ``resources/styles/confidence.qml``; None when the raster has no second band."""
    layer = QgsRasterLayer(str(path), name, "gdal")
    if not layer.isValid() or layer.bandCount() < 2:
        return None
    message, ok = layer.loadNamedStyle(str(CONFIDENCE_QML))
    if not ok:
        log.warning("confidence style %s not applied: %s", CONFIDENCE_QML, message)
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


#: Layers of a detection, top to bottom, as named in the layer tree.
DETECTION_LAYERS = ("change classes", "confidence", "changes", "captions")


def detection_layers(raster: str | None, vectors: str | None, schema) -> list:
    """Layers of a detection, top to bottom: ``changes`` and ``captions`` polygons (those
    that exist), the change raster and its ``confidence`` band."""
    vectors_out: list = []
    if vectors and Path(vectors).is_file():
        captions = QgsVectorLayer(f"{vectors}|layername=captions", "captions", "ogr")
        if captions.isValid():
            style_captions(captions)
            vectors_out.append(captions)
        changes = QgsVectorLayer(f"{vectors}|layername=changes", "changes", "ogr")
        if changes.isValid():
            style_changes(changes, schema)
            vectors_out.append(changes)
    rasters: list = []
    if raster and Path(raster).is_file():
        rasters.append(change_raster_layer(raster, schema, "change classes"))
        confidence = confidence_layer(raster)
        if confidence is not None:
            rasters.append(confidence)
    return vectors_out + rasters


def caption_fields():
    """Fields of a captions layer: :data:`engine.captions.CHIP_CAPTION_FIELDS`, as in the
    engine's ``captions`` GeoPackage layer, so both kinds of captions layer read alike."""
    from ..engine.captions import CHIP_CAPTION_FIELDS

    ints = ("chip_row", "chip_col", "changed_pixels")
    fields = QgsFields()
    for name in CHIP_CAPTION_FIELDS:
        fields.append(QgsField(name, INT if name in ints else STRING))
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


def captions_path(labels: Any, out_dir: str | Path) -> Path:
    """Where the captions of a label layer are saved: ``<labels>_captions.gpkg`` beside a
    label file whose folder takes files, else ``captions.gpkg`` in ``out_dir``."""
    path = labels if isinstance(labels, (str, os.PathLike)) else vector_file_path(labels) if isinstance(labels, QgsVectorLayer) else None
    if path is None and isinstance(labels, QgsRasterLayer):
        source = class_raster_source(labels)
        path = source[0] if source else None
    if path:
        beside = Path(path).with_name(Path(path).stem + "_captions.gpkg")
        try:
            check_writable_folder(beside.parent, tr("captions"))
            return beside
        except LayerProblem:
            pass
    return Path(out_dir) / "captions.gpkg"


def write_captions(chips: Iterable[dict], grid: Grid, path: str | Path, chip: int | None = None,
                   layer_name: str = CAPTIONS_LAYER, project=None) -> str:
    """Write the caption chips as layer ``layer_name`` of the GeoPackage ``path``, replacing
    that layer (and only it) when it exists. Returns the layer's URI.

    Raises:
        LayerProblem: the GeoPackage cannot be written.
    """
    path = Path(path)
    check_writable_folder(path.parent, tr("captions"))
    fields = caption_fields()
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.layerName = layer_name
    options.fileEncoding = "UTF-8"
    options.actionOnExistingFile = QgsVectorFileWriter.ActionOnExistingFile.CreateOrOverwriteLayer if path.exists() else QgsVectorFileWriter.ActionOnExistingFile.CreateOrOverwriteFile
    context = (project or QgsProject.instance()).transformContext()
    writer = QgsVectorFileWriter.create(str(path), fields, QgsWkbTypes.Type.Polygon, grid.crs, context, options)
    if writer.hasError() != QgsVectorFileWriter.WriterError.NoError:
        message = writer.errorMessage()
        writer = None
        raise LayerProblem(tr("cannot write the captions to {path}: {message}; choose another output folder").format(path=path, message=message))
    for f in caption_features(chips, grid, fields, chip):
        writer.addFeature(f)
    writer = None  # closes the file
    return f"{path}|layername={layer_name}"


def layers_reading(uri: str, project=None) -> list:
    """Layers of the project that read ``uri`` (``path|layername=name``)."""
    project = project or QgsProject.instance()
    want = QgsProviderRegistry.instance().decodeUri("ogr", uri)
    found = []
    for layer in project.mapLayers().values():
        if not isinstance(layer, QgsVectorLayer) or layer.providerType() != "ogr":
            continue
        parts = QgsProviderRegistry.instance().decodeUri("ogr", layer.source())
        same_file = parts.get("path") and want.get("path") and os.path.realpath(parts["path"]) == os.path.realpath(want["path"])
        if same_file and (parts.get("layerName") or "") == (want.get("layerName") or ""):
            found.append(layer)
    return found


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
