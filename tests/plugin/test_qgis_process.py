"""``qgis_process`` (QGIS's command line) lists and runs the MaskTalk algorithms from a shell."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import PLUGINS_DIR

# Debian's /usr/bin/qgis_process wrapper passes $QGIS_OPTS, which the binary may reject: call it directly.
QGIS_PROCESS = shutil.which("qgis_process.bin") or "/usr/bin/qgis_process.bin"


@pytest.fixture(scope="module")
def qgis_process_env(tmp_path_factory, engine_python):
    if not Path(QGIS_PROCESS).is_file():
        pytest.skip(f"{QGIS_PROCESS} not installed (Debian package qgis)")
    config = tmp_path_factory.mktemp("qgis-config")
    ini = config / "profiles" / "default" / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True)
    ini.write_text("[PythonPlugins]\nmasktalk=true\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PROJ_DATA", "PROJ_LIB", "PYTHONPATH")}
    env.update(QGIS_PLUGINPATH=str(PLUGINS_DIR), QGIS_CUSTOM_CONFIG_PATH=str(config), QT_QPA_PLATFORM="offscreen",
               MASKTALK_ENGINE_PYTHON=str(engine_python))
    env.setdefault("XDG_RUNTIME_DIR", "/tmp/runtime-%d" % os.getuid())
    return env


def qgis_process(env, *args, cwd=None):
    return subprocess.run([QGIS_PROCESS, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=180)


def test_lists_the_masktalk_algorithms(qgis_process_env):
    done = qgis_process(qgis_process_env, "list")
    assert done.returncode == 0, done.stderr
    for alg, name in (("caption_labels", "Caption change labels"), ("train_change_model", "Train change model"),
                      ("detect_changes", "Detect changes")):
        assert f"masktalk:{alg}\t{name}" in done.stdout


def test_runs_caption_change_labels_on_the_demo_labels(qgis_process_env, demo_scene, tmp_path):
    out, js = tmp_path / "captions.gpkg", tmp_path / "captions.json"
    done = qgis_process(qgis_process_env, "--json", "run", "masktalk:caption_labels", "--",
                        f"LABELS={demo_scene.truth}", "PRESET=0", "CHIP=128", f"OUTPUT={out}", f"JSON={js}", cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(done.stdout[done.stdout.index("{"):])
    chips = json.loads(js.read_text())
    assert report["results"]["CHIPS"] == len(chips) > 0
    assert report["results"]["OUTPUT"] == str(out) and out.is_file()
    assert all(s.endswith(".") for c in chips for s in c["sentences"])


def test_engine_errors_fail_the_command_with_the_engine_message(qgis_process_env, demo_scene, tmp_path):
    done = qgis_process(qgis_process_env, "run", "masktalk:caption_labels", "--",
                        f"LABELS={demo_scene.before}", f"OUTPUT={tmp_path / 'c.gpkg'}", cwd=tmp_path)
    assert done.returncode != 0
    assert "has 3 bands" in done.stdout + done.stderr


def test_help_shows_the_engine_declarations(qgis_process_env, tmp_path):
    done = qgis_process(qgis_process_env, "--json", "help", "masktalk:train_change_model", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    params = json.loads(done.stdout[done.stdout.index("{"):])["parameters"]
    lora = params["LORA_RANK"]
    assert lora["default_value"] == 0 and "0 = full fine-tuning" in lora["help"]  # the engine's default and help
    assert "clip" not in params["TEXT_ENCODER"]["raw_definition"]["options"]
    assert params["OUTPUT"]["optional"]  # left out: a persistent run folder in the QGIS profile, not a temporary one
    profile = Path(qgis_process_env["QGIS_CUSTOM_CONFIG_PATH"]) / "profiles" / "default"
    assert Path(params["OUTPUT"]["default_value"]).parent == profile / "masktalk" / "output" / "runs"


def test_detect_with_only_its_inputs_writes_a_persistent_styled_result(qgis_process_env, tiny_run, demo_scene, tmp_path):
    done = qgis_process(qgis_process_env, "--json", "run", "masktalk:detect_changes", "--", f"BEFORE={demo_scene.before}",
                        f"AFTER={demo_scene.after}", f"MODEL={tiny_run.dir}", "THRESHOLD=0.6", cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads(done.stdout[done.stdout.index("{"):])["results"]
    out, vectors = Path(results["OUTPUT"]), Path(results["VECTORS"])
    profile = Path(qgis_process_env["QGIS_CUSTOM_CONFIG_PATH"]) / "profiles" / "default"
    assert out.parent == profile / "masktalk" / "output" / "detections" and out.is_file() and vectors.is_file()
    assert "--threshold 0.6" in done.stdout + done.stderr
