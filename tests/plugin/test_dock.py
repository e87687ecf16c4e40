"""The MaskTalk dock driven like a user in offscreen QGIS, the engine in its own Python.

What a new user touches and nothing else: the layers (before, after), the label layer,
*Train*, *Detect*. One training at the engine's defaults runs per session
(:func:`default_run`) and the detection tests reuse it. Captions are checked against the
rules of the S2M paper (section 3.1, Table 1), re-derived here from the drawn geometry
rather than taken from the engine.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
import time
import types
from pathlib import Path

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

# Table 1 of the paper, with {q} quantity, {t} type, {c} category, {d} direction.
PAPER_TEMPLATES = (
    "The scene shows {q} {t} {c} in the {d}.",
    "Observing {q} {t} {c} towards the {d}.",
    "{Q} {t} {c} located in the {d}.",
    "In the {d}, {q} {t} {c} (is|are) visible.",
    "There (is|are) {q} {t} {c} in the {d} region.",
)
DETECTION_LAYERS = {"change classes", "confidence", "changes", "captions"}


def paper_quantity(pixels: int, h: int, w: int) -> str:
    """Section 3.1.3, eq. 3: thresholds 800/4000/8000 px of the change mask, whatever the chip size."""
    for word, limit in (("a single", 800), ("a few", 4000), ("several", 8000)):
        if pixels < limit:
            return word
    return "multiple"


def paper_direction(cy: float, cx: float, h: int, w: int) -> str:
    """Section 3.1.2: 3x3 grid over the chip, vertical word first."""
    v = "north" if cy < h / 3 else ("center" if cy < 2 * h / 3 else "south")
    hz = "west" if cx < w / 3 else ("center" if cx < 2 * w / 3 else "east")
    if v == "center" and hz == "center":
        return "center"
    if v == "center":
        return hz
    if hz == "center":
        return v
    return v + hz


def sentence_pattern(q: str, t: str, c: str, d: str) -> re.Pattern:
    if d == "center":
        return re.compile(re.escape(f"The scene shows {q} {t} {c} in the center."))
    alternatives = []
    for tpl in PAPER_TEMPLATES:
        text = re.escape(tpl).replace(r"\(is\|are\)", "(is|are)")
        for key, value in (("Q", q[:1].upper() + q[1:]), ("q", q), ("t", t), ("c", c), ("d", d)):
            text = text.replace(re.escape("{" + key + "}"), re.escape(value))
        alternatives.append(text)
    return re.compile("|".join(f"(?:{a})" for a in alternatives))


@pytest.fixture()
def dockmod():
    return importlib.import_module("masktalk.plugin.dock")


@pytest.fixture()
def project(qgis_iface):
    from qgis.core import QgsProject

    project = QgsProject.instance()
    project.clear()
    yield project
    project.clear()


def clear_settings():
    from qgis.core import QgsSettings

    QgsSettings().remove("MaskTalk")


@pytest.fixture()
def isolated_settings():
    """QgsSettings of the dock start empty (no runs folder, options ... from other tests): a new user."""
    clear_settings()
    yield
    clear_settings()


def make_dock(qgis_iface):
    from masktalk.plugin.dock import MaskTalkDock

    return MaskTalkDock(qgis_iface, None)  # top level: show() really shows it offscreen


def close_dock(dock, wait) -> None:
    for task in list(dock.tasks.values()):
        task.cancel()
    wait(lambda: not any(k in dock.tasks for k in ("caption", "train", "detect")), 60)
    dock.shutdown()
    dock.deleteLater()


def pump_until(condition, timeout_s: float) -> bool:
    """Run the event loop until ``condition()`` (module-scoped fixtures cannot use qtbot)."""
    from qgis.PyQt.QtCore import QCoreApplication, QEventLoop

    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if condition():
            return True
        QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 100)
        time.sleep(0.02)
    return condition()


@pytest.fixture()
def dock(qgis_iface, project, isolated_settings, engine_python, qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # a project never saved writes beside nothing of the user's
    dock = make_dock(qgis_iface)
    yield dock
    close_dock(dock, pump_until)


def add_scene(project, demo_scene, labels: bool = False):
    from qgis.core import QgsRasterLayer, QgsVectorLayer

    before = QgsRasterLayer(str(demo_scene.before), "before")
    after = QgsRasterLayer(str(demo_scene.after), "after")
    aoi = QgsVectorLayer(str(demo_scene.aoi), "aoi", "ogr")
    layers = [before, after, aoi]
    if labels:
        layers.append(QgsVectorLayer(f"{demo_scene.labels}|layername=labels", "labels", "ogr"))
    assert all(layer.isValid() for layer in layers)
    project.addMapLayers(layers)
    return layers


@pytest.fixture()
def scene_layers(demo_scene, project):
    return add_scene(project, demo_scene)


def pixel_rect(layer, r0: int, c0: int, r1: int, c1: int):
    """Map rectangle of pixel rows r0..r1, columns c0..c1 of a north-up raster layer."""
    from qgis.core import QgsRectangle

    ext = layer.extent()
    res = ext.width() / layer.width()
    return QgsRectangle(ext.xMinimum() + c0 * res, ext.yMaximum() - r1 * res, ext.xMinimum() + c1 * res, ext.yMaximum() - r0 * res)


def add_polygon(layer, rect, cls: str) -> None:
    from qgis.core import QgsFeature, QgsGeometry

    f = QgsFeature(layer.fields())
    f.setGeometry(QgsGeometry.fromRect(rect))
    f["class"] = cls
    assert layer.addFeature(f)


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def wait_finished(qtbot, dock, kind: str, timeout_ms: int) -> bool:
    with qtbot.waitSignal(dock.taskFinished, timeout=timeout_ms, check_params_cb=lambda k, ok: k == kind) as blocker:
        pass
    return blocker.args[1]


def renderer_colours(layer) -> dict:
    return {c.value(): c.symbol().symbolLayer(0).strokeColor().name() for c in layer.renderer().categories()}


def value_map(layer, field: str = "class") -> list:
    return [next(iter(d.values())) for d in layer.editorWidgetSetup(layer.fields().indexOf(field)).config()["map"]]


# ------------------------------------------------------------------------ no engine needed
def test_buttons_say_what_is_missing(dock, scene_layers, qtbot, tmp_path):
    before, after, _ = scene_layers
    L = dock.layers
    assert not dock.captions.run.button.isEnabled()
    assert "before raster" in dock.captions.run.button.toolTip()
    assert "label layer" in dock.train.run.button.toolTip()
    assert "trained model" in dock.detect.run.button.toolTip()
    L.before_combo.setLayer(before)
    L.after_combo.setLayer(before)
    assert "other than the before raster" in dock.train.run.button.toolTip()
    L.after_combo.setLayer(after)
    assert "before raster" not in dock.train.run.button.toolTip()
    dock.ask_label_path = lambda default: str(tmp_path / "labels.gpkg")
    labels = dock.new_label_layer()
    tip = dock.captions.run.button.toolTip()
    assert not dock.captions.run.button.isEnabled() and "at least one label polygon" in tip
    add_polygon(labels, pixel_rect(before, 10, 10, 40, 40), "building destroyed")
    assert dock.captions.run.button.isEnabled(), dock.captions.run.button.toolTip()  # the layer's edits are followed
    assert dock.train.run.button.isEnabled(), dock.train.run.button.toolTip()  # the defaults need nothing else
    # an invalid class table blocks the work and says why
    model = dock.classes.class_model
    model.setData(model.index(1, 0), "Building Destroyed")  # same name as row 0, other case
    assert not dock.captions.run.button.isEnabled()
    assert "used by ids" in dock.captions.run.button.toolTip()
    assert dock.classes.schema_status.text() and dock.classes.preset_combo.currentData() == "custom"
    # selected AOI features only, with none selected
    dock.layers.aoi_combo.setLayer(scene_layers[2])
    dock.layers.aoi_selected_check.setChecked(True)
    assert "selected AOI features" in dock.train.run.button.toolTip()


def test_new_label_layer_is_a_styled_geopackage_in_editing_mode(dock, scene_layers, tmp_path, project):
    from qgis.core import QgsCategorizedSymbolRenderer

    before, _, _ = scene_layers
    dock.layers.before_combo.setLayer(before)
    dock.ask_label_path = lambda default: str(tmp_path / "my labels")  # extension added
    layer = dock.new_label_layer()
    assert layer is not None and project.mapLayer(layer.id()) is layer
    assert (tmp_path / "my labels.gpkg").is_file()
    assert layer.providerType() == "ogr" and layer.isEditable()
    assert layer.crs() == before.crs()
    assert "class" in layer.fields().names()
    schema = dock.classes.schema()
    assert layer.editorWidgetSetup(layer.fields().indexOf("class")).type() == "ValueMap"
    assert value_map(layer) == [c.name for c in schema.change_classes]
    renderer = layer.renderer()
    assert isinstance(renderer, QgsCategorizedSymbolRenderer) and renderer.classAttribute() == "class"
    assert renderer_colours(layer) == {c.name: c.color for c in schema.change_classes}
    assert dock.layers.labels() is layer and dock.layers.class_field() == "class"
    # cancelling the file dialog creates nothing
    dock.ask_label_path = lambda default: ""
    assert dock.new_label_layer() is None


def test_the_label_layer_follows_class_edits(dock, scene_layers, tmp_path, demo_scene, project):
    """Class form (value map) and colours of the label layer follow the class table; a
    layer the user styled otherwise keeps its style but gets the new class form."""
    from qgis.core import QgsSingleSymbolRenderer, QgsSymbol, QgsVectorLayer, QgsWkbTypes

    dock.ask_label_path = lambda default: str(tmp_path / "labels.gpkg")
    layer = dock.new_label_layer()
    model = dock.classes.class_model
    model.setData(model.index(0, 0), "roof collapsed")
    model.setData(model.index(0, 3), "#00ff00")
    row = model.add_class()
    model.setData(model.index(row, 0), "crater")
    names = [c.name for c in dock.classes.schema().change_classes]
    assert names[0] == "roof collapsed" and names[-1] == "crater"
    assert value_map(layer) == names
    assert renderer_colours(layer)["roof collapsed"] == "#00ff00" and "crater" in renderer_colours(layer)
    dock.classes.preset_combo.setCurrentIndex(dock.classes.preset_combo.findData("building"))
    building = [c.name for c in dock.classes.schema().change_classes]
    assert value_map(layer) == building and set(renderer_colours(layer)) == set(building)
    # a label layer picked from the project is styled when its style is QGIS's default ...
    picked = QgsVectorLayer(f"{demo_scene.labels}|layername=labels", "demo labels", "ogr")
    project.addMapLayer(picked)
    assert isinstance(picked.renderer(), QgsSingleSymbolRenderer)
    dock.layers.label_combo.setLayer(picked)
    dock.layers.class_field_combo.setField("class")
    assert value_map(picked) == building and set(renderer_colours(picked)) == set(building)
    # ... and a style of the user's own is kept, the class form still follows
    mine = QgsSingleSymbolRenderer(QgsSymbol.defaultSymbol(QgsWkbTypes.GeometryType.PolygonGeometry))
    picked.setRenderer(mine)
    dock.classes.preset_combo.setCurrentIndex(dock.classes.preset_combo.findData("gaza"))
    assert picked.renderer() is mine
    assert value_map(picked) == [c.name for c in dock.classes.schema().change_classes]


def test_classes_presets_and_json_round_trip(dock, tmp_path, monkeypatch):
    from qgis.PyQt.QtCore import Qt
    from qgis.PyQt.QtGui import QColor

    classes_mod = importlib.import_module("masktalk.plugin.dock.classes")
    schema_mod = importlib.import_module("masktalk.engine.schema")
    C = dock.classes
    C.preset_combo.setCurrentIndex(C.preset_combo.findData("xbd"))
    assert C.schema().to_dict()["classes"] == schema_mod.load_preset("xbd").to_dict()["classes"]
    assert C.schema_kwargs() == {"preset": "xbd", "schema_path": ""}
    row = C.class_model.add_class()
    model = C.class_model
    for col, value in enumerate(("debris field", "debris fields", "appeared", "#123456")):
        assert model.setData(model.index(row, col), value)
    assert not model.setData(model.index(row, 3), "not a colour")
    # colours are picked in QGIS's colour dialog on a double-click, not typed
    assert not model.flags(model.index(0, 3)) & Qt.ItemFlag.ItemIsEditable
    monkeypatch.setattr(classes_mod.QgsColorDialog, "getColor", staticmethod(lambda *a, **k: QColor("#abcdef")))
    C.class_table.doubleClicked.emit(model.index(0, 3))
    assert C.schema().change_classes[0].color == "#abcdef"
    assert C.preset_combo.currentData() == "custom"
    path = tmp_path / "classes.json"
    C.save_schema_file(path)
    saved = json.loads(path.read_text())
    assert saved["classes"][-1] == {"id": row + 1, "name": "debris field", "category": "debris fields", "type": "appeared", "color": "#123456"}
    kwargs = C.schema_kwargs()  # an edited table goes to the engine as a schema file
    assert kwargs["preset"] == "" and schema_mod.load_schema(kwargs["schema_path"]).to_dict() == C.schema().to_dict()
    C.preset_combo.setCurrentIndex(C.preset_combo.findData("building"))
    assert [c.name for c in C.schema().change_classes] == [c.name for c in schema_mod.load_preset("building").change_classes]
    C.load_schema_file(path)
    assert C.schema().change_classes[-1].name == "debris field"
    bad = tmp_path / "bad.json"
    bad.write_text('{"classes": [{"id": 3, "name": "x", "category": "x", "type": "y", "color": "#000000"}]}')
    C.load_schema_file(bad)  # refused with a message, table unchanged
    assert C.schema().change_classes[-1].name == "debris field"


def test_option_forms_are_the_engines_own(dock):
    """Every widget of Train and Detect shows the engine's default, choices, range and help;
    at the defaults no option goes to the engine."""
    from qgis.PyQt.QtWidgets import QComboBox, QDoubleSpinBox, QSpinBox

    options = dock.engine_options
    for section, command in ((dock.train, "train"), (dock.detect, "predict"), (dock.captions, "caption")):
        form = section.options
        assert form.widgets, command
        for dest, item in form.widgets.items():
            o = options.option(command, dest)
            assert item.value() == o.default or (o.default is None and item.value() is None), (command, dest)
            widget = item.widget
            if o.help and widget.isEnabled():
                assert o.help in widget.toolTip(), (command, dest)
            if o.choices:
                assert isinstance(widget, QComboBox)
                assert [widget.itemData(i) for i in range(widget.count()) if widget.itemData(i) is not None] == list(o.choices)
            if isinstance(widget, (QSpinBox, QDoubleSpinBox)) and o.maximum is not None:
                assert widget.maximum() == pytest.approx(o.maximum), (command, dest)
        assert form.values() == {}, command
    # the schedule is counted in optimizer steps, as the engine counts it; no epoch anywhere
    train = dock.train.options
    assert "steps" in train.widgets and not {"stage1_epochs", "stage2_epochs"} & set(train.widgets)
    assert train.widget("steps").text() == train.widget("steps").specialValueText()  # automatic
    assert "threshold" in dock.detect.options.widgets and "min_area" in dock.detect.options.widgets


def test_a_combination_the_engine_refuses_is_disabled_with_its_reason(dock, scene_layers):
    train = dock.train.options
    rules = {r.option: r for r in dock.engine_options.rules("train") if r.effect == "default_only"}
    lora = train.widget("lora_rank")
    default_backbone = train.value("backbone")  # automatic: EfficientNet-Lite0 without DINOv3 weights
    assert default_backbone is None
    assert not lora.isEnabled() and "LoRA targets attention projections" in lora.toolTip()
    assert rules["lora_rank"].why == lora.toolTip()
    assert train.set_value("backbone", "dinov3_vits16")
    assert lora.isEnabled()
    assert train.set_value("lora_rank", 8)
    assert train.values() == {"backbone": "dinov3_vits16", "lora_rank": 8}
    if not dock.engine_options.environment.get("weights_found", {}).get("dinov3_vits16"):
        assert any("needs weights" in p for p in train.problems())  # the engine's own REQUIRED rule
    train.set_value("backbone", "efficientnet_lite0")
    assert not lora.isEnabled() and train.value("lora_rank") == 0  # back to the default, nothing refused goes out
    assert train.values() == {"backbone": "efficientnet_lite0"}
    job = dock.train.job() if not dock.train.missing() else None
    assert job is None or job.options == {"backbone": "efficientnet_lite0"}


def test_choices_are_kept_in_the_project_and_the_user_settings(dock, scene_layers, tmp_path, project, qgis_iface):
    before, after, aoi = scene_layers
    L = dock.layers
    L.before_combo.setLayer(before)
    L.after_combo.setLayer(after)
    L.aoi_combo.setLayer(aoi)
    L.aoi_selected_check.setChecked(True)
    dock.detect.extent_combo.setCurrentIndex(dock.detect.extent_combo.findData("aoi"))
    dock.detect.out_widget.setFilePath(str(tmp_path / "detections"))
    model = dock.classes.class_model
    model.setData(model.index(0, 3), "#00ff00")  # an edited class colour
    dock.train.options.set_value("steps", 700)
    dock.detect.options.set_value("threshold", 0.7)
    assert project.isDirty()
    path = tmp_path / "analysis.qgz"
    assert project.write(str(path))
    # another project, then the saved one again: the dock follows the project
    project.clear()
    assert L.before() is None
    assert project.read(str(path))
    assert L.before().name() == "before" and L.after().name() == "after" and L.aoi().name() == "aoi"
    assert L.aoi_selected_check.isChecked()
    assert dock.detect.extent_combo.currentData() == "aoi"
    assert dock.detect.output_folder() == tmp_path / "detections"
    assert dock.classes.schema().change_classes[0].color == "#00ff00"
    assert dock.classes.preset_combo.currentData() == "custom"
    assert not project.isDirty()  # restoring is not a change
    # option values the user changed are preferences: they reach a new dock
    other = make_dock(qgis_iface)
    try:
        assert other.train.options.values() == {"steps": 700}
        assert other.detect.options.values() == {"threshold": pytest.approx(0.7)}
    finally:
        other.shutdown()
        other.deleteLater()


def test_detect_extent_and_the_aoi_as_a_polygon_mask(dock, scene_layers, qgis_iface, tmp_path):
    from qgis.core import QgsRectangle

    before, after, aoi = scene_layers
    L, D = dock.layers, dock.detect
    L.before_combo.setLayer(before)
    L.after_combo.setLayer(after)
    L.aoi_combo.setLayer(aoi)
    D.set_model(str(tmp_path / "some run"))
    D.out_widget.setFilePath(str(tmp_path / "out"))
    D.extent_combo.setCurrentIndex(D.extent_combo.findData("layer"))
    assert D.detect_extent() is None and D.detect_job().aoi is None
    D.extent_combo.setCurrentIndex(D.extent_combo.findData("aoi"))
    rect = D.detect_extent()
    assert QgsRectangle(rect) == aoi.extent() and rect.crs() == aoi.crs()
    job = D.detect_job()
    assert job.aoi is aoi and not job.aoi_selected_only  # the polygons themselves, not their box
    aoi.selectAll()
    L.aoi_selected_check.setChecked(True)
    assert D.detect_job().aoi_selected_only
    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(before.crs())
    canvas.setExtent(pixel_rect(before, 0, 0, 100, 120))
    D.extent_combo.setCurrentIndex(D.extent_combo.findData("canvas"))
    rect = D.detect_extent()
    assert rect.crs() == before.crs() and rect.contains(pixel_rect(before, 1, 1, 99, 119))
    assert D.detect_job().aoi is None


def test_the_aoi_and_its_selection_reach_train(dock, scene_layers, tmp_path):
    from qgis.core import QgsFeature, QgsGeometry

    before, after, aoi = scene_layers
    L = dock.layers
    for combo, layer in ((L.before_combo, before), (L.after_combo, after), (L.aoi_combo, aoi)):
        combo.setLayer(layer)
    dock.ask_label_path = lambda default: str(tmp_path / "labels.gpkg")
    labels = dock.new_label_layer()
    add_polygon(labels, pixel_rect(before, 10, 10, 40, 40), "building destroyed")
    job = dock.train.job()
    assert job.aoi is aoi and job.aoi_selected_only is False and job.options == {}
    aoi.startEditing()
    extra = QgsFeature(aoi.fields())
    extra.setGeometry(QgsGeometry.fromRect(pixel_rect(before, 0, 0, 50, 50)))
    aoi.addFeature(extra)
    aoi.selectByIds([f.id() for f in aoi.getFeatures() if f.geometry().area() < 50 * 50 * 0.26])
    L.aoi_selected_check.setChecked(True)
    job = dock.train.job()
    assert job.aoi_selected_only
    tasks = importlib.import_module("masktalk.plugin.tasks")
    task = tasks.TrainTask(job, project=dock.project)
    try:
        assert task.aoi.export is not None and task.aoi.export.fids == sorted(aoi.selectedFeatureIds())
        assert task.aoi.ensure() and Path(task.aoi.path).is_file()
        from qgis.core import QgsVectorLayer

        written = QgsVectorLayer(f"{task.aoi.path}|layername=aoi", "w", "ogr")
        assert written.featureCount() == 1
        args = job.engine_args("b.tif", "a.tif", "l.gpkg", str(task.aoi.path))
        assert args[args.index("--aoi") + 1] == str(task.aoi.path)
    finally:
        task.temp.cleanup()
        aoi.rollBack()


@pytest.mark.parametrize("answer", ["Yes", "No"])
def test_detect_asks_before_replacing_existing_outputs(dock, tmp_path, monkeypatch, answer):
    from qgis.PyQt.QtWidgets import QMessageBox

    settings = importlib.import_module("masktalk.plugin.settings")
    out = tmp_path / "changes.tif"
    fresh = settings.DetectJob(before=None, after=None, model="/run", out_raster=str(tmp_path / "new.tif"))
    monkeypatch.setattr(dock.detect, "detect_job", lambda: fresh)
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or getattr(QMessageBox.StandardButton, answer))
    job = dock.detect.job()
    assert job is fresh and not job.overwrite and "--overwrite" not in job.engine_args("b.tif", "a.tif") and not asked
    out.write_bytes(b"an earlier detection")
    existing = settings.DetectJob(before=None, after=None, model="/run", out_raster=str(out), out_vectors=str(tmp_path / "c.gpkg"))
    monkeypatch.setattr(dock.detect, "detect_job", lambda: existing)
    job = dock.detect.job()
    assert len(asked) == 1 and str(out) in asked[0] and "c.gpkg" not in asked[0]
    if answer == "Yes":
        assert job.overwrite and "--overwrite" in job.engine_args("b.tif", "a.tif")
    else:
        assert job is None and "exist" in dock.detect.run.status.text()
    assert out.read_bytes() == b"an earlier detection"


def test_detection_output_folder_is_beside_the_project_and_checked(dock, scene_layers, tmp_path, project, qgis_iface):
    before, after, _ = scene_layers
    D = dock.detect
    dock.layers.before_combo.setLayer(before)
    dock.layers.after_combo.setLayer(after)
    D.set_model(str(tmp_path / "run"))
    # an unsaved project: the QGIS profile; a saved one: masktalk/ beside the project file
    assert "masktalk" in str(D.output_folder())
    assert project.write(str(tmp_path / "analysis.qgz"))
    assert D.output_folder() == Path(project.homePath()) / "masktalk"
    assert D.out_widget.lineEdit().placeholderText() == str(D.output_folder())
    job = D.detect_job()
    assert Path(job.out_raster).parent == D.output_folder() and job.out_vectors.endswith(".gpkg")
    # a folder that cannot be written: a clear message, no task
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    D.out_widget.setFilePath(str(blocker / "detections"))
    messages = []
    D.notify.connect(lambda level, text, details: messages.append(text))
    D.request()
    assert "detect" not in dock.tasks
    assert messages and "cannot write the detections to" in messages[-1] and "choose another folder" in messages[-1]


def test_model_list_reads_what_training_writes(dock, tmp_path):
    """config.json, best/card.json (the kept model, its scores and step) and metrics.jsonl."""
    runs = tmp_path / "runs"
    schema = importlib.import_module("masktalk.engine.schema").load_preset("building")
    for name, kept in (("old", 0.1), ("new", 0.3)):
        run = runs / name
        (run / "best").mkdir(parents=True)
        (run / "last").mkdir()
        (run / "config.json").write_text(json.dumps({"version": 1, "backbone": None, "steps": None, "before": "/gone.tif"}))
        card = {"backbone": "efficientnet_lite0", "schema": schema.to_dict(),
                "extra": {"step": 200, "metrics": {"SeK": kept, "mIoU": 0.5, "F1": 0.8}, "rule": "last (moving average)",
                          "trained_steps": 300}}
        (run / "best" / "card.json").write_text(json.dumps(card))
        # the history's best is not the kept model (rule: the last moving average)
        (run / "metrics.jsonl").write_text(
            json.dumps({"step": 100, "epoch": 100, "stage": 1, "loss": 1.0, "SeK": 0.9, "mIoU": 0.9}) + "\n"
            + json.dumps({"step": 300, "epoch": 300, "stage": 2, "loss": 0.5, "SeK": kept, "mIoU": 0.5}) + "\n")
    (runs / "not a run").mkdir()
    dock.train.runs_widget.setFilePath(str(runs))
    table = dock.train.models_table
    rows = {table.item(r, 0).text(): r for r in range(table.rowCount())}
    assert set(rows) == {"old", "new"}
    r = rows["new"]
    assert table.item(r, 2).text() == ", ".join(c.name for c in schema.change_classes)
    assert "SeK 0.300" in table.item(r, 3).text() and "0.900" not in table.item(r, 3).text()
    tip = table.item(r, 0).toolTip()
    assert "efficientnet_lite0" in tip and "300 optimizer steps" in tip and "step 200" in tip
    # a run still training (no best/ yet): the best validation so far
    (runs / "running" / "last").mkdir(parents=True)
    (runs / "running" / "metrics.jsonl").write_text(json.dumps({"step": 50, "stage": 1, "SeK": 0.42}) + "\n")
    dock.train.refresh_models()
    rows = {table.item(r, 0).text(): r for r in range(table.rowCount())}
    assert "SeK 0.420" in table.item(rows["running"], 3).text()
    table.selectRow(rows["old"])
    assert dock.detect.selected_model() == str(runs / "old")


def test_resolution_field_for_web_layers(dock, demo_scene, xyz_tiles, project, tmp_path):
    """A file *before*: its pixel size; web layers: the file partner's, else the model's
    training pixel size, else the user's — two web layers become usable."""
    from qgis.core import QgsRasterLayer

    before, after, _ = add_scene(project, demo_scene)
    web_a = QgsRasterLayer(xyz_tiles.uri, "basemap 2023", "wms")
    web_b = QgsRasterLayer(xyz_tiles.uri, "basemap 2024", "wms")
    project.addMapLayers([web_a, web_b])
    L = dock.layers
    L.before_combo.setLayer(before)
    L.after_combo.setLayer(web_b)
    assert not L.resolution_edit.isEnabled() and L.effective_resolution() == pytest.approx(0.5)
    dock.ask_label_path = lambda default: str(tmp_path / "labels.gpkg")
    labels = dock.new_label_layer()  # in the before file's CRS
    add_polygon(labels, pixel_rect(before, 10, 10, 40, 40), "building destroyed")
    L.before_combo.setLayer(web_a)
    L.after_combo.setLayer(after)
    assert L.resolution_edit.isEnabled()
    value, source = L.automatic_resolution("")
    assert "after image" in source and 0.5 < value < 0.7  # 0.5 m of UTM in Web Mercator metres at 31.5° N
    L.after_combo.setLayer(web_b)
    assert L.effective_resolution("") is None
    assert not dock.train.run.button.isEnabled() and "a resolution" in dock.train.run.button.toolTip()
    assert "a resolution" in dock.captions.run.button.toolTip()
    # Detect: the model's training pixel size (from its run's config.json) is the default
    run = tmp_path / "runs" / "trained"
    (run / "best").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"before": str(demo_scene.before)}))
    dock.detect.set_model(str(run))
    value, source = L.automatic_resolution()
    assert "trained at" in source and 0.5 < value < 0.7
    assert "a resolution" not in dock.detect.run.button.toolTip()
    L.resolution_edit.setText(str(xyz_tiles.res))
    assert dock.train.run.button.isEnabled(), dock.train.run.button.toolTip()
    job = dock.train.job()
    assert job.resolution == pytest.approx(xyz_tiles.res)
    tasks = importlib.import_module("masktalk.plugin.tasks")
    task = tasks.TrainTask(job, project=project)
    try:  # both dates are exported on the same grid, at the resolution given
        b, a = task.before.export, task.after.export
        assert b is not None and a is not None
        assert (b.width, b.height) == (a.width, a.height) and b.extent == a.extent
        assert b.extent.width() / b.width == pytest.approx(xyz_tiles.res)
    finally:
        task.temp.cleanup()


