"""The MaskTalk dock: the five sections assembled, and the tasks they start.

Pattern (Deepness's dock, see ``docs/STYLE.md``): each section is a widget of its own
(:mod:`.layers`, :mod:`.classes`, :mod:`.captions`, :mod:`.train`, :mod:`.detect`) that
packs its state into a job dataclass of :mod:`..settings` and emits it (``jobReady``);
the dock hands the job to a task of :mod:`..tasks`, which runs the engine in its own
process. Task results come back on the main thread (``finished()``), where the layers
are added. The dock never calls the engine itself and never blocks QGIS: the engine's
options and its device come from background tasks, exports and label rasterising run in
the tasks' worker threads.

Buttons are disabled while an input is missing; their tooltip says what is missing.
Engine options the user changed are kept in ``QgsSettings`` (per user); the analysis's
layers, classes, model and folders in the project.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from qgis.core import Qgis, QgsApplication, QgsMessageLog, QgsProject
from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction, QDockWidget, QHBoxLayout, QPushButton, QScrollArea, QVBoxLayout, QWidget

from ...engine.errors import InputError
from ...engine.schema import ClassSchema, load_preset, preset_names
from .. import engine_options
from .. import layers as L
from ..dock_widgets import create_label_layer
from ..i18n import tr
from ..settings import PROJECT_SCOPE, ProjectSettings
from ..styles import follow_schema
from ..tasks import CaptionTask, DetectTask, OptionsTask, TrainTask, default_output_folder
from .captions import CaptionsSection
from .classes import CUSTOM, ClassesSection, default_preset
from .common import LOG_TAG, set_combo_data
from .detect import DetectSection
from .layers import LayersSection
from .train import TrainSection

log = logging.getLogger("masktalk.dock")

TASKS = {"caption": CaptionTask, "train": TrainTask, "detect": DetectTask}
_LEVELS = {"info": Qgis.MessageLevel.Info, "success": Qgis.MessageLevel.Success, "warning": Qgis.MessageLevel.Warning,
           "error": Qgis.MessageLevel.Critical}
_DURATIONS = {"info": 5, "success": 8, "warning": 10, "error": 0}


class MaskTalkDock(QDockWidget):
    """The dock widget; ``objectName`` is set so QGIS restores its place.

    Attributes:
        layers, classes, captions, train, detect: the sections, top to bottom.
        tasks: kind (``caption``/``train``/``detect``/``info``/``options``) -> running task.
        engine_options: the :class:`..engine_options.EngineOptions` the forms are built from.

    Signals:
        taskFinished(str kind, bool ok): a caption/train/detect task ended (after its
            layers were added). Used by tests and by anything that chains work.
        diagnosticsReady(dict): the engine's ``info`` answer arrived.
        optionsReady(object): the forms were (re)built from the engine's options.
    """

    taskFinished = pyqtSignal(str, bool)
    diagnosticsReady = pyqtSignal(dict)
    optionsReady = pyqtSignal(object)

    def __init__(self, iface, parent=None):
        super().__init__("MaskTalk", parent)
        self.iface = iface
        self.setObjectName("MaskTalkDock")
        self.setWindowIcon(QIcon(str(Path(__file__).resolve().parents[2] / "resources" / "icon.png")))
        self.project = QgsProject.instance()
        self.tasks: dict[str, Any] = {}
        self.diagnostics: dict | None = None
        self.engine_options = None
        self._restoring = True  # no project changes while the dock is being built
        self._snapshot: dict[str, str] = {}
        self._closing = False
        self._options_asked = False
        #: Returns a path for a new label GeoPackage, or "" when the user cancels.
        #: Replaced in tests; the default asks with a file dialog.
        self.ask_label_path = self._ask_label_path
        self.layers = LayersSection()
        self.classes = ClassesSection(last_dir=self._last_dir)
        self.detect = DetectSection(self.layers, self.classes, iface, default_folder=lambda: default_output_folder(self.project))
        self.captions = CaptionsSection(self.layers, self.classes, output_folder=self.detect.output_folder)
        self.train = TrainSection(self.layers, self.classes)
        self._build()
        self._connect()
        self.set_engine_options(engine_options.load(spawn=False))  # cached or bundled: no process here
        self.restore_settings()  # ends the "restoring" state
        self.project.readProject.connect(self._on_project_read)
        self.project.writeProject.connect(self._on_project_write)
        self.project.homePathChanged.connect(self.detect.show_default_folder)
        self.project.fileNameChanged.connect(self.detect.show_default_folder)
        self.project.projectSaved.connect(self.detect.show_default_folder)

    # ======================================================================== building
    def sections(self) -> list:
        return [self.layers, self.classes, self.captions, self.train, self.detect]

    def run_sections(self) -> dict:
        return {"caption": self.captions, "train": self.train, "detect": self.detect}

    def _build(self) -> None:
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        body = QWidget()
        body.setObjectName("MaskTalkDockBody")
        layout = QVBoxLayout(body)
        for section in self.sections():
            layout.addWidget(section)
        log_row = QHBoxLayout()
        self.log_button = QPushButton(tr("Show MaskTalk log"))
        self.log_button.setObjectName("MaskTalkShowLog")
        self.log_button.setToolTip(tr("Open the Log Messages panel; MaskTalk's details are in its 'MaskTalk' tab"))
        log_row.addStretch(1)
        log_row.addWidget(self.log_button)
        layout.addLayout(log_row)
        layout.addStretch(1)
        scroll.setWidget(body)
        self.setWidget(scroll)

    def _connect(self) -> None:
        for section in self.sections():
            section.changed.connect(self._on_changed)
            section.notify.connect(self.notify)
        for kind, section in self.run_sections().items():
            section.jobReady.connect(lambda job, kind=kind: self.start(kind, job))
            section.cancelRequested.connect(lambda kind=kind: self.cancel(kind))
        self.layers.new_label_button.clicked.connect(self.new_label_layer)
        self.layers.labelsChanged.connect(self.follow_classes)
        self.classes.schemaChanged.connect(self.follow_classes)
        self.train.modelsRefreshed.connect(self.detect.set_runs)
        self.train.modelChosen.connect(self.detect.set_model)
        self.detect.modelChanged.connect(self.layers.set_model)
        self.train.options.changed.connect(lambda: self.train.show_device(self.diagnostics, "info" in self.tasks))
        self.log_button.clicked.connect(self._show_log)

    def menu_actions(self) -> list[QAction]:
        """Extra actions for the plugin menu — none today (the engine's are in :mod:`..diagnostics`)."""
        return []

    def showEvent(self, event):  # noqa: N802 - Qt API
        super().showEvent(event)
        if self.diagnostics is None and "info" not in self.tasks:
            self.request_diagnostics()
        if not self._options_asked:
            self.request_options()

    # ====================================================================== engine options
    def set_engine_options(self, options) -> None:
        """Build the option forms of the run sections from the engine's declarations."""
        self.engine_options = options
        backbones = options.backbones or {}
        default_backbone = next((name for name, info in backbones.items() if info.get("default")), "")
        auto = tr("automatic")
        train_texts = {"backbone": f"{auto} ({default_backbone})" if default_backbone else auto,
                       "steps": tr("automatic (adapted to the labelled area)"), "crop": tr("automatic (min(128, chip))")}
        self.train.options.set_engine_options(options, train_texts)
        self.detect.options.set_engine_options(options, {"threshold": tr("the model's (automatic)"),
                                                         "chip": tr("automatic (the model's chip + overlap)")})
        self.captions.options.set_engine_options(options, {"chip": tr("the whole labelled area")})
        self._annotate_backbones()
        self.update_buttons()
        self.optionsReady.emit(options)

    def request_options(self, refresh: bool = False) -> None:
        """Ask the engine environment for its options in the background; the forms follow."""
        if "options" in self.tasks:
            return
        self._options_asked = True
        task = OptionsTask(refresh=refresh, on_finished=self._options_done)
        task.loaded.connect(self._on_options_loaded)
        self.tasks["options"] = task
        QgsApplication.taskManager().addTask(task)

    def _options_done(self, task) -> None:
        if self.tasks.get("options") is task:
            del self.tasks["options"]

    def _on_options_loaded(self, options) -> None:
        if self._closing:
            return
        if self.engine_options is None or options.to_dict() != self.engine_options.to_dict():
            self.set_engine_options(options)

    def engine_changed(self, *_):
        """*Set up engine…* or *Engine Python…* finished: ask the (new) engine again for its
        options and its device."""
        if self._closing:
            return
        engine_options.invalidate()
        self.diagnostics = None
        self.request_diagnostics(force=True)
        self.request_options(refresh=True)

    # ========================================================================= state
    def missing(self, kind: str) -> list[str]:
        """What is missing before ``kind`` (caption/train/detect) can run, in words."""
        out = self.run_sections()[kind].missing()
        if kind in self.tasks:
            out.append(tr("the running {kind} task to finish").format(kind=kind))
        return out

    def update_buttons(self, *_) -> None:
        for kind, section in self.run_sections().items():
            section.update_button(kind in self.tasks)

    def _on_changed(self, *_):
        self.update_buttons()
        self._save_project_settings()

    def follow_classes(self, *_):
        """The label layer's class form (value map) and colours follow the class table."""
        layer, field = self.layers.labels(), self.layers.class_field()
        schema = self.classes.valid_schema()
        if layer is not None and field and schema is not None:
            follow_schema(layer, schema, field)

    # ==================================================================== label layer
    def _last_dir(self) -> str:
        home = self.project.homePath()
        return home or str(Path.home())

    def _ask_label_path(self, default: str) -> str:
        from qgis.PyQt.QtWidgets import QFileDialog

        path, _ = QFileDialog.getSaveFileName(self, tr("New label layer"), default, tr("GeoPackage (*.gpkg)"))
        return path

    def new_label_layer(self):
        """Create a GeoPackage label layer in the before raster's CRS and start editing it."""
        try:
            schema = self.classes.schema()
        except InputError as exc:
            self.notify("error", tr("fix the classes first: {error}").format(error=exc))
            return None
        path = self.ask_label_path(str(Path(self._last_dir()) / "labels.gpkg"))
        if not path:
            return None
        before = self.layers.before()
        crs = before.crs() if before is not None else self.iface.mapCanvas().mapSettings().destinationCrs()
        try:
            layer = create_label_layer(path, schema, crs, name=Path(path).stem, project=self.project)
        except InputError as exc:
            self.notify("error", str(exc))
            return None
        self.layers.label_combo.setLayer(layer)
        self.layers.class_field_combo.setLayer(layer)
        self.layers.class_field_combo.setField("class")
        try:
            self.iface.setActiveLayer(layer)
        except Exception:  # noqa: BLE001 - some interfaces (tests) do not have it
            pass
        self.notify("info", tr("label layer {path} created: draw polygons and pick their class, then save the edits").format(path=path))
        self.update_buttons()
        return layer

    # ============================================================================ tasks
    def start_caption(self):
        """Press *Caption labels*."""
        self.captions.request()

    def start_train(self):
        """Press *Train*."""
        self.train.request()

    def start_detect(self):
        """Press *Detect changes*."""
        self.detect.request()

    def start(self, kind: str, job):
        """Run ``job`` as the task of ``kind`` (main thread); returns the task or None."""
        section = self.run_sections()[kind]
        if kind in self.tasks:
            self.notify("warning", tr("a {kind} task is running already").format(kind=kind))
            return None
        try:
            task = TASKS[kind](job, project=self.project, on_finished=self._task_done)
        except (InputError, L.LayerProblem, ValueError, OSError) as exc:
            self.notify("error", tr("{kind}: {error}").format(kind=kind, error=exc))
            return None
        task.masktalk_kind = kind
        controls = section.run
        task.progressChanged.connect(controls.on_progress_percent)
        task.progressMessage.connect(controls.on_message)
        task.succeeded.connect(section.on_result)
        task.failed.connect(lambda message, details, kind=kind: self._on_task_failed(kind, message, details))
        task.wasCancelled.connect(lambda kind=kind: self._on_task_cancelled(kind))
        self.tasks[kind] = task
        controls.running(True)
        section.started(task)
        QgsMessageLog.logMessage(tr("{task} started").format(task=task.description()), LOG_TAG, Qgis.MessageLevel.Info)
        QgsApplication.taskManager().addTask(task)
        return task

    def _task_done(self, task) -> None:
        """Main thread, from the task's ``finished()`` after its result signals."""
        if self._closing:  # the plugin was unloaded while the task ran
            return
        kind = getattr(task, "masktalk_kind", "")
        if self.tasks.get(kind) is task:
            del self.tasks[kind]
        section = self.run_sections().get(kind)
        ok = task.result is not None and task.error is None
        if section is not None:
            controls = section.run
            controls.running(False)
            controls.progress.setVisible(False)
            if ok and not controls.status.text():
                controls.status.setText(tr("{kind} finished in {s} s").format(kind=kind, s=f"{task.seconds:.0f}"))
        if kind == "train":
            self.train.refresh_models()
        self.update_buttons()
        self.taskFinished.emit(kind, ok)

    def _on_task_failed(self, kind: str, message: str, details: str) -> None:
        self.notify("error", tr("{kind} failed: {message}").format(kind=kind, message=message), details)
        section = self.run_sections().get(kind)
        if section is not None:
            section.run.status.setText(tr("failed: {message}").format(message=message))

    def _on_task_cancelled(self, kind: str) -> None:
        note = tr(" (the last checkpoint is kept in the run folder)") if kind == "train" else ""
        self.notify("info", tr("{kind} cancelled").format(kind=kind) + note)
        section = self.run_sections().get(kind)
        if section is not None:
            section.run.status.setText(tr("cancelled") + note)

    def cancel(self, kind: str) -> None:
        """Ask a running task to stop (an export stops at once, the engine at its next step)."""
        task = self.tasks.get(kind)
        if task is not None:
            section = self.run_sections().get(kind)
            if section is not None:
                section.run.status.setText(tr("cancelling…"))
                section.run.cancel.setEnabled(False)
            task.cancel()

    # ====================================================================== diagnostics
    def request_diagnostics(self, force: bool = False) -> None:
        """Ask the engine (in a background task, never blocking) which devices and weights it has."""
        if "info" in self.tasks and not force:
            return
        from ..engine_tasks import DiagnosticsTask

        try:
            task = DiagnosticsTask(project=self.project, on_finished=self._diagnostics_done)
        except Exception as exc:  # noqa: BLE001 - diagnostics must never break the dock
            self.train.device_label.setText(tr("engine not available: {error}").format(error=exc))
            return
        task.succeeded.connect(self._on_diagnostics)
        self.tasks["info"] = task
        self.train.show_device(self.diagnostics, True)
        QgsApplication.taskManager().addTask(task)

    def _diagnostics_done(self, task) -> None:
        if self._closing:
            return
        if self.tasks.get("info") is task:
            del self.tasks["info"]
        if self.diagnostics is None:
            self.diagnostics = {}
        self.train.show_device(self.diagnostics, "info" in self.tasks)

    def _on_diagnostics(self, result: dict) -> None:
        if self._closing:
            return
        engine = result.get("engine") or {}
        self.diagnostics = engine if isinstance(engine, dict) else {}
        self._annotate_backbones()
        self.train.show_device(self.diagnostics, False)
        self.diagnosticsReady.emit(self.diagnostics)

    def _annotate_backbones(self) -> None:
        """Backbone choices say whether the engine found their weights (from diagnostics)."""
        widget = self.train.options.widgets.get("backbone")
        weights = ((self.diagnostics or {}).get("weights") or {}).get("backbones") or {}
        if widget is None or not weights:
            return
        combo = widget.widget
        for i in range(combo.count()):
            name = combo.itemData(i)
            found = (weights.get(name) or {}).get("available") if name else None
            if found is not None:
                base = combo.itemText(i).split(" — ")[0]
                combo.setItemText(i, f"{base} — " + (tr("weights found") if found else tr("no weights found")))

    # ========================================================================= messages
    def _show_log(self):
        try:
            self.iface.openMessageLog()
        except Exception:  # noqa: BLE001
            pass

    def notify(self, level: str, text: str, details: str = "") -> None:
        """A message bar line (and the MaskTalk log, with ``details``)."""
        qlevel = _LEVELS.get(level, Qgis.MessageLevel.Info)
        QgsMessageLog.logMessage(f"{text}\n{details}" if details else text, LOG_TAG, qlevel)
        self.iface.messageBar().pushMessage("MaskTalk", text, level=qlevel, duration=_DURATIONS.get(level, 5))

    # ========================================================================= settings
    def project_settings(self) -> ProjectSettings:
        """The analysis's choices as the project settings dataclass (see :mod:`..settings`)."""
        def layer_id(layer):
            return layer.id() if layer is not None else ""

        preset = self.classes.preset()
        return ProjectSettings(
            preset=preset if preset != CUSTOM else "",
            schema_path=self.classes.schema_path if preset == CUSTOM else "",
            before_layer=layer_id(self.layers.before()),
            after_layer=layer_id(self.layers.after()),
            labels_layer=layer_id(self.layers.labels()),
            aoi_layer=layer_id(self.layers.aoi()),
            class_field=self.layers.class_field(),
            model=self.detect.selected_model(),
            output_dir=self.train.runs_widget.filePath(),
        )

    def _extra_values(self) -> dict[str, str]:
        return {"schema_json": json.dumps(self.classes.class_model.schema_dict()),
                "extent": str(self.detect.extent_combo.currentData() or "layer"),
                "aoi_selected": "1" if self.layers.aoi_selected_check.isChecked() else "",
                "resolution": self.layers.resolution_edit.text().strip(),
                "detect_dir": self.detect.out_widget.filePath().strip()}

    def _project_values(self) -> dict[str, str]:
        return {"settings": repr(self.project_settings()), **self._extra_values()}

    def _save_project_settings(self, *_):
        """Note a change of the analysis's choices: the project becomes modified (so QGIS
        offers to save it) but nothing is written until it is saved (:meth:`_on_project_write`).
        Merely building or showing the dock, or a project being cleared, changes nothing."""
        if self._restoring or self._closing or self.project.count() == 0:
            return
        if self._project_values() != self._snapshot:
            self.project.setDirty(True)

    def _on_project_write(self, *_):
        """The project is being saved: write the dock's choices into it."""
        self.project_settings().save(self.project)
        for key, value in self._extra_values().items():
            self.project.writeEntry(PROJECT_SCOPE, key, value)
        self._snapshot = self._project_values()

    def restore_settings(self) -> None:
        """User preferences from QgsSettings, then the project's own choices."""
        self._restoring = True
        try:
            self.train.restore()
            self._restore_project()
            self.train.refresh_models()
            self.detect.show_default_folder()
            self.update_buttons()
            self._snapshot = self._project_values()
        finally:
            self._restoring = False

    def _restore_project(self) -> None:
        p, scope = self.project, PROJECT_SCOPE
        ps = ProjectSettings.load(p)
        layers = self.layers
        for layer_id, combo in ((ps.before_layer, layers.before_combo), (ps.after_layer, layers.after_combo),
                                (ps.labels_layer, layers.label_combo), (ps.aoi_layer, layers.aoi_combo)):
            layer = p.mapLayer(layer_id) if layer_id else None
            if layer is not None:
                combo.setLayer(layer)
        if ps.class_field and layers.labels() is not None:
            layers.class_field_combo.setLayer(layers.labels())
            layers.class_field_combo.setField(ps.class_field)
        text, ok = p.readEntry(scope, "schema_json", "")
        if ok and text:
            try:
                self.classes.class_model.set_schema(ClassSchema.from_dict(json.loads(text), source="project"))
                self.classes.select_preset(ps.preset or CUSTOM)
            except (InputError, ValueError) as exc:
                self.notify("warning", tr("the project's MaskTalk classes are unusable ({error}); showing the {preset} preset").format(
                    error=exc, preset=default_preset()))
        elif ps.preset in preset_names() and p.readEntry(scope, "preset", "")[1]:
            self.classes.class_model.set_schema(load_preset(ps.preset))
            self.classes.select_preset(ps.preset)
        if ps.output_dir:
            self.train.runs_widget.setFilePath(ps.output_dir)
        if ps.model:
            self.detect.set_model(ps.model)
        for key, setter in (("extent", lambda v: set_combo_data(self.detect.extent_combo, v)),
                            ("aoi_selected", lambda v: layers.aoi_selected_check.setChecked(bool(v))),
                            ("resolution", layers.resolution_edit.setText),
                            ("detect_dir", self.detect.out_widget.setFilePath)):
            value, ok = p.readEntry(scope, key, "")
            if ok:
                setter(value)
        self.follow_classes()

    def _on_project_read(self, *_):
        self.restore_settings()

    # ========================================================================== cleanup
    def shutdown(self) -> None:
        """Cancel running tasks and disconnect signals before the dock goes away."""
        self._closing = True
        self.layers.unwatch()
        for task in list(self.tasks.values()):
            try:
                task.cancel()
            except RuntimeError:  # already deleted by the task manager
                pass
        self.tasks.clear()
        for signal, slot in ((self.project.readProject, self._on_project_read),
                             (self.project.writeProject, self._on_project_write),
                             (self.project.homePathChanged, self.detect.show_default_folder),
                             (self.project.fileNameChanged, self.detect.show_default_folder),
                             (self.project.projectSaved, self.detect.show_default_folder)):
            try:
                signal.disconnect(slot)
            except (TypeError, RuntimeError):
                pass
