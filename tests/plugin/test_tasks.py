"""Tasks in real QGIS: results on the main thread, errors to the caller, cancel, exported inputs."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from .conftest import leftovers


@pytest.fixture()
def project(qgis_new_project):
    from qgis.core import QgsProject

    yield QgsProject.instance()
    QgsProject.instance().clear()


def start(task):
    from qgis.core import QgsApplication

    QgsApplication.taskManager().addTask(task)
    return task


def _main_thread() -> bool:
    from qgis.PyQt.QtCore import QCoreApplication, QThread

    return QThread.currentThread() == QCoreApplication.instance().thread()


def test_caption_task_on_the_demo_scene(mt, engine_python, demo_scene, project, qtbot):
    from qgis.core import QgsRasterLayer

    labels = QgsRasterLayer(str(demo_scene.truth), "truth", "gdal")
    task = mt.tasks.CaptionTask(mt.settings.CaptionJob(labels=labels, options={"chip": 128}), project=project)
    seen = {}
    task.succeeded.connect(lambda result: seen.update(result=result, main=_main_thread(), layers=list(project.mapLayers())))
    progress = []
    task.progressChanged.connect(progress.append)
    with qtbot.waitSignal(task.succeeded, timeout=60_000):
        start(task)
    assert seen["main"] is True
    chips = seen["result"]["json"]
    assert chips and seen["result"]["chips"] == len(chips)
    assert progress and max(progress) == pytest.approx(100)
    # the captions layer was added before succeeded() was emitted, in its group, from a
    # GeoPackage beside the label raster
    group = project.layerTreeRoot().findGroup("MaskTalk captions")
    layer = group.findLayers()[0].layer()
    assert layer.id() in seen["layers"] and task.added_layers == [layer]
    assert layer.providerType() == "ogr" and layer.source().startswith(str(demo_scene.truth.with_name("truth_captions.gpkg")))
    assert layer.featureCount() == len(chips)
    captions = sorted(f["caption"] for f in layer.getFeatures())
    assert captions == sorted(" ".join(c["sentences"]) for c in chips)
    assert layer.extent().width() <= labels.extent().width() + 1e-6
    assert not task.temp.path.exists()


def test_caption_task_with_memory_labels(mt, engine_python, demo_scene, project, qtbot, tmp_path):
    from qgis.core import QgsRasterLayer, QgsVectorLayer

    source = QgsVectorLayer(f"{demo_scene.labels}|layername=labels", "labels", "ogr")
    mem = QgsVectorLayer(f"Polygon?crs={source.crs().authid()}", "drawn labels", "memory")
    mem.dataProvider().addAttributes(source.fields().toList())
    mem.updateFields()
    mem.dataProvider().addFeatures(list(source.getFeatures()))
    before = QgsRasterLayer(str(demo_scene.before), "before", "gdal")
    job = mt.settings.CaptionJob(labels=mem, reference=before, options={"chip": 64}, out_dir=str(tmp_path / "out"))
    task = mt.tasks.CaptionTask(job, project=project)
    assert not Path(task.label_path).exists()  # rasterised in the task's worker thread, not here
    with qtbot.waitSignal(task.succeeded, timeout=60_000) as blocker:
        start(task)
    assert (tmp_path / "out" / "captions.gpkg").is_file()  # a memory layer has no folder: the output folder
    chips = blocker.args[0]["json"]
    schema = mt.schema.load_preset("gaza")
    present = {schema.lookup(f["class"]) for f in mem.getFeatures()}
    assert {q["class_id"] for c in chips for q in c["quadruples"]} == present
    layer = task.added_layers[0]
    assert layer.crs() == before.crs()
    assert mem.extent().buffered(0.5).contains(layer.extent())
    assert mem.featureCount() == source.featureCount()  # the user's layer is unchanged


def test_engine_error_reaches_the_task_caller(mt, engine_python, demo_scene, project, qtbot):
    task = mt.tasks.CaptionTask(mt.settings.CaptionJob(labels=str(demo_scene.before)), project=project)
    with qtbot.waitSignal(task.failed, timeout=60_000) as blocker:
        start(task)
    message, details = blocker.args
    assert "has 3 bands" in message and "class ids" in message
    assert "exit code: 2" in details
    assert task.error.kind == "InputError"
    assert project.mapLayers() == {} and not task.temp.path.exists()


def test_bad_layers_fail_before_anything_runs(mt, project):
    from qgis.core import QgsVectorLayer

    empty = QgsVectorLayer("Polygon?crs=EPSG:32636&field=class:string", "empty", "memory")
    with pytest.raises(mt.layers.LayerProblem, match="no polygon with a class|no extent"):
        mt.tasks.CaptionTask(mt.settings.CaptionJob(labels=empty, resolution=1.0), project=project)


def test_cancel_ends_the_engine_and_leaves_nothing(mt, demo_scene, fake_engine_dir, private_tmp, tmp_path, project, qtbot, monkeypatch):
    pid_file = tmp_path / "pid"
    monkeypatch.setenv("FAKE_PID_FILE", str(pid_file))
    runner = mt.runner.EngineRunner(python=sys.executable, plugin_dir=fake_engine_dir, grace_s=2)
    out = tmp_path / "changes.tif"
    job = mt.settings.DetectJob(before=str(demo_scene.before), after=str(demo_scene.after), model=str(tmp_path), out_raster=str(out))
    task = mt.tasks.DetectTask(job, runner=runner, project=project)
    temp = task.temp.path
    assert temp.is_dir() and temp.is_relative_to(private_tmp)
    messages = []
    task.progressMessage.connect(messages.append)
    start(task)
    qtbot.waitUntil(lambda: len(messages) >= 2, timeout=30_000)  # the engine is running
    pid = int(pid_file.read_text())
    cancelled_at = time.monotonic()
    with qtbot.waitSignal(task.wasCancelled, timeout=10_000):
        task.cancel()
    assert time.monotonic() - cancelled_at < 5
    assert not Path(f"/proc/{pid}").exists()
    assert not out.exists() and project.mapLayers() == {}
    assert not temp.exists() and leftovers(private_tmp) == []


# -- train and detect (run once the engine has these commands) ---------------------------------
def test_train_task_cancel_stops_the_engine(mt, engine_python, engine_commands, demo_scene, project, qtbot, tmp_path, private_tmp):
    if "train" not in engine_commands:
        pytest.skip("the engine has no train command yet")
    from qgis.core import QgsVectorLayer

    labels = QgsVectorLayer(f"{demo_scene.labels}|layername=labels", "labels", "ogr")
    job = mt.settings.TrainJob(before=str(demo_scene.before), after=str(demo_scene.after), labels=labels,
                               out_dir=str(tmp_path / "run"))  # the defaults: hundreds of steps
    task = mt.tasks.TrainTask(job, project=project)
    assert Path(task.labels.path).is_relative_to(private_tmp)  # exported: the OGR URI names a sub-layer
    messages = []
    task.progressMessage.connect(messages.append)
    start(task)
    qtbot.waitUntil(lambda: len(messages) >= 2, timeout=120_000)
    pid = task.runner.pid
    cancelled_at = time.monotonic()
    with qtbot.waitSignal(task.wasCancelled, timeout=30_000):
        task.cancel()
    assert time.monotonic() - cancelled_at < 15
    assert pid is not None and not Path(f"/proc/{pid}").exists()
    assert leftovers(private_tmp) == []


def test_detect_task_adds_styled_outputs_in_a_group(mt, tiny_run, demo_scene, project, qtbot, tmp_path):
    out = tmp_path / "changes.tif"
    job = mt.settings.DetectJob(before=str(demo_scene.before), after=str(demo_scene.after), model=str(tiny_run.dir),
                                out_raster=str(out), out_vectors=str(tmp_path / "changes.gpkg"), group_name="run 1")
    task = mt.tasks.DetectTask(job, project=project)
    with qtbot.waitSignal(task.succeeded, timeout=300_000):
        start(task)
    group = project.layerTreeRoot().findGroup("run 1")
    nodes = {n.layer().name(): n for n in group.findLayers()}
    assert [n.layer().name() for n in group.findLayers()] == ["captions", "changes", "change classes", "confidence"]
    assert nodes["change classes"].layer().renderer().type() == "paletted"
    confidence = nodes["confidence"].layer()
    assert confidence.renderer().type() == "singlebandpseudocolor" and confidence.renderer().band() == 2
    assert confidence.source() == nodes["change classes"].layer().source() and not nodes["confidence"].isVisible()


def test_detect_task_cancel_leaves_no_output(mt, tiny_run, demo_scene, project, qtbot, tmp_path, private_tmp):
    out = tmp_path / "changes.tif"
    job = mt.settings.DetectJob(before=str(demo_scene.before), after=str(demo_scene.after), model=str(tiny_run.dir),
                                out_raster=str(out), options={"chip": 32, "overlap": 16, "batch_size": 1})  # slow, to cancel it
    task = mt.tasks.DetectTask(job, project=project)
    messages = []
    task.progressMessage.connect(messages.append)
    start(task)
    qtbot.waitUntil(lambda: len(messages) >= 1, timeout=120_000)
    with qtbot.waitSignal(task.wasCancelled, timeout=15_000):
        task.cancel()
    assert not out.exists() and project.mapLayers() == {}
    assert leftovers(private_tmp) == []


def test_detect_uses_an_exported_web_tile_layer(mt, tiny_run, demo_scene, xyz_tiles, project, qtbot, tmp_path):
    from osgeo import gdal
    from qgis.core import QgsRasterLayer, QgsReferencedRectangle

    before = QgsRasterLayer(str(demo_scene.before), "before", "gdal")
    after = QgsRasterLayer(xyz_tiles.uri, "after (web)", "wms")
    out = tmp_path / "changes.tif"
    job = mt.settings.DetectJob(before=before, after=after, model=str(tiny_run.dir), out_raster=str(out),
                                extent=QgsReferencedRectangle(before.extent(), before.crs()))
    task = mt.tasks.DetectTask(job, project=project)
    assert task.after.export is not None and task.before.export is None
    exported = str(task.after.path)
    with qtbot.waitSignal(task.succeeded, timeout=300_000):
        start(task)
    assert task.runner.last_command[task.runner.last_command.index("--after") + 1] == exported
    ds, ref = gdal.Open(str(out)), gdal.Open(str(demo_scene.before))
    assert (ds.RasterXSize, ds.RasterYSize) == (ref.RasterXSize, ref.RasterYSize)
    assert ds.GetGeoTransform() == pytest.approx(ref.GetGeoTransform())
    assert not Path(exported).exists()  # the temporary export is gone


def test_web_tiles_paired_with_a_file_need_no_extent_or_resolution(mt, demo_scene, xyz_tiles, project, tmp_path):
    """A web *after* layer paired with a file is exported on the file's extent at its detail."""
    from qgis.core import QgsCoordinateTransform, QgsRasterLayer, QgsRectangle

    before = QgsRasterLayer(str(demo_scene.before), "before", "gdal")
    after = QgsRasterLayer(xyz_tiles.uri, "after (web)", "wms")
    assert after.isValid()
    job = mt.settings.DetectJob(before=before, after=after, model="/no/model/needed", out_raster=str(tmp_path / "changes.tif"))
    task = mt.tasks.DetectTask(job, project=project)
    try:
        export = task.after.export
        assert task.before.export is None and export is not None and export.crs == after.crs()
        # the export covers the before image, and has about its 256 x 256 pixels (0.5 m in UTM)
        ct = QgsCoordinateTransform(before.crs(), after.crs(), project.transformContext())
        wanted = ct.transformBoundingBox(QgsRectangle(before.extent()))
        assert export.extent.contains(QgsRectangle(wanted.xMinimum() + 1, wanted.yMinimum() + 1,
                                                   wanted.xMaximum() - 1, wanted.yMaximum() - 1))
        assert abs(export.width - 256) <= 12 and abs(export.height - 256) <= 12
        assert task.extent is None  # the engine still works on the whole before image
    finally:
        task.temp.cleanup()

    labels = mt.layers.QgsVectorLayer(f"{demo_scene.labels}|layername=labels", "labels", "ogr")
    train = mt.tasks.TrainTask(mt.settings.TrainJob(before=before, after=after, labels=labels, out_dir=str(tmp_path / "run")),
                               project=project)
    try:
        assert train.after.export is not None and 0 < train.after.export.width <= 270
    finally:
        train.temp.cleanup()


