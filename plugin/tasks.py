"""Background tasks (``QgsTask``) around the engine process: caption, train, detect.

How a task is used (the dock, or any caller on the main thread)::

    task = DetectTask(DetectJob(before=layer_a, after=layer_b, model=run_dir, out_raster=out))
    task.progressMessage.connect(status_bar.showMessage)     # worker -> main (queued)
    task.succeeded.connect(on_result)                        # main thread, from finished()
    task.failed.connect(show_error)                          # (message, details)
    task.wasCancelled.connect(on_cancel)
    QgsApplication.taskManager().addTask(task)
    ...
    task.cancel()                                            # stops an export or the engine

Life of a task:

- ``__init__`` (main thread) checks the job and *prepares* its inputs, which is cheap:
  raster providers are cloned, vector layers snapshot as thread-safe feature sources,
  label grids computed (:mod:`.layers`). A bad input raises :class:`~.layers.LayerProblem`
  here, before anything runs;
- ``run()`` (worker thread) writes the exports (web rasters, vector layers, rasterised
  labels) with a ``QgsRasterBlockFeedback`` each: progress on the task's bar, cancel at
  once. Then it runs the engine through :class:`~.runner.EngineRunner`, reporting
  progress with ``setProgress`` and honouring ``isCanceled()`` (the engine gets SIGTERM,
  then is killed after the grace period);
- ``finished()`` (main thread) removes the temporary folder, adds output layers to the
  project (never in ``run()``), and emits ``succeeded(result)``, ``failed(message,
  details)`` or ``wasCancelled()``. ``on_finished(task)`` callbacks run there too.

Engine options travel in ``job.options`` (only what the user changed; see
:mod:`.engine_options`); the jobs build their command lines themselves (:mod:`.settings`).
"""

from __future__ import annotations

import logging
import time
import weakref
from pathlib import Path
from typing import Any, Callable

from qgis.core import Qgis, QgsMessageLog, QgsProject, QgsRasterBlockFeedback, QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from . import layers as L
from .environment import EnvironmentProblem
from .i18n import tr
from .runner import EngineCancelled, EngineError, EngineRunner
from .settings import CaptionJob, DetectJob, TrainJob, load_schema, model_schema

log = logging.getLogger("masktalk.tasks")
LOG_TAG = "MaskTalk"
_LEVELS = {"debug": Qgis.MessageLevel.Info, "info": Qgis.MessageLevel.Info, "warning": Qgis.MessageLevel.Warning, "error": Qgis.MessageLevel.Critical}


