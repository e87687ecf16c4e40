"""The plugin loads in real QGIS (offscreen): classFactory, initGui, unload -- and unload or
QGIS's exit during a run ends the engine, leaving no process and no output behind."""

import importlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def plugin_package(tmp_path, monkeypatch):
    """The checkout imported as the installed plugin package ``masktalk``."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "masktalk").symlink_to(REPO, target_is_directory=True)
    monkeypatch.syspath_prepend(str(plugins))
    for name in [m for m in sys.modules if m == "masktalk" or m.startswith("masktalk.")]:
        del sys.modules[name]
    yield importlib.import_module("masktalk")
    for name in [m for m in sys.modules if m == "masktalk" or m.startswith("masktalk.")]:
        del sys.modules[name]


def test_metadata_is_valid_for_the_plugin_repository():
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(REPO / "metadata.txt", encoding="utf-8")
    general = cfg["general"]
    for key in ("name", "qgisMinimumVersion", "description", "about", "version", "author", "email",
                "repository", "tracker", "category", "icon", "tags", "hasProcessingProvider"):
        assert general.get(key), f"metadata.txt lacks {key}"
    assert general["name"] == "MaskTalk"
    assert general["qgisMinimumVersion"] == "3.22"
    # QGIS 4 (Qt6) offers the plugin: a maximum that reaches 4.x and the Qt6 flag plugins.qgis.org reads.
    assert general["qgisMaximumVersion"] == "4.99" and general["supportsQt6"] == "True"
    assert "example." not in general["email"] and "@" in general["email"]
    for key in ("homepage", "repository", "tracker"):
        assert general[key].startswith("https://github.com/masktalk/masktalk")
    assert general["category"] == "Raster"
    assert general["hasProcessingProvider"] == "yes"
    assert (REPO / general["icon"]).is_file()


def test_class_factory_init_gui_unload(qgis_iface, plugin_package):
    from qgis.core import QgsApplication
    from qgis.PyQt.QtWidgets import QDockWidget

    plugin = plugin_package.classFactory(qgis_iface)
    plugin.initGui()
    try:
        main_window = qgis_iface.mainWindow()
        docks = [d for d in main_window.findChildren(QDockWidget) if d.objectName() == "MaskTalkDock"]
        assert len(docks) == 1
        assert plugin.actions and plugin.actions[0].text() == "MaskTalk"
        assert plugin.actions[0].isCheckable()
        providers = [p.id() for p in QgsApplication.processingRegistry().providers()]
        if plugin.provider is not None:
            assert "masktalk" in providers
    finally:
        plugin.unload()
    assert plugin.actions == []
    assert plugin.dock is None
    assert "masktalk" not in [p.id() for p in QgsApplication.processingRegistry().providers()]
    # no torch (or rasterio) loaded into QGIS's Python by the plugin
    assert "torch" not in sys.modules
    assert "rasterio" not in sys.modules


# -- no orphans ------------------------------------------------------------------------------------
def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("X", "Z")
    except FileNotFoundError:
        return False


def _group(pgid: int) -> list:
    """Live processes of process group ``pgid`` (the engine and what it started)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] not in ("X", "Z"):
                out.append(int(entry))
    return out


@pytest.fixture(scope="module")
def scene_and_model(engine_python, tmp_path_factory):
    """The demo scene at the engine demo's default size (1024 px) and a tiny model trained on it."""
    out = tmp_path_factory.mktemp("shutdown")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONPATH"] = str(REPO)
    code = "import sys; from engine.scene import make_demo_scene; make_demo_scene(sys.argv[1], 1024, 0)"
    subprocess.run([str(engine_python), "-c", code, str(out / "scene")], cwd=REPO, env=env, check=True, timeout=300)
    scene = out / "scene"
    # A few optimiser steps: the model only has to load; this test is about stopping predict.
    subprocess.run([str(engine_python), "-m", "engine", "train", "--before", str(scene / "before.tif"), "--after",
                    str(scene / "after.tif"), "--labels", str(scene / "labels.gpkg"), "--out", str(out / "run"),
                    "--steps", "4", "--chip", "64", "--batch-size", "2", "--device", "cpu", "--progress", "none"],
                   cwd=REPO, env=env, check=True, timeout=600, capture_output=True)
    return scene, out / "run"


