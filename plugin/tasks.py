"""Background tasks (``QgsTask``) around the engine process: caption, train, detect, set-up.

How a task is used (the dock, or any caller on the main thread)::

    task = DetectTask(DetectJob(before=layer_a, after=layer_b, model=run_dir, out_raster=out))
    task.progressMessage.connect(status_bar.showMessage)     # worker -> main (queued)
    task.succeeded.connect(on_result)                        # main thread, from finished()
    task.failed.connect(show_error)                          # (message, details)
    task.wasCancelled.connect(on_cancel)
    QgsApplication.taskManager().addTask(task)
    ...
    task.cancel()                                            # stops the engine process

Life of a task:

- ``__init__`` (main thread) checks the job and prepares its inputs: layers that are not
  plain files are exported (vectors at once, rasters prepared and written in ``run()``),
  into one temporary folder per task. A bad input raises :class:`~.layers.LayerProblem`
  here, before anything runs;
- ``run()`` (worker thread) writes raster exports and runs the engine through
  :class:`~.runner.EngineRunner`, reporting progress with ``setProgress`` and honouring
  ``isCanceled()`` (the engine gets SIGTERM, then is killed after the grace period);
- ``finished()`` (main thread) removes the temporary folder, adds output layers to the
  project (never in ``run()``), and emits ``succeeded(result)``, ``failed(message,
  details)`` or ``wasCancelled()``. ``on_finished(task)`` callbacks run there too.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable

from qgis.core import Qgis, QgsMessageLog, QgsProject, QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from . import layers as L
from .environment import EnvironmentProblem
from .runner import EngineCancelled, EngineError, EngineRunner
from .settings import CaptionJob, DetectJob, TrainJob, load_schema, model_schema

log = logging.getLogger("masktalk.tasks")
LOG_TAG = "MaskTalk"
_LEVELS = {"debug": Qgis.Info, "info": Qgis.Info, "warning": Qgis.Warning, "error": Qgis.Critical}


class EngineTask(QgsTask):
    """Base of the engine tasks; subclasses implement :meth:`prepare`, :meth:`execute`, :meth:`on_success`.

    Signals:
        progressMessage(str): what the engine is doing (emitted from the worker thread).
        logMessage(str, str): ``(level, message)`` engine log lines (worker thread).
        metrics(dict): a ``metrics`` event, e.g. one per training epoch (worker thread).
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
        super().__init__(description, QgsTask.CanCancel)
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
        self._exports: list[L.PreparedRaster] = []
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

    def export_grid(self, before: Any, after: Any, extent: Any, resolution: float | None):
        """Extent and pixel size for exporting a service layer (WMS/XYZ) paired with a file raster.

        The dock has no resolution control: when one date is a file and the other a web or
        virtual layer, the export defaults to the file's extent and to its pixel size expressed
        in the service layer's CRS units, so the engine gets the service at the file's detail.
        Explicit values (``extent``, ``resolution``) are kept. Main thread.
        """
        from qgis.core import QgsRasterLayer, QgsRectangle, QgsReferencedRectangle

        def layer_of(source):
            if isinstance(source, (str, Path)):
                return QgsRasterLayer(str(source), "input", "gdal")
            return source

        b, a = layer_of(before), layer_of(after)
        if not (isinstance(b, QgsRasterLayer) and isinstance(a, QgsRasterLayer) and b.isValid() and a.isValid()):
            return extent, resolution
        b_file, a_file = L.local_raster_path(b) is not None, L.local_raster_path(a) is not None
        if b_file == a_file:
            return extent, resolution
        grid, service = (b, a) if b_file else (a, b)
        native = L.native_resolution(grid)
        if extent is None:
            extent = QgsReferencedRectangle(grid.extent(), grid.crs())
        if resolution is None and native and L.native_resolution(service) is None:
            centre = grid.extent().center()
            pixel = QgsRectangle(centre.x() - native / 2, centre.y() - native / 2, centre.x() + native / 2, centre.y() + native / 2)
            box = L.extent_in_crs(QgsReferencedRectangle(pixel, grid.crs()), service.crs(), self.project)
            if box.width() > 0 and box.height() > 0:
                resolution = min(box.width(), box.height())
        return extent, resolution

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
            QgsMessageLog.logMessage(message, LOG_TAG, _LEVELS.get(level, Qgis.Info))
            self.logMessage.emit(level, message)

        def on_event(event):
            self.events.append(event)
            if event.get("event") == "metrics":
                self.metrics.emit({k: v for k, v in event.items() if k != "event"})

        return self.runner.run(command, args, on_progress=on_progress, on_log=on_log, on_event=on_event, is_cancelled=self.isCanceled)

    # -- QgsTask API ---------------------------------------------------------------------------
    def run(self) -> bool:  # worker thread
        started = time.monotonic()
        try:
            self._had_exports = bool(self._exports)
            for i, prepared in enumerate(self._exports):
                if self.isCanceled():
                    raise EngineCancelled()
                self.progressMessage.emit(f"exporting {prepared.export.name}")
                prepared.ensure()
                self.setProgress(100.0 * self.EXPORT_SHARE * (i + 1) / len(self._exports))
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

                    self.error = EngineError(f"the run finished but its outputs could not be added: {exc}", kind="InternalError", traceback=traceback.format_exc())
                    QgsMessageLog.logMessage(self.error.details(), LOG_TAG, Qgis.Critical)
                    self.failed.emit(self.error.message, self.error.details())
                    return
                self.succeeded.emit(self.result)
                return
            for path in self._new_outputs:  # no half-written output after a cancel or failure
                _remove(path)
            if isinstance(self.error, EngineCancelled) or (self.error is None and self.isCanceled()):
                QgsMessageLog.logMessage(f"{self.description()}: cancelled", LOG_TAG, Qgis.Info)
                self.wasCancelled.emit()
            else:
                err = self.error or EngineError("the task stopped without a result")
                self.error = err
                QgsMessageLog.logMessage(err.details(), LOG_TAG, Qgis.Critical)
                self.failed.emit(err.message, err.details())
        finally:
            self.temp.cleanup()
            if self.on_finished is not None:
                self.on_finished(self)


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


