"""What every section of the dock shares: the section box, the run controls, messages."""

from __future__ import annotations

from typing import Any

from qgis.gui import QgsCollapsibleGroupBox
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import QComboBox, QFormLayout, QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from ..i18n import tr

#: QgsSettings prefix of the dock's own preferences (runs folder ...).
SETTINGS_PREFIX = "MaskTalk/dock/"
LOG_TAG = "MaskTalk"


def set_combo_data(combo: QComboBox, value: Any) -> bool:
    """Select the item whose data is ``value``; False when there is none."""
    i = combo.findData(value)
    if i >= 0:
        combo.setCurrentIndex(i)
    return i >= 0


class RunControls(QWidget):
    """A run button with its progress bar, status line and Cancel button."""

    def __init__(self, text: str, object_name: str, parent=None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.button = QPushButton(text)
        self.button.setObjectName(object_name)
        self.cancel = QPushButton(tr("Cancel"))
        self.cancel.setObjectName(object_name + "Cancel")
        self.cancel.setEnabled(False)
        row.addWidget(self.button, 1)
        row.addWidget(self.cancel)
        layout.addLayout(row)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setTextVisible(True)
        self.progress.setFormat("")
        self.progress.hide()
        layout.addWidget(self.progress)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.status)
        self._message = ""

    def running(self, on: bool) -> None:
        self.button.setEnabled(not on)
        self.cancel.setEnabled(on)
        self.progress.setVisible(on)
        if on:
            self._message = tr("starting…")
            self.status.setText("")
            self.set_progress(0.0)

    def set_progress(self, fraction: float | None, message: str | None = None) -> None:
        if message is not None:
            self._message = message
        if fraction is None:
            self.progress.setRange(0, 0)
        else:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(max(0.0, min(1.0, fraction)) * 1000))
        self._show_format()

    def _show_format(self) -> None:
        text = self._message
        self.progress.setFormat((text[:60] + "  %p%") if text else "%p%")

    # Slots for the task's signals. They are methods of this QWidget, so signals emitted
    # from the task's worker thread are queued to the main thread.
    def on_progress_percent(self, percent: float) -> None:
        self.set_progress(percent / 100.0)

    def on_message(self, message: str) -> None:
        self._message = message
        self._show_format()


class Section(QgsCollapsibleGroupBox):
    """One step of the work, as a collapsible box with a form.

    Signals:
        changed(): a value of the section changed (the dock re-checks its buttons and
            marks the project modified).
        notify(str, str, str): ``(level, text, details)`` for the message bar; level is
            ``info``, ``success``, ``warning`` or ``error``.
    """

    changed = pyqtSignal()
    notify = pyqtSignal(str, str, str)

    def __init__(self, title: str, name: str, parent=None):
        super().__init__(title, parent)
        self.setObjectName(name)
        self.form = QFormLayout(self)
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)

    def info(self, text: str) -> None:
        self.notify.emit("info", text, "")

    def error(self, text: str, details: str = "") -> None:
        self.notify.emit("error", text, details)

    def warning(self, text: str, details: str = "") -> None:
        self.notify.emit("warning", text, details)


class RunSection(Section):
    """A section with a run button (caption, train, detect) that emits its job.

    Subclasses set :attr:`kind`, build :attr:`run` (a :class:`RunControls`) and implement
    :meth:`job` and :meth:`missing`. Pressing the button emits ``jobReady(job)``; the dock
    starts the task and reports on it (:meth:`on_result` and co. are called back).

    Signals:
        jobReady(object): the job to run (a dataclass of :mod:`..settings`).
        cancelRequested(): the Cancel button was pressed.
    """

    jobReady = pyqtSignal(object)
    cancelRequested = pyqtSignal()
    kind = ""
    #: Button tooltip when nothing is missing.
    tip = ""

    def connect_run(self) -> None:
        self.run.button.clicked.connect(self.request)
        self.run.cancel.clicked.connect(self.cancelRequested.emit)

    def missing(self) -> list[str]:
        """What is missing before this section can run, in words."""
        return []

    def job(self):
        """The section as a job; None when the user declined (nothing runs)."""
        raise NotImplementedError

    def request(self) -> None:
        """Build the job and emit it; a problem goes to the message bar instead."""
        from ...engine.errors import InputError
        from ..layers import LayerProblem

        missing = self.missing()
        if missing:
            self.warning(tr("cannot {kind} yet; missing: {what}").format(kind=self.kind, what="; ".join(missing)))
            return
        try:
            job = self.job()
        except (InputError, LayerProblem, ValueError, OSError) as exc:
            self.error(tr("{kind}: {error}").format(kind=self.kind, error=exc))
            return
        if job is not None:
            self.jobReady.emit(job)

    def update_button(self, running: bool, extra_missing: list[str] = ()) -> None:
        """Enable the button when nothing is missing; its tooltip says what is."""
        if running:
            return  # RunControls.running() owns the buttons while a task runs
        missing = list(extra_missing) + self.missing()
        self.run.button.setEnabled(not missing)
        self.run.button.setToolTip(self.tip if not missing else tr("Missing: ") + "; ".join(missing))

    # -- called by the dock around a task ----------------------------------------------------
    def started(self, task) -> None:
        """The task runs (connect extra signals here)."""

    def on_result(self, result: dict) -> None:
        """The task succeeded (main thread, after its layers were added)."""