def test_exports_show_progress_and_cancel_at_once(mt, demo_scene, xyz_tiles, fake_engine_dir, private_tmp, tmp_path, project,
                                                  qtbot, monkeypatch):
    """A web layer export is part of the task's progress bar and stops as soon as the user cancels."""
    from qgis.core import QgsRasterLayer

    pid_file = tmp_path / "pid"
    monkeypatch.setenv("FAKE_PID_FILE", str(pid_file))
    runner = mt.runner.EngineRunner(python=sys.executable, plugin_dir=fake_engine_dir, grace_s=2)
    before = QgsRasterLayer(str(demo_scene.before), "before", "gdal")
    after = QgsRasterLayer(xyz_tiles.uri, "after (web)", "wms")
    # the resolution of the before image, a tenth of it: an export of millions of pixels
    job = mt.settings.DetectJob(before=before, after=after, model=str(tmp_path), out_raster=str(tmp_path / "changes.tif"),
                                resolution=0.05)
    task = mt.tasks.DetectTask(job, runner=runner, project=project)
    assert task.after.export is not None and task.after.export.width > 2000
    messages, progress = [], []
    task.progressMessage.connect(messages.append)
    task.progressChanged.connect(progress.append)
    start(task)
    qtbot.waitUntil(lambda: any(0 < p < 100 * task.EXPORT_SHARE for p in progress), timeout=60_000)
    assert any(m.startswith("exporting after") for m in messages)
    cancelled_at = time.monotonic()
    with qtbot.waitSignal(task.wasCancelled, timeout=20_000):
        task.cancel()
    assert time.monotonic() - cancelled_at < 10
    assert not pid_file.exists()  # the engine never started
    assert not (tmp_path / "changes.tif").exists() and project.mapLayers() == {}
    assert leftovers(private_tmp) == []