class EngineTask(QgsTask):
    """Base of the engine tasks; subclasses implement :meth:`prepare`, :meth:`execute`, :meth:`on_success`.

    Signals:
        progressMessage(str): what the task is doing (emitted from the worker thread).
        logMessage(str, str): ``(level, message)`` engine log lines (worker thread).
        metrics(dict): a ``metrics`` event, e.g. one per validation of a training (worker thread).
        succeeded(dict): the engine's result (main thread, after outputs were added).
        failed(str, str): ``(message, details)``; details hold command, exit code, stderr tail.
        wasCancelled(): the user cancelled; no output was added.

    Attributes (valid once finished): ``result`` (dict or None), ``error``
    (:class:`EngineError` or None), ``added_layers`` (layers added to the project).
    """

    progressMessage = pyqtSignal(str)
    logMessage = pyqtSignal(str, str)
    metrics = pyqtSignal(dict)
    succeeded = pyqtSignal(dict)
    failed = pyqtSignal(str, str)
    wasCancelled = pyqtSignal()

    #: Share of the progress bar given to exporting inputs when there is something to export.
    EXPORT_SHARE = 0.1

    def __init__(
        self,
        description: str,
        job: Any,
        runner: EngineRunner | None = None,
        project: QgsProject | None = None,
        on_finished: Callable[["EngineTask"], None] | None = None,
    ) -> None:
        super().__init__(description, QgsTask.Flag.CanCancel)
        self.job = job
        self.runner = runner or EngineRunner(grace_s=_grace_s())
        self.project = project or QgsProject.instance()
        self.on_finished = on_finished
        self.result: dict | None = None
        self.error: EngineError | None = None
        self.added_layers: list = []
        self.events: list[dict] = []
        self.seconds = 0.0
        self.temp = L.TempFolder()
        #: Inputs to write in run(): PreparedRaster / PreparedVector / PreparedLabels (``ensure(feedback)``).
        self._exports: list = []
        self._feedback: QgsRasterBlockFeedback | None = None
        self._new_outputs: list[Path] = []
        self._had_exports = False
        try:
            self.prepare()
        except BaseException:
            self.temp.cleanup()
            raise
        try:  # resolve the engine Python here, on the main thread (settings); errors surface in run()
            self.runner.python
        except EnvironmentProblem:
            pass

    # -- to implement ------------------------------------------------------------------------
    def prepare(self) -> None:
        """Main thread: resolve layers into files (exports), check the job."""

    def execute(self) -> dict:
        """Worker thread: run the engine (use :meth:`engine`); return its result."""
        raise NotImplementedError

    def on_success(self, result: dict) -> None:
        """Main thread: add outputs to the project."""

    # -- helpers for subclasses ----------------------------------------------------------------
    def raster(self, source: Any, name: str, extent=None, resolution=None) -> L.PreparedRaster:
        prepared = L.prepare_raster(source, self.temp, name, extent=extent, resolution=resolution, project=self.project)
        if prepared.export is not None:
            self._exports.append(prepared)
        return prepared

    def vector(self, source: Any, name: str, fields=None, selected_only: bool = False, crs=None) -> L.PreparedVector:
        prepared = L.prepare_vector(source, self.temp, name, fields=fields, selected_only=selected_only, crs=crs, project=self.project)
        if prepared.export is not None:
            self._exports.append(prepared)
        return prepared

    def export_grid(self, before: Any, after: Any, extent: Any, resolution: float | None):
        """Extent and pixel sizes for exporting layers without a file (WMS/XYZ, virtual).

        Returns ``(extent, before_resolution, after_resolution)``, each resolution in its
        own layer's CRS units. ``resolution`` is in the *before* layer's CRS units (the
        dock's Resolution field); without it the before image's own pixel size is used,
        else the after image's. When one date is a file and the other is not, the export
        defaults to the file's extent. Main thread.
        """
        from qgis.core import QgsRasterLayer, QgsReferencedRectangle

        b, a = _layer_of(before), _layer_of(after)
        if not (isinstance(b, QgsRasterLayer) and isinstance(a, QgsRasterLayer) and b.isValid() and a.isValid()):
            return extent, resolution, resolution
        b_native, a_native = L.native_resolution(b), L.native_resolution(a)
        b_file, a_file = L.local_raster_path(b) is not None, L.local_raster_path(a) is not None
        if extent is None and b_file != a_file:
            grid = b if b_file else a
            extent = QgsReferencedRectangle(grid.extent(), grid.crs())
        if extent is not None:
            at = L.extent_in_crs(extent, b.crs(), self.project)
        else:
            at = b.extent() if b_native else L.extent_in_crs(QgsReferencedRectangle(a.extent(), a.crs()), b.crs(), self.project)
        reference = resolution or b_native or (L.resolution_in_crs(a_native, a.crs(), b.crs(), a.extent(), self.project) if a_native else None)
        res_b = resolution or reference
        if a_native and not resolution:
            res_a = a_native
        else:
            res_a = L.resolution_in_crs(reference, b.crs(), a.crs(), at, self.project) if reference else None
        return extent, res_b, res_a

    def remember_new_output(self, path: str | Path | None) -> None:
        """An output file the run creates: removed if the run is cancelled or fails."""
        if path and not Path(path).exists():
            self._new_outputs.append(Path(path))

    def engine(self, command: str, args: list[str]) -> dict:
        """Run one engine command with this task's progress, log, metrics and cancel."""
        start = self.EXPORT_SHARE if self._had_exports else 0.0

        def on_progress(fraction, message):
            if fraction is not None:
                self.setProgress(100.0 * (start + (1.0 - start) * max(0.0, min(1.0, fraction))))
            if message:
                self.progressMessage.emit(message)

        def on_log(level, message):
            QgsMessageLog.logMessage(message, LOG_TAG, _LEVELS.get(level, Qgis.MessageLevel.Info))
            self.logMessage.emit(level, message)

        def on_event(event):
            self.events.append(event)
            if event.get("event") == "metrics":
                self.metrics.emit({k: v for k, v in event.items() if k != "event"})

        return self.runner.run(command, args, on_progress=on_progress, on_log=on_log, on_event=on_event, is_cancelled=self.isCanceled)

    def write_exports(self) -> None:
        """Worker thread: write every prepared input, each with a cancellable feedback that
        drives this task's progress bar (the first :data:`EXPORT_SHARE` of it)."""
        n = len(self._exports)
        for i, prepared in enumerate(self._exports):
            if self.isCanceled():
                raise EngineCancelled()
            feedback = QgsRasterBlockFeedback()
            # A slot connected in this worker thread (no event loop) is never freed by PyQt:
            # it must not hold the task (and through it the job's layers, which would then
            # outlive exitQgis() and crash QGIS at exit), so it holds a weak reference.
            me = weakref.ref(self)

            def on_progress(percent, i=i, me=me):
                task = me()
                if task is not None:
                    task.setProgress(100.0 * task.EXPORT_SHARE * (i + percent / 100.0) / n)

            feedback.progressChanged.connect(on_progress)
            self._feedback = feedback
            if self.isCanceled():  # cancelled between the check above and the assignment
                feedback.cancel()
            export = getattr(prepared, "export", None)
            name = getattr(export, "name", "") or getattr(prepared, "label", "") or getattr(prepared, "name", "")
            self.progressMessage.emit(tr("exporting {name}").format(name=name) if name else tr("exporting the inputs"))
            try:
                prepared.ensure(feedback)
            except L.ExportCancelled:
                raise EngineCancelled() from None
            finally:
                self._feedback = None
            self.setProgress(100.0 * self.EXPORT_SHARE * (i + 1) / n)

    # -- QgsTask API ---------------------------------------------------------------------------
    def cancel(self) -> None:  # main thread
        """Stop now: an export in progress is interrupted, the engine asked to stop."""
        feedback = self._feedback
        if feedback is not None:
            feedback.cancel()
        super().cancel()

    def run(self) -> bool:  # worker thread
        started = time.monotonic()
        try:
            self._had_exports = bool(self._exports)
            self.write_exports()
            if self.isCanceled():
                raise EngineCancelled()
            self.result = self.execute()
            return True
        except EngineCancelled as exc:
            self.error = exc
            return False
        except EngineError as exc:
            self.error = exc
            return False
        except L.LayerProblem as exc:
            self.error = EngineError(str(exc), kind="InputError")
            return False
        except EnvironmentProblem as exc:
            self.error = EngineError(str(exc), kind="NotFound")
            return False
        except Exception as exc:  # noqa: BLE001 - a bug: keep the traceback for the log
            import traceback

            self.error = EngineError(f"{type(exc).__name__}: {exc}", kind="InternalError", traceback=traceback.format_exc())
            return False
        finally:
            self.seconds = time.monotonic() - started

    def finished(self, ok: bool) -> None:  # main thread
        try:
            if ok and self.result is not None:
                try:
                    self.on_success(self.result)
                except Exception as exc:  # noqa: BLE001 - adding layers failed: report, keep files
                    import traceback

                    self.error = EngineError(tr("the run finished but its outputs could not be added: {error}").format(error=exc),
                                             kind="InternalError", traceback=traceback.format_exc())
                    QgsMessageLog.logMessage(self.error.details(), LOG_TAG, Qgis.MessageLevel.Critical)
                    self.failed.emit(self.error.message, self.error.details())
                    return
                self.succeeded.emit(self.result)
                return
            for path in self._new_outputs:  # no half-written output after a cancel or failure
                _remove(path)
            if isinstance(self.error, EngineCancelled) or (self.error is None and self.isCanceled()):
                QgsMessageLog.logMessage(tr("{task}: cancelled").format(task=self.description()), LOG_TAG, Qgis.MessageLevel.Info)
                self.wasCancelled.emit()
            else:
                err = self.error or EngineError(tr("the task stopped without a result"))
                self.error = err
                QgsMessageLog.logMessage(err.details(), LOG_TAG, Qgis.MessageLevel.Critical)
                self.failed.emit(err.message, err.details())
        finally:
            self._release_sources()
            self.temp.cleanup()
            if self.on_finished is not None:
                self.on_finished(self)

    def _release_sources(self) -> None:
        """Drop the layer snapshots (``QgsVectorLayerFeatureSource``) of the exports: a
        finished task object may live on in the task manager, and a snapshot of a memory
        layer that outlives ``exitQgis()`` crashes QGIS at exit."""
        for prepared in self._exports:
            for holder in (prepared, getattr(prepared, "vector", None)):
                export = getattr(holder, "export", None)
                for attr in ("source", "provider"):  # layer snapshots, cloned data providers
                    if export is not None and getattr(export, attr, None) is not None:
                        setattr(export, attr, None)