class CaptionTask(EngineTask):
    """S2M captions of a label layer; adds a ``captions`` layer (chip footprints) when done.

    Result: the caption command's result (``json`` = list of chips) plus ``grid``
    (``crs``, ``geotransform``) of the raster the chips refer to.
    """

    def __init__(self, job: CaptionJob, **kw: Any) -> None:
        self.grid: L.Grid | None = None
        self.label_path = ""
        super().__init__("MaskTalk: caption labels", job, **kw)

    def prepare(self) -> None:
        job: CaptionJob = self.job
        from qgis.core import QgsVectorLayer

        if isinstance(job.labels, QgsVectorLayer):
            try:
                schema = load_schema(job.preset, job.schema_path)
            except ValueError as exc:
                raise L.LayerProblem(str(exc)) from exc
            self.grid = L.label_grid(job.labels, job.reference, job.resolution, self.project)
            self.label_path = str(L.rasterize_labels(job.labels, job.class_field, schema, self.grid, self.temp.file("labels.tif")))
        else:
            source = L.class_raster_source(job.labels)
            if source is None:
                raise L.LayerProblem("labels: a class raster must be a file (GeoTIFF or PNG), not a rendered service")
            self.label_path, self.grid = source

    def execute(self) -> dict:
        result = self.engine("caption", self.job.engine_args(self.label_path))
        grid = self.grid
        result["grid"] = {"crs": grid.crs.authid() or grid.crs.toWkt(), "geotransform": list(grid.geotransform())}
        return result

    def on_success(self, result: dict) -> None:
        if self.job.add_layer and result.get("json"):
            layer = L.captions_layer(result["json"], self.grid, chip=self.job.chip)
            L.add_to_group([layer], "MaskTalk captions", self.project)
            self.added_layers.append(layer)


class TrainTask(EngineTask):
    """Fine-tune a change model. Cancel keeps the run's ``last`` checkpoint (the engine's job).

    Signals ``metrics`` once per epoch with the validation scores.
    """

    def __init__(self, job: TrainJob, **kw: Any) -> None:
        super().__init__("MaskTalk: train change model", job, **kw)

    def prepare(self) -> None:
        job: TrainJob = self.job
        extent = job.extent
        if extent is None and not isinstance(job.labels, (str, Path)) and job.labels is not None:
            from qgis.core import QgsReferencedRectangle

            extent = QgsReferencedRectangle(job.labels.extent(), job.labels.crs())
        extent, resolution = self.export_grid(job.before, job.after, extent, job.resolution)
        self.before = self.raster(job.before, "before", extent, resolution)
        self.after = self.raster(job.after, "after", extent, resolution)
        self.labels = L.export_vector(job.labels, self.temp, "labels")
        self.aoi = L.export_vector(job.aoi, self.temp, "aoi") if job.aoi is not None else None
        if not job.out_dir:
            raise L.LayerProblem("train: choose an output folder for the run")

    def execute(self) -> dict:
        return self.engine("train", self.job.engine_args(str(self.before.path), str(self.after.path), self.labels, self.aoi))