def test_caption_with_a_web_before_layer_saved_beside_the_labels(dock, demo_scene, xyz_tiles, project, qtbot, tmp_path):
    """A web *before* layer no longer breaks *Caption labels*; the captions are a GeoPackage
    beside the labels, replaced (not stacked) on a re-run, labelled only when zoomed in."""
    from qgis.core import QgsRasterLayer

    web = QgsRasterLayer(xyz_tiles.uri, "basemap", "wms")
    _, after, _ = add_scene(project, demo_scene)
    project.addMapLayer(web)
    dock.layers.before_combo.setLayer(web)
    dock.layers.after_combo.setLayer(after)
    dock.ask_label_path = lambda default: str(tmp_path / "labels.gpkg")
    labels = dock.new_label_layer()
    add_polygon(labels, pixel_rect(after, 10, 10, 70, 60), "building destroyed")
    assert labels.commitChanges()
    assert dock.captions.run.button.isEnabled(), dock.captions.run.button.toolTip()
    for run in (1, 2):
        qtbot.mouseClick(dock.captions.run.button, 1)
        assert wait_finished(qtbot, dock, "caption", 120_000), dock.captions.run.status.text()
        layers = [lyr for lyr in project.mapLayers().values() if lyr.name() == "captions"]
        assert len(layers) == 1, f"run {run}: {len(layers)} captions layers"
    captions = layers[0]
    gpkg = tmp_path / "labels_captions.gpkg"
    assert gpkg.is_file() and captions.source().startswith(str(gpkg)) and captions.providerType() == "ogr"
    assert captions.featureCount() == 1 and "destroyed" in next(captions.getFeatures())["caption"]
    settings = captions.labeling().settings()
    assert captions.labelsEnabled() and settings.scaleVisibility and 0 < settings.minimumScale < 50_000
    assert dock.captions.last_captions and dock.captions.last_captions[0] in dock.captions.caption_text.toPlainText()