def _remove(path: Path) -> None:
    import shutil

    try:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink()
    except OSError:
        pass


def _grace_s() -> float:
    try:
        from .settings import PluginSettings

        return float(PluginSettings.load().cancel_grace_s)
    except Exception:  # noqa: BLE001 - settings unavailable: default
        return 10.0


def _options(job: Any) -> dict:
    return dict(getattr(job, "options", None) or {})


def _layer_of(source: Any):
    """A layer for a path (CRS, extent), the layer itself otherwise."""
    from qgis.core import QgsRasterLayer

    if isinstance(source, (str, Path)):
        return QgsRasterLayer(str(source), "input", "gdal")
    return source


def _crs_of(source: Any):
    return _layer_of(source).crs()


def _union(*extents):
    """The union of referenced rectangles (None ones skipped), in the first one's CRS."""
    from qgis.core import QgsRectangle, QgsReferencedRectangle

    extents = [e for e in extents if e is not None]
    if not extents:
        return None
    crs = extents[0].crs()
    rect = QgsRectangle(extents[0])
    for e in extents[1:]:
        rect.combineExtentWith(L.extent_in_crs(e, crs))
    return QgsReferencedRectangle(rect, crs)


class CaptionTask(EngineTask):
    """S2M captions of a label layer, saved as the ``captions`` layer of a GeoPackage
    (beside the labels, else in the output folder) and added to the project; a re-run
    replaces that layer, in the file and in the project.

    Result: the caption command's result (``json`` = list of chips) plus ``grid``
    (``crs``, ``geotransform``) of the raster the chips refer to and ``captions`` (the
    GeoPackage layer written).
    """

    def __init__(self, job: CaptionJob, **kw: Any) -> None:
        self.grid: L.Grid | None = None
        self.label_path = ""
        self._labels: L.PreparedLabels | None = None
        super().__init__(tr("MaskTalk: caption labels"), job, **kw)

    def prepare(self) -> None:
        job: CaptionJob = self.job
        from qgis.core import QgsVectorLayer

        if isinstance(job.labels, QgsVectorLayer):
            try:
                schema = load_schema(job.preset, job.schema_path)
            except ValueError as exc:
                raise L.LayerProblem(str(exc)) from exc
            if job.class_field not in job.labels.fields().names():
                raise L.LayerProblem(tr("labels: layer '{layer}' has no field '{field}'").format(layer=job.labels.name(), field=job.class_field))
            self.grid = L.label_grid(job.labels, job.reference, job.resolution, self.project)
            self._labels = L.prepare_labels(job.labels, job.class_field, schema, self.grid, self.temp, self.project)
            self._exports.append(self._labels)
            self.label_path = str(self._labels.out)
        else:
            source = L.class_raster_source(job.labels)
            if source is None:
                raise L.LayerProblem(tr("labels: a class raster must be a file (GeoTIFF or PNG), not a rendered service"))
            self.label_path, self.grid = source
        self.captions_file = Path(getattr(job, "out_path", "") or L.captions_path(job.labels, _output_folder(job, self.project)))

    def execute(self) -> dict:
        result = self.engine("caption", self.job.engine_args(self.label_path))
        grid = self.grid
        result["grid"] = {"crs": grid.crs.authid() or grid.crs.toWkt(), "geotransform": list(grid.geotransform())}
        return result

    def on_success(self, result: dict) -> None:
        if not self.job.add_layer:
            return
        chips = result.get("json") or []
        from qgis.core import QgsVectorLayer

        uri = f"{self.captions_file}|layername={L.CAPTIONS_LAYER}"
        replaced = L.layers_reading(uri, self.project)
        for layer in replaced:  # a re-run replaces the earlier captions, it does not stack them
            self.project.removeMapLayer(layer.id())
        uri = L.write_captions(chips, self.grid, self.captions_file, chip=_options(self.job).get("chip"), project=self.project)
        result["captions"] = uri
        layer = QgsVectorLayer(uri, "captions", "ogr")
        if not layer.isValid():
            raise L.LayerProblem(tr("the captions were written to {path} but QGIS cannot open them").format(path=self.captions_file))
        L.style_captions(layer)
        L.add_to_group([layer], tr("MaskTalk captions"), self.project)
        self.added_layers.append(layer)


