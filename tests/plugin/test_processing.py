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


def engine_options():
    import importlib

    return importlib.import_module("masktalk.plugin.engine_options").load(spawn=False)


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
    assert isinstance(train.parameterDefinition("BACKBONE"), QgsProcessingParameterEnum)
    assert train.parameterDefinition("DEVICE").options() == ["auto", "cpu", "cuda"]
    assert isinstance(train.parameterDefinition("OUTPUT"), QgsProcessingParameterFolderDestination)
    detect = algs["masktalk:detect_changes"]
    assert detect.parameterDefinition("EXTENT").flags() & detect.parameterDefinition("EXTENT").FlagOptional
    assert all(a.shortHelpString() for a in algs.values())


def test_engine_parameters_come_from_the_engine_declarations():
    """Choices, defaults, ranges and help of the engine options are the engine's own (no retyped copy)."""
    from qgis.core import QgsApplication

    opts = engine_options()
    registry = QgsApplication.processingRegistry()
    train = registry.createAlgorithmById("masktalk:train_change_model")
    backbone = train.parameterDefinition("BACKBONE")
    assert backbone.options() == list(opts.option("train", "backbone").choices)
    assert backbone.defaultValue() is None and backbone.flags() & backbone.FlagOptional  # automatic, as the engine
    lora = train.parameterDefinition("LORA_RANK")
    assert lora.defaultValue() == opts.default("train", "lora_rank") == 0  # the dock's old 8 broke Train at defaults
    assert (lora.minimum(), lora.maximum()) == (0, opts.option("train", "lora_rank").maximum)
    assert lora.help() == opts.option("train", "lora_rank").help and "0 = full fine-tuning" in lora.help()
    text = train.parameterDefinition("TEXT_ENCODER")
    assert text.options() == list(opts.option("train", "text_encoder").choices) and "clip" not in text.options()
    assert text.options()[text.defaultValue()] == "minilm"
    assert train.parameterDefinition("CHIP").defaultValue() == 256 and train.parameterDefinition("BATCH_SIZE").defaultValue() == 8
    assert train.parameterDefinition("PRESET").options()[0] == "gaza"
    detect = registry.createAlgorithmById("masktalk:detect_changes")
    threshold = detect.parameterDefinition("THRESHOLD")
    assert (threshold.minimum(), threshold.maximum(), threshold.defaultValue()) == (0, 1, None)
    assert detect.parameterDefinition("MIN_AREA").defaultValue() == opts.default("predict", "min_area")
    assert detect.parameterDefinition("RUNTIME").options() == list(opts.option("predict", "runtime").choices)
    tta = detect.parameterDefinition("TTA")
    assert tta.options() == list(opts.option("predict", "tta").choices) == ["none", "flips"]
    assert tta.options()[tta.defaultValue()] == "none"  # one model pass per chip unless asked


def test_outputs_default_to_persistent_folders_beside_the_project(tmp_path, project):
    from qgis.core import QgsApplication

    project.setFileName(str(tmp_path / "analysis.qgz"))
    registry = QgsApplication.processingRegistry()
    train = registry.createAlgorithmById("masktalk:train_change_model")  # as the Toolbox does when a dialog opens
    run = Path(train.parameterDefinition("OUTPUT").defaultValue())
    assert run.parent == tmp_path / "masktalk" / "runs" and run.name.startswith("run-")
    detect = registry.createAlgorithmById("masktalk:detect_changes")
    raster = Path(detect.parameterDefinition("OUTPUT").defaultValue())
    assert raster.parent == tmp_path / "masktalk" / "detections" and raster.suffix == ".tif"
    assert Path(detect.parameterDefinition("VECTORS").defaultValue()) == raster.with_suffix(".gpkg")
    project.clear()  # an unsaved project: the QGIS profile folder
    train = registry.createAlgorithmById("masktalk:train_change_model")
    run = Path(train.parameterDefinition("OUTPUT").defaultValue())
    assert run.parent == Path(QgsApplication.qgisSettingsDirPath()) / "masktalk" / "output" / "runs"


def prepared(alg_id, parameters, project):
    """An algorithm after prepareAlgorithm (main thread), for its job and command line."""
    from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingFeedback

    alg = QgsApplication.processingRegistry().createAlgorithmById(alg_id)
    context = QgsProcessingContext()
    context.setProject(project)
    assert alg.prepareAlgorithm(parameters, context, QgsProcessingFeedback())
    return alg