def test_device_line_and_options_come_from_the_engine_in_the_background(dock, qtbot, qgis_iface, engine_python):
    # the dock asks the engine when it is shown; QGIS stays usable meanwhile
    with qtbot.waitSignal(dock.diagnosticsReady, timeout=120_000) as blocker:
        dock.show()
        assert "info" in dock.tasks and dock.train.device_label.text() == "asking the engine…"
    info = blocker.args[0]
    assert "cuda" in info
    text = dock.train.device_label.text()
    if (info.get("cuda") or {}).get("available"):
        assert info["cuda"]["devices"][0]["name"] in text
    else:
        assert text.startswith("CPU only")
    qtbot.waitUntil(lambda: "options" not in dock.tasks, timeout=120_000)
    assert dock.engine_options.source in ("engine", "cache")
    combo = dock.train.options.widget("backbone")
    assert "weights" in combo.itemText(combo.findData("efficientnet_lite0"))
    # Engine Python… (or Set up engine…) finished: the dock asks the engine again
    actions = importlib.import_module("masktalk.plugin.diagnostics").EngineActions(qgis_iface)
    actions.engine_changed.append(dock.engine_changed)  # as plugin/main.py wires them
    with qtbot.waitSignal(dock.diagnosticsReady, timeout=120_000):
        assert actions.set_engine_python(str(engine_python))
        assert "info" in dock.tasks and "options" in dock.tasks
    qtbot.waitUntil(lambda: "options" not in dock.tasks, timeout=120_000)
    assert dock.engine_options.source == "engine"


