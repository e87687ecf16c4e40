"""Section 2 of the dock: the change classes (a preset, or a table the user edits).

The table edits a :class:`~...engine.schema.ClassSchema` validated by the engine's own
rules. An unedited preset goes to the engine by name; an edited table is written to a
schema file named by its content hash (the same classes, the same file).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from qgis.core import QgsApplication
from qgis.gui import QgsColorDialog
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtWidgets import QAbstractItemView, QComboBox, QFileDialog, QHBoxLayout, QHeaderView, QLabel, QPushButton, QTableView

from ...engine.errors import InputError
from ...engine.schema import ClassSchema, load_preset, load_schema, preset_names
from ..dock_widgets import COLUMNS, ClassTableModel
from ..i18n import tr
from .common import Section

CUSTOM = "custom"


def default_preset() -> str:
    names = preset_names()
    return "gaza" if "gaza" in names else names[0]


class ClassesSection(Section):
    """Preset, class table (name, category, type, colour), load/save as JSON.

    Signals:
        schemaChanged(): the classes changed (a preset chosen, a cell edited, a file loaded).
    """

    schemaChanged = pyqtSignal()

    def __init__(self, last_dir=lambda: str(Path.home()), parent=None):
        super().__init__(tr("2. Classes"), "MaskTalkClasses", parent)
        self.last_dir = last_dir
        #: Schema file written for a custom (edited) class table; see :meth:`schema_kwargs`.
        self.schema_path = ""
        self.preset_combo = QComboBox()
        self.preset_combo.setObjectName("MaskTalkPreset")
        for name in preset_names():
            self.preset_combo.addItem(name, name)
        self.preset_combo.addItem(tr("custom (edited)"), CUSTOM)
        self.class_model = ClassTableModel(load_preset(default_preset()), self)
        self.preset_combo.setCurrentIndex(self.preset_combo.findData(default_preset()))
        self.class_table = QTableView()
        self.class_table.setObjectName("MaskTalkClassTable")
        self.class_table.setModel(self.class_model)
        self.class_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.class_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.class_table.horizontalHeader().setStretchLastSection(True)
        self.class_table.verticalHeader().setToolTip(tr("Class id in the change raster"))
        self.class_table.setToolTip(tr("Double-click a cell to edit it; a colour opens the colour picker"))
        self.class_table.setMinimumHeight(200)  # the six classes of the gaza preset without scrolling
        buttons = QHBoxLayout()
        self.add_class_button = QPushButton(tr("Add"))
        self.remove_class_button = QPushButton(tr("Remove"))
        self.load_schema_button = QPushButton(tr("Load…"))
        self.save_schema_button = QPushButton(tr("Save…"))
        self.load_schema_button.setToolTip(tr("Load a class schema JSON file"))
        self.save_schema_button.setToolTip(tr("Save these classes as a schema JSON file (for the command line)"))
        for b in (self.add_class_button, self.remove_class_button, self.load_schema_button, self.save_schema_button):
            buttons.addWidget(b)
        self.schema_status = QLabel("")
        self.schema_status.setWordWrap(True)
        self.form.addRow(tr("Preset"), self.preset_combo)
        self.form.addRow(self.class_table)
        self.form.addRow(buttons)
        self.form.addRow(self.schema_status)
        self.preset_combo.currentIndexChanged.connect(self._on_preset_chosen)
        self.class_model.dataChanged.connect(self._on_edited)
        self.class_model.rowsInserted.connect(self._on_edited)
        self.class_model.rowsRemoved.connect(self._on_edited)
        self.class_model.modelReset.connect(self._on_edited)
        self.class_table.doubleClicked.connect(self._pick_colour)
        self.add_class_button.clicked.connect(self._add_class)
        self.remove_class_button.clicked.connect(self._remove_class)
        self.load_schema_button.clicked.connect(self._load_clicked)
        self.save_schema_button.clicked.connect(self._save_clicked)
        self._on_edited()

    # -- values ------------------------------------------------------------------------------
    def schema(self) -> ClassSchema:
        """The classes of the table, validated (raises InputError)."""
        return self.class_model.schema()

    def valid_schema(self) -> ClassSchema | None:
        try:
            return self.schema()
        except InputError:
            return None

    def preset(self) -> str:
        """The preset shown, or ``custom``."""
        return str(self.preset_combo.currentData() or "")

    def missing(self) -> list[str]:
        try:
            self.schema()
        except InputError as exc:
            return [tr("valid classes ({error})").format(error=exc)]
        return []

    def schema_kwargs(self) -> dict[str, str]:
        """``preset``/``schema_path`` of a job: the preset's name while the table is an
        unedited preset, else the table written to a schema file (by content hash, so the
        same classes give the same file)."""
        schema = self.schema()
        name = self.preset()
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

    def set_schema(self, schema: ClassSchema, preset: str | None = None) -> None:
        """Show ``schema`` in the table; ``preset`` names the preset it came from."""
        self.class_model.set_schema(schema)
        self.select_preset(preset if preset in preset_names() else CUSTOM)
        self._on_edited()

    def select_preset(self, name: str) -> None:
        i = self.preset_combo.findData(name)
        self.preset_combo.blockSignals(True)
        self.preset_combo.setCurrentIndex(i if i >= 0 else self.preset_combo.count() - 1)
        self.preset_combo.blockSignals(False)

    # -- editing -----------------------------------------------------------------------------
    def _on_preset_chosen(self, _index: int) -> None:
        name = self.preset_combo.currentData()
        if name and name != CUSTOM:
            self.class_model.set_schema(load_preset(name))

    def _on_edited(self, *_):
        if self.preset() != CUSTOM and self.class_model.schema_dict()["name"] == CUSTOM:
            self.select_preset(CUSTOM)
        try:
            schema = self.schema()
            self.schema_status.setText(tr("{n} change classes (+ no change = 0)").format(n=len(schema.change_classes)))
            self.schema_status.setStyleSheet("")
        except InputError as exc:
            self.schema_status.setText(str(exc))
            self.schema_status.setStyleSheet("color: #b00020")
        self.schemaChanged.emit()
        self.changed.emit()

    def _pick_colour(self, index) -> None:
        """Colours are picked with QGIS's colour dialog, not typed."""
        if COLUMNS[index.column()] != "color":
            return
        current = QColor(self.class_model.data(index, Qt.ItemDataRole.EditRole))
        colour = QgsColorDialog.getColor(current, self, tr("Class colour"), False)
        if colour.isValid():
            self.class_model.setData(index, colour.name())

    def _add_class(self):
        row = self.class_model.add_class()
        self.class_table.edit(self.class_model.index(row, 0))

    def _remove_class(self):
        rows = sorted({i.row() for i in self.class_table.selectionModel().selectedRows()}, reverse=True)
        for row in rows:
            self.class_model.remove_class(row)

    # -- files -------------------------------------------------------------------------------
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
            self.error(tr("cannot save the classes to {path}: {error}").format(path=path, error=exc))
            return
        self.info(tr("classes saved to {path}").format(path=path))

    def _load_clicked(self):
        path, _ = QFileDialog.getOpenFileName(self, tr("Load classes"), self.last_dir(), tr("Class schema (*.json)"))
        if path:
            self.load_schema_file(path)

    def _save_clicked(self):
        path, _ = QFileDialog.getSaveFileName(self, tr("Save classes"), self.last_dir(), tr("Class schema (*.json)"))
        if path:
            if not path.lower().endswith(".json"):
                path += ".json"
            self.save_schema_file(path)
