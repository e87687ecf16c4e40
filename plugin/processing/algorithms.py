"""Processing algorithms, one per engine command.

Engine settings are Processing parameters built from the engine's own declarations
(:mod:`..engine_options`: choices, defaults, ranges, help), never retyped here; a
parameter left at its default is left out of the command line, so the engine's default
applies. Layers and outputs are the algorithm's own parameters.

Each algorithm resolves its layers in ``prepareAlgorithm`` (main thread: web and virtual
rasters and vector layers of any provider are *prepared* for export, output folders are
checked), then in ``processAlgorithm`` writes the exports (cancellable, with progress)
and runs the engine through :class:`~..runner.EngineRunner` with the feedback wired in:
engine progress -> ``setProgress``, engine log lines -> ``pushInfo``/``pushWarning``,
``isCanceled`` -> the engine is asked to stop (then killed after the grace period).
Engine errors become a ``QgsProcessingException`` carrying the engine's message.

Outputs that outlive QGIS: *Train change model* writes its run folder by default to
``<project folder>/masktalk/runs/run-<time>`` (``<QGIS profile>/masktalk/output/runs/...``
while the project is not saved); *Detect changes* writes ``changes-<time>.tif`` and
``.gpkg`` to ``.../masktalk/detections/``. When Processing loads the outputs (the Toolbox,
``runAndLoadResults``), the change raster gets the schema's colours and the ``changes``
and ``captions`` layers of the GeoPackage are loaded and styled too.

They run from the Toolbox, in batch mode, in the Graphical Modeler and with
``qgis_process run masktalk:<id> -- NAME=value ...``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsFeatureSink,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeatureSourceDefinition,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingOutputFolder,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
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
    QgsProcessingUtils,
    QgsProject,
    QgsRasterLayer,
    QgsReferencedRectangle,
    QgsVectorLayer,
    QgsWkbTypes,
)

from .. import layers as L
from ...engine.schema import preset_names
from ..engine_options import EngineOptions, Option
from ..engine_options import load as load_engine_options
from ..environment import EnvironmentProblem
from ..i18n import tr
from ..runner import EngineCancelled, EngineError, EngineRunner
from ..settings import CaptionJob, DetectJob, ProjectSettings, TrainJob, load_schema, model_schema


def _enum(owner: Any, name: str, scoped: str, member: str) -> Any:
    """An enum value by its QGIS 3.22 name, else by its QGIS >= 3.36 ``Qgis.<scoped>.<member>`` name."""
    value = getattr(owner, name, None)
    return value if value is not None else getattr(getattr(Qgis, scoped), member)


INTEGER = _enum(QgsProcessingParameterNumber, "Integer", "ProcessingNumberParameterType", "Integer")
DOUBLE = _enum(QgsProcessingParameterNumber, "Double", "ProcessingNumberParameterType", "Double")
ADVANCED = _enum(QgsProcessingParameterDefinition, "FlagAdvanced", "ProcessingParameterFlag", "Advanced")
FOLDER = _enum(QgsProcessingParameterFile, "Folder", "ProcessingFileParameterBehavior", "Folder")
RASTER = _enum(QgsProcessing, "TypeRaster", "ProcessingSourceType", "Raster")
POLYGONS = _enum(QgsProcessing, "TypeVectorPolygon", "ProcessingSourceType", "VectorPolygon")
VECTOR_HINT = _enum(QgsProcessingUtils.LayerHint, "Vector", "LayerHint", "Vector")


def engine_options() -> EngineOptions:
    """The engine's declarations (cached answer of the engine Python, else the bundled engine; no process)."""
    return load_engine_options(spawn=False)


def presets() -> list[str]:
    """The engine's presets, the plugin's default one first (index 0, as before)."""
    default = ProjectSettings().preset
    names = preset_names()
    return [default] + [n for n in names if n != default] if default in names else names


def output_root(project: QgsProject | None = None) -> Path:
    """``<project folder>/masktalk``, or ``<QGIS profile>/masktalk/output`` for an unsaved project."""
    project = project or QgsProject.instance()
    home = project.homePath() if project is not None else ""
    return Path(home) / "masktalk" if home else Path(QgsApplication.qgisSettingsDirPath()) / "masktalk" / "output"