def _output_folder(job: Any, project) -> Path:
    folder = getattr(job, "out_dir", "") or ""
    return Path(folder) if folder else default_output_folder(project)


def default_output_folder(project=None) -> Path:
    """Where the dock writes detections and captions by default: ``masktalk/`` beside the
    project file, or ``<QGIS profile>/masktalk/output`` while the project is not saved."""
    from qgis.core import QgsApplication

    project = project or QgsProject.instance()
    home = project.homePath() if project is not None else ""
    if home:
        return Path(home) / "masktalk"
    return Path(QgsApplication.qgisSettingsDirPath()) / "masktalk" / "output"


class TrainTask(EngineTask):
    """Fine-tune a change model. Cancel keeps the run's ``last`` checkpoint (the engine's job).

    Signals ``metrics`` once per validation with the scores. The AOI (``job.aoi``, its
    selected features only with ``job.aoi_selected_only``) goes to the engine as
    ``--aoi`` polygons: the labelled area (unlabelled pixels inside are *no change*).
    """

    def __init__(self, job: TrainJob, **kw: Any) -> None:
        super().__init__(tr("MaskTalk: train change model"), job, **kw)

    def prepare(self) -> None:
        job: TrainJob = self.job
        if not job.out_dir:
            raise L.LayerProblem(tr("train: choose an output folder for the run"))
        from qgis.core import QgsVectorLayer

        selected = bool(getattr(job, "aoi_selected_only", False))
        extent = job.extent
        if extent is None:
            labels_extent = L.features_extent(job.labels) if isinstance(job.labels, QgsVectorLayer) else None
            aoi_extent = L.features_extent(job.aoi, selected) if isinstance(job.aoi, QgsVectorLayer) else None
            extent = _union(labels_extent, aoi_extent)
        extent, res_before, res_after = self.export_grid(job.before, job.after, extent, job.resolution)
        self.before = self.raster(job.before, "before", extent, res_before)
        self.after = self.raster(job.after, "after", extent, res_after)
        self.labels = self.vector(job.labels, "labels")
        self.aoi = self.vector(job.aoi, "aoi", selected_only=selected) if job.aoi is not None else None

    def execute(self) -> dict:
        aoi = str(self.aoi.path) if self.aoi is not None else None
        return self.engine("train", self.job.engine_args(str(self.before.path), str(self.after.path), str(self.labels.path), aoi))