def test_caption_labels_rasterised_off_the_main_thread_fail_cleanly(mt, demo_scene, project, qtbot, tmp_path):
    """A class name the schema does not have is found while the task runs (worker thread) and
    reported like any engine input error, naming the feature and the classes."""
    from qgis.core import QgsRasterLayer, QgsVectorLayer

    source = QgsVectorLayer(f"{demo_scene.labels}|layername=labels", "labels", "ogr")
    mem = QgsVectorLayer(f"Polygon?crs={source.crs().authid()}", "drawn labels", "memory")
    mem.dataProvider().addAttributes(source.fields().toList())
    mem.updateFields()
    feats = list(source.getFeatures())
    feats[0]["class"] = "alien landing"
    mem.dataProvider().addFeatures(feats)
    before = QgsRasterLayer(str(demo_scene.before), "before", "gdal")
    task = mt.tasks.CaptionTask(mt.settings.CaptionJob(labels=mem, reference=before, out_dir=str(tmp_path)), project=project)
    with qtbot.waitSignal(task.failed, timeout=60_000) as blocker:
        start(task)
    message = blocker.args[0]
    assert "'alien landing'" in message and "building destroyed" in message
    assert task.error.kind == "InputError" and project.mapLayers() == {} and not task.temp.path.exists()
