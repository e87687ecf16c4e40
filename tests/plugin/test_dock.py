"""The MaskTalk dock driven like a user in offscreen QGIS, the engine in its own Python.

The loop test does what the README's quick start says: pick the two dates, create a label
layer and draw two polygons, caption them, train a tiny model (one epoch per stage on the
256 px demo scene), detect. Captions are checked against the rules of the S2M paper
(section 3.1, Table 1), re-derived here from the drawn geometry rather than taken from
the engine.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
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


@pytest.fixture()
def isolated_settings(tmp_path, monkeypatch):
    """QgsSettings of the dock start empty (no runs folder, device ... from other tests)."""
    from qgis.core import QgsSettings

    s = QgsSettings()
    s.remove("MaskTalk")
    yield
    s.remove("MaskTalk")


@pytest.fixture()
def dock(dockmod, qgis_iface, project, isolated_settings, engine_python, qtbot):
    dock = dockmod.MaskTalkDock(qgis_iface, None)  # top level: show() really shows it offscreen
    yield dock
    for task in list(dock.tasks.values()):
        task.cancel()
    qtbot.waitUntil(lambda: not dock.tasks, timeout=30_000)
    dock.shutdown()
    dock.deleteLater()


@pytest.fixture()
def scene_layers(demo_scene, project):
    from qgis.core import QgsRasterLayer, QgsVectorLayer

    before = QgsRasterLayer(str(demo_scene.before), "before")
    after = QgsRasterLayer(str(demo_scene.after), "after")
    aoi = QgsVectorLayer(str(demo_scene.aoi), "aoi", "ogr")
    assert before.isValid() and after.isValid() and aoi.isValid()
    project.addMapLayers([before, after, aoi])
    return before, after, aoi


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


# ------------------------------------------------------------------------ no engine needed
def test_buttons_say_what_is_missing(dock, scene_layers, qtbot, tmp_path):
    before, after, _ = scene_layers
    assert not dock.caption_run.button.isEnabled()
    assert "before raster" in dock.caption_run.button.toolTip()
    assert "label layer" in dock.train_run.button.toolTip()
    assert "trained model" in dock.detect_run.button.toolTip()
    dock.before_combo.setLayer(before)
    dock.after_combo.setLayer(before)
    assert "other than the before raster" in dock.train_run.button.toolTip()
    dock.after_combo.setLayer(after)
    assert "before raster" not in dock.train_run.button.toolTip()
    dock.ask_label_path = lambda default: str(tmp_path / "labels.gpkg")
    labels = dock.new_label_layer()
    tip = dock.caption_run.button.toolTip()
    assert not dock.caption_run.button.isEnabled() and "at least one label polygon" in tip
    add_polygon(labels, pixel_rect(before, 10, 10, 40, 40), "building destroyed")
    dock.update_buttons()
    assert dock.caption_run.button.isEnabled(), dock.caption_run.button.toolTip()
    # an invalid class table blocks the work and says why
    model = dock.class_model
    model.setData(model.index(1, 0), "Building Destroyed")  # same name as row 0, other case
    assert not dock.caption_run.button.isEnabled()
    assert "used by ids" in dock.caption_run.button.toolTip()
    assert dock.schema_status.text() and dock.preset_combo.currentData() == "custom"


def test_new_label_layer_is_a_styled_geopackage_in_editing_mode(dock, scene_layers, tmp_path, project):
    from qgis.core import QgsCategorizedSymbolRenderer

    before, _, _ = scene_layers
    dock.before_combo.setLayer(before)
    dock.ask_label_path = lambda default: str(tmp_path / "my labels")  # extension added
    layer = dock.new_label_layer()
    assert layer is not None and project.mapLayer(layer.id()) is layer
    assert (tmp_path / "my labels.gpkg").is_file()
    assert layer.providerType() == "ogr" and layer.isEditable()
    assert layer.crs() == before.crs()
    assert "class" in layer.fields().names()
    schema = dock.schema()
    setup = layer.editorWidgetSetup(layer.fields().indexOf("class"))
    assert setup.type() == "ValueMap"
    offered = [next(iter(d.values())) for d in setup.config()["map"]]
    assert offered == [c.name for c in schema.change_classes]
    renderer = layer.renderer()
    assert isinstance(renderer, QgsCategorizedSymbolRenderer) and renderer.classAttribute() == "class"
    colours = {c.value(): c.symbol().symbolLayer(0).strokeColor().name() for c in renderer.categories()}
    assert colours == {c.name: c.color for c in schema.change_classes}
    assert dock.label_combo.currentLayer() is layer and dock.class_field_combo.currentField() == "class"
    # cancelling the file dialog creates nothing
    dock.ask_label_path = lambda default: ""
    assert dock.new_label_layer() is None


def test_classes_presets_and_json_round_trip(dockmod, dock, tmp_path, monkeypatch):
    from qgis.PyQt.QtCore import Qt
    from qgis.PyQt.QtGui import QColor

    schema_mod = importlib.import_module("masktalk.engine.schema")
    i = dock.preset_combo.findData("xbd")
    dock.preset_combo.setCurrentIndex(i)
    assert dock.schema().to_dict()["classes"] == schema_mod.load_preset("xbd").to_dict()["classes"]
    assert dock.schema_kwargs() == {"preset": "xbd", "schema_path": ""}
    row = dock.class_model.add_class()
    model = dock.class_model
    for col, value in enumerate(("debris field", "debris fields", "appeared", "#123456")):
        assert model.setData(model.index(row, col), value)
    assert not model.setData(model.index(row, 3), "not a colour")
    # colours are picked in QGIS's colour dialog on a double-click, not typed
    assert not model.flags(model.index(0, 3)) & Qt.ItemIsEditable
    monkeypatch.setattr(dockmod.QgsColorDialog, "getColor", staticmethod(lambda *a, **k: QColor("#abcdef")))
    dock.class_table.doubleClicked.emit(model.index(0, 3))
    assert dock.schema().change_classes[0].color == "#abcdef"
    assert dock.preset_combo.currentData() == "custom"
    path = tmp_path / "classes.json"
    dock.save_schema_file(path)
    saved = json.loads(path.read_text())
    assert saved["classes"][-1] == {"id": row + 1, "name": "debris field", "category": "debris fields", "type": "appeared", "color": "#123456"}
    kwargs = dock.schema_kwargs()  # an edited table goes to the engine as a schema file
    assert kwargs["preset"] == "" and schema_mod.load_schema(kwargs["schema_path"]).to_dict() == dock.schema().to_dict()
    dock.preset_combo.setCurrentIndex(dock.preset_combo.findData("building"))
    assert [c.name for c in dock.schema().change_classes] == [c.name for c in schema_mod.load_preset("building").change_classes]
    dock.load_schema_file(path)
    assert dock.schema().change_classes[-1].name == "debris field"
    bad = tmp_path / "bad.json"
    bad.write_text('{"classes": [{"id": 3, "name": "x", "category": "x", "type": "y", "color": "#000000"}]}')
    dock.load_schema_file(bad)  # refused with a message, table unchanged
    assert dock.schema().change_classes[-1].name == "debris field"


def test_choices_are_kept_in_the_project_and_the_user_settings(dockmod, dock, scene_layers, tmp_path, project, qgis_iface):
    before, after, aoi = scene_layers
    dock.before_combo.setLayer(before)
    dock.after_combo.setLayer(after)
    dock.aoi_combo.setLayer(aoi)
    dock.extent_combo.setCurrentIndex(dock.extent_combo.findData("aoi"))
    model = dock.class_model
    model.setData(model.index(0, 3), "#00ff00")  # an edited class colour
    dock.stage1_spin.setValue(7)
    dock.device_combo.setCurrentIndex(dock.device_combo.findData("cpu"))
    assert project.isDirty()
    path = tmp_path / "analysis.qgz"
    assert project.write(str(path))
    # another project, then the saved one again: the dock follows the project
    project.clear()
    assert dock.before_combo.currentLayer() is None
    assert project.read(str(path))
    assert dock.before_combo.currentLayer().name() == "before"
    assert dock.after_combo.currentLayer().name() == "after"
    assert dock.aoi_combo.currentLayer().name() == "aoi"
    assert dock.extent_combo.currentData() == "aoi"
    assert dock.schema().change_classes[0].color == "#00ff00"
    assert dock.preset_combo.currentData() == "custom"
    assert not project.isDirty()  # restoring is not a change
    # user preferences (not per project) reach a new dock
    other = dockmod.MaskTalkDock(qgis_iface, None)
    try:
        assert other.stage1_spin.value() == 7 and other.device_combo.currentData() == "cpu"
    finally:
        other.shutdown()
        other.deleteLater()


def test_detect_extent_choices(dock, scene_layers, qgis_iface):
    from qgis.core import QgsRectangle

    before, after, aoi = scene_layers
    dock.aoi_combo.setLayer(aoi)
    dock.extent_combo.setCurrentIndex(dock.extent_combo.findData("layer"))
    assert dock.detect_extent() is None
    dock.extent_combo.setCurrentIndex(dock.extent_combo.findData("aoi"))
    rect = dock.detect_extent()
    assert QgsRectangle(rect) == aoi.extent() and rect.crs() == aoi.crs()
    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(before.crs())
    canvas.setExtent(pixel_rect(before, 0, 0, 100, 120))
    dock.extent_combo.setCurrentIndex(dock.extent_combo.findData("canvas"))
    rect = dock.detect_extent()
    assert rect.crs() == before.crs() and rect.contains(pixel_rect(before, 1, 1, 99, 119))


@pytest.mark.parametrize("answer", ["Yes", "No"])
def test_detect_asks_before_replacing_existing_outputs(dock, tmp_path, monkeypatch, answer):
    from qgis.PyQt.QtWidgets import QMessageBox

    settings = importlib.import_module("masktalk.plugin.settings")
    out = tmp_path / "changes.tif"
    fresh = settings.DetectJob(before=None, after=None, model="/run", out_raster=str(tmp_path / "new.tif"))
    monkeypatch.setattr(dock, "detect_job", lambda: fresh)
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or getattr(QMessageBox, answer))
    job = dock.confirmed_detect_job()
    assert job is fresh and not job.overwrite and "--overwrite" not in job.engine_args("b.tif", "a.tif") and not asked
    out.write_bytes(b"an earlier detection")
    existing = settings.DetectJob(before=None, after=None, model="/run", out_raster=str(out), out_vectors=str(tmp_path / "c.gpkg"))
    monkeypatch.setattr(dock, "detect_job", lambda: existing)
    job = dock.confirmed_detect_job()
    assert len(asked) == 1 and str(out) in asked[0] and "c.gpkg" not in asked[0]
    if answer == "Yes":
        assert job.overwrite and "--overwrite" in job.engine_args("b.tif", "a.tif")
    else:
        assert job is None and "exist" in dock.detect_run.status.text()
    assert out.read_bytes() == b"an earlier detection"


def test_model_list_reads_run_folders(dock, tmp_path):
    runs = tmp_path / "runs"
    schema = importlib.import_module("masktalk.engine.schema").load_preset("building")
    for name, sek in (("old", 0.1), ("new", 0.3)):
        (runs / name / "best").mkdir(parents=True)
        (runs / name / "best" / "card.json").write_text(json.dumps({"schema": schema.to_dict()}))
        (runs / name / "metrics.jsonl").write_text(
            json.dumps({"epoch": 1, "stage": 1, "loss": 1.0, "SeK": sek / 2, "mIoU": 0.4}) + "\n"
            + json.dumps({"epoch": 2, "stage": 2, "loss": 0.5, "SeK": sek, "mIoU": 0.5}) + "\n")
    (runs / "not a run").mkdir()
    dock.runs_widget.setFilePath(str(runs))
    dock.refresh_models()
    table = dock.models_table
    rows = {table.item(r, 0).text(): r for r in range(table.rowCount())}
    assert set(rows) == {"old", "new"}
    r = rows["new"]
    assert table.item(r, 2).text() == ", ".join(c.name for c in schema.change_classes)
    assert "SeK 0.300" in table.item(r, 3).text()
    table.selectRow(rows["old"])
    assert dock.selected_model() == str(runs / "old")


def test_device_line_comes_from_the_engine_in_the_background(dock, qtbot):
    # the dock asks the engine when it is shown; QGIS stays usable meanwhile
    with qtbot.waitSignal(dock.diagnosticsReady, timeout=120_000) as blocker:
        dock.show()
        assert "info" in dock.tasks and dock.device_label.text() == "asking the engine…"
    info = blocker.args[0]
    assert "cuda" in info
    text = dock.device_label.text()
    if (info.get("cuda") or {}).get("available"):
        assert info["cuda"]["devices"][0]["name"] in text
    else:
        assert text.startswith("CPU only")
    assert "weights" in dock.backbone_combo.itemText(dock.backbone_combo.findData("efficientnet_lite0"))


# ----------------------------------------------------------------------- the whole loop
def test_whole_loop_label_caption_train_detect(dock, scene_layers, tmp_path, project, qtbot, require_command):
    from qgis.core import QgsPalettedRasterRenderer, QgsRasterLayer, QgsVectorLayer

    before, after, _ = scene_layers
    dock.show()
    dock.before_combo.setLayer(before)
    dock.after_combo.setLayer(after)
    dock.runs_widget.setFilePath(str(tmp_path / "runs"))
    dock.ask_label_path = lambda default: str(tmp_path / "labels.gpkg")
    qtbot.mouseClick(dock.new_label_button, 1)  # Qt.LeftButton
    labels = dock.label_combo.currentLayer()
    assert labels is not None and labels.isEditable()
    # two polygons: one in the north-west, one in the south-east of the labelled area
    boxes = {"building destroyed": (10, 10, 70, 60), "greenhouse newly built": (180, 190, 246, 240)}
    for cls, (r0, c0, r1, c1) in boxes.items():
        add_polygon(labels, pixel_rect(before, r0, c0, r1, c1), cls)
    assert labels.commitChanges() and labels.startEditing()
    assert labels.featureCount() == 2

    # --- caption: one chip covering the labelled area
    dock.chip_spin.setValue(256)
    assert dock.caption_run.button.isEnabled(), dock.caption_run.button.toolTip()
    qtbot.mouseClick(dock.caption_run.button, 1)
    assert wait_finished(qtbot, dock, "caption", 120_000), dock.caption_run.status.text()
    captions = [lyr for lyr in project.mapLayers().values() if lyr.name() == "captions"]
    assert len(captions) == 1
    captions = captions[0]
    assert {"caption", "classes", "directions", "quantities", "changed_pixels", "quadruples"} <= set(captions.fields().names())
    assert captions.labelsEnabled() and captions.labeling().settings().fieldName == "caption"
    feats = list(captions.getFeatures())
    assert len(feats) == 1
    # the chip is the labelled area: rows 10..240, columns 10..246
    h, w = 240 - 10, 246 - 10
    schema = dock.schema()
    expected = []
    for cls, (r0, c0, r1, c1) in boxes.items():
        c = schema.classes[schema.lookup(cls)]
        n = (r1 - r0) * (c1 - c0)
        q = paper_quantity(n, h, w)
        d = paper_direction((r0 + r1 - 1) / 2 - 10, (c0 + c1 - 1) / 2 - 10, h, w)
        expected.append((q, c.type, c.singular if q == "a single" else c.category, d))
    assert [e[3] for e in expected] == ["northwest", "southeast"]
    sentences = dock.last_captions
    assert len(sentences) == 2
    for sentence, (q, t, cat, d) in zip(sentences, expected):
        assert sentence_pattern(q, t, cat, d).fullmatch(sentence), (sentence, (q, t, cat, d))
        assert sentence in dock.caption_text.toPlainText()
    assert feats[0]["directions"] == "northwest; southeast"
    assert feats[0]["quantities"] == "; ".join(e[0] for e in expected)
    assert feats[0]["caption"] == " ".join(sentences)

    # --- train a tiny model
    require_command("train")
    require_command("predict")
    dock.backbone_combo.setCurrentIndex(dock.backbone_combo.findData("efficientnet_lite0"))
    dock.stage1_spin.setValue(1)
    dock.stage2_spin.setValue(1)
    dock.chip_spin.setValue(64)
    dock.batch_spin.setValue(4)
    dock.lora_spin.setValue(0)
    dock.device_combo.setCurrentIndex(dock.device_combo.findData("cpu"))
    dock.run_name_edit.setText("tiny")
    job = dock.train_job()
    assert (job.stage1_epochs, job.stage2_epochs, job.chip, job.batch_size, job.device, job.preset) == (1, 1, 64, 4, "cpu", "gaza")
    assert Path(job.out_dir) == tmp_path / "runs" / "tiny"
    qtbot.mouseClick(dock.train_run.button, 1)
    assert not dock.train_run.button.isEnabled() and dock.train_run.cancel.isEnabled()
    assert wait_finished(qtbot, dock, "train", 600_000), dock.train_run.status.text()
    assert dock.metrics_label.text() and dock.loss_label.text()
    assert dock.models_table.rowCount() == 1 and dock.models_table.item(0, 0).text() == "tiny"
    assert dock.models_table.item(0, 2).text() == ", ".join(c.name for c in schema.change_classes)
    assert dock.selected_model() == str(tmp_path / "runs" / "tiny")

    # --- detect over the whole layer
    dock.extent_combo.setCurrentIndex(dock.extent_combo.findData("layer"))
    assert dock.detect_run.button.isEnabled(), dock.detect_run.button.toolTip()
    qtbot.mouseClick(dock.detect_run.button, 1)
    assert wait_finished(qtbot, dock, "detect", 300_000), dock.detect_run.status.text()
    groups = [g for g in project.layerTreeRoot().children() if g.name().startswith("MaskTalk tiny")]
    assert len(groups) == 1
    layers = {n.layer().name(): n.layer() for n in groups[0].findLayers()}
    assert set(layers) >= {"changes", "captions"}
    rasters = [lyr for lyr in layers.values() if isinstance(lyr, QgsRasterLayer)]
    assert len(rasters) == 1
    renderer = rasters[0].renderer()
    assert isinstance(renderer, QgsPalettedRasterRenderer)
    colours = {c.value: c.color.name() for c in renderer.classes()}
    assert all(colours[c.id] == c.color for c in schema.change_classes)
    assert rasters[0].width() == before.width() and rasters[0].crs() == before.crs()
    changes = layers["changes"]
    assert isinstance(changes, QgsVectorLayer) and changes.isValid()
    assert {"class_id", "class_name", "category", "change_type", "area_m2", "confidence", "caption"} <= set(changes.fields().names())
    assert {"caption", "quadruples"} <= set(layers["captions"].fields().names())
    assert layers["captions"].labelsEnabled()
    # the label layer is untouched by all of it
    assert labels.featureCount() == 2 and not labels.isModified()


def test_cancelling_training_keeps_qgis_responsive_and_labels_unchanged(dock, scene_layers, tmp_path, qtbot, require_command):
    from qgis.PyQt.QtCore import QTimer

    require_command("train")
    before, after, _ = scene_layers
    dock.show()
    dock.before_combo.setLayer(before)
    dock.after_combo.setLayer(after)
    dock.runs_widget.setFilePath(str(tmp_path / "runs"))
    dock.ask_label_path = lambda default: str(tmp_path / "labels.gpkg")
    labels = dock.new_label_layer()
    add_polygon(labels, pixel_rect(before, 20, 20, 120, 120), "building destroyed")
    assert labels.commitChanges()
    gpkg = tmp_path / "labels.gpkg"
    digest = file_digest(gpkg)
    geometry = [f.geometry().asWkt() for f in labels.getFeatures()]
    dock.stage1_spin.setValue(500)
    dock.stage2_spin.setValue(500)
    dock.chip_spin.setValue(64)
    dock.lora_spin.setValue(0)
    dock.device_combo.setCurrentIndex(dock.device_combo.findData("cpu"))
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(20)
    qtbot.mouseClick(dock.train_run.button, 1)
    task = dock.tasks["train"]
    # wait until the engine really trains (a progress message about an optimizer step)
    qtbot.waitUntil(lambda: "step" in dock.train_run.progress.format(), timeout=180_000)
    n = len(ticks)
    qtbot.wait(300)
    assert len(ticks) > n + 5, "the event loop stalled while training"
    qtbot.mouseClick(dock.train_run.cancel, 1)
    assert dock.train_run.status.text() == "cancelling…"
    ok = wait_finished(qtbot, dock, "train", 30_000)  # the engine stops at its next step (3 s here)
    timer.stop()
    assert ok is False and task.error is not None and task.error.kind == "Cancelled"
    assert "cancelled" in dock.train_run.status.text()
    assert dock.train_run.button.isEnabled() and not dock.train_run.cancel.isEnabled()
    assert file_digest(gpkg) == digest
    assert [f.geometry().asWkt() for f in labels.getFeatures()] == geometry
    assert not labels.isModified() and labels.featureCount() == 1


def test_a_schema_named_with_slashes_still_runs(dock):
    """A loaded schema's name is free text; the custom-schema file written for a run must not break on it."""
    from masktalk.engine.schema import ClassSchema

    data = dock.class_model.schema_dict()
    data["name"] = "Gaza / 2024: damage*?"
    data["classes"][1]["name"] = "damaged, \"partly\" / roof"
    dock.set_schema(ClassSchema.from_dict(data, source="test"))
    kwargs = dock.schema_kwargs()
    path = Path(kwargs["schema_path"])
    assert kwargs["preset"] == "" and path.is_file()
    assert path.parent.name == "schemas" and "/" not in path.name and ":" not in path.name
    assert json.loads(path.read_text(encoding="utf-8"))["name"] == "Gaza / 2024: damage*?"
    assert dock.schema_kwargs() == kwargs  # same classes, same file