def test_caption_labels_as_the_paper_says(dock, scene_layers, tmp_path, project, qtbot):
    """Draw two polygons, caption them: sentences follow the paper's rules."""
    before, after, _ = scene_layers
    dock.show()
    dock.layers.before_combo.setLayer(before)
    dock.layers.after_combo.setLayer(after)
    dock.ask_label_path = lambda default: str(tmp_path / "labels.gpkg")
    qtbot.mouseClick(dock.layers.new_label_button, 1)  # Qt.LeftButton
    labels = dock.layers.labels()
    assert labels is not None and labels.isEditable()
    # two polygons: one in the north-west, one in the south-east of the labelled area
    boxes = {"building destroyed": (10, 10, 70, 60), "greenhouse newly built": (180, 190, 246, 240)}
    for cls, (r0, c0, r1, c1) in boxes.items():
        add_polygon(labels, pixel_rect(before, r0, c0, r1, c1), cls)
    assert labels.commitChanges() and labels.startEditing()
    # caption at the defaults: the labelled area is one chip
    assert dock.captions.run.button.isEnabled(), dock.captions.run.button.toolTip()
    qtbot.mouseClick(dock.captions.run.button, 1)
    assert wait_finished(qtbot, dock, "caption", 120_000), dock.captions.run.status.text()
    captions = [lyr for lyr in project.mapLayers().values() if lyr.name() == "captions"]
    assert len(captions) == 1
    captions = captions[0]
    assert {"caption", "classes", "directions", "quantities", "changed_pixels", "quadruples"} <= set(captions.fields().names())
    assert captions.labelsEnabled() and captions.labeling().settings().fieldName == "caption"
    feats = list(captions.getFeatures())
    assert len(feats) == 1
    # the chip is the labelled area: rows 10..240, columns 10..246
    h, w = 240 - 10, 246 - 10
    schema = dock.classes.schema()
    expected = []
    for cls, (r0, c0, r1, c1) in boxes.items():
        c = schema.classes[schema.lookup(cls)]
        n = (r1 - r0) * (c1 - c0)
        q = paper_quantity(n, h, w)
        d = paper_direction((r0 + r1 - 1) / 2 - 10, (c0 + c1 - 1) / 2 - 10, h, w)
        expected.append((q, c.type, c.singular if q == "a single" else c.category, d))
    assert [e[3] for e in expected] == ["northwest", "southeast"]
    sentences = dock.captions.last_captions
    assert len(sentences) == 2
    for sentence, (q, t, cat, d) in zip(sentences, expected):
        assert sentence_pattern(q, t, cat, d).fullmatch(sentence), (sentence, (q, t, cat, d))
        assert sentence in dock.captions.caption_text.toPlainText()
    assert feats[0]["directions"] == "northwest; southeast"
    assert feats[0]["quantities"] == "; ".join(e[0] for e in expected)
    assert feats[0]["caption"] == " ".join(sentences)
    assert labels.featureCount() == 2 and not labels.isModified()  # the label layer is untouched


