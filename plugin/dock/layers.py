"""Section 1 of the dock: the layers of the analysis.

The two dates (any raster layer: a file, WMS/XYZ tiles, a virtual raster), the label
polygons and their class field, the area of interest (its selected features only, on
request) and the resolution at which layers without a pixel size of their own (web
tiles, services) are exported. The section emits no job: the run sections read it.
"""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsMapLayerProxyModel, QgsRasterLayer, QgsVectorLayer
from qgis.gui import QgsFieldComboBox, QgsMapLayerComboBox
from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtGui import QDoubleValidator
from qgis.PyQt.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QLineEdit, QPushButton

from .. import layers as L
from ..dock_widgets import model_resolution
from ..i18n import tr
from .common import Section

#: Signals of a vector layer after which the buttons are checked again.
_EDIT_SIGNALS = ("featureAdded", "featureDeleted", "afterCommitChanges", "afterRollBack", "dataChanged", "selectionChanged")


#: Names of a label layer's class field, most likely first (compared case-insensitively).
CLASS_FIELDS = ("class", "class_name", "classname", "class_id", "label", "type")


def class_field_of(layer) -> str:
    """The field of ``layer`` named like a class field, or ""."""
    if layer is None:
        return ""
    names = {f.name().lower(): f.name() for f in layer.fields()}
    return next((names[n] for n in CLASS_FIELDS if n in names), "")