def _stamp() -> str:
    return datetime.now().strftime("%Y%m%d-%H%M%S")


def unused(path: Path, suffixes: tuple = ("",)) -> Path:
    """``path``, or ``path-2``, ``path-3`` ... when something (with any of ``suffixes``) is there."""
    candidate, n = path, 2
    while any(Path(f"{candidate}{s}").exists() for s in suffixes):
        candidate, n = path.with_name(f"{path.name}-{n}"), n + 1
    return candidate


def rename_output(context, old: str, new: str) -> str:
    """Move Processing's "load this output when done" from ``old`` to ``new`` (returns ``new``)."""
    if old != new and context.willLoadLayerOnCompletion(old):
        layers = context.layersToLoadOnCompletion()
        layers[new] = layers.pop(old)
        context.setLayersToLoadOnCompletion(layers)
    return new


@dataclass(frozen=True)
class EngineParameter:
    """A Processing parameter that carries one engine option (``dest`` of ``command``)."""

    name: str
    dest: str
    label: str
    advanced: bool = False
    folder: bool = False  # a path option chosen as a folder


def parameter_for(option: Option, spec: EngineParameter) -> QgsProcessingParameterDefinition:
    """The Processing parameter of an engine option: its choices, default, range and help."""
    optional = option.default is None and not option.required
    if option.choices:
        choices = [str(c) for c in option.choices]
        default = choices.index(str(option.default)) if option.default is not None and str(option.default) in choices else None
        param: QgsProcessingParameterDefinition = QgsProcessingParameterEnum(
            spec.name, spec.label, options=choices, allowMultiple=False, defaultValue=default, optional=optional)
    elif option.type in ("int", "float"):
        param = QgsProcessingParameterNumber(spec.name, spec.label, INTEGER if option.type == "int" else DOUBLE,
                                             defaultValue=option.default, optional=optional)
        if option.minimum is not None:
            param.setMinimum(option.minimum)
        if option.maximum is not None:
            param.setMaximum(option.maximum)
    elif option.type == "bool":
        param = QgsProcessingParameterBoolean(spec.name, spec.label, defaultValue=bool(option.default), optional=True)
    elif option.type == "path":
        kw = {"behavior": FOLDER} if spec.folder else {}
        param = QgsProcessingParameterFile(spec.name, spec.label, optional=optional or not option.required, **kw)
    else:
        param = QgsProcessingParameterString(spec.name, spec.label, defaultValue=option.default, optional=optional)
    param.setHelp(option.help)
    if spec.advanced:
        param.setFlags(param.flags() | ADVANCED)
    return param


class StyleChangeRaster(QgsProcessingLayerPostProcessorInterface):
    """Gives a detection's change raster the schema's colour table when Processing loads it."""

    #: Processing keeps only a C++ pointer to post-processors: hold the Python objects here.
    _alive: list = []

    def __init__(self, schema) -> None:
        super().__init__()
        self.schema = schema
        StyleChangeRaster._alive = StyleChangeRaster._alive[-31:] + [self]

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802
        if isinstance(layer, QgsRasterLayer) and layer.isValid():
            layer.setRenderer(L.paletted_renderer(layer, self.schema))
            layer.triggerRepaint()


class StyleDetectionVectors(StyleChangeRaster):
    """Styles the ``changes`` (class colours) and ``captions`` (labelled chips) layers when loaded."""

    def __init__(self, schema, kind: str) -> None:
        super().__init__(schema)
        self.kind = kind

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802
        if isinstance(layer, QgsVectorLayer) and layer.isValid():
            if self.kind == "changes":
                L.style_changes(layer, self.schema)
            else:
                L.style_captions(layer)
            layer.triggerRepaint()


