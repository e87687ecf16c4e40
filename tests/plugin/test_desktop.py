"""The real QGIS desktop under Xvfb, as a new user meets it.

A fresh profile with this checkout as its plugin, the demo scene, and only what a new
user touches: *before*, *after*, the label layer, *Caption labels*, *Train*, *Detect
changes*. Every engine option stays at its default, every folder at the dock's default.
The desktop is driven by ``scripts/screenshots.py`` (what ``make screenshots`` runs), so
the screenshots of the docs show exactly this; its ``--status`` JSON is checked here.

One training at the engine's defaults: a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]
QGIS = Path("/usr/bin/qgis")
SYSTEM_PYTHON = Path("/usr/bin/python3")


@pytest.fixture(scope="module")
def desktop_run(engine_python, tmp_path_factory):
    if not shutil.which("xvfb-run") or not QGIS.is_file() or not SYSTEM_PYTHON.is_file():
        pytest.skip("needs the QGIS desktop (/usr/bin/qgis), xvfb-run and the system Python")
    work = tmp_path_factory.mktemp("desktop")
    status = work / "status.json"
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["TMPDIR"] = str(work)
    cmd = [str(SYSTEM_PYTHON), str(REPO / "scripts" / "screenshots.py"), "--size", "256", "--out", str(work / "shots"),
           "--status", str(status), "--engine-python", str(engine_python), "--qgis", str(QGIS), "--timeout", "3000"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=3300)
    data = json.loads(status.read_text(encoding="utf-8")) if status.is_file() else {}
    data["_exit_code"] = done.returncode
    data["_log"] = (done.stdout + done.stderr)[-6000:]
    data["_shots"] = sorted(p.name for p in (work / "shots").glob("*.png"))
    return data


def test_the_plugin_loads_in_a_fresh_profile(desktop_run):
    run = desktop_run
    assert run.get("shots"), run["_log"]
    assert run["stored_options"] == []  # nothing set before: a new user's profile
    assert run["class_field"] == "class"  # picked with the label layer
    assert run["engine_options"] in ("engine", "cache")  # the engine environment's own declarations


def test_defaults_train_and_detect_in_the_desktop(desktop_run):
    run = desktop_run
    assert not run.get("errors"), "\n".join(run["errors"]) + "\n" + run["_log"]
    steps = run["steps"]
    for kind in ("caption", "train", "detect"):
        step = steps[kind]
        assert step["enabled"], f"{kind}: {step['tooltip']}"
        assert step["ok"], f"{kind}: {step['status']}\n{step.get('error')}"
        assert step["options"] == {}, f"{kind}: options set although the user set none: {step['options']}"
    train = steps["train"]
    assert "--lora-rank" not in train["command"] and "--backbone" not in train["command"]
    assert train["result"]["steps"] >= 300 and train["result"]["best_metrics"]
    assert run["_exit_code"] == 0, run["_log"]
    assert run["_shots"] == ["01-dock-layers.png", "02-captions.png", "03-train.png", "04-detect.png"]


def test_detect_adds_the_styled_group(desktop_run):
    groups = desktop_run.get("detection_groups") or []
    assert len(groups) == 1, groups
    layers = {layer["name"]: layer for layer in groups[0]["layers"]}
    assert set(layers) == {"change classes", "confidence", "changes", "captions"}
    assert all(layer["valid"] for layer in layers.values())
    assert layers["change classes"]["renderer"] == "paletted" and layers["change classes"]["visible"]
    assert layers["confidence"]["renderer"] == "singlebandpseudocolor" and layers["confidence"]["band"] == 2
    assert layers["confidence"]["source"] == layers["change classes"]["source"]
    assert layers["changes"]["renderer"] == "categorizedSymbol"
    assert layers["captions"]["labels"] and layers["captions"]["features"] > 0
