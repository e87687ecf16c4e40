"""Engine environment: which Python runs the engine, set-up plan and run, diagnostics, settings."""

from __future__ import annotations

import base64
import hashlib
import importlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

SMI_SUMMARY = """
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 570.86.15              Driver Version: 570.86.15      CUDA Version: 12.8     |
|-----------------------------------------+------------------------+----------------------+
"""
SMI_QUERY = "NVIDIA H100 80GB HBM3, 81559\nNVIDIA RTX A2000, 6138\n"


def fake_python(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_engine_python_order(mt, tmp_path, monkeypatch):
    env = mt.environment
    profile = tmp_path / "profile"
    monkeypatch.setattr(env, "development_venv", lambda: tmp_path / "repo" / ".venv")
    monkeypatch.delenv(env.ENV_VAR, raising=False)
    with pytest.raises(env.EnvironmentProblem) as info:
        env.engine_python(configured="", profile=profile)
    assert "Set up engine" in str(info.value) and str(profile / "masktalk" / "engine-venv") in str(info.value)

    dev = fake_python(env.venv_python(tmp_path / "repo" / ".venv"))
    assert env.engine_python(configured="", profile=profile) == env.EnginePython(dev, "development .venv")

    managed = fake_python(env.venv_python(env.managed_venv_dir(profile)))
    assert managed.is_relative_to(profile) and "plugins" not in managed.parts  # survives plugin upgrades
    assert env.engine_python(configured="", profile=profile).source == "managed venv"

    chosen = fake_python(tmp_path / "custom" / "python3")
    assert env.engine_python(configured=str(chosen), profile=profile) == env.EnginePython(chosen, "setting")
    with pytest.raises(env.EnvironmentProblem, match="does not exist"):
        env.engine_python(configured=str(tmp_path / "gone"), profile=profile)

    override = fake_python(tmp_path / "ci" / "python")
    monkeypatch.setenv(env.ENV_VAR, str(override))
    assert env.engine_python(configured=str(chosen), profile=profile) == env.EnginePython(override, "environment variable")


def test_gpu_detection_picks_the_torch_build(mt):
    env = mt.environment
    gpu = env.parse_nvidia_smi(SMI_SUMMARY, SMI_QUERY)
    assert gpu.names == ("NVIDIA H100 80GB HBM3", "NVIDIA RTX A2000")
    assert gpu.memory_mib == (81559, 6138) and gpu.cuda_version == (12, 8)
    assert env.torch_build(gpu) == "cu128"
    assert env.torch_build(env.GpuInfo(("x",), (1,), (12, 2))) == "cu126"
    assert env.torch_build(env.GpuInfo(("x",), (1,), (13, 1))) == "cu130"
    assert env.torch_build(env.GpuInfo(("x",), (1,), (11, 8))) == "cpu"
    assert env.torch_build(env.GpuInfo()) == "cpu"
    assert env.parse_nvidia_smi("", "") == env.GpuInfo()


def test_detect_gpu_without_nvidia_smi_is_cpu(mt, tmp_path):
    assert mt.environment.detect_gpu(nvidia_smi=str(tmp_path / "nvidia-smi")) == mt.environment.GpuInfo()


def test_detect_gpu_reads_nvidia_smi_and_gives_up_on_a_hanging_one(mt, tmp_path):
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\nif [ -n \"$1\" ]; then printf 'NVIDIA H100 80GB HBM3, 81559\\n'; "
                   "else echo '| NVIDIA-SMI 570.86.15   Driver Version: 570.86.15   CUDA Version: 12.8 |'; fi\n")
    smi.chmod(0o755)
    gpu = mt.environment.detect_gpu(nvidia_smi=str(smi))
    assert gpu.names == ("NVIDIA H100 80GB HBM3",) and gpu.cuda_version == (12, 8)
    smi.write_text("#!/bin/sh\nexec sleep 60\n")
    import time

    started = time.monotonic()
    assert mt.environment.detect_gpu(nvidia_smi=str(smi), timeout_s=0.5) == mt.environment.GpuInfo()
    assert time.monotonic() - started < 5


def test_cancelled_setup_stops_the_step_and_leaves_the_environment_incomplete(mt, tmp_path):
    env = mt.environment
    req = tmp_path / "requirements.txt"
    req.write_text("tinypkg==0.1\n")
    venv = tmp_path / "venv"
    fake_python(env.venv_python(venv))
    env.stamp_path(venv).write_text(env.requirements_hash(req) + "\n")
    plan = env.SetupPlan(venv, req, "cpu", [env.SetupStep("slow step", [sys.executable, "-c",
                                                          "import time; print('working', flush=True); time.sleep(60)"])])
    lines = []
    import time

    started = time.monotonic()
    with pytest.raises(env.SetupCancelled):
        env.run_setup(plan, on_log=lines.append, is_cancelled=lambda: "working" in lines)
    assert time.monotonic() - started < 10
    assert env.venv_state(venv, req) == "incomplete"  # the stamp went first: set-up must run again


def test_setup_plan_exact_commands(mt, tmp_path):
    env = mt.environment
    venv = tmp_path / "engine-venv"
    py = str(env.venv_python(venv))
    pip = [py, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--progress-bar", "off"]
    req = env.REQUIREMENTS

    cpu = env.setup_plan(venv, req, gpu=env.GpuInfo(), python="/usr/bin/python3")
    assert cpu.build == "cpu"
    assert [s.argv for s in cpu.steps] == [
        ["/usr/bin/python3", "-m", "venv", str(venv)],
        pip + ["--index-url", "https://download.pytorch.org/whl/cpu", "torch==2.14.1", "torchvision==0.29.1"],
        pip + ["-r", str(req)],
    ]
    gpu = env.setup_plan(venv, req, gpu=env.parse_nvidia_smi(SMI_SUMMARY, SMI_QUERY), python="/usr/bin/python3")
    assert gpu.steps[1].argv[-3:] == ["https://download.pytorch.org/whl/cu128", "torch==2.14.1", "torchvision==0.29.1"]
    assert "cu128" in gpu.describe()

    offline = env.setup_plan(venv, req, gpu=env.GpuInfo(), wheel_dir=tmp_path / "wheels", python="/usr/bin/python3")
    assert [s.argv for s in offline.steps][1:] == [pip + ["--no-index", "--find-links", str(tmp_path / "wheels"), "-r", str(req)]]


def _wheel(folder: Path, name: str = "tinypkg", version: str = "0.1") -> Path:
    """A minimal pure-Python wheel (no build tools, no network)."""
    files = {
        f"{name}/__init__.py": f"VALUE = {version!r}\n",
        f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{name}-{version}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: masktalk-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{name}-{version}.dist-info/RECORD,,")
    files[f"{name}-{version}.dist-info/RECORD"] = "\n".join(record) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(out, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return out


def test_setup_task_installs_from_a_local_wheel_folder(mt, tmp_path, qtbot, qgis_app):
    from qgis.core import QgsApplication

    env = mt.environment
    wheels = tmp_path / "wheels"
    _wheel(wheels)
    req = tmp_path / "requirements.txt"
    req.write_text("# engine requirements\ntinypkg==0.1\n")
    venv = tmp_path / "profile" / "masktalk" / "engine-venv"
    assert env.venv_state(venv, req) == "missing"
    plan = env.setup_plan(venv, req, gpu=env.GpuInfo(), wheel_dir=wheels)
    task = importlib.import_module("masktalk.plugin.engine_tasks").SetupEngineTask(plan)
    lines, progress = [], []
    task.logMessage.connect(lines.append)
    task.progressChanged.connect(progress.append)
    with qtbot.waitSignal(task.succeeded, timeout=120_000) as blocker:
        QgsApplication.taskManager().addTask(task)
    python = Path(blocker.args[0])
    assert python == env.venv_python(venv)
    assert env.venv_state(venv, req) == "ready"
    assert any("Successfully installed tinypkg-0.1" in line for line in lines)
    assert progress and max(progress) == 100
    value = subprocess.run([str(python), "-c", "import tinypkg; print(tinypkg.VALUE)"], capture_output=True, text=True)
    assert value.stdout.strip() == "0.1"
    # Requirements change -> the environment is reported stale until set-up runs again.
    req.write_text("tinypkg==0.2\n")
    assert env.venv_state(venv, req) == "stale"


def test_failed_setup_step_names_the_command(mt, tmp_path):
    env = mt.environment
    req = tmp_path / "requirements.txt"
    req.write_text("package-that-is-not-in-the-folder==1.0\n")
    venv = tmp_path / "venv"
    fake_python(env.venv_python(venv))  # skip venv creation; pip itself is the step that fails
    plan = env.setup_plan(venv, req, gpu=env.GpuInfo(), wheel_dir=tmp_path)
    plan.steps[0].argv[0] = sys.executable
    with pytest.raises(env.EnvironmentProblem) as info:
        env.run_setup(plan)
    assert "install the engine's packages" in str(info.value) and "--no-index" in str(info.value)
    assert env.venv_state(venv, req) == "incomplete"


def test_diagnostics_report_when_the_engine_is_missing(mt):
    text = mt.diagnostics.format_report({"engine": {"error": "no engine Python found"}, "qgis": {"qgis": "3.22"}, "engine_python": None})
    assert "engine not usable: no engine Python found" in text


def test_plugin_settings_round_trip(mt, qgis_app):
    from qgis.core import QgsSettings

    s = mt.settings.PluginSettings(engine_python="/opt/py", wheel_dir="/w", device="cuda", cancel_grace_s=3.5)
    try:
        s.save()
        loaded = mt.settings.PluginSettings.load()
        assert loaded == s and isinstance(loaded.cancel_grace_s, float)
    finally:
        QgsSettings().remove("MaskTalk")
    assert mt.settings.PluginSettings.load() == mt.settings.PluginSettings()


def test_project_settings_are_saved_in_the_project_file(mt, qgis_new_project, tmp_path):
    from qgis.core import QgsProject

    project = QgsProject.instance()
    mt.settings.ProjectSettings(preset="xbd", model="/runs/a", class_field="damage").save(project)
    path = tmp_path / "p.qgz"
    assert project.write(str(path))
    project.clear()
    assert mt.settings.ProjectSettings.load(project).preset == "gaza"
    assert project.read(str(path))
    loaded = mt.settings.ProjectSettings.load(project)
    assert (loaded.preset, loaded.model, loaded.class_field) == ("xbd", "/runs/a", "damage")
    project.clear()


def test_diagnostics_task_reports_a_missing_engine(mt, tmp_path, monkeypatch, qtbot, qgis_app):
    from qgis.core import QgsApplication

    monkeypatch.setenv(mt.environment.ENV_VAR, str(tmp_path / "no-python"))
    task = importlib.import_module("masktalk.plugin.engine_tasks").DiagnosticsTask()
    with qtbot.waitSignal(task.succeeded, timeout=30_000) as blocker:
        QgsApplication.taskManager().addTask(task)
    text = mt.diagnostics.format_report(blocker.args[0])
    assert "engine not usable" in text and str(tmp_path / "no-python") in text and "qgis_python" in text