class EngineAlgorithm(QgsProcessingAlgorithm):
    """Shared parts: engine parameters, run with feedback, temporary folder, schema parameters."""

    _id = ""
    command = ""
    #: the Processing parameters that carry engine options (built from the engine's declarations)
    engine_parameters: tuple = ()

    def __init__(self) -> None:
        super().__init__()
        self.temp: L.TempFolder | None = None
        self.exports: list = []

    # -- QGIS API --------------------------------------------------------------------------
    def name(self) -> str:
        return self._id

    def createInstance(self):  # noqa: N802
        return type(self)()

    # -- engine options --------------------------------------------------------------------------
    def add_engine_parameters(self) -> None:
        opts = engine_options()
        for spec in self.engine_parameters:
            self.addParameter(parameter_for(opts.option(self.command, spec.dest), spec))

    def engine_values(self, parameters, context) -> dict:
        """dest -> value of the engine parameters the user set (unset ones: the engine's default)."""
        opts = engine_options()
        values = {}
        for spec in self.engine_parameters:
            raw = parameters.get(spec.name)
            if raw is None or raw == "" or (hasattr(raw, "isNull") and raw.isNull()):
                continue
            option = opts.option(self.command, spec.dest)
            if option.choices:
                value: Any = option.choices[self.parameterAsEnum(parameters, spec.name, context)]
            elif option.type == "int":
                value = self.parameterAsInt(parameters, spec.name, context)
            elif option.type == "float":
                value = self.parameterAsDouble(parameters, spec.name, context)
            elif option.type == "bool":
                value = self.parameterAsBoolean(parameters, spec.name, context)
            elif option.type == "path":
                value = self.parameterAsFile(parameters, spec.name, context) or None
            else:
                value = self.parameterAsString(parameters, spec.name, context) or None
            if value is not None and value != option.default:
                values[spec.dest] = value
        return values

    def checkParameterValues(self, parameters, context):  # noqa: N802
        """Refuse what the engine would refuse, before anything runs, when the engine's facts
        are known (its cached answer); otherwise the engine checks the same rules itself."""
        ok, message = super().checkParameterValues(parameters, context)
        if not ok or not self.command:
            return ok, message
        opts = engine_options()
        if opts.environment:
            problems = opts.problems(self.command, self.engine_values(parameters, context))
            if problems:
                return False, problems[0]
        return True, ""

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
        self.addParameter(QgsProcessingParameterEnum("PRESET", tr("Class schema preset"), options=presets(), defaultValue=0))
        self.addParameter(
            QgsProcessingParameterFile("SCHEMA", tr("Class schema file (overrides the preset)"), extension="json", optional=True)
        )

    def schema_values(self, parameters, context) -> tuple[str, str]:
        preset = presets()[self.parameterAsEnum(parameters, "PRESET", context)]
        schema = self.parameterAsFile(parameters, "SCHEMA", context) or ""
        return preset, schema

    def add_aoi_parameter(self, label: str) -> None:
        self.addParameter(QgsProcessingParameterFeatureSource("AOI", label, [POLYGONS], optional=True))

    def aoi(self, parameters, context) -> L.PreparedVector | None:
        """The AOI polygons (only the selected ones when the user ticked that) as a file to export."""
        value = parameters.get("AOI")
        if value is None or value == "":
            return None
        selected = False
        if isinstance(value, QgsProcessingFeatureSourceDefinition):  # "selected features only" comes this way
            selected = bool(value.selectedFeaturesOnly)
            source = value.source.staticValue() if hasattr(value.source, "staticValue") else value.source
            layer = QgsProcessingUtils.mapLayerFromString(str(source), context, True, VECTOR_HINT)
        else:
            layer = self.parameterAsVectorLayer(parameters, "AOI", context)
        if not isinstance(layer, QgsVectorLayer):
            raise QgsProcessingException(tr("AOI: no polygon layer given"))
        prepared = L.prepare_vector(layer, self.temp, "aoi", selected_only=selected, project=context.project())
        self.exports.append(prepared)
        self.aoi_extent = L.features_extent(layer, selected)
        return prepared

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
            raise QgsProcessingException(tr("{name}: no raster layer given").format(name=name))
        try:
            prepared = L.prepare_raster(layer, self.temp, name.lower(), extent=extent, resolution=resolution, project=context.project())
        except L.LayerProblem as exc:
            raise QgsProcessingException(str(exc)) from exc
        if prepared.export is not None:
            self.exports.append(prepared)
        return prepared

    def write_exports(self, feedback) -> None:
        """Write the prepared exports (worker thread), cancellable, with progress."""
        for prepared in self.exports:
            if feedback.isCanceled():
                raise QgsProcessingException(tr("cancelled by the user"))
            if getattr(prepared, "export", None) is None:
                continue
            feedback.pushInfo(tr("exporting {name} to {path}").format(name=prepared.export.name, path=prepared.path))
            try:
                prepared.ensure(feedback)
            except L.ExportCancelled as exc:
                raise QgsProcessingException(tr("cancelled by the user")) from exc
            except L.LayerProblem as exc:
                raise QgsProcessingException(str(exc)) from exc
        feedback.setProgress(0)

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
            raise QgsProcessingException(tr("cancelled by the user: {reason}").format(reason=exc)) from exc
        except EngineError as exc:
            if not exc.is_user_error:
                feedback.reportError(exc.details(), fatalError=False)
            raise QgsProcessingException(exc.message) from exc


