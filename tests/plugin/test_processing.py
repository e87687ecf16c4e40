"""Processing algorithms: processing.run, the Toolbox's background runner, a model, batch reuse, cancel."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from .conftest import leftovers

pytestmark = pytest.mark.usefixtures("masktalk_provider")


@pytest.fixture()
def project(qgis_new_project):
    from qgis.core import QgsProject

    yield QgsProject.instance()
    QgsProject.instance().clear()


def captions_in(path: Path) -> list[str]:
    from qgis.core import QgsVectorLayer

    layer = QgsVectorLayer(str(path), "c", "ogr")
    assert layer.isValid(), path
    return sorted(f["caption"] for f in layer.getFeatures())


def test_algorithms_and_their_parameter_types():
    from qgis.core import (QgsApplication, QgsProcessingParameterEnum, QgsProcessingParameterField,
                           QgsProcessingParameterFolderDestination, QgsProcessingParameterRasterLayer,
                           QgsProcessingParameterVectorLayer)

    registry = QgsApplication.processingRegistry()
    algs = {a.id(): a for a in registry.providerById("masktalk").algorithms()}
    assert set(algs) == {"masktalk:caption_labels", "masktalk:train_change_model", "masktalk:detect_changes"}
    assert algs["masktalk:caption_labels"].displayName() == "Caption change labels"
    train = algs["masktalk:train_change_model"]
    assert isinstance(train.parameterDefinition("BEFORE"), QgsProcessingParameterRasterLayer)
    assert isinstance(train.parameterDefinition("LABELS"), QgsProcessingParameterVectorLayer)
    field = train.parameterDefinition("CLASS_FIELD")
    assert isinstance(field, QgsProcessingParameterField) and field.parentLayerParameterName() == "LABELS"
    backbone = train.parameterDefinition("BACKBONE")
    assert isinstance(backbone, QgsProcessingParameterEnum) and backbone.options()[0] == "efficientnet_lite0"
    assert train.parameterDefinition("DEVICE").options() == ["auto", "cpu", "cuda"]
    assert isinstance(train.parameterDefinition("OUTPUT"), QgsProcessingParameterFolderDestination)
    detect = algs["masktalk:detect_changes"]
    assert detect.parameterDefinition("EXTENT").flags() & detect.parameterDefinition("EXTENT").FlagOptional
    assert all(a.shortHelpString() for a in algs.values())


def test_caption_labels_with_processing_run(engine_python, demo_scene, tmp_path, private_tmp):
    import json

    import processing

    out, js = tmp_path / "captions.gpkg", tmp_path / "captions.json"
    results = processing.run("masktalk:caption_labels", {"LABELS": str(demo_scene.truth), "PRESET": 0, "CHIP": 128,
                                                         "OUTPUT": str(out), "JSON": str(js)})
    chips = json.loads(js.read_text())
    assert results["CHIPS"] == len(chips) > 0
    assert captions_in(out) == sorted(" ".join(c["sentences"]) for c in chips)
    assert leftovers(private_tmp) == []


def test_caption_memory_labels_with_processing_run(engine_python, demo_scene, tmp_path, private_tmp):
    import processing
    from qgis.core import QgsFeatureRequest, QgsVectorLayer

    source = QgsVectorLayer(f"{demo_scene.labels}|layername=labels", "labels", "ogr")
    mem = source.materialize(QgsFeatureRequest())
    assert mem.providerType() == "memory" and mem.featureCount() == source.featureCount()
    out = tmp_path / "captions.gpkg"
    results = processing.run("masktalk:caption_labels", {"LABELS": mem, "REFERENCE": str(demo_scene.before),
                                                         "CLASS_FIELD": "class", "CHIP": 64, "OUTPUT": str(out)})
    assert results["CHIPS"] > 0 and len(captions_in(out)) == results["CHIPS"]
    assert leftovers(private_tmp) == []  # the rasterised labels are gone


def test_engine_error_becomes_a_processing_exception(engine_python, demo_scene, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException) as info:
        processing.run("masktalk:caption_labels", {"LABELS": str(demo_scene.before), "OUTPUT": str(tmp_path / "c.gpkg")})
    assert "has 3 bands" in str(info.value)


def test_toolbox_runner_task_batch_reuse_and_model(engine_python, demo_scene, tmp_path, project, qtbot):
    """The Toolbox runs prepareAlgorithm on the main thread and processAlgorithm in a task;
    batch mode runs one algorithm for several rows; the modeler chains it as a child."""
    import processing
    from qgis.core import (QgsApplication, QgsProcessingAlgRunnerTask, QgsProcessingContext, QgsProcessingFeedback,
                           QgsProcessingModelAlgorithm, QgsProcessingModelChildAlgorithm,
                           QgsProcessingModelChildParameterSource, QgsProcessingModelOutput, QgsProcessingModelParameter,
                           QgsProcessingParameterRasterLayer)

    alg = QgsApplication.processingRegistry().createAlgorithmById("masktalk:caption_labels")
    context = QgsProcessingContext()
    context.setProject(project)
    feedback = QgsProcessingFeedback()
    rows = [{"LABELS": str(demo_scene.truth), "CHIP": chip, "OUTPUT": str(tmp_path / f"batch{chip}.gpkg")} for chip in (128, 256)]
    task = QgsProcessingAlgRunnerTask(alg, rows[0], context, feedback)
    with qtbot.waitSignal(task.executed, timeout=60_000) as blocker:
        QgsApplication.taskManager().addTask(task)
    ok, results = blocker.args
    assert ok and results["CHIPS"] > 0
    for row in rows[1:]:  # batch: the same algorithm, another row
        assert processing.run("masktalk:caption_labels", row)["CHIPS"] > 0
    assert len(captions_in(tmp_path / "batch256.gpkg")) == 1  # one chip: the whole 256 px scene

    model = QgsProcessingModelAlgorithm("caption model", "tests")
    model.addModelParameter(QgsProcessingParameterRasterLayer("labels", "Labels"), QgsProcessingModelParameter("labels"))
    child = QgsProcessingModelChildAlgorithm("masktalk:caption_labels")
    child.setChildId("caption")
    child.addParameterSources("LABELS", [QgsProcessingModelChildParameterSource.fromModelParameter("labels")])
    child.addParameterSources("CHIP", [QgsProcessingModelChildParameterSource.fromStaticValue(128)])
    child.addParameterSources("PRESET", [QgsProcessingModelChildParameterSource.fromStaticValue(0)])
    output = QgsProcessingModelOutput("captions")
    output.setChildId("caption")
    output.setChildOutputName("OUTPUT")
    child.setModelOutputs({"captions": output})
    model.addChildAlgorithm(child)
    model_out = tmp_path / "model.gpkg"
    processing.run(model, {"labels": str(demo_scene.truth), "caption:captions": str(model_out)})
    assert captions_in(model_out) == captions_in(tmp_path / "batch128.gpkg")


def test_cancel_through_feedback(mt, demo_scene, fake_engine_dir, tmp_path, monkeypatch, private_tmp):
    import importlib

    import processing
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    algorithms = importlib.import_module("masktalk.plugin.processing.algorithms")
    monkeypatch.setattr(algorithms, "EngineRunner", lambda: mt.runner.EngineRunner(python=sys.executable, plugin_dir=fake_engine_dir, grace_s=2))
    pid_file = tmp_path / "pid"
    monkeypatch.setenv("FAKE_PID_FILE", str(pid_file))
    feedback = QgsProcessingFeedback()
    threading.Timer(1.0, feedback.cancel).start()
    with pytest.raises(QgsProcessingException, match="cancelled"):
        processing.run("masktalk:caption_labels", {"LABELS": str(demo_scene.truth), "OUTPUT": str(tmp_path / "c.gpkg")},
                       feedback=feedback)
    assert not Path(f"/proc/{pid_file.read_text()}").exists()
    assert leftovers(private_tmp) == []


def test_train_with_processing_run(tiny_run):
    assert (tiny_run.best / "card.json").is_file() and tiny_run.last.is_dir()
    assert tiny_run.best.parent == tiny_run.dir
    assert "metrics:" in tiny_run.log and "-m engine train" in tiny_run.log


def test_detect_with_processing_run(tiny_run, demo_scene, tmp_path, project):
    import processing
    from osgeo import gdal
    from qgis.core import QgsVectorLayer

    ref = gdal.Open(str(demo_scene.before)).GetGeoTransform()
    x0, y1 = ref[0] + 32 * 0.5, ref[3] - 16 * 0.5  # a 64 x 96 m window inside the scene
    extent = f"{x0},{x0 + 64},{y1 - 96},{y1} [EPSG:32636]"
    out, vectors = tmp_path / "changes.tif", tmp_path / "changes.gpkg"
    # runAndLoadResults: as the Toolbox does, the outputs are loaded and the change raster styled
    results = processing.runAndLoadResults("masktalk:detect_changes", {"BEFORE": str(demo_scene.before), "AFTER": str(demo_scene.after),
                                                         "MODEL": str(tiny_run.dir), "EXTENT": extent, "CHIP": 64, "DEVICE": 1,
                                                         "OUTPUT": str(out), "VECTORS": str(vectors)})
    assert results["OUTPUT"] == str(out) and results["VECTORS"] == str(vectors)
    ds = gdal.Open(str(out))
    assert (ds.RasterXSize, ds.RasterYSize) == (128, 192)
    assert ds.GetGeoTransform()[0] == pytest.approx(x0) and ds.GetGeoTransform()[3] == pytest.approx(y1)
    for name in ("changes", "captions"):
        assert QgsVectorLayer(f"{vectors}|layername={name}", name, "ogr").isValid()
    loaded = [l for l in project.mapLayers().values() if l.source() == str(out)]
    assert len(loaded) == 1 and loaded[0].renderer().type() == "paletted"
    card_classes = [c.label for c in loaded[0].renderer().classes()]
    assert card_classes[1] == "building destroyed"  # names from the model card (gaza preset)