class LayersSection(Section):
    """Before, after, labels (+ *New label layer…*), class field, AOI, resolution.

    Signals:
        labelsChanged(object): the label layer (or its class field) changed; the dock
            styles it with the classes.
    """

    labelsChanged = pyqtSignal(object)

    def __init__(self, parent=None):
        super().__init__(tr("1. Layers"), "MaskTalkLayers", parent)
        self.before_combo = self._raster_combo(tr("Image before the change (any raster layer: file, WMS/XYZ, virtual)"))
        self.after_combo = self._raster_combo(tr("Image after the change; it is aligned on the before image's grid"))
        self.label_combo = QgsMapLayerComboBox()
        self.label_combo.setFilters(QgsMapLayerProxyModel.Filter.PolygonLayer)
        self.label_combo.setAllowEmptyLayer(True)
        self.label_combo.setToolTip(tr("Polygons of change you drew, with a class attribute"))
        self.class_field_combo = QgsFieldComboBox()
        self.class_field_combo.setToolTip(tr("Attribute holding the class (name or id) of each label polygon"))
        self.new_label_button = QPushButton(tr("New label layer…"))
        self.new_label_button.setObjectName("MaskTalkNewLabelLayer")
        self.aoi_combo = QgsMapLayerComboBox()
        self.aoi_combo.setFilters(QgsMapLayerProxyModel.Filter.PolygonLayer)
        self.aoi_combo.setAllowEmptyLayer(True)
        self.aoi_combo.setToolTip(tr("Optional polygons: in Train the labelled area (unlabelled pixels inside are 'no change'), "
                                     "in Detect (extent 'Area of interest') the only place changes are looked for"))
        self.aoi_selected_check = QCheckBox(tr("selected features only"))
        self.aoi_selected_check.setObjectName("MaskTalkAoiSelected")
        self.aoi_selected_check.setToolTip(tr("Use only the AOI layer's selected polygons"))
        self.resolution_edit = QLineEdit()
        self.resolution_edit.setObjectName("MaskTalkResolution")
        validator = QDoubleValidator(0.0, 1e9, 10, self.resolution_edit)
        validator.setNotation(QDoubleValidator.Notation.StandardNotation)
        self.resolution_edit.setValidator(validator)
        self.resolution_note = QLabel("")
        self.resolution_note.setObjectName("MaskTalkResolutionNote")
        self.resolution_note.setWordWrap(True)
        label_row = QHBoxLayout()
        label_row.addWidget(self.label_combo, 1)
        label_row.addWidget(self.new_label_button)
        aoi_row = QHBoxLayout()
        aoi_row.addWidget(self.aoi_combo, 1)
        aoi_row.addWidget(self.aoi_selected_check)
        self.form.addRow(tr("Before"), self.before_combo)
        self.form.addRow(tr("After"), self.after_combo)
        self.form.addRow(tr("Labels"), label_row)
        self.form.addRow(tr("Class field"), self.class_field_combo)
        self.form.addRow(tr("Area of interest"), aoi_row)
        self.form.addRow(tr("Resolution"), self.resolution_edit)
        self.form.addRow("", self.resolution_note)
        #: The model whose training pixel size is the resolution's default for two web layers.
        self.model = ""
        self._watched: dict[str, object] = {}
        self._model_resolutions: dict[tuple, float | None] = {}
        self.label_combo.layerChanged.connect(self._on_labels_chosen)
        self.aoi_combo.layerChanged.connect(lambda layer: self._watch("aoi", layer))
        for combo in (self.before_combo, self.after_combo, self.label_combo, self.aoi_combo):
            combo.layerChanged.connect(self._on_changed)
        self.class_field_combo.fieldChanged.connect(lambda *_: self.labelsChanged.emit(self.labels()))
        self.class_field_combo.fieldChanged.connect(self._on_changed)
        self.aoi_selected_check.toggled.connect(self._on_changed)
        self.resolution_edit.textChanged.connect(self._on_changed)
        for combo in (self.before_combo, self.after_combo, self.label_combo, self.aoi_combo):
            combo.setLayer(None)  # nothing is picked for the user: an AOI chosen by accident would change the work
        self._show_resolution()

    @staticmethod
    def _raster_combo(tip: str) -> QgsMapLayerComboBox:
        combo = QgsMapLayerComboBox()
        combo.setFilters(QgsMapLayerProxyModel.Filter.RasterLayer)
        combo.setAllowEmptyLayer(True)
        combo.setToolTip(tip)
        return combo

    # -- values ------------------------------------------------------------------------------
    def before(self) -> QgsRasterLayer | None:
        return self.before_combo.currentLayer()

    def after(self) -> QgsRasterLayer | None:
        return self.after_combo.currentLayer()

    def labels(self) -> QgsVectorLayer | None:
        return self.label_combo.currentLayer()

    def class_field(self) -> str:
        return self.class_field_combo.currentField()

    def aoi(self) -> QgsVectorLayer | None:
        return self.aoi_combo.currentLayer()

    def aoi_selected_only(self) -> bool:
        return self.aoi_selected_check.isChecked() and self.aoi() is not None

    def resolution(self) -> float | None:
        """The resolution the user typed (pixel size in the before layer's CRS units), or None."""
        text = self.resolution_edit.text().strip().replace(",", ".")
        try:
            value = float(text)
        except ValueError:
            return None
        return value if value > 0 else None

    def automatic_resolution(self, model: str | None = None) -> tuple[float | None, str]:
        """The default pixel size (in the before layer's CRS units) and where it comes from.

        The before image's own pixel size when it has one (the engine works on its grid);
        else the after image's, expressed in the before layer's CRS; else, for two web
        layers, the pixel size ``model`` was trained at; else none (the user gives one).
        """
        before, after = self.before(), self.after()
        if before is None:
            return None, ""
        native = L.native_resolution(before)
        if native:
            return native, tr("the before image's pixel size")
        if after is not None and L.native_resolution(after):
            value = L.resolution_in_crs(L.native_resolution(after), after.crs(), before.crs(), after.extent())
            if value:
                return value, tr("the after image's pixel size")
        model = self.model if model is None else model
        if model:
            key = (model, before.crs().toWkt())
            if key not in self._model_resolutions:  # reads the run's files: once per model
                self._model_resolutions[key] = model_resolution(model, before.crs())
            value = self._model_resolutions[key]
            if value:
                return value, tr("the pixel size model {name} was trained at").format(name=Path(model).name)
        return None, ""

    def effective_resolution(self, model: str | None = None) -> float | None:
        """The resolution a job gets: the before image's own, else the user's, else the automatic one."""
        before = self.before()
        if before is not None and L.native_resolution(before):
            return L.native_resolution(before)
        return self.resolution() or self.automatic_resolution(model)[0]

    def missing(self, kind: str) -> list[str]:
        """What this section lacks before ``kind`` (caption/train/detect) can run, in words."""
        out: list[str] = []
        before, after, labels = self.before(), self.after(), self.labels()
        if before is None:
            out.append(tr("a before raster"))
        if kind in ("train", "detect"):
            if after is None:
                out.append(tr("an after raster"))
            elif before is not None and after.id() == before.id():
                out.append(tr("an after raster other than the before raster"))
        if kind in ("caption", "train"):
            if labels is None:
                out.append(tr("a label layer (or press New label layer…)"))
            elif not self.class_field():
                out.append(tr("the class field of the label layer"))
            elif labels.featureCount() == 0:
                out.append(tr("at least one label polygon"))
        if kind == "train" and self.aoi_selected_only() and self.aoi().selectedFeatureCount() == 0:
            out.append(tr("selected AOI features (or untick 'selected features only')"))
        if before is not None and not self.effective_resolution(self.model if kind == "detect" else ""):
            out.append(tr("a resolution (neither image has a pixel size of its own)"))
        return out

    def _on_labels_chosen(self, layer) -> None:
        """A label layer was picked: its class field is the one named like a class, when there is one."""
        self.class_field_combo.blockSignals(True)
        try:
            self.class_field_combo.setLayer(layer)
            field = class_field_of(layer)
            if field:
                self.class_field_combo.setField(field)
        finally:
            self.class_field_combo.blockSignals(False)
        self._watch("labels", layer)
        self.labelsChanged.emit(layer)

    # -- the label layer and AOI are followed ----------------------------------------------------
    def _watch(self, role: str, layer) -> None:
        old = self._watched.get(role)
        if old is not None:
            for name in _EDIT_SIGNALS:
                try:
                    getattr(old, name).disconnect(self._on_changed)
                except (TypeError, RuntimeError, AttributeError):
                    pass
        self._watched[role] = layer
        if layer is not None:
            for name in _EDIT_SIGNALS:
                getattr(layer, name).connect(self._on_changed)

    def unwatch(self) -> None:
        for role in list(self._watched):
            self._watch(role, None)

    def _on_changed(self, *_):
        self._show_resolution()
        self.changed.emit()

    def set_model(self, model: str) -> None:
        """The Detect model (its training pixel size is the default for two web layers)."""
        self.model = model or ""
        self._show_resolution()

    def _show_resolution(self) -> None:
        before = self.before()
        native = L.native_resolution(before) if before is not None else None
        self.resolution_edit.setEnabled(before is not None and not native)
        value, source = self.automatic_resolution()
        crs = before.crs() if before is not None else None
        if native:
            self.resolution_edit.setPlaceholderText(L.resolution_text(native, crs))
            note = tr("{value} ({source}): the engine works on its grid").format(value=L.resolution_text(native, crs), source=source)
        elif value:
            self.resolution_edit.setPlaceholderText(tr("automatic: {value}").format(value=L.resolution_text(value, crs)))
            note = tr("empty = {value}, {source}; web layers are exported at this pixel size").format(
                value=L.resolution_text(value, crs), source=source)
        elif before is not None:
            self.resolution_edit.setPlaceholderText(tr("pixel size in {crs} units").format(crs=crs.authid() or tr("layer")))
            note = tr("neither image has a pixel size of its own: give the pixel size to export them at")
        else:
            self.resolution_edit.setPlaceholderText("")
            note = ""
        self.resolution_edit.setToolTip(tr("Pixel size (in the before layer's CRS units) at which web and service layers "
                                           "are exported for the engine"))
        self.resolution_note.setText(note)
