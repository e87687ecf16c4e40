"""*Diagnostics* and *Set up engine…*: the two menu actions about the engine environment.

The diagnostics report joins ``python -m engine info --json`` (Python, torch, CUDA, GPU
name and memory, rasterio/GDAL, transformers, backbone weights and text encoders found)
with QGIS's own versions and the engine environment's state, as plain text that the
dialog shows and copies to the clipboard for bug reports.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path
from typing import Any

from qgis.core import Qgis, QgsApplication, QgsMessageLog
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

LOG_TAG = "MaskTalk"


def qgis_info() -> dict[str, Any]:
    """Versions on the QGIS side (the plugin's own Python, GDAL, PROJ, Qt)."""
    from osgeo import gdal
    from qgis.PyQt.QtCore import QT_VERSION_STR

    info: dict[str, Any] = {
        "qgis": Qgis.QGIS_VERSION,
        "qgis_python": sys.version.split()[0],
        "qt": QT_VERSION_STR,
        "gdal": gdal.__version__,
        "platform": platform.platform(),
        "profile": QgsApplication.qgisSettingsDirPath(),
    }
    try:
        from qgis.core import QgsProjUtils

        info["proj"] = QgsProjUtils.projVersionMajor(), QgsProjUtils.projVersionMinor()
    except Exception:  # noqa: BLE001
        pass
    try:
        from .environment import managed_venv_dir, venv_state

        venv = managed_venv_dir()
        info["managed_venv"] = f"{venv} ({venv_state(venv)})"
    except Exception as exc:  # noqa: BLE001
        info["managed_venv"] = f"unknown ({exc})"
    return info


def _fmt(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return "-" if value is None else str(value)


def format_report(report: dict[str, Any]) -> str:
    """Plain-text diagnostics: QGIS side, engine side, GPU, packages, weights."""
    engine = report.get("engine") or {}
    qgis = report.get("qgis") or {}
    lines = ["MaskTalk diagnostics", "", "[QGIS]"]
    lines += [f"{k}: {_fmt(v)}" for k, v in qgis.items()]
    lines += ["", "[engine]", f"engine python: {_fmt(report.get('engine_python'))}"]
    if "error" in engine and len(engine) == 1:
        lines.append(f"engine not usable: {engine['error']}")
        return "\n".join(lines) + "\n"
    for key in ("engine", "python", "executable", "platform", "gdal"):
        if key in engine:
            lines.append(f"{key}: {_fmt(engine[key])}")
    cuda = engine.get("cuda") or {}
    lines += ["", "[device]"]
    if cuda:
        lines.append(f"CUDA available: {cuda.get('available')} (torch built for CUDA {_fmt(cuda.get('version'))})")
        for i, dev in enumerate(cuda.get("devices") or []):
            lines.append(f"GPU {i}: {dev.get('name')}, {dev.get('memory_gb')} GB")
        if not cuda.get("devices"):
            lines.append("GPU: none usable (the engine runs on the CPU)")
    else:
        lines.append("torch not importable: no device information")
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
        buttons = QDialogButtonBox(QDialogButtonBox.Close, self)
        self.copy_button = QPushButton("Copy to clipboard", self)
        buttons.addButton(self.copy_button, QDialogButtonBox.ActionRole)
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
        self.dialog: ReportDialog | None = None

    def _parent(self):
        return self.iface.mainWindow() if self.iface is not None else None

    def _bar(self, title: str, text: str, level=Qgis.Info) -> None:
        if self.iface is not None:
            self.iface.messageBar().pushMessage(title, text, level=level, duration=8)

    def show_diagnostics(self) -> None:
        """Run the diagnostics task and open the report when it is ready."""
        from .tasks import DiagnosticsTask

        task = DiagnosticsTask()
        task.succeeded.connect(lambda result: self._show_report(result))
        task.failed.connect(lambda msg, details: self._show_report({"engine": {"error": details}, "qgis": qgis_info()}))
        self.task = task
        QgsApplication.taskManager().addTask(task)
        self._bar("MaskTalk", "collecting diagnostics…")

    def _show_report(self, result: dict) -> None:
        self.dialog = ReportDialog("MaskTalk diagnostics", format_report(result), self._parent())
        self.dialog.show()

    def setup_engine(self, confirm: bool = True) -> None:
        """Show what set-up will do, then create/refresh the managed engine environment."""
        from .environment import EnvironmentProblem, managed_venv_dir, setup_plan
        from .settings import PluginSettings
        from .tasks import SetupEngineTask

        settings = PluginSettings.load()
        try:
            plan = setup_plan(managed_venv_dir(), wheel_dir=Path(settings.wheel_dir) if settings.wheel_dir else None)
        except EnvironmentProblem as exc:
            self._bar("MaskTalk", str(exc), Qgis.Critical)
            return
        if confirm:
            answer = QMessageBox.question(
                self._parent(),
                "Set up the MaskTalk engine",
                "MaskTalk will create its own Python environment and install the engine's packages "
                "(PyTorch and friends, a few GB). QGIS stays usable meanwhile.\n\n" + plan.describe(),
            )
            if answer != QMessageBox.Yes:
                return
        task = SetupEngineTask(plan)
        task.succeeded.connect(lambda py: self._bar("MaskTalk", f"engine environment ready: {py}", Qgis.Success))
        task.failed.connect(lambda msg, details: self._show_failure(msg, details))
        self.task = task
        QgsApplication.taskManager().addTask(task)

    def set_engine_python(self, path: str) -> bool:
        """Save the *engine Python* setting ("" = automatic); False (and a message) for a path that is no file."""
        from .environment import engine_python
        from .settings import PluginSettings

        path = (path or "").strip()
        if path and not Path(path).is_file():
            self._bar("MaskTalk", f"{path} is not a file; choose the python executable of the engine environment", Qgis.Critical)
            return False
        settings = PluginSettings.load()
        settings.engine_python = path
        settings.save()
        try:
            chosen = str(engine_python())
        except Exception as exc:  # noqa: BLE001 - nothing usable: say so, the setting is saved anyway
            chosen = f"none usable ({exc})"
        self._bar("MaskTalk", f"engine Python: {chosen}", Qgis.Info)
        return True

    def choose_engine_python(self) -> None:
        """Menu action: pick the interpreter that runs the engine, or go back to automatic."""
        from .environment import EnvironmentProblem, engine_python
        from .settings import PluginSettings

        current = PluginSettings.load().engine_python
        try:
            found = str(engine_python())
        except EnvironmentProblem as exc:
            found = f"none usable: {exc}"
        box = QMessageBox(self._parent())
        box.setWindowTitle("MaskTalk engine Python")
        box.setText(
            "The interpreter that runs the MaskTalk engine (it needs the packages of requirements.txt).\n\n"
            f"Setting: {current or 'automatic'}\nIn use: {found}"
        )
        choose = box.addButton("Choose…", QMessageBox.AcceptRole)
        automatic = box.addButton("Automatic", QMessageBox.ResetRole)
        box.addButton(QMessageBox.Cancel)
        box.exec_()
        if box.clickedButton() is automatic:
            self.set_engine_python("")
        elif box.clickedButton() is choose:
            path, _ = QFileDialog.getOpenFileName(self._parent(), "Engine Python", str(Path(current).parent) if current else "")
            if path:
                self.set_engine_python(path)

    def _show_failure(self, message: str, details: str) -> None:
        QgsMessageLog.logMessage(details, LOG_TAG, Qgis.Critical)
        self._bar("MaskTalk", message, Qgis.Critical)
        self.dialog = ReportDialog("MaskTalk engine set-up failed", details, self._parent())
        self.dialog.show()

    def shutdown(self) -> None:
        """Plugin unload: stop a running set-up or diagnostics task, close the dialog."""
        if self.task is not None:
            try:
                self.task.cancel()
            except RuntimeError:  # already finished and deleted by the task manager
                pass
            self.task = None
        if self.dialog is not None:
            self.dialog.close()
            self.dialog.deleteLater()
            self.dialog = None
