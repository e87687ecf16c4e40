"""Processing algorithms, one per engine command.

Each algorithm resolves its layers into files in ``prepareAlgorithm`` (main thread: web
and virtual rasters are prepared for export, vector layers of any provider are written to
a temporary GeoPackage), then in ``processAlgorithm`` writes the raster exports and runs
the engine through :class:`~..runner.EngineRunner` with the feedback wired in: engine
progress -> ``setProgress``, engine log lines -> ``pushInfo``/``pushWarning``,
``isCanceled`` -> the engine is asked to stop (then killed after the grace period).
Engine errors become a ``QgsProcessingException`` carrying the engine's message.

They run from the Toolbox, in batch mode, in the Graphical Modeler and with
``qgis_process run masktalk:<id> -- NAME=value ...``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import (
    QgsFeatureSink,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingOutputFolder,
    QgsProcessingOutputNumber,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMapLayer,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorLayer,
    QgsRasterLayer,
    QgsReferencedRectangle,
    QgsVectorLayer,
    QgsWkbTypes,
)

from .. import layers as L
from ..environment import EnvironmentProblem
from ..runner import EngineCancelled, EngineError, EngineRunner
from ..settings import BACKBONES, DEVICES, PRESETS, CaptionJob, DetectJob, TrainJob, load_schema, model_schema


class StyleChangeRaster(QgsProcessingLayerPostProcessorInterface):
    """Gives a detection's change raster the schema's colour table when Processing loads it."""

    #: Processing keeps only a C++ pointer to post-processors: hold the Python objects here.
    _alive: list["StyleChangeRaster"] = []

    def __init__(self, schema) -> None:
        super().__init__()
        self.schema = schema
        StyleChangeRaster._alive = StyleChangeRaster._alive[-15:] + [self]

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802
        if isinstance(layer, QgsRasterLayer) and layer.isValid():
            layer.setRenderer(L.paletted_renderer(layer, self.schema))
            layer.triggerRepaint()


class EngineAlgorithm(QgsProcessingAlgorithm):
    """Shared parts: engine run with feedback, temporary folder, schema parameters."""

    _id = ""
    _name = ""
    _help = ""

    def __init__(self) -> None:
        super().__init__()
        self.temp: L.TempFolder | None = None
        self.exports: list[L.PreparedRaster] = []

    # -- QGIS API --------------------------------------------------------------------------
    def name(self) -> str:
        return self._id

    def displayName(self) -> str:  # noqa: N802
        return self._name

    def shortHelpString(self) -> str:  # noqa: N802
        return self._help

    def createInstance(self):  # noqa: N802
        return type(self)()

    # -- the Processing life cycle: temp folder made in prepare, removed after process --
    def prepareAlgorithm(self, parameters, context, feedback):  # noqa: N802
        """Main thread: read the parameters and prepare layers (:meth:`prepare`)."""
        self.new_temp()
        try:
            self.prepare(parameters, context, feedback)
        except (L.LayerProblem, ValueError) as exc:
            self.cleanup()
            raise QgsProcessingException(str(exc)) from exc
        except BaseException:
            self.cleanup()
            raise
        return True

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        """Worker thread: run the engine (:meth:`process`); the temp folder goes either way."""
        try:
            return self.process(parameters, context, feedback)
        finally:
            self.cleanup()

    def prepare(self, parameters, context, feedback) -> None:
        raise NotImplementedError

    def process(self, parameters, context, feedback) -> dict:
        raise NotImplementedError

    # -- helpers -----------------------------------------------------------------------------
    def add_schema_parameters(self) -> None:
        self.addParameter(QgsProcessingParameterEnum("PRESET", "Class schema preset", options=list(PRESETS), defaultValue=0))
        self.addParameter(
            QgsProcessingParameterFile("SCHEMA", "Class schema file (overrides the preset)", extension="json", optional=True)
        )

    def schema_values(self, parameters, context) -> tuple[str, str]:
        preset = PRESETS[self.parameterAsEnum(parameters, "PRESET", context)]
        schema = self.parameterAsFile(parameters, "SCHEMA", context) or ""
        return preset, schema

    def optional_int(self, parameters, name, context) -> int | None:
        value = parameters.get(name)
        if value is None or value == "":
            return None
        return self.parameterAsInt(parameters, name, context)

    def optional_double(self, parameters, name, context) -> float | None:
        value = parameters.get(name)
        if value is None or value == "":
            return None
        v = self.parameterAsDouble(parameters, name, context)
        return v if v > 0 else None

    def new_temp(self) -> L.TempFolder:
        self.cleanup()
        self.temp = L.TempFolder(prefix="masktalk-processing-")
        self.exports = []
        return self.temp

    def cleanup(self) -> None:
        if self.temp is not None:
            self.temp.cleanup()
            self.temp = None

    def raster(self, parameters, name, context, extent=None, resolution=None) -> L.PreparedRaster:
        layer = self.parameterAsRasterLayer(parameters, name, context)
        if layer is None:
            raise QgsProcessingException(f"{name}: no raster layer given")
        try:
            prepared = L.prepare_raster(layer, self.temp, name.lower(), extent=extent, resolution=resolution, project=context.project())
        except L.LayerProblem as exc:
            raise QgsProcessingException(str(exc)) from exc
        if prepared.export is not None:
            self.exports.append(prepared)
        return prepared

    def write_exports(self, feedback) -> None:
        for prepared in self.exports:
            if feedback.isCanceled():
                raise QgsProcessingException("cancelled by the user")
            feedback.pushInfo(f"exporting {prepared.export.name} to {prepared.path}")
            try:
                prepared.ensure()
            except L.LayerProblem as exc:
                raise QgsProcessingException(str(exc)) from exc

    def run_engine(self, command: str, args: list[str], feedback) -> dict:
        """Run the engine with ``feedback`` wired to progress, log and cancel."""
        try:
            runner = EngineRunner()
            feedback.pushCommandInfo(" ".join(runner.command_line(command, args)))
        except EnvironmentProblem as exc:
            raise QgsProcessingException(str(exc)) from exc

        def on_progress(fraction, message):
            if fraction is not None:
                feedback.setProgress(100.0 * max(0.0, min(1.0, fraction)))
            if message:
                feedback.setProgressText(message)

        def on_log(level, message):
            if level in ("warning", "error"):
                feedback.pushWarning(message)
            else:
                feedback.pushInfo(message)

        def on_event(event):
            if event.get("event") == "metrics":
                feedback.pushInfo("metrics: " + ", ".join(f"{k}={v}" for k, v in event.items() if k != "event"))

        try:
            return runner.run(command, args, on_progress=on_progress, on_log=on_log, on_event=on_event, is_cancelled=feedback.isCanceled)
        except EngineCancelled as exc:
            raise QgsProcessingException(f"cancelled by the user: {exc}") from exc
        except EngineError as exc:
            if not exc.is_user_error:
                feedback.reportError(exc.details(), fatalError=False)
            raise QgsProcessingException(exc.message) from exc


class CaptionLabelsAlgorithm(EngineAlgorithm):
    """``masktalk:caption_labels``: S2M captions per chip of a label layer."""

    _id = "caption_labels"
    _name = "Caption change labels"
    _help = (
        "Turns change labels into S2M text: for each chip with change, one quadruple per class "
        "(direction, quantity, category, type) rendered with the paper's templates. LABELS is a class "
        "raster (values = class ids) or label polygons with a class field (names or ids), rasterised on "
        "the REFERENCE raster's grid (or at RESOLUTION). OUTPUT: one polygon per chip with its sentences."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(
            QgsProcessingParameterMapLayer(
                "LABELS", "Change labels (class raster or polygons)", types=[QgsProcessing.TypeRaster, QgsProcessing.TypeVectorPolygon]
            )
        )
        self.addParameter(QgsProcessingParameterString("CLASS_FIELD", "Class field (polygon labels)", defaultValue="class", optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer("REFERENCE", "Reference raster grid (polygon labels)", optional=True))
        self.addParameter(
            QgsProcessingParameterNumber(
                "RESOLUTION", "Pixel size without a reference (layer units)", QgsProcessingParameterNumber.Double, optional=True, minValue=0
            )
        )
        self.add_schema_parameters()
        self.addParameter(QgsProcessingParameterNumber("CHIP", "Chip size (pixels, 0 = whole raster)", defaultValue=256, minValue=0))
        self.addParameter(QgsProcessingParameterNumber("SEED", "Template seed", defaultValue=0, minValue=0))
        self.addParameter(QgsProcessingParameterString("LABEL_MAP", "Label value map (e.g. 255:1)", optional=True))
        self.addParameter(QgsProcessingParameterFeatureSink("OUTPUT", "Captions", QgsProcessing.TypeVectorPolygon))
        self.addParameter(QgsProcessingParameterFileDestination("JSON", "Captions as JSON", "JSON files (*.json)", optional=True, createByDefault=False))
        self.addOutput(QgsProcessingOutputNumber("CHIPS", "Captioned chips"))

    def prepare(self, parameters, context, feedback) -> None:
        layer = self.parameterAsLayer(parameters, "LABELS", context)
        if layer is None:
            raise QgsProcessingException("LABELS: no layer given")
        preset, schema_path = self.schema_values(parameters, context)
        self.job = CaptionJob(
            labels=layer,
            preset=preset,
            schema_path=schema_path,
            class_field=self.parameterAsString(parameters, "CLASS_FIELD", context) or "class",
            chip=self.parameterAsInt(parameters, "CHIP", context) or None,
            seed=self.parameterAsInt(parameters, "SEED", context),
            label_map=self.parameterAsString(parameters, "LABEL_MAP", context),
        )
        if isinstance(layer, QgsVectorLayer):
            reference = self.parameterAsRasterLayer(parameters, "REFERENCE", context)
            schema = load_schema(preset, schema_path)
            self.grid = L.label_grid(layer, reference, self.optional_double(parameters, "RESOLUTION", context), context.project())
            self.label_path = str(L.rasterize_labels(layer, self.job.class_field, schema, self.grid, self.temp.file("labels.tif")))
        else:
            source = L.class_raster_source(layer)
            if source is None:
                raise QgsProcessingException("LABELS: a class raster must be a file (GeoTIFF or PNG)")
            self.label_path, self.grid = source

    def process(self, parameters, context, feedback) -> dict:
        result = self.run_engine("caption", self.job.engine_args(self.label_path), feedback)
        chips = result.get("json") or []
        fields = L.caption_fields()
        sink, dest = self.parameterAsSink(parameters, "OUTPUT", context, fields, QgsWkbTypes.Polygon, self.grid.crs)
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, "OUTPUT"))
        for f in L.caption_features(chips, self.grid, fields, self.job.chip):
            sink.addFeature(f, QgsFeatureSink.FastInsert)
        outputs = {"OUTPUT": dest, "CHIPS": len(chips)}
        json_path = self.parameterAsFileOutput(parameters, "JSON", context)
        if json_path:
            import json

            Path(json_path).write_text(json.dumps(chips, indent=2, ensure_ascii=False), encoding="utf-8")
            outputs["JSON"] = json_path
        return outputs


class TrainChangeModelAlgorithm(EngineAlgorithm):
    """``masktalk:train_change_model``: two-stage S2M fine-tuning on labelled polygons."""

    _id = "train_change_model"
    _name = "Train change model"
    _help = (
        "Fine-tunes an S2M change model on a before/after raster pair and label polygons (class field "
        "with schema class names or ids): stage 1 visual, stage 2 with text-guided alignment. Empty "
        "options take the engine's defaults. Writes a run folder with best/ and last/ checkpoints, "
        "metrics and a plot. Cancel keeps the last checkpoint."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("BEFORE", "Before raster"))
        self.addParameter(QgsProcessingParameterRasterLayer("AFTER", "After raster"))
        self.addParameter(QgsProcessingParameterVectorLayer("LABELS", "Label polygons", [QgsProcessing.TypeVectorPolygon]))
        self.addParameter(QgsProcessingParameterField("CLASS_FIELD", "Class field", defaultValue="class", parentLayerParameterName="LABELS"))
        self.addParameter(QgsProcessingParameterVectorLayer("AOI", "Labelled area (AOI)", [QgsProcessing.TypeVectorPolygon], optional=True))
        self.add_schema_parameters()
        self.addParameter(QgsProcessingParameterEnum("BACKBONE", "Backbone", options=list(BACKBONES), defaultValue=0))
        self.addParameter(QgsProcessingParameterFile("WEIGHTS", "Backbone weights folder", behavior=QgsProcessingParameterFile.Folder, optional=True))
        self.addParameter(QgsProcessingParameterString("TEXT_ENCODER", "Text encoder", optional=True))
        for name, label in (
            ("STAGE1_EPOCHS", "Stage 1 epochs"),
            ("STAGE2_EPOCHS", "Stage 2 epochs"),
            ("CHIP", "Chip size (pixels)"),
            ("BATCH_SIZE", "Batch size"),
            ("LORA_RANK", "LoRA rank (0 = none)"),
        ):
            self.addParameter(QgsProcessingParameterNumber(name, label, optional=True, minValue=0))
        self.addParameter(QgsProcessingParameterEnum("DEVICE", "Device", options=list(DEVICES), defaultValue=0))
        self.addParameter(QgsProcessingParameterNumber("SEED", "Random seed", optional=True, minValue=0))
        self.addParameter(
            QgsProcessingParameterNumber(
                "RESOLUTION", "Pixel size for web/virtual rasters (layer units)", QgsProcessingParameterNumber.Double, optional=True, minValue=0
            )
        )
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT", "Run folder"))
        self.addOutput(QgsProcessingOutputFolder("BEST", "Best checkpoint"))
        self.addOutput(QgsProcessingOutputFolder("LAST", "Last checkpoint"))

    def prepare(self, parameters, context, feedback) -> None:
        labels = self.parameterAsVectorLayer(parameters, "LABELS", context)
        if labels is None:
            raise QgsProcessingException("LABELS: no polygon layer given")
        extent = QgsReferencedRectangle(labels.extent(), labels.crs())
        resolution = self.optional_double(parameters, "RESOLUTION", context)
        self.before = self.raster(parameters, "BEFORE", context, extent, resolution)
        self.after = self.raster(parameters, "AFTER", context, extent, resolution)
        class_field = self.parameterAsString(parameters, "CLASS_FIELD", context) or "class"
        self.labels = L.export_vector(labels, self.temp, "labels")
        aoi = self.parameterAsVectorLayer(parameters, "AOI", context)
        self.aoi = L.export_vector(aoi, self.temp, "aoi") if aoi is not None else None
        preset, schema_path = self.schema_values(parameters, context)
        self.job = TrainJob(
            before=None,
            after=None,
            labels=None,
            out_dir=self.parameterAsString(parameters, "OUTPUT", context),
            class_field=class_field,
            preset=preset,
            schema_path=schema_path,
            backbone=BACKBONES[self.parameterAsEnum(parameters, "BACKBONE", context)],
            weights=self.parameterAsFile(parameters, "WEIGHTS", context) or None,
            text_encoder=self.parameterAsString(parameters, "TEXT_ENCODER", context) or None,
            stage1_epochs=self.optional_int(parameters, "STAGE1_EPOCHS", context),
            stage2_epochs=self.optional_int(parameters, "STAGE2_EPOCHS", context),
            chip=self.optional_int(parameters, "CHIP", context),
            batch_size=self.optional_int(parameters, "BATCH_SIZE", context),
            lora_rank=self.optional_int(parameters, "LORA_RANK", context),
            device=DEVICES[self.parameterAsEnum(parameters, "DEVICE", context)],
            seed=self.optional_int(parameters, "SEED", context),
        )

    def process(self, parameters, context, feedback) -> dict:
        self.write_exports(feedback)
        args = self.job.engine_args(str(self.before.path), str(self.after.path), self.labels, self.aoi)
        result = self.run_engine("train", args, feedback)
        return {"OUTPUT": result.get("run_dir") or self.job.out_dir, "BEST": result.get("best"), "LAST": result.get("last")}


class DetectChangesAlgorithm(EngineAlgorithm):
    """``masktalk:detect_changes``: tiled inference, change raster + captioned change polygons."""

    _id = "detect_changes"
    _name = "Detect changes"
    _help = (
        "Runs a trained MaskTalk model over a before/after raster pair (any raster layer; web and virtual "
        "layers are exported for the extent at the given pixel size). Writes a change raster (class band "
        "with the schema's colours + confidence) and, optionally, a GeoPackage with 'changes' polygons "
        "and chip 'captions' that carry S2M sentences."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("BEFORE", "Before raster"))
        self.addParameter(QgsProcessingParameterRasterLayer("AFTER", "After raster"))
        self.addParameter(QgsProcessingParameterFile("MODEL", "Model (run or checkpoint folder)", behavior=QgsProcessingParameterFile.Folder))
        self.addParameter(QgsProcessingParameterExtent("EXTENT", "Extent", optional=True))
        self.addParameter(
            QgsProcessingParameterNumber(
                "RESOLUTION", "Pixel size for web/virtual rasters (layer units)", QgsProcessingParameterNumber.Double, optional=True, minValue=0
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "THRESHOLD", "Change threshold (probability 0-1; empty = the model's, else 0.5 for two classes, the most probable class for more)", QgsProcessingParameterNumber.Double,
                optional=True, minValue=0, maxValue=1
            )
        )
        self.addParameter(QgsProcessingParameterNumber("CHIP", "Chip size (pixels)", optional=True, minValue=0))
        self.addParameter(QgsProcessingParameterNumber("OVERLAP", "Overlap (pixels)", optional=True, minValue=0))
        self.addParameter(QgsProcessingParameterNumber("BATCH_SIZE", "Batch size", optional=True, minValue=0))
        self.addParameter(QgsProcessingParameterEnum("DEVICE", "Device", options=list(DEVICES), defaultValue=0))
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Change raster"))
        self.addParameter(
            QgsProcessingParameterFileDestination("VECTORS", "Change polygons and captions", "GeoPackage (*.gpkg)", optional=True, createByDefault=False)
        )

    def prepare(self, parameters, context, feedback) -> None:
        extent = None
        if parameters.get("EXTENT"):
            rect = self.parameterAsExtent(parameters, "EXTENT", context)
            crs = self.parameterAsExtentCrs(parameters, "EXTENT", context)
            extent = QgsReferencedRectangle(rect, crs if crs.isValid() else context.project().crs())
        resolution = self.optional_double(parameters, "RESOLUTION", context)
        self.before = self.raster(parameters, "BEFORE", context, extent, resolution)
        self.after = self.raster(parameters, "AFTER", context, extent, resolution)
        self.extent = None
        if extent is not None and self.before.export is None:
            before_layer = self.parameterAsRasterLayer(parameters, "BEFORE", context)
            self.extent = L.rect_tuple(L.extent_in_crs(extent, before_layer.crs(), context.project()))
        out = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        vectors = self.parameterAsFileOutput(parameters, "VECTORS", context)
        self.job = DetectJob(
            before=None,
            after=None,
            model=self.parameterAsFile(parameters, "MODEL", context),
            out_raster=out,
            out_vectors=vectors or "",
            overwrite=True,  # Processing's own file widgets ask before replacing a file
            threshold=self.optional_double(parameters, "THRESHOLD", context),
            chip=self.optional_int(parameters, "CHIP", context),
            overlap=self.optional_int(parameters, "OVERLAP", context),
            batch_size=self.optional_int(parameters, "BATCH_SIZE", context),
            device=DEVICES[self.parameterAsEnum(parameters, "DEVICE", context)],
        )

    def process(self, parameters, context, feedback) -> dict:
        self.write_exports(feedback)
        args = self.job.engine_args(str(self.before.path), str(self.after.path), self.extent)
        result = self.run_engine("predict", args, feedback)
        outputs: dict[str, Any] = {"OUTPUT": result.get("raster") or self.job.out_raster}
        if context.willLoadLayerOnCompletion(self.job.out_raster):
            schema = model_schema(self.job.model, self.job.preset, self.job.schema_path)
            context.layerToLoadOnCompletionDetails(self.job.out_raster).setPostProcessor(StyleChangeRaster(schema))
        if self.job.out_vectors:
            outputs["VECTORS"] = result.get("vectors") or self.job.out_vectors
        return outputs


__all__ = ["CaptionLabelsAlgorithm", "TrainChangeModelAlgorithm", "DetectChangesAlgorithm"]