def test_unloading_the_plugin_during_a_real_detection_ends_the_engine_and_leaves_no_output(
        qgis_iface, plugin_package, scene_and_model, tmp_path):
    """As in QGIS: a detection runs in a worker thread (here with the engine's defaults:
    the first run of a model exports it to ONNX), the user unloads MaskTalk. Unload must
    return with the engine and its children gone, and no output file at all."""
    scene, model = scene_and_model
    plugin = plugin_package.classFactory(qgis_iface)
    plugin.initGui()
    runner_module = importlib.import_module("masktalk.plugin.runner")
    supervisor = importlib.import_module("masktalk.plugin.supervisor")
    out = tmp_path / "detections"
    out.mkdir()
    runner = runner_module.EngineRunner()
    events, errors = [], []

    def detect():
        try:
            runner.run("predict", ["--before", str(scene / "before.tif"), "--after", str(scene / "after.tif"),
                                   "--model", str(model), "--out", str(out / "changes.tif"),
                                   "--vectors", str(out / "changes.gpkg")], on_event=events.append)
        except Exception as exc:  # noqa: BLE001 - examined below
            errors.append(exc)

    worker = threading.Thread(target=detect)
    worker.start()
    try:
        deadline = time.monotonic() + 120
        while not any(e.get("event") == "log" for e in events) and time.monotonic() < deadline and worker.is_alive():
            time.sleep(0.05)
        assert any(e.get("event") == "log" for e in events), (events, errors)  # past its imports: it is working
        pid = runner.pid
        assert pid is not None and _alive(pid)
        started = time.monotonic()
    finally:
        plugin.unload()
    elapsed = time.monotonic() - started
    assert elapsed < supervisor.SHUTDOWN_GRACE_S + 10
    assert not _alive(pid) and _group(pid) == []
    assert supervisor.live_children() == []
    worker.join(30)
    assert len(errors) == 1 and isinstance(errors[0], runner_module.EngineCancelled), (errors, events[-3:])
    assert "MaskTalk was unloaded" in errors[0].message
    assert sorted(p.name for p in out.iterdir()) == []  # no output and no temporary file


def test_quitting_qgis_during_a_run_ends_the_engine(qgis_iface, qgis_app, plugin_package, fake_engine_dir, tmp_path,
                                                    monkeypatch):
    """``aboutToQuit`` is connected while the plugin is loaded, and its handler ends every engine run."""
    from qgis.core import QgsApplication

    app = QgsApplication.instance()
    receivers = app.receivers(app.aboutToQuit)
    plugin = plugin_package.classFactory(qgis_iface)
    plugin.initGui()
    try:
        assert app.receivers(app.aboutToQuit) == receivers + 1
        runner_module = importlib.import_module("masktalk.plugin.runner")
        pid_file = tmp_path / "pid"
        monkeypatch.setenv("FAKE_PID_FILE", str(pid_file))
        runner = runner_module.EngineRunner(python=sys.executable, plugin_dir=fake_engine_dir)
        ticks, errors = [], []

        def work():
            try:
                runner.run("slow", on_progress=lambda f, m: ticks.append(m))
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

        worker = threading.Thread(target=work)
        worker.start()
        deadline = time.monotonic() + 30
        while len(ticks) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        pid = runner.pid
        plugin.on_about_to_quit()
        assert not _alive(pid)
        worker.join(10)
        assert isinstance(errors[0], runner_module.EngineCancelled) and "QGIS is closing" in errors[0].message
    finally:
        plugin.unload()
    assert app.receivers(app.aboutToQuit) == receivers
