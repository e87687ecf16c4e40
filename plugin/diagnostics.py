"""*Diagnostics* and *Set up engine…*: the two menu actions about the engine environment.

The diagnostics report joins ``python -m engine info --json`` (Python, torch, CUDA, GPU
name and memory, rasterio/GDAL, transformers, backbone weights and text encoders found)
with QGIS's own versions and the engine environment's state, as plain text that the
dialog shows and copies to the clipboard for bug reports.

The tasks behind both actions are in :mod:`.engine_tasks` (this module imports it, never
the other way round).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qgis.core import Qgis, QgsApplication, QgsMessageLog, QgsTask
from qgis.PyQt.QtWidgets import (
    QApplication,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
)

from .engine_tasks import DiagnosticsTask, SetupEngineTask, qgis_info
from .i18n import tr

__all__ = ["EngineActions", "ReportDialog", "format_report", "qgis_info"]
LOG_TAG = "MaskTalk"


def _fmt(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return "-" if value is None else str(value)


def format_report(report: dict[str, Any]) -> str:
    """Plain-text diagnostics: QGIS side, engine side, GPU, packages, weights."""
    engine = report.get("engine") or {}
    qgis = report.get("qgis") or {}
    lines = [tr("MaskTalk diagnostics"), "", "[QGIS]"]
    lines += [f"{k}: {_fmt(v)}" for k, v in qgis.items()]
    lines += ["", "[engine]", tr("engine python: {path}").format(path=_fmt(report.get("engine_python")))]
    if "error" in engine and len(engine) == 1:
        lines.append(tr("engine not usable: {error}").format(error=engine["error"]))
        return "\n".join(lines) + "\n"
    for key in ("engine", "python", "executable", "platform", "gdal"):
        if key in engine:
            lines.append(f"{key}: {_fmt(engine[key])}")
    cuda = engine.get("cuda") or {}
    lines += ["", "[device]"]
    if cuda:
        lines.append(tr("CUDA available: {available} (torch built for CUDA {version})").format(
            available=cuda.get("available"), version=_fmt(cuda.get("version"))))
        for i, dev in enumerate(cuda.get("devices") or []):
            lines.append(tr("GPU {index}: {name}, {memory} GB").format(index=i, name=dev.get("name"), memory=dev.get("memory_gb")))
        if not cuda.get("devices"):
            lines.append(tr("GPU: none usable (the engine runs on the CPU)"))
    else:
        lines.append(tr("torch not importable: no device information"))
    lines += ["", "[packages]"]
    lines += [f"{k}: {_fmt(v)}" for k, v in (engine.get("packages") or {}).items()]
    lines += ["", "[weights and text encoders]"]
    weights = engine.get("weights")
    if isinstance(weights, dict):
        lines += [f"{k}: {_fmt(v)}" for k, v in weights.items()]
    else:
        lines.append(_fmt(weights))
    extra = {k: v for k, v in engine.items() if k not in ("engine", "python", "executable", "platform", "gdal", "cuda", "packages", "weights")}
    if extra:
        lines += ["", "[other]"] + [f"{k}: {_fmt(v)}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


class ReportDialog(QDialog):
    """Read-only text with a *Copy* button (copies everything to the clipboard)."""

    def __init__(self, title: str, text: str, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("MaskTalkReportDialog")
        self.setWindowTitle(title)
        self.resize(720, 520)
        layout = QVBoxLayout(self)
        self.text = QPlainTextEdit(self)
        self.text.setReadOnly(True)
        self.text.setPlainText(text)
        layout.addWidget(self.text)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        self.copy_button = QPushButton(tr("Copy to clipboard"), self)
        buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.copy_button.clicked.connect(self.copy)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def copy(self) -> None:
        QApplication.clipboard().setText(self.text.toPlainText())


class EngineActions:
    """Handlers of the *Set up engine…*, *Engine Python…* and *Diagnostics* menu actions (one per plugin)."""

    def __init__(self, iface) -> None:
        self.iface = iface
        self.task = None
        self.plan_task = None  # the GPU probe before set-up (a QgsTask: nvidia-smi can take seconds)
        self.dialog: ReportDialog | None = None
        #: Called (no argument) when the engine environment may have changed: set-up
        #: finished, or the *engine Python* setting was saved. The dock re-checks the engine.
        self.engine_changed: list = []

    def _notify_engine_changed(self) -> None:
        for callback in list(self.engine_changed):
            try:
                callback()
            except Exception:  # noqa: BLE001 - a listener's bug must not undo the saved setting
                import traceback

                QgsMessageLog.logMessage(traceback.format_exc(), LOG_TAG, Qgis.MessageLevel.Critical)

    def _parent(self):
        return self.iface.mainWindow() if self.iface is not None else None

    def _bar(self, title: str, text: str, level=Qgis.MessageLevel.Info) -> None:
        if self.iface is not None:
            self.iface.messageBar().pushMessage(title, text, level=level, duration=8)

    def show_diagnostics(self) -> None:
        """Run the diagnostics task and open the report when it is ready."""
        task = DiagnosticsTask()
        task.succeeded.connect(lambda result: self._show_report(result))
        task.failed.connect(lambda msg, details: self._show_report({"engine": {"error": details}, "qgis": qgis_info()}))
        self.task = task
        QgsApplication.taskManager().addTask(task)
        self._bar("MaskTalk", tr("collecting diagnostics…"))

    def _show_report(self, result: dict) -> None:
        self.dialog = ReportDialog(tr("MaskTalk diagnostics"), format_report(result), self._parent())
        self.dialog.show()

    def setup_engine(self, confirm: bool = True) -> None:
        """Show what set-up will do, then create/refresh the managed engine environment."""
        from .environment import EnvironmentProblem, managed_venv_dir, setup_plan
        from .settings import PluginSettings

        settings = PluginSettings.load()
        venv = managed_venv_dir()
        wheels = Path(settings.wheel_dir) if settings.wheel_dir else None

        def plan_it(_task):  # worker thread: nvidia-smi may take seconds (or its 10 s timeout)
            return setup_plan(venv, wheel_dir=wheels)

        def planned(exception, plan=None):  # main thread
            self.plan_task = None
            if isinstance(exception, EnvironmentProblem):
                self._bar("MaskTalk", str(exception), Qgis.MessageLevel.Critical)
            elif exception is not None:
                self._show_failure(tr("cannot prepare the engine set-up: {error}").format(error=exception), repr(exception))
            elif plan is not None:
                self._confirm_setup(plan, confirm)

        self.plan_task = QgsTask.fromFunction(tr("MaskTalk: looking for a GPU"), plan_it, on_finished=planned)
        QgsApplication.taskManager().addTask(self.plan_task)

    def _confirm_setup(self, plan, confirm: bool) -> None:
        """Ask (with the plan) and start the set-up task."""
        if confirm:
            answer = QMessageBox.question(
                self._parent(),
                tr("Set up the MaskTalk engine"),
                tr("MaskTalk will create its own Python environment and install the engine's packages "
                   "(PyTorch and friends, a few GB). QGIS stays usable meanwhile.") + "\n\n" + plan.describe(),
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
        task = SetupEngineTask(plan)
        task.succeeded.connect(lambda py: self._bar(
            "MaskTalk", tr("engine environment ready: {python}").format(python=py), Qgis.MessageLevel.Success))
        task.succeeded.connect(lambda py: self._notify_engine_changed())
        task.failed.connect(lambda msg, details: self._show_failure(msg, details))
        self.task = task
        QgsApplication.taskManager().addTask(task)

    def set_engine_python(self, path: str) -> bool:
        """Save the *engine Python* setting ("" = automatic); False (and a message) for a path that is no file."""
        from .environment import engine_python
        from .settings import PluginSettings

        path = (path or "").strip()
        if path and not Path(path).is_file():
            self._bar("MaskTalk", tr("{path} is not a file; choose the python executable of the engine environment").format(path=path),
                      Qgis.MessageLevel.Critical)
            return False
        settings = PluginSettings.load()
        settings.engine_python = path
        settings.save()
        self._notify_engine_changed()
        try:
            chosen = str(engine_python())
        except Exception as exc:  # noqa: BLE001 - nothing usable: say so, the setting is saved anyway
            chosen = tr("none usable ({error})").format(error=exc)
        self._bar("MaskTalk", tr("engine Python: {python}").format(python=chosen), Qgis.MessageLevel.Info)
        return True

    def choose_engine_python(self) -> None:
        """Menu action: pick the interpreter that runs the engine, or go back to automatic."""
        from .environment import EnvironmentProblem, engine_python
        from .settings import PluginSettings

        current = PluginSettings.load().engine_python
        try:
            found = str(engine_python())
        except EnvironmentProblem as exc:
            found = tr("none usable: {error}").format(error=exc)
        box = QMessageBox(self._parent())
        box.setWindowTitle(tr("MaskTalk engine Python"))
        box.setText(
            tr("The interpreter that runs the MaskTalk engine (it needs the packages of requirements.txt).") + "\n\n"
            + tr("Setting: {setting}").format(setting=current or tr("automatic")) + "\n"
            + tr("In use: {python}").format(python=found)
        )
        choose = box.addButton(tr("Choose…"), QMessageBox.ButtonRole.AcceptRole)
        automatic = box.addButton(tr("Automatic"), QMessageBox.ButtonRole.ResetRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        if box.clickedButton() is automatic:
            self.set_engine_python("")
        elif box.clickedButton() is choose:
            path, _ = QFileDialog.getOpenFileName(self._parent(), tr("Engine Python"), str(Path(current).parent) if current else "")
            if path:
                self.set_engine_python(path)

    def _show_failure(self, message: str, details: str) -> None:
        QgsMessageLog.logMessage(details, LOG_TAG, Qgis.MessageLevel.Critical)
        self._bar("MaskTalk", message, Qgis.MessageLevel.Critical)
        self.dialog = ReportDialog(tr("MaskTalk engine set-up failed"), details, self._parent())
        self.dialog.show()

    def shutdown(self) -> None:
        """Plugin unload: stop a running set-up or diagnostics task, close the dialog."""
        if self.task is not None:
            try:
                self.task.cancel()
            except RuntimeError:  # already finished and deleted by the task manager
                pass
            self.task = None
        self.engine_changed.clear()
        if self.dialog is not None:
            self.dialog.close()
            self.dialog.deleteLater()
            self.dialog = None