class DetectTask(EngineTask):
    """Detect changes; adds the styled change raster, its confidence band and the
    ``changes``/``captions`` layers in a group named after the run. Cancel or failure
    leaves no output file. The AOI (``job.aoi``, selected features only with
    ``job.aoi_selected_only``) is a polygon mask (``--aoi``): nothing is detected outside."""

    def __init__(self, job: DetectJob, **kw: Any) -> None:
        super().__init__(tr("MaskTalk: detect changes"), job, **kw)

    def prepare(self) -> None:
        job: DetectJob = self.job
        if not job.out_raster:
            raise L.LayerProblem(tr("detect: choose an output GeoTIFF"))
        L.check_writable_folder(Path(job.out_raster).parent, tr("detection"))
        if job.out_vectors:
            L.check_writable_folder(Path(job.out_vectors).parent, tr("detection"))
        from qgis.core import QgsVectorLayer

        selected = bool(getattr(job, "aoi_selected_only", False))
        aoi_extent = L.features_extent(job.aoi, selected) if isinstance(job.aoi, QgsVectorLayer) else None
        extent, res_before, res_after = self.export_grid(job.before, job.after, job.extent or aoi_extent, job.resolution)
        self.before = self.raster(job.before, "before", extent, res_before)
        self.after = self.raster(job.after, "after", extent, res_after)
        self.aoi = self.vector(job.aoi, "aoi", selected_only=selected) if job.aoi is not None else None
        self.extent = None
        if job.extent is not None and self.before.export is None:
            self.extent = L.rect_tuple(L.extent_in_crs(job.extent, _crs_of(job.before), self.project))
        self.remember_new_output(job.out_raster)
        self.remember_new_output(job.out_vectors)
        self.schema = model_schema(job.model, job.preset, job.schema_path)

    def execute(self) -> dict:
        aoi = str(self.aoi.path) if self.aoi is not None else None
        return self.engine("predict", self.job.engine_args(str(self.before.path), str(self.after.path), self.extent, aoi))

    def on_success(self, result: dict) -> None:
        if not self.job.add_layers:
            return
        raster = result.get("raster") or self.job.out_raster
        vectors = result.get("vectors") or self.job.out_vectors
        layers = L.detection_layers(raster, vectors, self.schema)
        if layers:
            name = self.job.group_name or f"MaskTalk {Path(raster).stem}"
            group = L.add_to_group(layers, name, self.project)
            for layer in layers:
                if layer.name() == "confidence":  # on demand: it would hide the imagery under the classes
                    node = group.findLayer(layer.id())
                    if node is not None:
                        node.setItemVisibilityChecked(False)
            self.added_layers.extend(layers)


