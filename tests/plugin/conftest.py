"""Plugin tests: real QGIS (offscreen, via pytest-qgis), the engine in its own Python.

The checkout is imported as the installed plugin package ``masktalk`` (a symlink in a
temporary plugins folder), as QGIS imports it. Modules are imported inside tests through
the ``mt`` fixture, because other tests reload ``masktalk`` from scratch.

The engine interpreter is ``MASKTALK_ENGINE_PYTHON`` (the Makefile points it at ``.venv``),
else the repository's ``.venv``.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.pop("PROJ_DATA", None)
os.environ.pop("PROJ_LIB", None)

REPO = Path(__file__).resolve().parents[2]
_PLUGINS = Path(tempfile.mkdtemp(prefix="masktalk-test-plugins-"))
(_PLUGINS / "masktalk").symlink_to(REPO, target_is_directory=True)
sys.path.insert(0, str(_PLUGINS))
atexit.register(shutil.rmtree, _PLUGINS, True)
PLUGINS_DIR = _PLUGINS


def engine_python_path() -> Path | None:
    env = os.environ.get("MASKTALK_ENGINE_PYTHON")
    path = Path(env) if env else REPO / ".venv" / "bin" / "python"
    return path if path.is_file() else None


@pytest.fixture(scope="session")
def engine_python() -> Path:
    path = engine_python_path()
    if path is None:
        pytest.skip("no engine Python: set MASKTALK_ENGINE_PYTHON or create .venv (make setup)")
    os.environ["MASKTALK_ENGINE_PYTHON"] = str(path)
    return path


@pytest.fixture(scope="session")
def engine_commands(engine_python) -> set[str]:
    """Subcommands the engine has today (``python -m engine --help``)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONPATH"] = str(REPO)
    out = subprocess.run([str(engine_python), "-m", "engine", "--help"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    commands = set()
    in_list = False
    for line in out.stdout.splitlines():
        if line.strip() == "COMMAND":
            in_list = True
        elif in_list and line and not line.startswith(" "):
            break  # "options:"
        elif in_list and line.startswith("    ") and not line.startswith("     "):
            commands.add(line.split()[0])  # "    name   help"; wrapped help lines are indented deeper
    return commands


@pytest.fixture()
def require_command(engine_commands):
    def check(name: str) -> None:
        if name not in engine_commands:
            pytest.skip(f"the engine has no '{name}' command yet (python -m engine --help lists {sorted(engine_commands)})")

    return check


@pytest.fixture()
def mt():
    """The plugin's modules, imported from the ``masktalk`` package now."""
    names = ("runner", "environment", "settings", "layers", "tasks", "diagnostics")
    ns = types.SimpleNamespace(**{n: importlib.import_module(f"masktalk.plugin.{n}") for n in names})
    ns.schema = importlib.import_module("masktalk.engine.schema")
    return ns


@pytest.fixture(scope="session")
def demo_scene(engine_python, tmp_path_factory) -> types.SimpleNamespace:
    """A 256 px demo scene (EPSG:32636, 0.5 m) written by the engine's own generator."""
    out = tmp_path_factory.mktemp("demo")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONPATH"] = str(REPO)
    code = (
        "import json, sys; from engine.scene import make_demo_scene; s = make_demo_scene(sys.argv[1], 256, 0); "
        "print(json.dumps({k: str(getattr(s, k)) for k in ('before', 'after', 'truth', 'labels', 'aoi')}))"
    )
    done = subprocess.run([str(engine_python), "-c", code, str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    paths = json.loads(done.stdout.strip().splitlines()[-1])
    return types.SimpleNamespace(**{k: Path(v) for k, v in paths.items()}, dir=out)


@pytest.fixture()
def private_tmp(tmp_path, monkeypatch) -> Path:
    """Route every temporary file of the test (in-process and children) to one folder."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.setenv("TMPDIR", str(tmp))
    return tmp


def leftovers(folder: Path) -> list[str]:
    """Files a test left in its private temporary folder.

    Excluded: QGIS's own ``QGIS3.*`` files and torch's persistent compile cache
    (``torchinductor_<user>``, shared by every run on purpose, not a per-run file).
    """
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(("QGIS3", "torchinductor_")))


@contextlib.contextmanager
def provider_registered():
    """The MaskTalk Processing provider registered while the block runs (re-entrant)."""
    from qgis.core import QgsApplication

    registry = QgsApplication.processingRegistry()
    if registry.providerById("masktalk") is not None:
        yield registry.providerById("masktalk")
        return
    module = importlib.import_module("masktalk.plugin.processing.provider")
    provider = module.MaskTalkProvider()
    assert registry.addProvider(provider)
    try:
        yield provider
    finally:
        registry.removeProvider(provider)


@pytest.fixture(scope="module")
def masktalk_provider(qgis_app, qgis_processing):
    """The MaskTalk Processing provider registered for one test module.

    Module scope, not session: the plugin-load tests register and unregister their own.
    """
    with provider_registered() as provider:
        yield provider


@pytest.fixture(scope="session")
def tiny_run(engine_python, engine_commands, demo_scene, tmp_path_factory, qgis_app, qgis_processing):
    """A tiny model trained with ``processing.run("masktalk:train_change_model")`` (seconds on the CPU)."""
    missing = {"train", "predict"} - engine_commands
    if missing:
        pytest.skip(f"the engine has no {'/'.join(sorted(missing))} command yet")
    import processing
    from qgis.core import QgsProcessingFeedback

    out = tmp_path_factory.mktemp("run") / "run"
    feedback = QgsProcessingFeedback()
    params = {
        "BEFORE": str(demo_scene.before), "AFTER": str(demo_scene.after), "LABELS": f"{demo_scene.labels}|layername=labels",
        "CLASS_FIELD": "class", "PRESET": 0, "STAGE1_EPOCHS": 1, "STAGE2_EPOCHS": 1, "CHIP": 64, "BATCH_SIZE": 4,
        "DEVICE": 1, "SEED": 0, "OUTPUT": str(out),
    }
    with provider_registered():
        results = processing.run("masktalk:train_change_model", params, feedback=feedback)
    return types.SimpleNamespace(dir=Path(results["OUTPUT"]), best=Path(results["BEST"]), last=Path(results["LAST"]),
                                 log=feedback.textLog())


FAKE_ENGINE = r'''
"""A scriptable stand-in for ``python -m engine`` (protocol tests of the runner only)."""
import json, os, signal, sys, time

def emit(**obj):
    sys.stdout.write(json.dumps(obj) + "\n"); sys.stdout.flush()

MODES = ("ok", "slow", "stubborn", "oom", "crash", "input_error", "silent_exit")
mode = sys.argv[1] if sys.argv[1] in MODES else "slow"  # real command names (caption ...) run slowly
stop = {"flag": False}
def on_term(signum, frame):
    stop["flag"] = True
if mode != "stubborn":
    signal.signal(signal.SIGTERM, on_term)
else:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
emit(event="start", command=mode)
with open(os.environ.get("FAKE_PID_FILE", os.devnull), "w") as f:
    f.write(str(os.getpid()))
if mode == "ok":
    print("a library printing to stdout")
    emit(event="log", level="warning", message="careful")
    for i in range(3):
        emit(event="progress", fraction=(i + 1) / 3, message=f"step {i + 1}")
    emit(event="metrics", epoch=1, F1=0.5)
    emit(event="done", result={"answer": 42, "args": sys.argv[2:]})
elif mode in ("slow", "stubborn"):
    i = 0
    while True:
        if stop["flag"]:
            emit(event="cancelled", message="cancelled by the user")
            sys.exit(130)
        emit(event="progress", fraction=None, message=f"tick {i}")
        i += 1
        time.sleep(0.05)
elif mode == "oom":
    sys.stderr.write("allocating a lot\n"); sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)
elif mode == "crash":
    sys.stderr.write("Traceback (most recent call last):\n  File x\nZeroDivisionError: division by zero\n")
    sys.exit(1)
elif mode == "input_error":
    emit(event="error", message="label.tif has 3 bands; expected one band of class ids", kind="InputError")
    sys.exit(2)
elif mode == "silent_exit":
    sys.exit(0)
'''


@pytest.fixture()
def fake_engine_dir(tmp_path) -> Path:
    """A folder holding a fake ``engine`` package (stdlib only) for runner protocol tests."""
    root = tmp_path / "fake"
    pkg = root / "engine"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(FAKE_ENGINE)
    return root


WEB_MERCATOR_HALF = 20037508.342789244


@pytest.fixture(scope="session")
def xyz_tiles(demo_scene, tmp_path_factory, qgis_app) -> types.SimpleNamespace:
    """The demo *after* image as a local XYZ tile service (``file://`` URL, EPSG:3857, zoom 18).

    Tiles are cut from a GDAL warp of after.tif onto the zoom-18 tile grid, so the exact
    pixels a correct export must return are known (``array``, ``(3, H, W)`` uint8).
    """
    import math

    import numpy as np
    from osgeo import gdal
    from qgis.PyQt.QtGui import QImage

    z = 18
    size = 2 * WEB_MERCATOR_HALF / 2**z  # metres per tile
    root = tmp_path_factory.mktemp("xyz")
    info = gdal.Warp("", str(demo_scene.after), format="VRT", dstSRS="EPSG:3857")
    gt = info.GetGeoTransform()
    xmin, ymax = gt[0], gt[3]
    xmax, ymin = xmin + gt[1] * info.RasterXSize, ymax + gt[5] * info.RasterYSize
    info = None
    tx0, tx1 = math.floor((xmin + WEB_MERCATOR_HALF) / size), math.floor((xmax + WEB_MERCATOR_HALF) / size)
    ty0, ty1 = math.floor((WEB_MERCATOR_HALF - ymax) / size), math.floor((WEB_MERCATOR_HALF - ymin) / size)
    bounds = (-WEB_MERCATOR_HALF + tx0 * size, WEB_MERCATOR_HALF - (ty1 + 1) * size,
              -WEB_MERCATOR_HALF + (tx1 + 1) * size, WEB_MERCATOR_HALF - ty0 * size)
    nx, ny = tx1 - tx0 + 1, ty1 - ty0 + 1
    warped = gdal.Warp("", str(demo_scene.after), format="MEM", dstSRS="EPSG:3857", outputBounds=bounds,
                       width=256 * nx, height=256 * ny, resampleAlg="near", dstNodata=0)
    array = warped.ReadAsArray()
    warped = None
    for i in range(nx):
        for j in range(ny):
            tile = np.ascontiguousarray(array[:, j * 256:(j + 1) * 256, i * 256:(i + 1) * 256].transpose(1, 2, 0))
            folder = root / str(z) / str(tx0 + i)
            folder.mkdir(parents=True, exist_ok=True)
            QImage(tile.data, 256, 256, 256 * 3, QImage.Format_RGB888).copy().save(str(folder / f"{ty0 + j}.png"))
    uri = f"type=xyz&url=file://{root}/{{z}}/{{x}}/{{y}}.png&zmin={z}&zmax={z}"
    return types.SimpleNamespace(uri=uri, bounds=bounds, res=size / 256, array=array, zoom=z)


@pytest.fixture(scope="session", autouse=True)
def _nothing_of_qgis_outlives_exit_qgis(qgis_app):
    """QGIS objects still owned by Python at the end of the session are deleted now, before
    pytest-qgis calls ``exitQgis()`` (this fixture's teardown runs first): destroyed by the
    interpreter's finalisation instead, after ``exitQgis()``, they crash the process on green
    tests (GDALClose on a freed driver, double free). Objects C++ owns are left alone."""
    yield
    import gc

    from qgis.core import QgsApplication, QgsFeedback, QgsMapLayer, QgsProject, QgsTask, QgsVectorLayerFeatureSource
    from qgis.PyQt import sip

    QgsApplication.taskManager().cancelAll()
    QgsProject.instance().clear()
    QgsApplication.processEvents()
    gc.collect()
    kinds = (QgsMapLayer, QgsVectorLayerFeatureSource, QgsFeedback)
    for obj in gc.get_objects():
        try:
            if isinstance(obj, kinds) and not isinstance(obj, QgsTask) and not sip.isdeleted(obj) and sip.ispyowned(obj):
                sip.delete(obj)
        except (RuntimeError, TypeError, ReferenceError):
            continue
    QgsApplication.processEvents()
