"""Section 5 of the dock: detect changes with a trained model (``engine predict``).

Outputs go to the detection output folder (default: ``masktalk/`` beside the project),
one GeoTIFF (classes + confidence) and one GeoPackage (``changes``, ``captions``) per
run, added as a group: the change classes, the confidence band, the change polygons and
the chip captions. The engine's threshold and minimum area are in the form.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from qgis.core import QgsReferencedRectangle
from qgis.gui import QgsFileWidget
from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QMessageBox, QPushButton, QSizePolicy

from .. import layers as L
from ..dock_widgets import run_folder
from ..i18n import tr
from ..settings import DetectJob
from .common import RunControls, RunSection
from .options import OptionsForm

MAIN = ("threshold", "min_area")
#: What the dock fills in itself.
EXCLUDED = ("before", "after", "model", "out", "vectors", "overwrite", "extent", "aoi", "aoi_layer")


def extents() -> tuple:
    return (("layer", tr("Whole before layer")), ("canvas", tr("Map canvas")),
            ("aoi", tr("Area of interest (AOI polygons)")))


class DetectSection(RunSection):
    """Model, extent, output folder, threshold and minimum area, *Detect changes*.

    Signals:
        modelChanged(str): the model chosen (its training pixel size may be the resolution).
    """

    kind = "detect"
    modelChanged = pyqtSignal(str)

    def __init__(self, layers, classes, iface, default_folder=lambda: "", parent=None):
        super().__init__(tr("5. Detect"), "MaskTalkDetect", parent)
        self.tip = tr("Detect changes between before and after with the chosen model")
        self.layers_section = layers
        self.classes = classes
        self.iface = iface
        self.default_folder = default_folder
        self.model_combo = QComboBox()
        self.model_combo.setObjectName("MaskTalkModel")
        self.model_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.model_combo.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.browse_model_button = QPushButton("…")
        self.browse_model_button.setToolTip(tr("Choose a model folder (a training run or a checkpoint folder)"))
        self.extent_combo = QComboBox()
        self.extent_combo.setObjectName("MaskTalkExtent")
        for key, text in extents():
            self.extent_combo.addItem(text, key)
        self.extent_combo.setToolTip(tr("Where to detect; 'Area of interest' passes the AOI polygons as a mask: nothing is "
                                        "detected outside them"))
        self.out_widget = QgsFileWidget()
        self.out_widget.setObjectName("MaskTalkDetectFolder")
        self.out_widget.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
        self.out_widget.setToolTip(tr("Folder for the detections (a GeoTIFF and a GeoPackage per run); "
                                      "empty = 'masktalk' beside the project"))
        self.options = OptionsForm("predict", MAIN, exclude=EXCLUDED,
                                   labels={"threshold": tr("Threshold"), "min_area": tr("Minimum area (m²)")}, parent=self)
        self.run = RunControls(tr("Detect changes"), "MaskTalkDetectButton")
        row = QHBoxLayout()
        row.addWidget(self.model_combo, 1)
        row.addWidget(self.browse_model_button)
        self.form.addRow(tr("Model"), row)
        self.form.addRow(tr("Extent"), self.extent_combo)
        self.form.addRow(tr("Output folder"), self.out_widget)
        self.form.addRow(self.options)
        self.form.addRow(self.run)
        self.browse_model_button.clicked.connect(self._browse_model)
        self.model_combo.currentIndexChanged.connect(self._on_model_changed)
        self.extent_combo.currentIndexChanged.connect(lambda *_: self.changed.emit())
        self.out_widget.fileChanged.connect(lambda *_: self.changed.emit())
        self.options.changed.connect(self.changed.emit)
        self.show_default_folder()
        self.connect_run()

    # -- model -------------------------------------------------------------------------------
    def selected_model(self) -> str:
        return str(self.model_combo.currentData() or "")

    def set_runs(self, runs: list) -> None:
        """The trained models of the runs folder (newest first); the choice is kept."""
        current = self.selected_model()
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        self.model_combo.addItem("", "")
        for info in runs:
            self.model_combo.addItem(f"{info.name} ({info.date})", str(info.path))
        if current and all(str(i.path) != current for i in runs):
            self.model_combo.addItem(Path(current).name, current)
        i = self.model_combo.findData(current) if current else -1
        if i < 0 and runs:
            i = 1
        self.model_combo.setCurrentIndex(max(i, 0))
        self.model_combo.blockSignals(False)
        self._on_model_changed()

    def set_model(self, path: str) -> None:
        i = self.model_combo.findData(str(path))
        if i < 0:
            self.model_combo.addItem(Path(path).name, str(path))
            i = self.model_combo.count() - 1
        self.model_combo.setCurrentIndex(i)
        self._on_model_changed()

    def _on_model_changed(self, *_):
        self.modelChanged.emit(self.selected_model())
        self.changed.emit()

    def _browse_model(self):
        path = QFileDialog.getExistingDirectory(self, tr("Model folder"), self.selected_model() or str(Path.home()))
        if path:
            self.set_model(path)

    # -- output folder -----------------------------------------------------------------------
    def show_default_folder(self) -> None:
        self.out_widget.lineEdit().setPlaceholderText(str(self.default_folder()))

    def output_folder(self) -> Path:
        """The folder chosen, else the default (beside the project)."""
        text = self.out_widget.filePath().strip()
        return Path(text) if text else Path(self.default_folder())

    # -- the job -----------------------------------------------------------------------------
    def missing(self) -> list[str]:
        out = self.layers_section.missing("detect")
        if not self.selected_model():
            out.append(tr("a trained model"))
        if self.extent_combo.currentData() == "aoi":
            aoi = self.layers_section.aoi()
            if aoi is None:
                out.append(tr("an AOI layer (or choose another extent)"))
            elif self.layers_section.aoi_selected_only() and aoi.selectedFeatureCount() == 0:
                out.append(tr("selected AOI features (or untick 'selected features only')"))
        return out + self.options.problems()

    def detect_extent(self) -> QgsReferencedRectangle | None:
        """The extent chosen: None (whole before layer), the canvas, or the AOI layer's
        (selected) features' bounding box."""
        choice = self.extent_combo.currentData()
        if choice == "canvas":
            canvas = self.iface.mapCanvas()
            return QgsReferencedRectangle(canvas.extent(), canvas.mapSettings().destinationCrs())
        if choice == "aoi":
            aoi = self.layers_section.aoi()
            if aoi is None:
                return None
            return L.features_extent(aoi, self.layers_section.aoi_selected_only())
        return None

    def job(self) -> DetectJob | None:
        """The section as a job, with ``overwrite`` only once the user agreed to replace
        existing outputs; None when the user declines (nothing runs)."""
        job = self.detect_job()
        existing = [p for p in (job.out_raster, job.out_vectors) if p and Path(p).exists()]
        if not existing:
            return job
        names = "\n".join(existing)
        answer = QMessageBox.question(
            self, tr("MaskTalk: replace the detection?"),
            tr("These outputs exist already:\n{names}\n\nReplace them? They are replaced only when the new "
               "detection has finished.").format(names=names),
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
        if answer != QMessageBox.StandardButton.Yes:
            self.run.status.setText(tr("not started: the outputs exist"))
            return None
        job.overwrite = True
        return job

    def detect_job(self) -> DetectJob:
        """The job, outputs named after the model and the time (raises LayerProblem when the
        output folder cannot be written)."""
        layers = self.layers_section
        model = Path(self.selected_model())
        run = run_folder(model)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out = L.check_writable_folder(self.output_folder(), tr("detections"))
        aoi = layers.aoi() if self.extent_combo.currentData() == "aoi" else None
        return DetectJob(
            before=layers.before(),
            after=layers.after(),
            model=str(model),
            out_raster=str(out / f"changes-{run.name}-{stamp}.tif"),
            out_vectors=str(out / f"changes-{run.name}-{stamp}.gpkg"),
            extent=self.detect_extent(),
            aoi=aoi,
            aoi_selected_only=layers.aoi_selected_only() if aoi is not None else False,
            resolution=layers.effective_resolution(str(model)),
            options=self.options.values(),
            add_layers=True,
            group_name=f"MaskTalk {run.name} {stamp}",
            **self.classes.schema_kwargs(),
        )

    def on_result(self, result: dict) -> None:
        pixels = result.get("pixels_changed")
        self.run.status.setText(tr("{n} changed pixel(s)").format(n=pixels) if pixels is not None else tr("done"))
        text = tr("changes detected") + (": " + tr("{n} changed pixel(s)").format(n=pixels) if pixels is not None else "")
        self.notify.emit("success", text, "")