class OptionsTask(QgsTask):
    """Ask the engine Python for its options (``engine options --json``) off the main thread.

    The dock starts with the cached or bundled declarations (:func:`.engine_options.load`
    with ``spawn=False``, instant) and rebuilds its forms when this task brings the engine
    environment's own answer (its rules know which weights it found).

    Signals: ``loaded(object)`` the :class:`~.engine_options.EngineOptions` (main thread).
    """

    loaded = pyqtSignal(object)

    def __init__(self, refresh: bool = False, on_finished: Callable[["OptionsTask"], None] | None = None) -> None:
        super().__init__(tr("MaskTalk: read the engine's options"), QgsTask.Flag.CanCancel)
        self.refresh = refresh
        self.options = None
        self.on_finished = on_finished
        self.python = None
        try:  # the engine Python is resolved here, on the main thread (settings)
            from .environment import engine_python

            self.python = engine_python().path
        except EnvironmentProblem:
            self.python = None

    def run(self) -> bool:  # worker thread
        from . import engine_options

        self.options = engine_options.load(self.python, refresh=self.refresh) if self.python else engine_options.bundled()
        return self.options is not None

    def finished(self, ok: bool) -> None:  # main thread
        try:
            if ok and self.options is not None:
                self.loaded.emit(self.options)
        finally:
            if self.on_finished is not None:
                self.on_finished(self)

