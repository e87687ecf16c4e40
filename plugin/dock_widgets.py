"""Parts of the MaskTalk dock that hold data: the class table, the trained-model list,
and the new label layer.

Nothing here starts the engine. The class table edits a
:class:`~masktalk.engine.schema.ClassSchema` (validated by the engine's own rules); the
model list reads what training wrote into its run folders (``config.json``,
``metrics.jsonl``, ``best/card.json``).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsField,
    QgsFields,
    QgsProject,
    QgsVectorFileWriter,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QAbstractTableModel, QModelIndex, Qt
from qgis.PyQt.QtGui import QColor

from ..engine.errors import InputError
from ..engine.schema import ClassSchema
from .compat import STRING
from .i18n import tr, tr_noop
from .styles import style_label_layer

log = logging.getLogger("masktalk")

COLUMNS = ("name", "category", "type", "color")
HEADERS = (tr_noop("Name"), tr_noop("Category (plural)"), tr_noop("Type"), tr_noop("Colour"))
#: Fallback colours for classes added in the table (ColorBrewer Paired).
PALETTE = ("#e31a1c", "#1f78b4", "#ff7f00", "#b15928", "#6a3d9a", "#33a02c", "#fb9a99", "#a6cee3", "#fdbf6f", "#cab2d6")


class ClassTableModel(QAbstractTableModel):
    """The change classes of a schema as rows (name, category, type, colour).

    *No change* (id 0) is implied and not shown: ids follow the row order from 1.
    :meth:`schema` validates the rows with the engine's schema rules.
    """

    def __init__(self, schema: ClassSchema | None = None, parent=None):
        super().__init__(parent)
        self._rows: list[dict[str, str]] = []
        self._name = "custom"
        if schema is not None:
            self.set_schema(schema)

    # -- content ---------------------------------------------------------------------
    def set_schema(self, schema: ClassSchema) -> None:
        self.beginResetModel()
        self._name = schema.name
        self._rows = [
            {"name": c.name, "category": c.category, "type": c.type, "color": c.color, "category_singular": c.category_singular}
            for c in schema.change_classes
        ]
        self.endResetModel()

    def schema_dict(self) -> dict[str, Any]:
        classes = [{"id": 0, "name": "no change", "category": "", "type": "", "color": "#000000"}]
        for i, row in enumerate(self._rows, start=1):
            item = {"id": i, "name": row["name"], "category": row["category"], "type": row["type"], "color": row["color"]}
            if row.get("category_singular"):
                item["category_singular"] = row["category_singular"]
            classes.append(item)
        return {"name": self._name, "version": 1, "classes": classes}

    def schema(self) -> ClassSchema:
        """The table as a validated schema.

        Raises:
            InputError: a row breaks a schema rule (empty name, duplicate name, bad colour).
        """
        return ClassSchema.from_dict(self.schema_dict(), source=f"class table {self._name!r}")

    def add_class(self) -> int:
        row = len(self._rows)
        self.beginInsertRows(QModelIndex(), row, row)
        n = row + 1
        self._rows.append(
            {"name": tr("class {n}").format(n=n), "category": tr("objects"), "type": tr("changed"), "color": PALETTE[row % len(PALETTE)], "category_singular": ""}
        )
        self.endInsertRows()
        self._name = "custom"
        return row

    def remove_class(self, row: int) -> None:
        if 0 <= row < len(self._rows):
            self.beginRemoveRows(QModelIndex(), row, row)
            del self._rows[row]
            self.endRemoveRows()
            self._name = "custom"

    # -- Qt model API ----------------------------------------------------------------
    def rowCount(self, parent=QModelIndex()):  # noqa: N802,B008 - Qt API
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent=QModelIndex()):  # noqa: N802,B008 - Qt API
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802 - Qt API
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        if orientation == Qt.Orientation.Horizontal:
            return tr(HEADERS[section])  # noqa: MT906 - the headers are marked with tr_noop() above
        return str(section + 1)

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        row = self._rows[index.row()]
        key = COLUMNS[index.column()]
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.EditRole):
            return row[key]
        if role == Qt.ItemDataRole.DecorationRole and key == "color":
            return QColor(row["color"])
        if role == Qt.ItemDataRole.ToolTipRole and key == "category":
            return tr("Plural noun used in captions, e.g. 'buildings'")
        return None

    def setData(self, index, value, role=Qt.ItemDataRole.EditRole):  # noqa: N802 - Qt API
        if not index.isValid() or role != Qt.ItemDataRole.EditRole:
            return False
        key = COLUMNS[index.column()]
        text = str(value.name() if isinstance(value, QColor) else value).strip()
        if key == "color":
            color = QColor(text)
            if not color.isValid():
                return False
            text = color.name()
        row = self._rows[index.row()]
        if row[key] == text:
            return False
        row[key] = text
        if key == "category":  # the singular belonged to the old noun
            row["category_singular"] = ""
        self._name = "custom"
        self.dataChanged.emit(index, index, [role])
        return True

    def flags(self, index):
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        if COLUMNS[index.column()] == "color":  # picked with a colour dialog (the dock), not typed
            return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEditable


# -- trained models -------------------------------------------------------------------
#: Scores shown in the model list, in this order.
SCORE_KEYS = ("SeK", "Fscd", "mIoU", "F1")


@dataclass
class RunInfo:
    """What the model list shows about one training run folder.

    Read from what training writes (``engine/training/state.py``): ``config.json`` (the
    settings), ``best/card.json`` (the kept model: backbone, classes, the scores and step
    it was kept at, and by which rule) and ``metrics.jsonl`` (one line per validation).
    """

    path: Path
    name: str
    date: str
    classes: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    schema: dict | None = None
    backbone: str = ""
    steps: int | None = None
    kept_step: int | None = None
    rule: str = ""

    def scores_text(self) -> str:
        keys = [k for k in SCORE_KEYS if k in self.scores]
        return "  ".join(f"{k} {self.scores[k]:.3f}" for k in keys)

    def details(self) -> str:
        """A tooltip: folder, backbone, schedule and which model was kept."""
        lines = [str(self.path)]
        if self.backbone:
            lines.append(tr("backbone: {name}").format(name=self.backbone))
        if self.steps:
            lines.append(tr("{n} optimizer steps").format(n=self.steps))
        if self.kept_step is not None:
            lines.append(tr("kept model: step {step} ({rule})").format(step=self.kept_step, rule=self.rule or "?"))
        return "\n".join(lines)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _numbers(record: dict) -> dict[str, float]:
    return {k: float(v) for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
            and k not in ("epoch", "step", "stage", "lr")}


def _history_best(run: Path) -> dict[str, float]:
    """The best validation of ``metrics.jsonl`` (by SeK, else mIoU): for runs without a kept model yet."""
    best: dict[str, float] = {}
    try:
        lines = (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return best
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if not isinstance(rec, dict):
            continue
        values = _numbers(rec)
        key = "SeK" if "SeK" in values else ("mIoU" if "mIoU" in values else None)
        if key is None:
            continue
        if not best or values[key] > best.get(key, float("-inf")):
            best = values
    return best


def _card(run: Path) -> tuple[Path | None, dict]:
    for candidate in (run / "best" / "card.json", run / "card.json", run / "last" / "card.json"):
        data = _read_json(candidate)
        if isinstance(data, dict):
            return candidate, data
    return None, {}


def _schema_of(card: dict, config: dict, run: Path) -> dict | None:
    schema = card.get("schema")
    if isinstance(schema, dict) and isinstance(schema.get("classes"), list):
        return schema
    for data in (config, card):
        if isinstance(data.get("classes"), list) and data["classes"] and isinstance(data["classes"][0], dict):
            return {"name": data.get("name", run.name), "classes": data["classes"]}
    return None


def read_run(run: Path) -> RunInfo | None:
    """Describe a training run folder, or None if ``run`` holds no checkpoint."""
    run = Path(run)
    if not ((run / "best").is_dir() or (run / "last").is_dir() or (run / "card.json").is_file()):
        return None
    card_path, card = _card(run)
    config = _read_json(run / "config.json")
    config = config if isinstance(config, dict) else {}
    schema = _schema_of(card, config, run)
    classes = [str(c.get("name")) for c in (schema or {}).get("classes", []) if c.get("id", 1) != 0]
    extra = card.get("extra") if isinstance(card.get("extra"), dict) else {}
    kept = extra.get("metrics") if card_path is not None and card_path.parent.name == "best" else None
    scores = {k: float(v) for k, v in (kept or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if not scores:
        scores = _history_best(run)
    ckpt = card_path.parent if card_path is not None else run
    stamp = _dt.datetime.fromtimestamp(ckpt.stat().st_mtime).strftime("%Y-%m-%d %H:%M")
    steps = extra.get("trained_steps") or config.get("steps")
    return RunInfo(run, run.name, stamp, classes, scores, schema, backbone=str(card.get("backbone") or config.get("backbone") or ""),
                   steps=int(steps) if isinstance(steps, (int, float)) else None,
                   kept_step=extra.get("step") if isinstance(extra.get("step"), int) else None, rule=str(extra.get("rule") or ""))


def scan_runs(folder: str | Path) -> list[RunInfo]:
    """Training runs found directly under ``folder``, newest first."""
    root = Path(folder)
    if not root.is_dir():
        return []
    runs = [info for p in root.iterdir() if p.is_dir() for info in [read_run(p)] if info is not None]
    runs.sort(key=lambda r: r.path.stat().st_mtime, reverse=True)
    return runs


def run_folder(model: str | Path) -> Path:
    """The training run folder of a model path (``RUN``, ``RUN/best`` or ``RUN/last``)."""
    model = Path(model)
    return model.parent if model.name in ("best", "last") else model


def model_resolution(model: str | Path, crs=None) -> float | None:
    """The pixel size a model was trained at, in ``crs``'s units (None if unknown).

    From the model card (``extra.pixel_size`` in ``extra.crs``, when the engine records
    them), else from the *before* raster named in the run's ``config.json`` when it still
    exists.
    """
    from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsProject, QgsRasterLayer

    from . import layers as L

    card = _read_json(Path(model) / "card.json")
    if not isinstance(card, dict):
        card = _card(run_folder(model))[1]
    extra = card.get("extra") if isinstance(card.get("extra"), dict) else {}
    size = extra.get("pixel_size")
    if isinstance(size, (int, float)) and not isinstance(size, bool) and size > 0:
        source = QgsCoordinateReferenceSystem(str(extra.get("crs") or ""))
        if crs is None or not source.isValid() or source == crs:
            return float(size)
        wgs84 = QgsCoordinateReferenceSystem("EPSG:4326")
        area = QgsCoordinateTransform(wgs84, source, QgsProject.instance().transformContext()).transformBoundingBox(source.bounds())
        return L.resolution_in_crs(float(size), source, crs, area)
    config = _read_json(run_folder(model) / "config.json")
    before = config.get("before") if isinstance(config, dict) else None
    if not before or not Path(before).is_file():
        return None
    layer = QgsRasterLayer(str(before), "trained on", "gdal")
    native = L.native_resolution(layer) if layer.isValid() else None
    if not native or crs is None:
        return native
    return L.resolution_in_crs(native, layer.crs(), crs, layer.extent())


# -- new label layer ------------------------------------------------------------------
def create_label_layer(path: str | Path, schema: ClassSchema, crs: QgsCoordinateReferenceSystem,
                       name: str = "labels", project: QgsProject | None = None) -> QgsVectorLayer:
    """Create a GeoPackage polygon layer for change labels and open it for editing.

    The layer has one text field ``class`` (a value map of the schema's class names),
    is styled by class colour, added to ``project`` and put in editing mode.

    Args:
        path: GeoPackage to create (``.gpkg`` added when missing; an existing file is
            replaced only by a layer of the same name).
        schema: classes offered in the value map.
        crs: the layer's CRS (that of the *before* raster, so labels line up).
        name: layer name inside the GeoPackage and in the project.
        project: where to add the layer (default: the current project).

    Raises:
        InputError: the GeoPackage cannot be written.
    """
    path = Path(path)
    if path.suffix.lower() != ".gpkg":
        path = path.with_suffix(".gpkg")
    fields = QgsFields()
    fields.append(QgsField("class", STRING, "string", 80))
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.layerName = name
    options.fileEncoding = "UTF-8"
    if path.exists():
        options.actionOnExistingFile = QgsVectorFileWriter.ActionOnExistingFile.CreateOrOverwriteLayer
    context = QgsProject.instance().transformContext()
    writer = QgsVectorFileWriter.create(str(path), fields, QgsWkbTypes.Type.MultiPolygon, crs, context, options)
    error = writer.hasError()
    message = writer.errorMessage()
    del writer  # closes the file
    if error != QgsVectorFileWriter.WriterError.NoError:
        raise InputError(tr("cannot create the label layer {path}: {message}; choose a folder you can write to").format(path=path, message=message))
    layer = QgsVectorLayer(f"{path}|layername={name}", name, "ogr")
    if not layer.isValid():
        raise InputError(tr("the label layer {path} was written but QGIS cannot open it").format(path=path))
    style_label_layer(layer, schema, "class")
    (project or QgsProject.instance()).addMapLayer(layer)
    layer.startEditing()
    return layer
