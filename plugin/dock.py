"""The MaskTalk dock: label, caption, train, detect — in the order of the work.

Pattern (Deepness's dock, see ``docs/STYLE.md``): widgets pack their state into the
settings dataclasses of :mod:`.settings`; the dock hands them to the tasks of
:mod:`.tasks`, which run the engine in its own process. Task results come back on the
main thread (``finished()``), where this dock adds the layers. The dock never calls the
engine itself and never blocks QGIS: even the device name comes from a background task.

Buttons are disabled while an input is missing; their tooltip says what is missing.
Widget values are kept in ``QgsSettings`` (preferences of the user: backbone, epochs,
device ...) or in the project (its layers, its classes, its model).
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsMapLayerProxyModel,
    QgsMessageLog,
    QgsProject,
    QgsReferencedRectangle,
    QgsSettings,
)
from qgis.gui import QgsCollapsibleGroupBox, QgsColorDialog, QgsFieldComboBox, QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor, QIcon
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QAction,
    QComboBox,
    QDockWidget,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..engine.errors import InputError
from ..engine.schema import ClassSchema, load_preset, load_schema, preset_names
from .dock_widgets import COLUMNS, ClassTableModel, create_label_layer, scan_runs
from .layers import LayerProblem
from .settings import PROJECT_SCOPE, CaptionJob, DetectJob, PluginSettings, ProjectSettings, TrainJob
from .tasks import CaptionTask, DetectTask, DiagnosticsTask, TrainTask

log = logging.getLogger("masktalk.dock")

LOG_TAG = "MaskTalk"
SETTINGS_PREFIX = "MaskTalk/dock/"
BACKBONES = ("efficientnet_lite0", "dinov3_vits16", "dinov3_vitb16", "dinov3_vitl16")
TEXT_ENCODERS = ("minilm", "clip")
DEVICES = (("auto", "Automatic (CUDA when usable)"), ("cuda", "GPU (CUDA)"), ("cpu", "CPU"))
EXTENTS = (("layer", "Whole layer"), ("canvas", "Map canvas"), ("aoi", "AOI layer's features"))
CUSTOM = "custom"


def _spin(minimum: int, maximum: int, value: int, step: int = 1, suffix: str = "") -> QSpinBox:
    box = QSpinBox()
    box.setRange(minimum, maximum)
    box.setSingleStep(step)
    box.setValue(value)
    if suffix:
        box.setSuffix(suffix)
    return box


class RunControls(QWidget):
    """A run button with its progress bar, status line and Cancel button."""

    def __init__(self, text: str, object_name: str, parent=None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.button = QPushButton(text)
        self.button.setObjectName(object_name)
        self.cancel = QPushButton("Cancel")
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
        self.status.setTextInteractionFlags(Qt.TextSelectableByMouse)
        layout.addWidget(self.status)

    def running(self, on: bool) -> None:
        self.button.setEnabled(not on)
        self.cancel.setEnabled(on)
        self.progress.setVisible(on)
        if on:
            self._message = "starting…"
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
        text = getattr(self, "_message", "")
        self.progress.setFormat((text[:60] + "  %p%") if text else "%p%")

    # Slots for the task's signals. They are methods of this QWidget, so signals emitted
    # from the task's worker thread are queued to the main thread.
    def on_progress_percent(self, percent: float) -> None:
        self.set_progress(percent / 100.0)

    def on_message(self, message: str) -> None:
        self._message = message
        self.progress.setFormat((message[:60] + "  %p%") if message else "%p%")


class MaskTalkDock(QDockWidget):
    """The dock widget; ``objectName`` is set so QGIS restores its place.

    Signals:
        taskFinished(str kind, bool ok): a caption/train/detect task ended (after its
            layers were added). Used by tests and by anything that chains work.
    """

    taskFinished = pyqtSignal(str, bool)
    diagnosticsReady = pyqtSignal(dict)

    def __init__(self, iface, parent=None):
        super().__init__("MaskTalk", parent)
        self.iface = iface
        self.setObjectName("MaskTalkDock")
        self.setWindowIcon(QIcon(str(Path(__file__).resolve().parent.parent / "resources" / "icon.png")))
        self.project = QgsProject.instance()
        self.tasks: dict[str, Any] = {}  # kind -> running QgsTask
        self.diagnostics: dict | None = None
        self.last_captions: list[str] = []
        self._restoring = True  # no project changes while the dock is being built
        self._snapshot: dict[str, str] = {}
        self._closing = False
        #: Schema file written for a custom (edited) class table; see :meth:`schema_kwargs`.
        self.schema_path = ""
        #: Returns a path for a new label GeoPackage, or "" when the user cancels.
        #: Replaced in tests; the default asks with a file dialog.
        self.ask_label_path: Callable[[str], str] = self._ask_label_path
        self._build()
        self._connect()
        self.restore_settings()  # ends the "restoring" state
        self.update_buttons()
        self.project.readProject.connect(self._on_project_read)
        self.project.writeProject.connect(self._on_project_write)

    # ======================================================================== UI building
    def _build(self) -> None:
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        body = QWidget()
        body.setObjectName("MaskTalkDockBody")
        layout = QVBoxLayout(body)
        layout.addWidget(self._build_layers())
        layout.addWidget(self._build_classes())
        layout.addWidget(self._build_captions())
        layout.addWidget(self._build_train())
        layout.addWidget(self._build_detect())
        log_row = QHBoxLayout()
        self.log_button = QPushButton("Show MaskTalk log")
        self.log_button.setObjectName("MaskTalkShowLog")
        self.log_button.setToolTip("Open the Log Messages panel; MaskTalk's details are in its 'MaskTalk' tab")
        log_row.addStretch(1)
        log_row.addWidget(self.log_button)
        layout.addLayout(log_row)
        layout.addStretch(1)
        scroll.setWidget(body)
        self.setWidget(scroll)

    def _group(self, title: str, name: str) -> tuple[QgsCollapsibleGroupBox, QFormLayout]:
        box = QgsCollapsibleGroupBox(title)
        box.setObjectName(name)
        form = QFormLayout(box)
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        return box, form

    def _build_layers(self) -> QWidget:
        box, form = self._group("1. Layers", "MaskTalkLayers")
        self.before_combo = QgsMapLayerComboBox()
        self.before_combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
        self.before_combo.setAllowEmptyLayer(True)
        self.before_combo.setToolTip("Image before the change (any raster layer: file, WMS/XYZ, virtual)")
        self.after_combo = QgsMapLayerComboBox()
        self.after_combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
        self.after_combo.setAllowEmptyLayer(True)
        self.after_combo.setToolTip("Image after the change; it is aligned on the before image's grid")
        self.label_combo = QgsMapLayerComboBox()
        self.label_combo.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        self.label_combo.setAllowEmptyLayer(True)
        self.label_combo.setToolTip("Polygons of change you drew, with a class attribute")
        self.class_field_combo = QgsFieldComboBox()
        self.class_field_combo.setToolTip("Attribute holding the class (name or id) of each label polygon")
        self.new_label_button = QPushButton("New label layer…")
        self.new_label_button.setObjectName("MaskTalkNewLabelLayer")
        self.aoi_combo = QgsMapLayerComboBox()
        self.aoi_combo.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        self.aoi_combo.setAllowEmptyLayer(True)
        self.aoi_combo.setToolTip("Optional: polygons limiting where changes are detected")
        label_row = QHBoxLayout()
        label_row.addWidget(self.label_combo, 1)
        label_row.addWidget(self.new_label_button)
        form.addRow("Before", self.before_combo)
        form.addRow("After", self.after_combo)
        form.addRow("Labels", label_row)
        form.addRow("Class field", self.class_field_combo)
        form.addRow("Area of interest", self.aoi_combo)
        return box

    def _build_classes(self) -> QWidget:
        box, form = self._group("2. Classes", "MaskTalkClasses")
        self.preset_combo = QComboBox()
        self.preset_combo.setObjectName("MaskTalkPreset")
        for name in preset_names():
            self.preset_combo.addItem(name, name)
        self.preset_combo.addItem("custom (edited)", CUSTOM)
        self.class_model = ClassTableModel(load_preset(self._default_preset()), self)
        self.preset_combo.setCurrentIndex(self.preset_combo.findData(self._default_preset()))
        self.class_table = QTableView()
        self.class_table.setObjectName("MaskTalkClassTable")
        self.class_table.setModel(self.class_model)
        self.class_table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.class_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.class_table.horizontalHeader().setStretchLastSection(True)
        self.class_table.verticalHeader().setToolTip("Class id in the change raster")
        self.class_table.setToolTip("Double-click a cell to edit it; a colour opens the colour picker")
        self.class_table.setMinimumHeight(200)  # the six classes of the gaza preset without scrolling
        buttons = QHBoxLayout()
        self.add_class_button = QPushButton("Add")
        self.remove_class_button = QPushButton("Remove")
        self.load_schema_button = QPushButton("Load…")
        self.save_schema_button = QPushButton("Save…")
        self.load_schema_button.setToolTip("Load a class schema JSON file")
        self.save_schema_button.setToolTip("Save these classes as a schema JSON file (for the command line)")
        for b in (self.add_class_button, self.remove_class_button, self.load_schema_button, self.save_schema_button):
            buttons.addWidget(b)
        self.schema_status = QLabel("")
        self.schema_status.setWordWrap(True)
        form.addRow("Preset", self.preset_combo)
        form.addRow(self.class_table)
        form.addRow(buttons)
        form.addRow(self.schema_status)
        return box

    def _build_captions(self) -> QWidget:
        box, form = self._group("3. Captions", "MaskTalkCaptions")
        intro = QLabel("What your labels say: one S2M sentence (where, what, how, how many) per class and chip.")
        intro.setWordWrap(True)
        form.addRow(intro)
        self.caption_run = RunControls("Caption labels", "MaskTalkCaption")
        form.addRow(self.caption_run)
        self.caption_text = QPlainTextEdit()
        self.caption_text.setObjectName("MaskTalkCaptionText")
        self.caption_text.setReadOnly(True)
        self.caption_text.setMaximumHeight(110)
        self.caption_text.setPlaceholderText("Captions of your labels appear here.")
        form.addRow(self.caption_text)
        return box

    def _build_train(self) -> QWidget:
        box, form = self._group("4. Train", "MaskTalkTrain")
        self.backbone_combo = QComboBox()
        self.backbone_combo.setObjectName("MaskTalkBackbone")
        for name in BACKBONES:
            self.backbone_combo.addItem(name, name)
        self.weights_widget = QgsFileWidget()
        self.weights_widget.setStorageMode(QgsFileWidget.GetDirectory)
        self.weights_widget.setToolTip("Folder with the DINOv3 weights (config.json + model.safetensors); empty = found automatically")
        self.text_combo = QComboBox()
        self.text_combo.setEditable(True)
        for name in TEXT_ENCODERS:
            self.text_combo.addItem(name, name)
        self.text_combo.setToolTip("Sentence encoder used in stage 2 (frozen)")
        self.stage1_spin = _spin(0, 1000, 10)
        self.stage1_spin.setToolTip("Stage 1: change segmentation only")
        self.stage2_spin = _spin(0, 1000, 10)
        self.stage2_spin.setToolTip("Stage 2: with the caption alignment (InfoNCE) loss")
        self.chip_spin = _spin(32, 2048, 256, 32, " px")
        self.batch_spin = _spin(1, 256, 4)
        self.lora_spin = _spin(0, 256, 8)
        self.lora_spin.setToolTip("Rank of the LoRA adapters on the backbone; 0 = train the decoder only")
        self.device_combo = QComboBox()
        self.device_combo.setObjectName("MaskTalkDevice")
        for key, text in DEVICES:
            self.device_combo.addItem(text, key)
        self.device_label = QLabel("asking the engine…")
        self.device_label.setObjectName("MaskTalkDeviceInfo")
        self.device_label.setWordWrap(True)
        self.runs_widget = QgsFileWidget()
        self.runs_widget.setStorageMode(QgsFileWidget.GetDirectory)
        self.runs_widget.setToolTip("Folder where every training run gets its own sub-folder")
        self.run_name_edit = QLineEdit()
        self.run_name_edit.setPlaceholderText("automatic (date and time)")
        self.train_run = RunControls("Train", "MaskTalkTrainButton")
        self.loss_label = QLabel("")
        self.loss_label.setObjectName("MaskTalkLoss")
        self.metrics_label = QLabel("")
        self.metrics_label.setObjectName("MaskTalkMetrics")
        self.metrics_label.setWordWrap(True)
        self.models_table = QTableWidget(0, 4)
        self.models_table.setObjectName("MaskTalkModels")
        self.models_table.setHorizontalHeaderLabels(["Model", "Date", "Classes", "Best scores"])
        self.models_table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.models_table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.models_table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.models_table.horizontalHeader().setStretchLastSection(True)
        self.models_table.setMinimumHeight(90)
        self.refresh_models_button = QPushButton("Refresh")
        form.addRow("Backbone", self.backbone_combo)
        form.addRow("Weights folder", self.weights_widget)
        form.addRow("Text encoder", self.text_combo)
        epochs = QHBoxLayout()
        epochs.addWidget(QLabel("stage 1"))
        epochs.addWidget(self.stage1_spin)
        epochs.addWidget(QLabel("stage 2"))
        epochs.addWidget(self.stage2_spin)
        form.addRow("Epochs", epochs)
        sizes = QHBoxLayout()
        sizes.addWidget(self.chip_spin)
        sizes.addWidget(QLabel("batch"))
        sizes.addWidget(self.batch_spin)
        sizes.addWidget(QLabel("LoRA rank"))
        sizes.addWidget(self.lora_spin)
        form.addRow("Chip", sizes)
        form.addRow("Device", self.device_combo)
        form.addRow("", self.device_label)
        form.addRow("Runs folder", self.runs_widget)
        form.addRow("Run name", self.run_name_edit)
        form.addRow(self.train_run)
        form.addRow("Loss", self.loss_label)
        form.addRow("Validation", self.metrics_label)
        models_head = QHBoxLayout()
        models_head.addWidget(QLabel("Trained models"))
        models_head.addStretch(1)
        models_head.addWidget(self.refresh_models_button)
        form.addRow(models_head)
        form.addRow(self.models_table)
        return box

    def _build_detect(self) -> QWidget:
        box, form = self._group("5. Detect", "MaskTalkDetect")
        self.model_combo = QComboBox()
        self.model_combo.setObjectName("MaskTalkModel")
        self.model_combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.model_combo.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.browse_model_button = QPushButton("…")
        self.browse_model_button.setToolTip("Choose a model folder (a training run or a checkpoint folder)")
        self.extent_combo = QComboBox()
        self.extent_combo.setObjectName("MaskTalkExtent")
        for key, text in EXTENTS:
            self.extent_combo.addItem(text, key)
        self.detect_run = RunControls("Detect changes", "MaskTalkDetectButton")
        row = QHBoxLayout()
        row.addWidget(self.model_combo, 1)
        row.addWidget(self.browse_model_button)
        form.addRow("Model", row)
        form.addRow("Extent", self.extent_combo)
        form.addRow(self.detect_run)
        return box

    # ===================================================================== signals/state
    def _connect(self) -> None:
        self.label_combo.layerChanged.connect(self.class_field_combo.setLayer)
        self.label_combo.layerChanged.connect(self._watch_label_layer)
        for combo in (self.before_combo, self.after_combo, self.label_combo, self.aoi_combo):
            combo.layerChanged.connect(self._on_inputs_changed)
        self.class_field_combo.fieldChanged.connect(self._on_inputs_changed)
        self.new_label_button.clicked.connect(self.new_label_layer)
        self.preset_combo.currentIndexChanged.connect(self._on_preset_chosen)
        self.class_model.dataChanged.connect(self._on_classes_edited)
        self.class_model.rowsInserted.connect(self._on_classes_edited)
        self.class_model.rowsRemoved.connect(self._on_classes_edited)
        self.class_table.doubleClicked.connect(self._pick_colour)
        self.add_class_button.clicked.connect(self._add_class)
        self.remove_class_button.clicked.connect(self._remove_class)
        self.load_schema_button.clicked.connect(self._load_schema_clicked)
        self.save_schema_button.clicked.connect(self._save_schema_clicked)
        self.caption_run.button.clicked.connect(self.start_caption)
        self.train_run.button.clicked.connect(self.start_train)
        self.detect_run.button.clicked.connect(self.start_detect)
        self.caption_run.cancel.clicked.connect(lambda: self.cancel("caption"))
        self.train_run.cancel.clicked.connect(lambda: self.cancel("train"))
        self.detect_run.cancel.clicked.connect(lambda: self.cancel("detect"))
        self.runs_widget.fileChanged.connect(lambda _=None: self.refresh_models())
        self.refresh_models_button.clicked.connect(self.refresh_models)
        self.browse_model_button.clicked.connect(self._browse_model)
        self.model_combo.currentIndexChanged.connect(self._on_inputs_changed)
        self.extent_combo.currentIndexChanged.connect(self._on_inputs_changed)
        self.models_table.itemSelectionChanged.connect(self._on_model_row_selected)
        self.device_combo.currentIndexChanged.connect(self._show_device)
        self.log_button.clicked.connect(self._show_log)
        for w in (self.backbone_combo, self.text_combo, self.device_combo):
            w.currentIndexChanged.connect(self._save_user_settings)
        for w in (self.stage1_spin, self.stage2_spin, self.chip_spin, self.batch_spin, self.lora_spin):
            w.valueChanged.connect(self._save_user_settings)
        self.weights_widget.fileChanged.connect(self._save_user_settings)
        self.runs_widget.fileChanged.connect(self._save_user_settings)

    def menu_actions(self) -> list[QAction]:
        """Extra actions for the plugin menu (diagnostics, set-up) — owned by the dock."""
        self._menu_actions = getattr(self, "_menu_actions", None) or []
        return self._menu_actions

    def showEvent(self, event):  # noqa: N802 - Qt API
        super().showEvent(event)
        if self.diagnostics is None and "info" not in self.tasks:
            self.request_diagnostics()

    # ------------------------------------------------------------------ current values
    def schema(self) -> ClassSchema:
        """The classes of the table, validated (raises InputError)."""
        return self.class_model.schema()

    def selected_model(self) -> str:
        return str(self.model_combo.currentData() or "")

    def missing(self, kind: str) -> list[str]:
        """What is missing before ``kind`` (caption/train/detect) can run, in words."""
        out: list[str] = []
        before = self.before_combo.currentLayer()
        after = self.after_combo.currentLayer()
        labels = self.label_combo.currentLayer()
        if before is None:
            out.append("a before raster")
        if kind in ("train", "detect") and after is None:
            out.append("an after raster")
        elif kind in ("train", "detect") and before is not None and after.id() == before.id():
            out.append("an after raster other than the before raster")
        if kind in ("caption", "train"):
            if labels is None:
                out.append("a label layer (or press New label layer…)")
            elif not self.class_field_combo.currentField():
                out.append("the class field of the label layer")
            elif labels.featureCount() == 0:
                out.append("at least one label polygon")
            try:
                self.schema()
            except InputError as exc:
                out.append(f"valid classes ({exc})")
        if kind == "train" and not self.runs_widget.filePath():
            out.append("a runs folder")
        if kind == "detect":
            if not self.selected_model():
                out.append("a trained model")
            if self.extent_combo.currentData() == "aoi" and self.aoi_combo.currentLayer() is None:
                out.append("an AOI layer (or choose another extent)")
        if kind in self.tasks:
            out.append(f"the running {kind} task to finish")
        return out

    def update_buttons(self, *_) -> None:
        for kind, controls, tip in (
            ("caption", self.caption_run, "Caption the label polygons with S2M sentences"),
            ("train", self.train_run, "Train a change model on the labels (two stages)"),
            ("detect", self.detect_run, "Detect changes between before and after with the chosen model"),
        ):
            if kind in self.tasks:
                continue  # RunControls.running() owns the button while a task runs
            missing = self.missing(kind)
            controls.button.setEnabled(not missing)
            controls.button.setToolTip(tip if not missing else "Missing: " + "; ".join(missing))

    def _watch_label_layer(self, layer) -> None:
        """Follow the label layer's edits: the buttons depend on it having polygons."""
        old = getattr(self, "_watched_labels", None)
        signals = ("featureAdded", "featureDeleted", "afterCommitChanges", "afterRollBack", "dataChanged")
        if old is not None:
            for name in signals:
                try:
                    getattr(old, name).disconnect(self.update_buttons)
                except (TypeError, RuntimeError):
                    pass
        self._watched_labels = layer
        if layer is not None:
            for name in signals:
                getattr(layer, name).connect(self.update_buttons)

    def _on_inputs_changed(self, *_):
        self.update_buttons()
        self._save_project_settings()

    # ============================================================================ classes
    def _default_preset(self) -> str:
        names = preset_names()
        return "gaza" if "gaza" in names else names[0]

    def set_schema(self, schema: ClassSchema, preset: str | None = None) -> None:
        """Show ``schema`` in the table; ``preset`` names the preset it came from."""
        self.class_model.set_schema(schema)
        self._select_preset(preset if preset in preset_names() else CUSTOM)
        self._on_classes_edited()

    def _select_preset(self, name: str) -> None:
        i = self.preset_combo.findData(name)
        self.preset_combo.blockSignals(True)
        self.preset_combo.setCurrentIndex(i if i >= 0 else self.preset_combo.count() - 1)
        self.preset_combo.blockSignals(False)

    def _on_preset_chosen(self, _index: int) -> None:
        name = self.preset_combo.currentData()
        if name and name != CUSTOM:
            self.class_model.set_schema(load_preset(name))
            self._on_classes_edited()

    def _on_classes_edited(self, *_):
        if self.preset_combo.currentData() != CUSTOM and self.class_model.schema_dict()["name"] == CUSTOM:
            self._select_preset(CUSTOM)
        try:
            schema = self.schema()
            self.schema_status.setText(f"{len(schema.change_classes)} change classes (+ no change = 0)")
            self.schema_status.setStyleSheet("")
        except InputError as exc:
            self.schema_status.setText(str(exc))
            self.schema_status.setStyleSheet("color: #b00020")
        self.update_buttons()
        self._save_project_settings()

    def _pick_colour(self, index) -> None:
        """Colours are picked with QGIS's colour dialog, not typed."""
        if COLUMNS[index.column()] != "color":
            return
        current = QColor(self.class_model.data(index, Qt.EditRole))
        colour = QgsColorDialog.getColor(current, self, "Class colour", False)
        if colour.isValid():
            self.class_model.setData(index, colour.name())

    def _add_class(self):
        row = self.class_model.add_class()
        self.class_table.edit(self.class_model.index(row, 0))

    def _remove_class(self):
        rows = sorted({i.row() for i in self.class_table.selectionModel().selectedRows()}, reverse=True)
        for row in rows:
            self.class_model.remove_class(row)

    def load_schema_file(self, path: str | Path) -> None:
        try:
            schema = load_schema(path)
        except InputError as exc:
            self.error(str(exc))
            return
        self.set_schema(schema)

    def save_schema_file(self, path: str | Path) -> None:
        try:
            self.schema().to_json(path)
        except (InputError, OSError) as exc:
            self.error(f"cannot save the classes to {path}: {exc}")
            return
        self.info(f"classes saved to {path}")

    def _load_schema_clicked(self):
        path, _ = QFileDialog.getOpenFileName(self, "Load classes", self._last_dir(), "Class schema (*.json)")
        if path:
            self.load_schema_file(path)

    def _save_schema_clicked(self):
        path, _ = QFileDialog.getSaveFileName(self, "Save classes", self._last_dir(), "Class schema (*.json)")
        if path:
            if not path.lower().endswith(".json"):
                path += ".json"
            self.save_schema_file(path)

    def _last_dir(self) -> str:
        home = self.project.homePath()
        return home or str(Path.home())

    # ==================================================================== label layer
    def _ask_label_path(self, default: str) -> str:
        path, _ = QFileDialog.getSaveFileName(self, "New label layer", default, "GeoPackage (*.gpkg)")
        return path

    def new_label_layer(self):
        """Create a GeoPackage label layer in the before raster's CRS and start editing it."""
        try:
            schema = self.schema()
        except InputError as exc:
            self.error(f"fix the classes first: {exc}")
            return None
        default = str(Path(self._last_dir()) / "labels.gpkg")
        path = self.ask_label_path(default)
        if not path:
            return None
        before = self.before_combo.currentLayer()
        crs = before.crs() if before is not None else self.iface.mapCanvas().mapSettings().destinationCrs()
        try:
            layer = create_label_layer(path, schema, crs, name=Path(path).stem, project=self.project)
        except InputError as exc:
            self.error(str(exc))
            return None
        self.label_combo.setLayer(layer)
        self.class_field_combo.setLayer(layer)
        self.class_field_combo.setField("class")
        try:
            self.iface.setActiveLayer(layer)
        except Exception:  # noqa: BLE001 - some interfaces (tests) do not have it
            pass
        self.info(f"label layer {path} created: draw polygons and pick their class, then save the edits")
        self.update_buttons()
        return layer

    # ============================================================================ models
    def refresh_models(self) -> None:
        """Reread the runs folder into the model list and the Detect model choice."""
        runs = scan_runs(self.runs_widget.filePath()) if self.runs_widget.filePath() else []
        self._runs = runs
        self.models_table.setRowCount(len(runs))
        for r, info in enumerate(runs):
            for c, text in enumerate((info.name, info.date, ", ".join(info.classes), info.scores_text())):
                item = QTableWidgetItem(text)
                item.setToolTip(str(info.path))
                self.models_table.setItem(r, c, item)
        self.models_table.resizeColumnsToContents()
        current = self.selected_model()
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        self.model_combo.addItem("", "")
        for info in runs:
            self.model_combo.addItem(f"{info.name} ({info.date})", str(info.path))
        extra = current and all(str(i.path) != current for i in runs)
        if extra:
            self.model_combo.addItem(Path(current).name, current)
        i = self.model_combo.findData(current) if current else -1
        if i < 0 and runs:
            i = 1
        self.model_combo.setCurrentIndex(max(i, 0))
        self.model_combo.blockSignals(False)
        self._on_inputs_changed()

    def set_model(self, path: str) -> None:
        i = self.model_combo.findData(str(path))
        if i < 0:
            self.model_combo.addItem(Path(path).name, str(path))
            i = self.model_combo.count() - 1
        self.model_combo.setCurrentIndex(i)

    def _browse_model(self):
        path = QFileDialog.getExistingDirectory(self, "Model folder", self.runs_widget.filePath() or self._last_dir())
        if path:
            self.set_model(path)

    def _on_model_row_selected(self):
        rows = self.models_table.selectionModel().selectedRows()
        if rows and rows[0].row() < len(getattr(self, "_runs", [])):
            self.set_model(str(self._runs[rows[0].row()].path))

    # ============================================================================ tasks
    def schema_kwargs(self) -> dict[str, str]:
        """``preset``/``schema_path`` of a job: the preset's name while the table is an
        unedited preset, else the table written to a schema file (by content hash, so the
        same classes give the same file)."""
        schema = self.schema()
        name = self.preset_combo.currentData()
        if name and name != CUSTOM and load_preset(name).to_dict() == schema.to_dict():
            self.schema_path = ""
            return {"preset": name, "schema_path": ""}
        text = schema.to_json()
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]
        folder = Path(QgsApplication.qgisSettingsDirPath()) / "masktalk" / "schemas"
        folder.mkdir(parents=True, exist_ok=True)
        # The schema's name is free text ("Gaza / 2024"): keep only characters safe in a file name.
        stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in schema.name).strip("._") or "schema"
        path = folder / f"{stem[:60]}-{digest}.json"
        if not path.is_file():
            path.write_text(text, encoding="utf-8")
        self.schema_path = str(path)
        return {"preset": "", "schema_path": str(path)}

    def caption_job(self) -> CaptionJob:
        """The Captions section as a job (raises InputError when the classes are invalid)."""
        return CaptionJob(
            labels=self.label_combo.currentLayer(),
            class_field=self.class_field_combo.currentField(),
            reference=self.before_combo.currentLayer(),
            chip=self.chip_spin.value(),
            seed=0,
            add_layer=True,
            **self.schema_kwargs(),
        )

    def new_run_dir(self) -> Path:
        """A fresh folder name under the runs folder (the run name, made unique)."""
        root = Path(self.runs_widget.filePath())
        base = self.run_name_edit.text().strip() or datetime.now().strftime("run-%Y%m%d-%H%M%S")
        base = "".join(ch if ch.isalnum() or ch in "-_. " else "_" for ch in base).strip() or "run"
        candidate, n = root / base, 2
        while candidate.exists():
            candidate, n = root / f"{base}-{n}", n + 1
        return candidate

    def train_job(self) -> TrainJob:
        """The Train section as a job, with a new run folder."""
        weights = self.weights_widget.filePath().strip()
        return TrainJob(
            before=self.before_combo.currentLayer(),
            after=self.after_combo.currentLayer(),
            labels=self.label_combo.currentLayer(),
            out_dir=str(self.new_run_dir()),
            class_field=self.class_field_combo.currentField(),
            aoi=self.aoi_combo.currentLayer(),
            backbone=self.backbone_combo.currentData(),
            weights=weights or None,
            text_encoder=self.text_combo.currentText().strip() or None,
            stage1_epochs=self.stage1_spin.value(),
            stage2_epochs=self.stage2_spin.value(),
            chip=self.chip_spin.value(),
            batch_size=self.batch_spin.value(),
            lora_rank=self.lora_spin.value(),
            device=str(self.device_combo.currentData() or "auto"),
            **self.schema_kwargs(),
        )

    def detect_extent(self) -> QgsReferencedRectangle | None:
        """The extent chosen in Detect: None (whole before layer), the canvas, or the AOI
        layer's features (the selected ones when there is a selection)."""
        choice = self.extent_combo.currentData()
        if choice == "canvas":
            canvas = self.iface.mapCanvas()
            return QgsReferencedRectangle(canvas.extent(), canvas.mapSettings().destinationCrs())
        if choice == "aoi":
            aoi = self.aoi_combo.currentLayer()
            if aoi is None:
                return None
            rect = aoi.boundingBoxOfSelected() if aoi.selectedFeatureCount() else aoi.extent()
            return QgsReferencedRectangle(rect, aoi.crs())
        return None

    def detect_job(self) -> DetectJob:
        model = Path(self.selected_model())
        run = model.parent if model.name in ("best", "last") else model
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out = run / "detections"
        out.mkdir(parents=True, exist_ok=True)
        return DetectJob(
            before=self.before_combo.currentLayer(),
            after=self.after_combo.currentLayer(),
            model=str(model),
            out_raster=str(out / f"changes-{stamp}.tif"),
            out_vectors=str(out / f"changes-{stamp}.gpkg"),
            device=str(self.device_combo.currentData() or "auto"),
            extent=self.detect_extent(),
            add_layers=True,
            group_name=f"MaskTalk {run.name} {stamp}",
            **self.schema_kwargs(),
        )

    def start_caption(self):
        """Caption the label polygons (background task); adds a ``captions`` layer."""
        self._start("caption", CaptionTask, self.caption_job, self.caption_run)

    def start_train(self):
        """Train a model on the labels (background task); the run joins the model list."""
        self.loss_label.setText("")
        self.metrics_label.setText("")
        task = self._start("train", TrainTask, self.train_job, self.train_run)
        if task is not None:
            task.metrics.connect(self._on_train_metrics)
            self.train_run.status.setText(f"run folder: {task.job.out_dir}")

    def start_detect(self):
        """Detect changes with the chosen model (background task); adds a layer group."""
        self._start("detect", DetectTask, self.confirmed_detect_job, self.detect_run)

    def confirmed_detect_job(self) -> DetectJob | None:
        """:meth:`detect_job`, with ``overwrite`` only once the user agreed to replace
        existing outputs; None when the user declines (nothing runs)."""
        job = self.detect_job()
        existing = [p for p in (job.out_raster, job.out_vectors) if p and Path(p).exists()]
        if not existing:
            return job
        names = "\n".join(existing)
        answer = QMessageBox.question(self, "MaskTalk: replace the detection?",
                                      f"These outputs exist already:\n{names}\n\nReplace them? They are replaced only when the new "
                                      "detection has finished.", QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
        if answer != QMessageBox.Yes:
            self.detect_run.status.setText("not started: the outputs exist")
            return None
        job.overwrite = True
        return job

    def _start(self, kind: str, task_class, make_job, controls: RunControls):
        missing = self.missing(kind)
        if missing:
            self.warning(f"cannot {kind} yet; missing: " + "; ".join(missing))
            return None
        try:
            job = make_job()
            if job is None:  # the user declined (e.g. to replace existing outputs)
                return None
            task = task_class(job, project=self.project, on_finished=self._task_done)
        except (InputError, LayerProblem, ValueError, OSError) as exc:
            self.error(f"{kind}: {exc}")
            return None
        task.masktalk_kind = kind
        task.progressChanged.connect(controls.on_progress_percent)
        task.progressMessage.connect(controls.on_message)
        task.succeeded.connect(getattr(self, f"_on_{kind}_result"))
        task.failed.connect(self._on_task_failed)
        task.wasCancelled.connect(self._on_task_cancelled)
        self.tasks[kind] = task
        controls.running(True)
        QgsMessageLog.logMessage(f"{task.description()} started", LOG_TAG, Qgis.Info)
        QgsApplication.taskManager().addTask(task)
        return task

    def _controls(self, kind: str) -> RunControls | None:
        return {"caption": self.caption_run, "train": self.train_run, "detect": self.detect_run}.get(kind)

    def _task_done(self, task) -> None:
        """Main thread, from the task's ``finished()`` after its result signals."""
        if self._closing:  # the plugin was unloaded while the task ran
            return
        kind = getattr(task, "masktalk_kind", "")
        if self.tasks.get(kind) is task:
            del self.tasks[kind]
        controls = self._controls(kind)
        ok = task.result is not None and task.error is None
        if controls is not None:
            controls.running(False)
            controls.progress.setVisible(False)
            if ok:
                controls.status.setText(controls.status.text() or f"{kind} finished in {task.seconds:.0f} s")
        if kind == "train":
            self.refresh_models()
        self.update_buttons()
        self.taskFinished.emit(kind, ok)

    def _on_task_failed(self, message: str, details: str) -> None:
        task = self.sender()
        kind = getattr(task, "masktalk_kind", "task")
        self.error(f"{kind} failed: {message}", details)
        controls = self._controls(kind)
        if controls is not None:
            controls.status.setText(f"failed: {message}")

    def _on_task_cancelled(self) -> None:
        task = self.sender()
        kind = getattr(task, "masktalk_kind", "task")
        note = " (the last checkpoint is kept in the run folder)" if kind == "train" else ""
        self.info(f"{kind} cancelled{note}")
        controls = self._controls(kind)
        if controls is not None:
            controls.status.setText(f"cancelled{note}")

    def _on_caption_result(self, result: dict) -> None:
        chips = result.get("json") or []
        sentences = [s for chip in chips for s in chip.get("sentences") or []]
        self.last_captions = sentences
        shown = sentences[:8]
        more = f"\n… and {len(sentences) - len(shown)} more in the captions layer" if len(sentences) > len(shown) else ""
        self.caption_text.setPlainText("\n".join(shown) + more if shown else "No change class in the labelled area.")
        self.caption_run.status.setText(f"{len(chips)} chip(s), {len(sentences)} sentence(s)")
        self.success(f"captions ready: {len(sentences)} sentence(s) in {len(chips)} chip(s)")

    def _on_train_result(self, result: dict) -> None:
        run = result.get("run_dir", "")
        scores = result.get("best_metrics") or {}
        text = "  ".join(f"{k} {v:.3f}" for k, v in scores.items() if k in ("SeK", "Fscd", "mIoU", "F1") and isinstance(v, (int, float)))
        self.train_run.status.setText(f"model saved in {run}" + (f" — best {text}" if text else ""))
        self.refresh_models()
        if run:
            self.set_model(run)
        self.success(f"training finished: {Path(run).name}" + (f" ({text})" if text else ""))

    def _on_detect_result(self, result: dict) -> None:
        pixels = result.get("pixels_changed")
        self.detect_run.status.setText(f"{pixels} changed pixel(s)" if pixels is not None else "done")
        self.success("changes detected" + (f": {pixels} changed pixel(s)" if pixels is not None else ""))

    def _on_train_metrics(self, values: dict) -> None:
        epoch, stage = values.get("epoch"), values.get("stage")
        loss = values.get("loss")
        if isinstance(loss, (int, float)):
            self.loss_label.setText(f"{loss:.4f} (epoch {epoch}, stage {stage})")
        shown = [f"{k} {values[k]:.3f}" for k in ("SeK", "Fscd", "mIoU", "F1", "OA") if isinstance(values.get(k), (int, float))]
        self.metrics_label.setText("  ".join(shown))

    def cancel(self, kind: str) -> None:
        """Ask a running task to stop (the engine gets a polite stop, then is killed)."""
        task = self.tasks.get(kind)
        if task is not None:
            controls = self._controls(kind)
            if controls is not None:
                controls.status.setText("cancelling…")
                controls.cancel.setEnabled(False)
            task.cancel()

    def request_diagnostics(self) -> None:
        """Ask the engine (in a background task, never blocking) which devices and weights it has."""
        if "info" in self.tasks:
            return
        try:
            task = DiagnosticsTask(project=self.project, on_finished=self._diagnostics_done)
        except Exception as exc:  # noqa: BLE001 - diagnostics must never break the dock
            self.device_label.setText(f"engine not available: {exc}")
            return
        task.succeeded.connect(self._on_diagnostics)
        self.tasks["info"] = task
        self._show_device()
        QgsApplication.taskManager().addTask(task)

    def _diagnostics_done(self, task) -> None:
        if self._closing:
            return
        if self.tasks.get("info") is task:
            del self.tasks["info"]
        if self.diagnostics is None:
            self.diagnostics = {}
        self._show_device()

    def _on_diagnostics(self, result: dict) -> None:
        engine = result.get("engine") or {}
        self.diagnostics = engine if isinstance(engine, dict) else {}
        weights = (self.diagnostics.get("weights") or {}).get("backbones") or {}
        for i in range(self.backbone_combo.count()):
            name = self.backbone_combo.itemData(i)
            found = (weights.get(name) or {}).get("available")
            if found is None:
                text = name
            else:
                text = f"{name} ({'weights found' if found else 'no weights found'})"
            self.backbone_combo.setItemText(i, text)
        self.diagnosticsReady.emit(self.diagnostics)

    def _show_device(self, *_):
        info = self.diagnostics or {}
        cuda = info.get("cuda") or {}
        devices = cuda.get("devices") or []
        if info.get("error"):
            text = "engine not usable: " + str(info["error"]).splitlines()[0]
        elif not info:
            text = "asking the engine…" if "info" in self.tasks else "engine not asked yet (shown when the dock opens)"
        elif cuda.get("available") and devices:
            d = devices[0]
            text = f"GPU: {d.get('name')} ({d.get('memory_gb')} GB), CUDA {cuda.get('version')}"
        else:
            text = "CPU only: no CUDA GPU usable by the engine's PyTorch"
            if self.device_combo.currentData() == "cuda":
                text += " — training would fail; choose Automatic or CPU"
        self.device_label.setText(text)

    # ========================================================================= messages
    def _show_log(self):
        try:
            self.iface.openMessageLog()
        except Exception:  # noqa: BLE001
            pass

    def info(self, text: str) -> None:
        QgsMessageLog.logMessage(text, LOG_TAG, Qgis.Info)
        self.iface.messageBar().pushMessage("MaskTalk", text, level=Qgis.Info, duration=5)

    def success(self, text: str) -> None:
        QgsMessageLog.logMessage(text, LOG_TAG, Qgis.Success)
        self.iface.messageBar().pushMessage("MaskTalk", text, level=Qgis.Success, duration=8)

    def warning(self, text: str, details: str = "") -> None:
        QgsMessageLog.logMessage(details or text, LOG_TAG, Qgis.Warning)
        self.iface.messageBar().pushMessage("MaskTalk", text, level=Qgis.Warning, duration=10)

    def error(self, text: str, details: str = "") -> None:
        QgsMessageLog.logMessage(f"{text}\n{details}" if details else text, LOG_TAG, Qgis.Critical)
        self.iface.messageBar().pushMessage("MaskTalk", text, level=Qgis.Critical, duration=0)

    # ========================================================================= settings
    def _save_user_settings(self, *_):
        if self._restoring:
            return
        s = QgsSettings()
        s.setValue(SETTINGS_PREFIX + "backbone", self.backbone_combo.currentData())
        s.setValue(SETTINGS_PREFIX + "weights", self.weights_widget.filePath())
        s.setValue(SETTINGS_PREFIX + "text_encoder", self.text_combo.currentText())
        plugin = PluginSettings.load()
        plugin.device = str(self.device_combo.currentData() or "auto")
        plugin.save()
        for key, spin in self._spins().items():
            s.setValue(SETTINGS_PREFIX + key, spin.value())
        s.setValue(SETTINGS_PREFIX + "runs", self.runs_widget.filePath())

    def _spins(self) -> dict[str, QSpinBox]:
        return {"stage1_epochs": self.stage1_spin, "stage2_epochs": self.stage2_spin, "chip": self.chip_spin,
                "batch": self.batch_spin, "lora_rank": self.lora_spin}

    def project_settings(self) -> ProjectSettings:
        """The analysis's choices as the project settings dataclass (see :mod:`.settings`)."""
        def layer_id(combo):
            layer = combo.currentLayer()
            return layer.id() if layer is not None else ""

        preset = str(self.preset_combo.currentData() or "")
        return ProjectSettings(
            preset=preset if preset != CUSTOM else "",
            schema_path=self.schema_path if preset == CUSTOM else "",
            before_layer=layer_id(self.before_combo),
            after_layer=layer_id(self.after_combo),
            labels_layer=layer_id(self.label_combo),
            aoi_layer=layer_id(self.aoi_combo),
            class_field=self.class_field_combo.currentField(),
            model=self.selected_model(),
            output_dir=self.runs_widget.filePath(),
        )

    def _project_values(self) -> dict[str, str]:
        return {"settings": repr(self.project_settings()), "schema_json": json.dumps(self.class_model.schema_dict()),
                "extent": str(self.extent_combo.currentData() or "layer")}

    def _save_project_settings(self, *_):
        """Note a change of the analysis's choices: the project becomes modified (so QGIS
        offers to save it) but nothing is written until it is saved (:meth:`_on_project_write`).
        Merely building or showing the dock, or a project being cleared, changes nothing."""
        if self._restoring or self.project.count() == 0:
            return
        if self._project_values() != self._snapshot:
            self.project.setDirty(True)

    def _on_project_write(self, *_):
        """The project is being saved: write the dock's choices into it."""
        self.project_settings().save(self.project)
        self.project.writeEntry(PROJECT_SCOPE, "schema_json", json.dumps(self.class_model.schema_dict()))
        self.project.writeEntry(PROJECT_SCOPE, "extent", str(self.extent_combo.currentData() or "layer"))
        self._snapshot = self._project_values()

    def restore_settings(self) -> None:
        """User preferences from QgsSettings, then the project's own choices."""
        self._restoring = True
        try:
            s = QgsSettings()
            self._set_combo_data(self.backbone_combo, s.value(SETTINGS_PREFIX + "backbone", BACKBONES[0]))
            self.weights_widget.setFilePath(s.value(SETTINGS_PREFIX + "weights", "") or "")
            self.text_combo.setCurrentText(s.value(SETTINGS_PREFIX + "text_encoder", TEXT_ENCODERS[0]) or TEXT_ENCODERS[0])
            self._set_combo_data(self.device_combo, PluginSettings.load().device)
            for key, spin in self._spins().items():
                value = s.value(SETTINGS_PREFIX + key, None)
                if value not in (None, ""):
                    try:
                        spin.setValue(int(value))
                    except (TypeError, ValueError):
                        pass
            self.runs_widget.setFilePath(s.value(SETTINGS_PREFIX + "runs", "") or self._default_runs_dir())
            self._restore_project()
            self.refresh_models()
            self.update_buttons()
            self._snapshot = self._project_values()
        finally:
            self._restoring = False

    def _default_runs_dir(self) -> str:
        return str(Path(QgsApplication.qgisSettingsDirPath()) / "masktalk" / "runs")

    def _restore_project(self) -> None:
        p, scope = self.project, PROJECT_SCOPE
        ps = ProjectSettings.load(p)
        for layer_id, combo in ((ps.before_layer, self.before_combo), (ps.after_layer, self.after_combo),
                                (ps.labels_layer, self.label_combo), (ps.aoi_layer, self.aoi_combo)):
            layer = p.mapLayer(layer_id) if layer_id else None
            if layer is not None:
                combo.setLayer(layer)
        if ps.class_field and self.label_combo.currentLayer() is not None:
            self.class_field_combo.setLayer(self.label_combo.currentLayer())
            self.class_field_combo.setField(ps.class_field)
        text, ok = p.readEntry(scope, "schema_json", "")
        if ok and text:
            try:
                self.class_model.set_schema(ClassSchema.from_dict(json.loads(text), source="project"))
                self._select_preset(ps.preset or CUSTOM)
            except (InputError, ValueError) as exc:
                self.warning(f"the project's MaskTalk classes are unusable ({exc}); showing the {self._default_preset()} preset")
        elif ps.preset in preset_names() and p.readEntry(scope, "preset", "")[1]:
            self.class_model.set_schema(load_preset(ps.preset))
            self._select_preset(ps.preset)
        if ps.model:
            self.set_model(ps.model)
        if ps.output_dir:
            self.runs_widget.setFilePath(ps.output_dir)
        extent, ok = p.readEntry(scope, "extent", "")
        if ok and extent:
            self._set_combo_data(self.extent_combo, extent)
        self._on_classes_edited()

    @staticmethod
    def _set_combo_data(combo: QComboBox, value) -> None:
        i = combo.findData(value)
        if i >= 0:
            combo.setCurrentIndex(i)

    def _on_project_read(self, *_):
        self.restore_settings()

    # ========================================================================== cleanup
    def shutdown(self) -> None:
        """Cancel running tasks and disconnect signals before the dock goes away."""
        self._closing = True
        self._watch_label_layer(None)
        for task in list(self.tasks.values()):
            try:
                task.cancel()
            except RuntimeError:  # already deleted by the task manager
                pass
        self.tasks.clear()
        for signal, slot in ((self.project.readProject, self._on_project_read),
                             (self.project.writeProject, self._on_project_write)):
            try:
                signal.disconnect(slot)
            except (TypeError, RuntimeError):
                pass
