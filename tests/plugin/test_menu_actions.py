"""The *Set up engine…* and *Diagnostics* menu actions of the loaded plugin."""

from __future__ import annotations

import importlib
import sys

import pytest

from .conftest import PLUGINS_DIR


@pytest.fixture()
def plugin(qgis_iface, qgis_app):
    for name in [m for m in sys.modules if m == "masktalk" or m.startswith("masktalk.")]:
        del sys.modules[name]
    assert str(PLUGINS_DIR) in sys.path
    package = importlib.import_module("masktalk")
    plugin = package.classFactory(qgis_iface)
    plugin.initGui()
    yield plugin
    plugin.unload()


def action(plugin, name):
    found = [a for a in plugin.actions if a.objectName() == name]
    assert len(found) == 1, [a.objectName() for a in plugin.actions]
    return found[0]


def test_diagnostics_action_shows_a_copyable_report(plugin, engine_python, qtbot):
    from qgis.core import Qgis
    from qgis.PyQt.QtWidgets import QApplication

    action(plugin, "mMaskTalkDiagnostics").trigger()
    qtbot.waitUntil(lambda: plugin.engine_actions.dialog is not None, timeout=120_000)
    dialog = plugin.engine_actions.dialog
    text = dialog.text.toPlainText()
    engine = plugin.engine_actions.task.result["engine"]
    assert engine["python"].startswith("3.") and engine["executable"]
    for needle in ("MaskTalk diagnostics", Qgis.QGIS_VERSION, f"torch: {engine['packages']['torch']}", "CUDA available:",
                   f"gdal: {engine['gdal']}", f"transformers: {engine['packages']['transformers']}",
                   "[weights and text encoders]", f"engine python: {engine_python}"):
        assert needle in text
    dialog.copy_button.click()
    assert QApplication.clipboard().text() == text


def test_setup_action_shows_the_plan_and_does_nothing_when_declined(plugin, monkeypatch, tmp_path, qtbot):
    import masktalk.plugin.diagnostics as diagnostics
    import masktalk.plugin.environment as environment

    monkeypatch.setattr(environment, "profile_dir", lambda: tmp_path / "profile")
    import threading

    probed = []

    def detect_gpu():  # nvidia-smi in real life: seconds, never on QGIS's main thread
        probed.append(threading.current_thread() is threading.main_thread())
        return environment.GpuInfo()

    monkeypatch.setattr(environment, "detect_gpu", detect_gpu)
    asked = {}

    def question(parent, title, text, *args):
        asked.update(title=title, text=text)
        return diagnostics.QMessageBox.No

    monkeypatch.setattr(diagnostics.QMessageBox, "question", question)
    action(plugin, "mMaskTalkSetupEngine").trigger()
    qtbot.waitUntil(lambda: "text" in asked, timeout=60_000)
    assert probed == [False]
    venv = tmp_path / "profile" / "masktalk" / "engine-venv"
    assert str(venv) in asked["text"] and "torch build: cpu" in asked["text"]
    assert "https://download.pytorch.org/whl/cpu" in asked["text"]
    assert plugin.engine_actions.task is None and not venv.exists()


def test_unload_removes_the_engine_actions(qgis_iface, qgis_app):
    for name in [m for m in sys.modules if m == "masktalk" or m.startswith("masktalk.")]:
        del sys.modules[name]
    plugin = importlib.import_module("masktalk").classFactory(qgis_iface)
    plugin.initGui()
    names = {a.objectName() for a in plugin.actions}
    assert {"mMaskTalkSetupEngine", "mMaskTalkDiagnostics"} <= names
    plugin.unload()
    assert plugin.actions == [] and plugin.engine_actions is None


def test_engine_python_action_saves_the_setting_and_automatic_clears_it(plugin, tmp_path, monkeypatch):
    """The error messages send users to MaskTalk > Engine Python…: it must exist and work."""
    from qgis.core import QgsSettings

    import masktalk.plugin.diagnostics as diagnostics
    import masktalk.plugin.environment as environment
    from masktalk.plugin.settings import PluginSettings

    monkeypatch.delenv(environment.ENV_VAR, raising=False)
    python = tmp_path / "engine" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    clicked = {}

    class Box(diagnostics.QMessageBox):
        def exec(self):
            clicked["text"] = self.text()
            self._clicked = next(b for b in self.buttons() if b.text() == clicked["button"])
            return 0

        def clickedButton(self):  # noqa: N802
            return self._clicked

    monkeypatch.setattr(diagnostics, "QMessageBox", Box)
    monkeypatch.setattr(diagnostics.QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(python), "")))
    rechecks = []
    monkeypatch.setattr(plugin.dock, "engine_changed", lambda *a: rechecks.append(environment.engine_python()))
    try:
        clicked["button"] = "Choose…"
        action(plugin, "mMaskTalkEnginePython").trigger()
        assert PluginSettings.load().engine_python == str(python)
        assert environment.engine_python() == environment.EnginePython(python, "setting")
        # the dock re-checks the engine, and finds the new one
        assert rechecks == [environment.EnginePython(python, "setting")]
        clicked["button"] = "Automatic"
        action(plugin, "mMaskTalkEnginePython").trigger()
        assert str(python) in clicked["text"]  # the dialog shows the current choice
        assert PluginSettings.load().engine_python == ""
        assert len(rechecks) == 2
        assert not plugin.engine_actions.set_engine_python(str(tmp_path / "gone"))  # not a file: refused
        assert PluginSettings.load().engine_python == "" and len(rechecks) == 2
    finally:
        QgsSettings().remove("MaskTalk/engine_python")
