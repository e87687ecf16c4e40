"""Background tasks about the engine environment itself: *Set up engine…* and *Diagnostics*.

- :class:`SetupEngineTask` runs a :class:`~.environment.SetupPlan` (venv + pip, every step
  under :mod:`.supervisor`) with progress and cancel;
- :class:`DiagnosticsTask` joins ``python -m engine info --json`` with :func:`qgis_info`
  (QGIS's own versions and the managed environment's state).

The dialogs that show their results live in :mod:`.diagnostics`, which imports this
module; this module imports neither :mod:`.diagnostics` nor the dock (no import cycle).
"""

from __future__ import annotations

import platform
import sys
from typing import Any, Callable

from qgis.core import Qgis, QgsApplication, QgsMessageLog, QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from .environment import EnvironmentProblem, SetupCancelled, managed_venv_dir, run_setup, venv_state
from .i18n import tr
from .runner import EngineCancelled, EngineError
from .tasks import EngineTask

LOG_TAG = "MaskTalk"


def qgis_info() -> dict[str, Any]:
    """Versions on the QGIS side (the plugin's own Python, GDAL, PROJ, Qt) and the managed venv's state."""
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
    except (ImportError, AttributeError):  # an old QGIS without it: the report just lacks PROJ
        info["proj"] = None
    try:
        venv = managed_venv_dir()
        info["managed_venv"] = f"{venv} ({venv_state(venv)})"
    except Exception as exc:  # noqa: BLE001 - a diagnostics report must not fail on one line
        info["managed_venv"] = tr("unknown ({error})").format(error=exc)
    return info


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
        super().__init__(tr("MaskTalk: set up the engine environment"), QgsTask.Flag.CanCancel)
        self.plan = plan
        self.python: str | None = None
        self.error: Exception | None = None
        self.on_finished = on_finished

    def run(self) -> bool:  # worker thread
        def on_progress(fraction, message):
            self.setProgress(100.0 * fraction)
            self.progressMessage.emit(message)

        def on_log(line):
            QgsMessageLog.logMessage(line, LOG_TAG, Qgis.MessageLevel.Info)
            self.logMessage.emit(line)

        try:
            self.python = str(run_setup(self.plan, on_progress, on_log, self.isCanceled))
            return True
        except Exception as exc:  # noqa: BLE001 - reported in finished()
            self.error = exc
            return False

    def finished(self, ok: bool) -> None:  # main thread
        try:
            if ok and self.python:
                self.succeeded.emit(self.python)
            elif isinstance(self.error, (SetupCancelled, EngineCancelled)) or (self.error is None and self.isCanceled()):
                self.wasCancelled.emit()
            else:
                message = str(self.error or tr("engine set-up failed"))
                QgsMessageLog.logMessage(message, LOG_TAG, Qgis.MessageLevel.Critical)
                self.failed.emit(message.splitlines()[0], message)
        finally:
            if self.on_finished is not None:
                self.on_finished(self)


class DiagnosticsTask(EngineTask):
    """``python -m engine info --json`` plus QGIS's own versions.

    Result: ``{"engine": info or {"error": ...}, "qgis": qgis_info(), "engine_python": path}``.
    """

    def __init__(self, **kw: Any) -> None:
        super().__init__(tr("MaskTalk: diagnostics"), None, **kw)

    def execute(self) -> dict:  # worker thread
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
