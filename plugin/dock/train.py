"""Section 4 of the dock: fine-tune a change model on the labels (``engine train``).

The options are the engine's own (:class:`.options.OptionsForm`); at their defaults the
engine decides: the backbone (DINOv3 when its weights are found, else EfficientNet-Lite0),
the schedule in optimizer steps adapted to the labelled area, full fine-tuning. The run
list reads what training writes into its run folders (see :func:`..dock_widgets.read_run`).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from qgis.core import QgsApplication, QgsSettings
from qgis.gui import QgsFileWidget
from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtWidgets import QAbstractItemView, QHBoxLayout, QLabel, QLineEdit, QPushButton, QTableWidget, QTableWidgetItem

from ..dock_widgets import scan_runs
from ..i18n import tr
from ..settings import TrainJob
from .common import SETTINGS_PREFIX, RunControls, RunSection
from .options import OptionsForm

#: Shown first, in this order; every other published option is under *More options*.
MAIN = ("backbone", "weights", "lora_rank", "text_encoder", "steps", "stage2_share", "chip", "batch_size", "device")
#: What the dock fills in itself, and the epoch-counted schedule (the dock counts steps).
EXCLUDED = ("dataset", "before", "after", "labels", "class_field", "labels_layer", "aoi", "aoi_layer", "preset", "schema",
            "label_map", "out", "resume", "stage1_epochs", "stage2_epochs")


def labels() -> dict[str, str]:
    return {"backbone": tr("Backbone"), "weights": tr("Weights"), "lora_rank": tr("LoRA rank"), "text_encoder": tr("Text encoder"),
            "steps": tr("Steps"), "stage2_share": tr("Stage 2 share"), "chip": tr("Chip (px)"), "batch_size": tr("Batch"),
            "device": tr("Device")}


class TrainSection(RunSection):
    """Options, runs folder and run name, *Train*, the losses and scores, the trained models.

    Signals:
        modelChosen(str): a model row was selected, or a training finished (its run folder).
        modelsRefreshed(list): the runs folder was read again (:class:`..dock_widgets.RunInfo`, newest first).
    """

    kind = "train"
    modelChosen = pyqtSignal(str)
    modelsRefreshed = pyqtSignal(list)

    def __init__(self, layers, classes, parent=None):
        super().__init__(tr("4. Train"), "MaskTalkTrain", parent)
        self.tip = tr("Train a change model on the labels (two stages, counted in optimizer steps)")
        self.layers_section = layers
        self.classes = classes
        self.runs: list = []
        self.options = OptionsForm("train", MAIN, exclude=EXCLUDED, labels=labels(), parent=self)
        self.device_label = QLabel(tr("asking the engine…"))
        self.device_label.setObjectName("MaskTalkDeviceInfo")
        self.device_label.setWordWrap(True)
        self.runs_widget = QgsFileWidget()
        self.runs_widget.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
        self.runs_widget.setToolTip(tr("Folder where every training run gets its own sub-folder"))
        self.run_name_edit = QLineEdit()
        self.run_name_edit.setPlaceholderText(tr("automatic (date and time)"))
        self.run = RunControls(tr("Train"), "MaskTalkTrainButton")
        self.loss_label = QLabel("")
        self.loss_label.setObjectName("MaskTalkLoss")
        self.metrics_label = QLabel("")
        self.metrics_label.setObjectName("MaskTalkMetrics")
        self.metrics_label.setWordWrap(True)
        self.models_table = QTableWidget(0, 4)
        self.models_table.setObjectName("MaskTalkModels")
        self.models_table.setHorizontalHeaderLabels([tr("Model"), tr("Date"), tr("Classes"), tr("Kept model's scores")])
        self.models_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.models_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.models_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.models_table.horizontalHeader().setStretchLastSection(True)
        self.models_table.setMinimumHeight(90)
        self.refresh_models_button = QPushButton(tr("Refresh"))
        self.form.addRow(self.options)
        self.form.addRow("", self.device_label)
        self.form.addRow(tr("Runs folder"), self.runs_widget)
        self.form.addRow(tr("Run name"), self.run_name_edit)
        self.form.addRow(self.run)
        self.form.addRow(tr("Loss"), self.loss_label)
        self.form.addRow(tr("Validation"), self.metrics_label)
        models_head = QHBoxLayout()
        models_head.addWidget(QLabel(tr("Trained models")))
        models_head.addStretch(1)
        models_head.addWidget(self.refresh_models_button)
        self.form.addRow(models_head)
        self.form.addRow(self.models_table)
        self.options.changed.connect(self.changed.emit)
        self.runs_widget.fileChanged.connect(self._on_runs_folder)
        self.refresh_models_button.clicked.connect(self.refresh_models)
        self.models_table.itemSelectionChanged.connect(self._on_model_row_selected)
        self.connect_run()

    # -- settings ----------------------------------------------------------------------------
    @staticmethod
    def default_runs_dir() -> str:
        return str(Path(QgsApplication.qgisSettingsDirPath()) / "masktalk" / "runs")

    def restore(self) -> None:
        self.runs_widget.blockSignals(True)
        self.runs_widget.setFilePath(QgsSettings().value(SETTINGS_PREFIX + "runs", "") or self.default_runs_dir())
        self.runs_widget.blockSignals(False)

    def _on_runs_folder(self, *_):
        QgsSettings().setValue(SETTINGS_PREFIX + "runs", self.runs_widget.filePath())
        self.refresh_models()
        self.changed.emit()

    # -- the job -----------------------------------------------------------------------------
    def missing(self) -> list[str]:
        out = self.layers_section.missing("train") + self.classes.missing()
        if not self.runs_widget.filePath():
            out.append(tr("a runs folder"))
        return out + self.options.problems()

    def new_run_dir(self) -> Path:
        """A fresh folder name under the runs folder (the run name, made unique)."""
        root = Path(self.runs_widget.filePath())
        base = self.run_name_edit.text().strip() or datetime.now().strftime("run-%Y%m%d-%H%M%S")
        base = "".join(ch if ch.isalnum() or ch in "-_. " else "_" for ch in base).strip() or "run"
        candidate, n = root / base, 2
        while candidate.exists():
            candidate, n = root / f"{base}-{n}", n + 1
        return candidate

    def job(self) -> TrainJob:
        """The section as a job, with a new run folder."""
        layers = self.layers_section
        return TrainJob(
            before=layers.before(),
            after=layers.after(),
            labels=layers.labels(),
            out_dir=str(self.new_run_dir()),
            class_field=layers.class_field(),
            aoi=layers.aoi(),
            aoi_selected_only=layers.aoi_selected_only(),
            resolution=layers.effective_resolution(""),
            options=self.options.values(),
            **self.classes.schema_kwargs(),
        )

    # -- a run -------------------------------------------------------------------------------
    def started(self, task) -> None:
        self.loss_label.setText("")
        self.metrics_label.setText("")
        task.metrics.connect(self.on_metrics)
        self.run.status.setText(tr("run folder: {path}").format(path=task.job.out_dir))

    def on_metrics(self, values: dict) -> None:
        step, stage = values.get("step", values.get("epoch")), values.get("stage")
        loss = values.get("loss")
        if isinstance(loss, (int, float)):
            self.loss_label.setText(tr("{loss} (step {step}, stage {stage})").format(loss=f"{loss:.4f}", step=step, stage=stage))
        shown = [f"{k} {values[k]:.3f}" for k in ("SeK", "Fscd", "mIoU", "F1", "OA") if isinstance(values.get(k), (int, float))]
        self.metrics_label.setText("  ".join(shown))

    def on_result(self, result: dict) -> None:
        run = result.get("run_dir", "")
        scores = result.get("best_metrics") or {}
        text = "  ".join(f"{k} {v:.3f}" for k, v in scores.items() if k in ("SeK", "Fscd", "mIoU", "F1") and isinstance(v, (int, float)))
        status = tr("model saved in {path}").format(path=run)
        if text:
            status += " — " + tr("kept model: {scores}").format(scores=text)
        self.run.status.setText(status)
        self.refresh_models()
        if run:
            self.modelChosen.emit(run)
        message = tr("training finished: {name}").format(name=Path(run).name) + (f" ({text})" if text else "")
        self.notify.emit("success", message, "")

    # -- the trained models ------------------------------------------------------------------
    def refresh_models(self) -> None:
        """Reread the runs folder into the model list."""
        folder = self.runs_widget.filePath()
        self.runs = scan_runs(folder) if folder else []
        self.models_table.blockSignals(True)
        self.models_table.setRowCount(len(self.runs))
        for r, info in enumerate(self.runs):
            for c, text in enumerate((info.name, info.date, ", ".join(info.classes), info.scores_text())):
                item = QTableWidgetItem(text)
                item.setToolTip(info.details())
                self.models_table.setItem(r, c, item)
        self.models_table.resizeColumnsToContents()
        self.models_table.blockSignals(False)
        self.modelsRefreshed.emit(self.runs)
        self.changed.emit()

    def _on_model_row_selected(self):
        rows = self.models_table.selectionModel().selectedRows()
        if rows and rows[0].row() < len(self.runs):
            self.modelChosen.emit(str(self.runs[rows[0].row()].path))

    # -- the device line ---------------------------------------------------------------------
    def show_device(self, info: dict | None, asking: bool) -> None:
        """The engine's device, from its diagnostics (``info --json``)."""
        info = info or {}
        cuda = info.get("cuda") or {}
        devices = cuda.get("devices") or []
        if info.get("error"):
            text = tr("engine not usable: {error}").format(error=str(info["error"]).splitlines()[0])
        elif not info:
            text = tr("asking the engine…") if asking else tr("engine not asked yet (shown when the dock opens)")
        elif cuda.get("available") and devices:
            d = devices[0]
            text = tr("GPU: {name} ({memory} GB), CUDA {version}").format(name=d.get("name"), memory=d.get("memory_gb"), version=cuda.get("version"))
        else:
            text = tr("CPU only: no CUDA GPU usable by the engine's PyTorch")
            if self.options.value("device") == "cuda":
                text += " — " + tr("training would fail; choose auto or cpu")
        self.device_label.setText(text)