# ----------------------------------------------------------------- train and detect at the defaults
@pytest.fixture(scope="module")
def default_run(qgis_iface, demo_scene, engine_python, engine_commands, tmp_path_factory):
    """What a new user does: pick before, after and the label layer, press *Train*.

    One training at the engine's defaults (a few minutes on 2 CPU cores) per module; the
    detection tests reuse its run folder.
    """
    from qgis.core import QgsProject

    if not {"train", "predict"} <= engine_commands:
        pytest.skip("the engine has no train/predict command yet")
    clear_settings()
    project = QgsProject.instance()
    project.clear()
    before, after, _aoi, labels = add_scene(project, demo_scene, labels=True)
    dock = make_dock(qgis_iface)
    assert all(c.currentLayer() is None for c in (dock.layers.before_combo, dock.layers.after_combo,
                                                   dock.layers.label_combo, dock.layers.aoi_combo))
    runs = tmp_path_factory.mktemp("default-runs")
    finished: dict = {}
    dock.taskFinished.connect(lambda kind, ok: finished.setdefault(kind, ok))
    try:
        dock.show()
        dock.train.runs_widget.setFilePath(str(runs))  # the default is the QGIS profile: keep tests out of it
        dock.layers.before_combo.setLayer(before)
        dock.layers.after_combo.setLayer(after)
        dock.layers.label_combo.setLayer(labels)
        pump_until(lambda: "options" not in dock.tasks, 120)  # the engine environment's own options
        assert dock.layers.class_field() == "class"
        assert dock.train.run.button.isEnabled(), dock.train.run.button.toolTip()
        job = dock.train.job()
        assert job.aoi is None and job.options == {}
        dock.train.run.button.click()
        task = dock.tasks.get("train")
        assert task is not None, "Train did not start"
        assert pump_until(lambda: "train" in finished, 1500), "training at the defaults did not finish in 25 minutes"
        result = types.SimpleNamespace(ok=finished["train"], job=job, error=task.error, result=task.result,
                                       status=dock.train.run.status.text(), loss=dock.train.loss_label.text(),
                                       metrics=dock.train.metrics_label.text(), command=list(task.runner.last_command or []),
                                       models=[dock.train.models_table.item(r, 0).text() for r in range(dock.train.models_table.rowCount())],
                                       selected=dock.detect.selected_model(), runs=runs)
    finally:
        close_dock(dock, pump_until)
        project.clear()
        clear_settings()
    return result