def test_train_at_the_defaults_passes_only_the_layers(demo_scene, tmp_path, project):
    """What a new user gets: no engine option on the command line, so the engine's defaults apply."""
    from qgis.core import QgsProcessingContext

    params = {"BEFORE": str(demo_scene.before), "AFTER": str(demo_scene.after), "LABELS": f"{demo_scene.labels}|layername=labels",
              "OUTPUT": str(tmp_path / "run")}
    alg = prepared("masktalk:train_change_model", params, project)
    context = QgsProcessingContext()
    context.setProject(project)
    try:
        assert alg.checkParameterValues(params, context) == (True, "")  # what processing.run / qgis_process check first
        assert alg.job.options == {}
        args = alg.job.engine_args("b.tif", "a.tif", "l.gpkg")
        assert args == ["--before", "b.tif", "--after", "a.tif", "--labels", "l.gpkg", "--preset", "gaza", "--out", str(tmp_path / "run")]
    finally:
        alg.cleanup()


def test_train_at_its_defaults_runs_into_a_folder_beside_the_project(engine_python, demo_scene, tmp_path, project):
    """Only the layers, as a new user gives them: the engine accepts its defaults and trains (cancelled
    after its first step here), in a run folder that outlives QGIS, not a temporary one."""
    import processing
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    project.setFileName(str(tmp_path / "analysis.qgz"))
    feedback = QgsProcessingFeedback()
    # cancel at the engine's first training step (progress > 0 once the engine runs; exports report progress too)
    feedback.progressChanged.connect(lambda p: feedback.cancel() if p > 0 and "-m engine train" in feedback.textLog() else None)
    with pytest.raises(QgsProcessingException, match="cancelled by the user"):
        processing.run("masktalk:train_change_model", {"BEFORE": str(demo_scene.before), "AFTER": str(demo_scene.after),
                                                       "LABELS": f"{demo_scene.labels}|layername=labels"}, feedback=feedback)
    log = feedback.textLog()
    assert "training on scene" in log and "backbone efficientnet_lite0" in log and "LoRA" not in log, log[-2000:]
    runs = list((tmp_path / "masktalk" / "runs").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("run-")
    assert (runs[0] / "last" / "card.json").is_file() and (runs[0] / "config.json").is_file()  # cancel keeps the last checkpoint
    config = __import__("json").loads((runs[0] / "config.json").read_text())
    assert config["lora_rank"] == 0 and config["chip"] == 256 and config["text_encoder"] == "minilm"


def test_detect_threshold_min_area_and_aoi_reach_the_engine(demo_scene, tmp_path, project):
    from qgis.core import QgsProcessingFeatureSourceDefinition, QgsVectorLayer

    aoi = QgsVectorLayer(f"{demo_scene.aoi}|layername=aoi", "aoi", "ogr")
    project.addMapLayer(aoi)
    alg = prepared("masktalk:detect_changes", {
        "BEFORE": str(demo_scene.before), "AFTER": str(demo_scene.after), "MODEL": str(tmp_path), "THRESHOLD": 0.8, "MIN_AREA": 12.5,
        "AOI": QgsProcessingFeatureSourceDefinition(aoi.id(), False), "OUTPUT": str(tmp_path / "out" / "c.tif"),
        "VECTORS": str(tmp_path / "out" / "c.gpkg")}, project)
    try:
        assert alg.job.options == {"threshold": 0.8, "min_area": 12.5}
        args = alg.job.engine_args("b.tif", "a.tif", None, str(alg.aoi_file.path))
        assert args[args.index("--threshold") + 1] == "0.8" and args[args.index("--min-area") + 1] == "12.5"
        assert args[args.index("--aoi") + 1] == str(alg.aoi_file.path) and alg.aoi_file.path.name == "aoi.gpkg"
        assert alg.aoi_file.export is not None  # a sub-layer: exported in processAlgorithm, off the main thread
        assert (tmp_path / "out").is_dir()  # the output folder is made (and probed) before the run
    finally:
        alg.cleanup()


def test_detect_refuses_an_output_folder_it_cannot_write(demo_scene, tmp_path, project):
    import processing
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    feedback = QgsProcessingFeedback()
    with pytest.raises(QgsProcessingException):
        processing.run("masktalk:detect_changes", {"BEFORE": str(demo_scene.before), "AFTER": str(demo_scene.after),
                                                   "MODEL": str(tmp_path), "OUTPUT": "/proc/masktalk/changes.tif"}, feedback=feedback)
    assert "cannot write the detection to /proc/masktalk" in feedback.textLog()  # what the Toolbox log shows
    assert "Traceback" not in feedback.textLog()


def test_rules_are_checked_before_running_when_the_engine_facts_are_known(engine_python, demo_scene, tmp_path, monkeypatch):
    """LoRA on EfficientNet-Lite0 is refused in the dialog's check, with the engine's own reason."""
    import importlib

    from qgis.core import QgsApplication, QgsProcessingContext, QgsProject

    eo = importlib.import_module("masktalk.plugin.engine_options")
    monkeypatch.setattr(eo, "cache_dir", lambda: tmp_path / "cache")  # not the user's profile
    eo.invalidate()
    eo.load(engine_python)  # asks the engine once (cached)
    alg = QgsApplication.processingRegistry().createAlgorithmById("masktalk:train_change_model")
    backbones = alg.parameterDefinition("BACKBONE").options()
    params = {"BEFORE": str(demo_scene.before), "AFTER": str(demo_scene.after), "LABELS": f"{demo_scene.labels}|layername=labels",
              "CLASS_FIELD": "class", "OUTPUT": str(tmp_path / "run"), "BACKBONE": backbones.index("efficientnet_lite0"),
              "LORA_RANK": 8}
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    ok, message = alg.checkParameterValues(params, context)
    assert not ok and message.startswith("LoRA targets attention projections; backbone efficientnet_lite0 has none")
    params["LORA_RANK"] = 0
    assert alg.checkParameterValues(params, context) == (True, "")
    eo.invalidate()


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
                                                         "TTA": 1, "OUTPUT": str(out), "VECTORS": str(vectors)})
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
    # the GeoPackage's layers are loaded and styled too
    by_name = {l.name(): l for l in project.mapLayers().values()}
    assert by_name["changes"].source() == f"{vectors}|layername=changes"
    assert by_name["changes"].renderer().type() == "categorizedSymbol"
    assert by_name["changes"].renderer().categories()[0].label() == "building destroyed"
    assert by_name["captions"].labelsEnabled()


