"""The plugin loads in real QGIS (offscreen): classFactory, initGui, unload."""

import importlib
import sys
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