@pytest.mark.timeout(1800)
def test_train_at_the_defaults(default_run):
    run = default_run
    assert run.ok, f"{run.status}\n{run.error and run.error.details()}"
    assert run.job.options == {}  # nothing was set: every option is the engine's default
    assert "--lora-rank" not in run.command and "--backbone" not in run.command and "--stage1-epochs" not in run.command
    result = run.result
    assert result["steps"] >= 300 and result["best_metrics"]
    folder = Path(result["run_dir"])
    assert (folder / "best" / "card.json").is_file() and (folder / "config.json").is_file() and (folder / "metrics.jsonl").is_file()
    assert run.models == [folder.name] and run.selected == str(folder)
    assert "step" in run.loss and "epoch" not in run.loss and run.metrics


@pytest.mark.timeout(1800)
def test_detect_at_the_defaults_adds_the_styled_group(default_run, demo_scene, project, qgis_iface, isolated_settings, qtbot,
                                                      tmp_path, monkeypatch):
    from qgis.core import QgsPalettedRasterRenderer, QgsRasterLayer, QgsSingleBandPseudoColorRenderer, QgsVectorLayer

    assert default_run.ok
    monkeypatch.setenv("HOME", str(tmp_path))
    before, after, _aoi, labels = add_scene(project, demo_scene, labels=True)
    assert project.write(str(tmp_path / "analysis.qgz"))  # outputs go beside the project
    dock = make_dock(qgis_iface)
    try:
        dock.train.runs_widget.setFilePath(str(default_run.runs))
        dock.layers.before_combo.setLayer(before)
        dock.layers.after_combo.setLayer(after)
        assert dock.detect.selected_model() == str(Path(default_run.result["run_dir"]))  # the newest run
        assert dock.detect.run.button.isEnabled(), dock.detect.run.button.toolTip()
        qtbot.mouseClick(dock.detect.run.button, 1)
        assert wait_finished(qtbot, dock, "detect", 600_000), dock.detect.run.status.text()
        task_job = dock.detect.detect_job()
        assert task_job.options == {}
        groups = [g for g in project.layerTreeRoot().children() if g.name().startswith("MaskTalk ")]
        assert len(groups) == 1
        nodes = {n.layer().name(): n for n in groups[0].findLayers()}
        assert set(nodes) == DETECTION_LAYERS
        layers = {name: node.layer() for name, node in nodes.items()}
        classes = layers["change classes"]
        assert isinstance(classes, QgsRasterLayer) and isinstance(classes.renderer(), QgsPalettedRasterRenderer)
        schema = dock.classes.schema()
        colours = {c.value: c.color.name() for c in classes.renderer().classes()}
        assert all(colours[c.id] == c.color for c in schema.change_classes)
        assert classes.width() == before.width() and classes.crs() == before.crs()
        assert Path(classes.source()).parent == tmp_path / "masktalk"
        confidence = layers["confidence"]
        assert isinstance(confidence.renderer(), QgsSingleBandPseudoColorRenderer) and confidence.renderer().band() == 2
        assert not nodes["confidence"].isVisible()  # on demand: it would cover the imagery
        changes = layers["changes"]
        assert isinstance(changes, QgsVectorLayer) and changes.isValid() and changes.renderer().type() == "categorizedSymbol"
        assert {"class_id", "class_name", "category", "change_type", "area_m2", "confidence", "caption"} <= set(changes.fields().names())
        assert layers["captions"].labelsEnabled() and layers["captions"].labeling().settings().scaleVisibility
        assert labels.featureCount() > 0 and not labels.isModified()
    finally:
        close_dock(dock, pump_until)