def test_detect_at_its_defaults_with_selected_aoi_features(tiny_run, demo_scene, tmp_path, project):
    """No output named: the files go beside the project; the selected AOI polygon is the mask."""
    import numpy as np
    import processing
    from osgeo import gdal
    from qgis.core import QgsFeature, QgsGeometry, QgsProcessingFeatureSourceDefinition, QgsRectangle, QgsVectorLayer

    project.setFileName(str(tmp_path / "analysis.qgz"))
    x0, _, _, y0, _, _ = gdal.Open(str(demo_scene.before)).GetGeoTransform()
    aoi = QgsVectorLayer("Polygon?crs=EPSG:32636", "aoi", "memory")
    for rect in (QgsRectangle(x0 + 8, y0 - 40, x0 + 40, y0 - 8), QgsRectangle(x0 + 64, y0 - 120, x0 + 120, y0 - 64)):
        f = QgsFeature()
        f.setGeometry(QgsGeometry.fromRect(rect))
        aoi.dataProvider().addFeatures([f])
    project.addMapLayer(aoi)
    aoi.selectByIds([next(aoi.getFeatures()).id()])
    results = processing.run("masktalk:detect_changes", {
        "BEFORE": str(demo_scene.before), "AFTER": str(demo_scene.after), "MODEL": str(tiny_run.dir),
        "AOI": QgsProcessingFeatureSourceDefinition(aoi.id(), True)})
    out, vectors = Path(results["OUTPUT"]), Path(results["VECTORS"])
    assert out.parent == tmp_path / "masktalk" / "detections" and out.is_file() and vectors == out.with_suffix(".gpkg")
    ds = gdal.Open(str(out))
    assert (ds.RasterXSize, ds.RasterYSize) == (64, 64)  # the selected polygon's extent (32 m at 0.5 m), not both
    assert ds.GetGeoTransform()[0] == pytest.approx(x0 + 8) and ds.GetGeoTransform()[3] == pytest.approx(y0 - 8)
    classes = ds.GetRasterBand(1).ReadAsArray()
    assert np.isin(classes, list(range(7))).all()  # a rectangle covering its whole extent: no pixel is outside the mask
    for name in ("changes", "captions"):
        assert QgsVectorLayer(f"{vectors}|layername={name}", name, "ogr").isValid()