class CaptionLabelsAlgorithm(EngineAlgorithm):
    """``masktalk:caption_labels``: S2M captions per chip of a label layer."""

    _id = "caption_labels"
    command = "caption"
    engine_parameters = (
        EngineParameter("CHIP", "chip", tr("Chip size (pixels; empty = the whole raster as one chip)")),
        EngineParameter("SEED", "seed", tr("Template seed"), advanced=True),
    )

    def displayName(self) -> str:  # noqa: N802
        return tr("Caption change labels")

    def shortHelpString(self) -> str:  # noqa: N802
        return tr(
            "Turns change labels into S2M text: for each chip with change, one quadruple per class "
            "(direction, quantity, category, type) rendered with the paper's templates. LABELS is a class "
            "raster (values = class ids) or label polygons with a class field (names or ids), rasterised on "
            "the REFERENCE raster's grid (or at RESOLUTION). OUTPUT: one polygon per chip with its sentences."
        )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(
            QgsProcessingParameterMapLayer("LABELS", tr("Change labels (class raster or polygons)"), types=[RASTER, POLYGONS])
        )
        self.addParameter(QgsProcessingParameterString("CLASS_FIELD", tr("Class field (polygon labels)"), defaultValue="class", optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer("REFERENCE", tr("Reference raster grid (polygon labels)"), optional=True))
        self.addParameter(
            QgsProcessingParameterNumber("RESOLUTION", tr("Pixel size without a reference (layer units)"), DOUBLE, optional=True, minValue=0)
        )
        self.add_schema_parameters()
        self.add_engine_parameters()
        self.addParameter(QgsProcessingParameterString("LABEL_MAP", tr("Label value map (e.g. 255:1)"), optional=True))
        self.addParameter(QgsProcessingParameterFeatureSink("OUTPUT", tr("Captions"), POLYGONS))
        self.addParameter(QgsProcessingParameterFileDestination("JSON", tr("Captions as JSON"), tr("JSON files (*.json)"), optional=True,
                                                                createByDefault=False))
        self.addOutput(QgsProcessingOutputNumber("CHIPS", tr("Captioned chips")))

    def prepare(self, parameters, context, feedback) -> None:
        layer = self.parameterAsLayer(parameters, "LABELS", context)
        if layer is None:
            raise QgsProcessingException(tr("LABELS: no layer given"))
        preset, schema_path = self.schema_values(parameters, context)
        self.job = CaptionJob(
            labels=layer,
            preset=preset,
            schema_path=schema_path,
            class_field=self.parameterAsString(parameters, "CLASS_FIELD", context) or "class",
            label_map=self.parameterAsString(parameters, "LABEL_MAP", context),
            options=self.engine_values(parameters, context),
        )
        if isinstance(layer, QgsVectorLayer):
            reference = self.parameterAsRasterLayer(parameters, "REFERENCE", context)
            schema = load_schema(preset, schema_path)
            self.grid = L.label_grid(layer, reference, self.optional_double(parameters, "RESOLUTION", context), context.project())
            self.labels = L.prepare_labels(layer, self.job.class_field, schema, self.grid, self.temp, context.project())
            self.label_path = None
        else:
            source = L.class_raster_source(layer)
            if source is None:
                raise QgsProcessingException(tr("LABELS: a class raster must be a file (GeoTIFF or PNG)"))
            self.labels = None
            self.label_path, self.grid = source

    def process(self, parameters, context, feedback) -> dict:
        label_path = self.label_path
        if self.labels is not None:
            feedback.pushInfo(tr("rasterising the label polygons"))
            try:
                label_path = self.labels.ensure(feedback)
            except L.ExportCancelled as exc:
                raise QgsProcessingException(tr("cancelled by the user")) from exc
            except L.LayerProblem as exc:
                raise QgsProcessingException(str(exc)) from exc
        result = self.run_engine("caption", self.job.engine_args(label_path), feedback)
        chips = result.get("json") or []
        fields = L.caption_fields()
        sink, dest = self.parameterAsSink(parameters, "OUTPUT", context, fields, QgsWkbTypes.Type.Polygon, self.grid.crs)
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, "OUTPUT"))
        for f in L.caption_features(chips, self.grid, fields, self.job.options.get("chip")):
            sink.addFeature(f, QgsFeatureSink.Flag.FastInsert)
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
    command = "train"
    engine_parameters = (
        EngineParameter("BACKBONE", "backbone", tr("Backbone (empty = DINOv3 when its weights are found, else EfficientNet-Lite0)")),
        EngineParameter("WEIGHTS", "weights", tr("Backbone weights folder"), folder=True),
        EngineParameter("CHIP", "chip", tr("Chip size (pixels)")),
        EngineParameter("STEPS", "steps", tr("Optimizer steps (empty = adapted to the labelled area)"), advanced=True),
        EngineParameter("STAGE1_EPOCHS", "stage1_epochs", tr("Stage 1 epochs (instead of steps)"), advanced=True),
        EngineParameter("STAGE2_EPOCHS", "stage2_epochs", tr("Stage 2 epochs (instead of steps)"), advanced=True),
        EngineParameter("BATCH_SIZE", "batch_size", tr("Batch size"), advanced=True),
        EngineParameter("LORA_RANK", "lora_rank", tr("LoRA rank (DINOv3 only; 0 = full fine-tuning)"), advanced=True),
        EngineParameter("TEXT_ENCODER", "text_encoder", tr("Text encoder of stage 2"), advanced=True),
        EngineParameter("DEVICE", "device", tr("Device")),
        EngineParameter("SEED", "seed", tr("Random seed"), advanced=True),
    )

    def displayName(self) -> str:  # noqa: N802
        return tr("Train change model")

    def shortHelpString(self) -> str:  # noqa: N802
        return tr(
            "Fine-tunes an S2M change model on a before/after raster pair and label polygons (class field "
            "with schema class names or ids): stage 1 visual, stage 2 with text-guided alignment. The "
            "engine's defaults work as they are; every option shows the engine's own help. The AOI "
            "polygons (or their selected features) bound the labelled area. Writes a run folder (by "
            "default masktalk/runs/ beside the project) with best/ and last/ checkpoints, metrics and a "
            "plot. Cancel keeps the last checkpoint."
        )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("BEFORE", tr("Before raster")))
        self.addParameter(QgsProcessingParameterRasterLayer("AFTER", tr("After raster")))
        self.addParameter(QgsProcessingParameterVectorLayer("LABELS", tr("Label polygons"), [POLYGONS]))
        # optional: a missing value takes the default ("class"); a required field parameter would refuse a missing one
        self.addParameter(QgsProcessingParameterField("CLASS_FIELD", tr("Class field"), defaultValue="class", parentLayerParameterName="LABELS",
                                                      optional=True))
        self.add_aoi_parameter(tr("Labelled area (AOI)"))
        self.add_schema_parameters()
        self.add_engine_parameters()
        self.addParameter(
            QgsProcessingParameterNumber("RESOLUTION", tr("Pixel size for web/virtual rasters (layer units)"), DOUBLE, optional=True, minValue=0)
        )
        run = output_root() / "runs" / f"run-{_stamp()}"
        # optional with a default: left out (processing.run, qgis_process) it is this persistent folder, not a temporary one
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT", tr("Run folder"), defaultValue=str(run), optional=True))
        self.addOutput(QgsProcessingOutputFolder("BEST", tr("Best checkpoint")))
        self.addOutput(QgsProcessingOutputFolder("LAST", tr("Last checkpoint")))

    def prepare(self, parameters, context, feedback) -> None:
        labels = self.parameterAsVectorLayer(parameters, "LABELS", context)
        if labels is None:
            raise QgsProcessingException(tr("LABELS: no polygon layer given"))
        out_dir = self.parameterAsString(parameters, "OUTPUT", context)
        if out_dir == self.parameterDefinition("OUTPUT").defaultValue():
            out_dir = str(unused(Path(out_dir)))  # two runs within a second get two folders
        L.check_writable_folder(Path(out_dir).parent, tr("training run"))
        extent = QgsReferencedRectangle(labels.extent(), labels.crs())
        resolution = self.optional_double(parameters, "RESOLUTION", context)
        self.before = self.raster(parameters, "BEFORE", context, extent, resolution)
        self.after = self.raster(parameters, "AFTER", context, extent, resolution)
        class_field = self.parameterAsString(parameters, "CLASS_FIELD", context) or "class"
        self.labels = L.prepare_vector(labels, self.temp, "labels", project=context.project())
        self.exports.append(self.labels)
        self.aoi_file = self.aoi(parameters, context)
        preset, schema_path = self.schema_values(parameters, context)
        self.job = TrainJob(before=None, after=None, labels=None, out_dir=out_dir, class_field=class_field,
                            preset=preset, schema_path=schema_path, options=self.engine_values(parameters, context))

    def process(self, parameters, context, feedback) -> dict:
        self.write_exports(feedback)
        aoi = str(self.aoi_file.path) if self.aoi_file is not None else None
        args = self.job.engine_args(str(self.before.path), str(self.after.path), str(self.labels.path), aoi)
        result = self.run_engine("train", args, feedback)
        return {"OUTPUT": result.get("run_dir") or self.job.out_dir, "BEST": result.get("best"), "LAST": result.get("last")}