@pytest.mark.timeout(1800)
def test_detect_inside_the_aoi_polygons_only(default_run, demo_scene, project, qgis_iface, isolated_settings, qtbot, tmp_path):
    """The AOI is a polygon mask: pixels outside its (selected) polygons are nodata."""
    import numpy as np
    from osgeo import gdal
    from qgis.core import QgsFeature, QgsGeometry, QgsVectorLayer

    assert default_run.ok
    before, after, _aoi, _labels = add_scene(project, demo_scene, labels=True)
    # an L-shaped AOI: its bounding box is the whole north-west quarter, the polygon is not
    aoi = QgsVectorLayer(f"Polygon?crs={before.crs().authid()}", "aoi drawn", "memory")
    quarter = pixel_rect(before, 0, 0, 128, 128)
    ell = QgsGeometry.fromRect(quarter).difference(QgsGeometry.fromRect(pixel_rect(before, 64, 64, 128, 128)))
    other = QgsGeometry.fromRect(pixel_rect(before, 200, 200, 250, 250))
    for geom in (ell, other):
        f = QgsFeature()
        f.setGeometry(geom)
        aoi.dataProvider().addFeatures([f])
    project.addMapLayer(aoi)
    aoi.selectByIds([next(aoi.getFeatures()).id()])  # only the L
    dock = make_dock(qgis_iface)
    try:
        dock.train.runs_widget.setFilePath(str(default_run.runs))
        dock.layers.before_combo.setLayer(before)
        dock.layers.after_combo.setLayer(after)
        dock.layers.aoi_combo.setLayer(aoi)
        dock.layers.aoi_selected_check.setChecked(True)
        dock.detect.extent_combo.setCurrentIndex(dock.detect.extent_combo.findData("aoi"))
        dock.detect.out_widget.setFilePath(str(tmp_path / "out"))
        qtbot.mouseClick(dock.detect.run.button, 1)
        assert wait_finished(qtbot, dock, "detect", 600_000), dock.detect.run.status.text()
        raster = next(tmp_path.glob("out/*.tif"))
        ds = gdal.Open(str(raster))
        classes = ds.GetRasterBand(1).ReadAsArray()
        nodata = ds.GetRasterBand(1).GetNoDataValue()
        gt = ds.GetGeoTransform()
        bgt = gdal.Open(str(demo_scene.before)).GetGeoTransform()
        r0, c0 = round((gt[3] - bgt[3]) / bgt[5]), round((gt[0] - bgt[0]) / bgt[1])
        ds = None
        assert classes.shape[0] <= 128 and classes.shape[1] <= 128  # the selected polygon's extent, not the scene
        notch = classes[64 - r0:128 - r0, 64 - c0:128 - c0]
        arm = classes[0 - r0 + 2:64 - r0 - 2, 0 - c0 + 2:64 - c0 - 2]
        assert notch.size and (notch == nodata).all()  # inside the box, outside the polygon
        assert (arm != nodata).all() and np.isin(arm, [c.id for c in dock.classes.schema().classes]).all()
    finally:
        close_dock(dock, pump_until)


