"""`make package` builds a zip that installs into a QGIS profile and loads."""

import collections
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def plugin_zip(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "package.py"), "--out", str(out)],
                          capture_output=True, text=True, check=True)
    path = Path(done.stdout.strip())
    assert path.is_file() and path.parent == out
    return path


def test_zip_layout(plugin_zip):
    with zipfile.ZipFile(plugin_zip) as zf:
        names = zf.namelist()
    assert {n.split("/")[0] for n in names} == {"masktalk"}
    for required in ("masktalk/metadata.txt", "masktalk/__init__.py", "masktalk/plugin/main.py",
                     "masktalk/engine/__main__.py", "masktalk/engine/presets/gaza.json",
                     "masktalk/resources/icon.png", "masktalk/requirements.txt", "masktalk/LICENSE"):
        assert required in names
    forbidden = ("/tests/", "__pycache__", ".pyc", "/.git", "/.venv", "/bench/", ".safetensors", ".pth")
    assert not [n for n in names if any(f in n for f in forbidden)]
    assert plugin_zip.stat().st_size < 20 * 1024 * 1024


def test_zip_installs_into_a_profile_and_loads(plugin_zip, tmp_path, qgis_iface, monkeypatch):
    import qgis.utils

    plugins = tmp_path / "profile" / "python" / "plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(plugin_zip) as zf:
        zf.extractall(plugins)
    monkeypatch.syspath_prepend(str(plugins))
    monkeypatch.setattr(qgis.utils, "plugin_paths", [str(plugins)])
    monkeypatch.setattr(qgis.utils, "iface", qgis_iface)
    monkeypatch.setattr(qgis.utils, "plugins", {})
    monkeypatch.setattr(qgis.utils, "active_plugins", [])
    # QGIS records a plugin's modules through an import hook that the desktop app installs;
    # offscreen it is absent, so give unloadPlugin an (empty) record to clear.
    monkeypatch.setattr(qgis.utils, "_plugin_modules", collections.defaultdict(set))
    for name in [m for m in sys.modules if m == "masktalk" or m.startswith("masktalk.")]:
        del sys.modules[name]
    try:
        assert qgis.utils.loadPlugin("masktalk")
        assert qgis.utils.startPlugin("masktalk")
        plugin = qgis.utils.plugins["masktalk"]
        assert Path(sys.modules["masktalk"].__file__).parent == plugins / "masktalk"
        assert plugin.dock is not None
        assert qgis.utils.unloadPlugin("masktalk")
        assert plugin.dock is None
    finally:
        for name in [m for m in sys.modules if m == "masktalk" or m.startswith("masktalk.")]:
            del sys.modules[name]