class DetectChangesAlgorithm(EngineAlgorithm):
    """``masktalk:detect_changes``: tiled inference, change raster + captioned change polygons."""

    _id = "detect_changes"
    command = "predict"
    engine_parameters = (
        EngineParameter("THRESHOLD", "threshold", tr("Change threshold (probability 0-1; empty = the model's, else 0.5 for two "
                                                  "classes, the most probable class for more)")),
        EngineParameter("MIN_AREA", "min_area", tr("Smallest change polygon kept (square metres)")),
        EngineParameter("TTA", "tta", tr("Test-time augmentation (flips: the model averaged over 4 flips, 4x the time)"), advanced=True),
        EngineParameter("CHIP", "chip", tr("Chip size (pixels; empty = the engine's choice for the model)"), advanced=True),
        EngineParameter("OVERLAP", "overlap", tr("Overlap (pixels)"), advanced=True),
        EngineParameter("BATCH_SIZE", "batch_size", tr("Batch size"), advanced=True),
        EngineParameter("DEVICE", "device", tr("Device")),
        EngineParameter("RUNTIME", "runtime", tr("Runtime"), advanced=True),
    )

    def displayName(self) -> str:  # noqa: N802
        return tr("Detect changes")

    def shortHelpString(self) -> str:  # noqa: N802
        return tr(
            "Runs a trained MaskTalk model over a before/after raster pair (any raster layer; web and virtual "
            "layers are exported for the extent at the given pixel size). Writes a change raster (class band "
            "with the schema's colours + confidence) and a GeoPackage with 'changes' polygons and chip "
            "'captions' that carry S2M sentences (by default in masktalk/detections/ beside the project); "
            "both are loaded and styled. The AOI is a mask: nothing is detected outside its polygons (or "
            "its selected features)."
        )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("BEFORE", tr("Before raster")))
        self.addParameter(QgsProcessingParameterRasterLayer("AFTER", tr("After raster")))
        self.addParameter(QgsProcessingParameterFile("MODEL", tr("Model (run or checkpoint folder)"), behavior=FOLDER))
        self.addParameter(QgsProcessingParameterExtent("EXTENT", tr("Extent"), optional=True))
        self.add_aoi_parameter(tr("Area of interest (polygon mask)"))
        self.addParameter(
            QgsProcessingParameterNumber("RESOLUTION", tr("Pixel size for web/virtual rasters (layer units)"), DOUBLE, optional=True, minValue=0)
        )
        self.add_engine_parameters()
        stem = output_root() / "detections" / f"changes-{_stamp()}"
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", tr("Change raster"), defaultValue=f"{stem}.tif", optional=True))
        self.addParameter(
            QgsProcessingParameterFileDestination("VECTORS", tr("Change polygons and captions"), tr("GeoPackage (*.gpkg)"),
                                                  defaultValue=f"{stem}.gpkg", optional=True, createByDefault=True)
        )

    def prepare(self, parameters, context, feedback) -> None:
        extent = None
        if parameters.get("EXTENT"):
            rect = self.parameterAsExtent(parameters, "EXTENT", context)
            crs = self.parameterAsExtentCrs(parameters, "EXTENT", context)
            extent = QgsReferencedRectangle(rect, crs if crs.isValid() else context.project().crs())
        out = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        vectors = self.parameterAsFileOutput(parameters, "VECTORS", context)
        if out == self.parameterDefinition("OUTPUT").defaultValue():  # the default: never replace an earlier detection
            stem = unused(Path(out).with_suffix(""), (".tif", ".gpkg"))
            if vectors == self.parameterDefinition("VECTORS").defaultValue():
                vectors = str(stem.with_suffix(".gpkg"))
            out = rename_output(context, out, str(stem.with_suffix(".tif")))
        for path in (out, vectors):
            if path:
                L.check_writable_folder(Path(path).parent, tr("detection"))
        resolution = self.optional_double(parameters, "RESOLUTION", context)
        self.aoi_file = self.aoi(parameters, context)
        if extent is None and self.aoi_file is not None:
            extent = self.aoi_extent  # what web layers must export
        self.before = self.raster(parameters, "BEFORE", context, extent, resolution)
        self.after = self.raster(parameters, "AFTER", context, extent, resolution)
        self.extent = None
        if parameters.get("EXTENT") and self.before.export is None:
            before_layer = self.parameterAsRasterLayer(parameters, "BEFORE", context)
            self.extent = L.rect_tuple(L.extent_in_crs(extent, before_layer.crs(), context.project()))
        self.job = DetectJob(
            before=None,
            after=None,
            model=self.parameterAsFile(parameters, "MODEL", context),
            out_raster=out,
            out_vectors=vectors or "",
            overwrite=True,  # Processing's own file widgets ask before replacing a file
            options=self.engine_values(parameters, context),
        )

    def process(self, parameters, context, feedback) -> dict:
        self.write_exports(feedback)
        aoi = str(self.aoi_file.path) if self.aoi_file is not None else None
        args = self.job.engine_args(str(self.before.path), str(self.after.path), self.extent, aoi)
        result = self.run_engine("predict", args, feedback)
        raster = result.get("raster") or self.job.out_raster
        outputs: dict[str, Any] = {"OUTPUT": raster}
        vectors = (result.get("vectors") or self.job.out_vectors) if self.job.out_vectors else ""
        if vectors:
            outputs["VECTORS"] = vectors
        if context.willLoadLayerOnCompletion(self.job.out_raster):
            self.load_outputs(context, vectors)
        return outputs

    def load_outputs(self, context, vectors: str) -> None:
        """Style the change raster when Processing loads it, and have it load and style the vectors."""
        schema = model_schema(self.job.model, self.job.preset, self.job.schema_path)
        context.layerToLoadOnCompletionDetails(self.job.out_raster).setPostProcessor(StyleChangeRaster(schema))
        project = context.project()
        if not vectors or project is None or not Path(vectors).is_file():
            return
        for kind in ("changes", "captions"):
            details = QgsProcessingContext.LayerDetails(kind, project, kind, VECTOR_HINT)
            details.setPostProcessor(StyleDetectionVectors(schema, kind))
            context.addLayerToLoadOnCompletion(f"{vectors}|layername={kind}", details)


__all__ = ["CaptionLabelsAlgorithm", "TrainChangeModelAlgorithm", "DetectChangesAlgorithm", "parameter_for", "output_root"]