@pytest.mark.timeout(900)
def test_cancelling_training_keeps_qgis_responsive_and_labels_unchanged(dock, demo_scene, project, tmp_path, qtbot, require_command):
    import shutil

    from qgis.core import QgsVectorLayer
    from qgis.PyQt.QtCore import QTimer

    require_command("train")
    before, after, _ = add_scene(project, demo_scene)
    gpkg = tmp_path / "labels.gpkg"
    shutil.copy(demo_scene.labels, gpkg)
    labels = QgsVectorLayer(str(gpkg), "labels", "ogr")
    project.addMapLayer(labels)
    dock.show()
    dock.layers.before_combo.setLayer(before)
    dock.layers.after_combo.setLayer(after)
    dock.layers.label_combo.setLayer(labels)
    dock.train.runs_widget.setFilePath(str(tmp_path / "runs"))
    digest = file_digest(gpkg)
    geometry = [f.geometry().asWkt() for f in labels.getFeatures()]
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(20)
    qtbot.mouseClick(dock.train.run.button, 1)  # at the defaults: hundreds of steps, time to cancel
    task = dock.tasks["train"]
    # wait until the engine really trains (a progress message about an optimizer step)
    qtbot.waitUntil(lambda: "step" in dock.train.run.progress.format() or "train" not in dock.tasks, timeout=300_000)
    assert "train" in dock.tasks, f"training ended before its first step: {dock.train.run.status.text()}"
    n = len(ticks)
    qtbot.wait(300)
    assert len(ticks) > n + 5, "the event loop stalled while training"
    qtbot.mouseClick(dock.train.run.cancel, 1)
    assert dock.train.run.status.text() == "cancelling…"
    ok = wait_finished(qtbot, dock, "train", 60_000)  # the engine stops at its next step
    timer.stop()
    assert ok is False and task.error is not None and task.error.kind == "Cancelled"
    assert "cancelled" in dock.train.run.status.text()
    assert dock.train.run.button.isEnabled() and not dock.train.run.cancel.isEnabled()
    assert file_digest(gpkg) == digest
    assert [f.geometry().asWkt() for f in labels.getFeatures()] == geometry
    assert not labels.isModified()


def test_a_schema_named_with_slashes_still_runs(dock):
    """A loaded schema's name is free text; the custom-schema file written for a run must not break on it."""
    from masktalk.engine.schema import ClassSchema

    data = dock.classes.class_model.schema_dict()
    data["name"] = "Gaza / 2024: damage*?"
    data["classes"][1]["name"] = "damaged, \"partly\" / roof"
    dock.classes.set_schema(ClassSchema.from_dict(data, source="test"))
    kwargs = dock.classes.schema_kwargs()
    path = Path(kwargs["schema_path"])
    assert kwargs["preset"] == "" and path.is_file()
    assert path.parent.name == "schemas" and "/" not in path.name and ":" not in path.name
    assert json.loads(path.read_text(encoding="utf-8"))["name"] == "Gaza / 2024: damage*?"
    assert dock.classes.schema_kwargs() == kwargs  # same classes, same file