class DetectTask(EngineTask):
    """Detect changes; adds the styled change raster and the ``changes``/``captions`` layers
    in a group named after the run. Cancel or failure leaves no output file."""

    def __init__(self, job: DetectJob, **kw: Any) -> None:
        super().__init__("MaskTalk: detect changes", job, **kw)

    def prepare(self) -> None:
        job: DetectJob = self.job
        if not job.out_raster:
            raise L.LayerProblem("detect: choose an output GeoTIFF")
        extent, resolution = self.export_grid(job.before, job.after, job.extent, job.resolution)
        self.before = self.raster(job.before, "before", extent, resolution)
        self.after = self.raster(job.after, "after", extent, resolution)
        self.extent = None
        if job.extent is not None and self.before.export is None:
            crs = _crs_of(job.before)
            self.extent = L.rect_tuple(L.extent_in_crs(job.extent, crs, self.project))
        self.remember_new_output(job.out_raster)
        self.remember_new_output(job.out_vectors)
        self.schema = model_schema(job.model, job.preset, job.schema_path)

    def execute(self) -> dict:
        return self.engine("predict", self.job.engine_args(str(self.before.path), str(self.after.path), self.extent))

    def on_success(self, result: dict) -> None:
        if not self.job.add_layers:
            return
        raster = result.get("raster") or self.job.out_raster
        vectors = result.get("vectors") or self.job.out_vectors
        layers = L.detection_layers(raster, vectors, self.schema)
        if layers:
            name = self.job.group_name or f"MaskTalk {Path(raster).stem}"
            L.add_to_group(layers, name, self.project)
            self.added_layers.extend(layers)


def _crs_of(source: Any):
    from qgis.core import QgsRasterLayer

    if isinstance(source, (str, Path)):
        return QgsRasterLayer(str(source), "crs", "gdal").crs()
    return source.crs()


class SetupEngineTask(QgsTask):
    """Create the managed engine environment and install the requirements (pip), with progress.

    Signals: ``logMessage(str)`` pip's output lines (worker thread); ``succeeded(str)`` the
    engine Python (main thread); ``failed(str, str)``; ``wasCancelled()``.
    """

    logMessage = pyqtSignal(str)
    progressMessage = pyqtSignal(str)
    succeeded = pyqtSignal(str)
    failed = pyqtSignal(str, str)
    wasCancelled = pyqtSignal()

    def __init__(self, plan, on_finished: Callable[["SetupEngineTask"], None] | None = None) -> None:
        super().__init__("MaskTalk: set up the engine environment", QgsTask.CanCancel)
        self.plan = plan
        self.python: str | None = None
        self.error: Exception | None = None
        self.on_finished = on_finished

    def run(self) -> bool:
        from .environment import run_setup

        def on_progress(fraction, message):
            self.setProgress(100.0 * fraction)
            self.progressMessage.emit(message)

        def on_log(line):
            QgsMessageLog.logMessage(line, LOG_TAG, Qgis.Info)
            self.logMessage.emit(line)

        try:
            self.python = str(run_setup(self.plan, on_progress, on_log, self.isCanceled))
            return True
        except Exception as exc:  # noqa: BLE001 - reported in finished()
            self.error = exc
            return False

    def finished(self, ok: bool) -> None:
        try:
            if ok and self.python:
                self.succeeded.emit(self.python)
            elif isinstance(self.error, EngineCancelled) or (self.error is None and self.isCanceled()):
                self.wasCancelled.emit()
            else:
                message = str(self.error or "engine set-up failed")
                QgsMessageLog.logMessage(message, LOG_TAG, Qgis.Critical)
                self.failed.emit(message.splitlines()[0], message)
        finally:
            if self.on_finished is not None:
                self.on_finished(self)


class DiagnosticsTask(EngineTask):
    """``python -m engine info --json`` plus QGIS's own versions; result ``report`` (text)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__("MaskTalk: diagnostics", None, **kw)

    def execute(self) -> dict:
        from .diagnostics import qgis_info

        qgis = qgis_info()
        python = None
        try:
            python = self.runner.python
            engine = self.engine("info", ["--json"])
        except EngineCancelled:
            raise
        except EnvironmentProblem as exc:
            engine = {"error": str(exc)}
        except EngineError as exc:
            engine = {"error": exc.details()}
        return {"engine": engine, "qgis": qgis, "engine_python": python}
