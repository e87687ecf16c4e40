"""The engine runner: JSON lines in, callbacks and one error out; cancel, kill, no leftovers."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from .conftest import leftovers


def _gone(pid: int) -> bool:
    """True when the process no longer exists (not even as a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("X",)


def fake_runner(mt, fake_engine_dir, **kw):
    return mt.runner.EngineRunner(python=sys.executable, plugin_dir=fake_engine_dir, **kw)


def test_events_become_callbacks_and_the_result_is_returned(mt, fake_engine_dir, private_tmp):
    progress, logs, events = [], [], []
    run = fake_runner(mt, fake_engine_dir).run_full(
        "ok",
        ["--x", "1"],
        on_progress=lambda f, m: progress.append((f, m)),
        on_log=lambda level, m: logs.append((level, m)),
        on_event=events.append,
    )
    assert run.result["answer"] == 42
    assert run.result["args"] == ["--x", "1", "--progress", "jsonl"]
    assert [round(f, 3) for f, _ in progress] == [0.333, 0.667, 1.0]
    assert progress[-1][1] == "step 3"
    assert ("info", "a library printing to stdout") in logs
    assert ("warning", "careful") in logs
    assert {"event": "metrics", "epoch": 1, "F1": 0.5} in events
    assert run.exit_code == 0
    assert leftovers(private_tmp) == []  # stderr went to an anonymous file


def test_command_line_and_child_environment(mt, tmp_path):
    runner = mt.runner.EngineRunner(python=sys.executable, plugin_dir=tmp_path)
    assert runner.command_line("caption", ["a.tif", "--chip", 64]) == [
        sys.executable, "-m", "engine", "caption", "a.tif", "--chip", "64", "--progress", "jsonl"]
    env = mt.runner.child_environment(tmp_path, base={"PROJ_DATA": "/usr/share/proj", "PROJ_LIB": "x", "PYTHONHOME": "/q",
                                                       "PYTHONPATH": "/qgis/python", "GDAL_DRIVER_PATH": "/q", "HOME": "/root"})
    assert "PROJ_DATA" not in env and "PROJ_LIB" not in env and "PYTHONHOME" not in env and "GDAL_DRIVER_PATH" not in env
    assert env["PYTHONPATH"] == str(tmp_path)
    assert env["HOME"] == "/root" and env["PYTHONUNBUFFERED"] == "1"


def test_child_sees_no_proj_variables(mt, engine_python, monkeypatch):
    monkeypatch.setenv("PROJ_DATA", "/nonexistent/proj")
    code = "import os, json; print(json.dumps({'event': 'done', 'result': {'proj': os.environ.get('PROJ_DATA'), 'cwd': os.getcwd()}}))"
    runner = mt.runner.EngineRunner(python=engine_python)
    # Run the interpreter directly through the same start-up path: -c instead of -m engine.
    runner.command_line = lambda command, args=(): [str(engine_python), "-c", code]
    result = runner.run("x")
    assert result["proj"] is None
    assert os.path.samefile(result["cwd"], mt.runner.PLUGIN_DIR)


def test_real_engine_caption_result(mt, engine_python, demo_scene):
    fractions = []
    result = mt.runner.EngineRunner().run(
        "caption", [str(demo_scene.truth), "--preset", "gaza", "--chip", "128", "--json"],
        on_progress=lambda f, m: fractions.append(f))
    chips = result["json"]
    assert result["chips"] == len(chips) >= 1
    for chip in chips:
        assert set(chip["window"]) == {"row_off", "col_off", "height", "width"}
        assert len(chip["sentences"]) == len(chip["quadruples"]) >= 1
        assert all(s[0].isupper() and s.endswith(".") for s in chip["sentences"])
    assert fractions and fractions[-1] == 1.0


def test_engine_error_reaches_the_caller_with_its_message(mt, engine_python, tmp_path):
    missing = tmp_path / "nowhere.tif"
    with pytest.raises(mt.runner.EngineError) as info:
        mt.runner.EngineRunner().run("caption", [str(missing), "--preset", "gaza"])
    err = info.value
    assert str(missing) in err.message and "does not exist" in err.message
    assert err.kind == "InputError" and err.exit_code == 2 and err.is_user_error
    assert "caption" in err.details()


def test_input_error_from_the_protocol(mt, fake_engine_dir):
    with pytest.raises(mt.runner.EngineError) as info:
        fake_runner(mt, fake_engine_dir).run("input_error")
    assert info.value.message == "label.tif has 3 bands; expected one band of class ids"
    assert info.value.kind == "InputError"


def test_cancel_stops_the_engine_quickly_and_leaves_nothing(mt, fake_engine_dir, private_tmp, tmp_path, monkeypatch):
    pid_file = tmp_path / "pid"
    monkeypatch.setenv("FAKE_PID_FILE", str(pid_file))
    runner = fake_runner(mt, fake_engine_dir, grace_s=5)
    ticks = []
    started = time.monotonic()
    with pytest.raises(mt.runner.EngineCancelled):
        runner.run("slow", on_progress=lambda f, m: ticks.append(m), is_cancelled=lambda: len(ticks) >= 3)
    assert time.monotonic() - started < 4
    pid = int(pid_file.read_text())
    assert _gone(pid)
    assert not runner.running and runner.pid is None
    assert leftovers(private_tmp) == []


def test_cancel_from_another_thread_kills_a_stubborn_engine_after_the_grace_period(mt, fake_engine_dir, tmp_path, monkeypatch):
    pid_file = tmp_path / "pid"
    monkeypatch.setenv("FAKE_PID_FILE", str(pid_file))
    runner = fake_runner(mt, fake_engine_dir, grace_s=0.5)
    threading.Timer(0.5, runner.cancel).start()
    started = time.monotonic()
    with pytest.raises(mt.runner.EngineCancelled):
        runner.run("stubborn")
    elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 4  # waited the grace period, then killed
    assert _gone(int(pid_file.read_text()))


def test_killed_engine_is_reported_as_out_of_memory(mt, fake_engine_dir):
    with pytest.raises(mt.runner.EngineError) as info:
        fake_runner(mt, fake_engine_dir).run("oom")
    err = info.value
    assert err.kind == "OutOfMemory" and err.exit_code == -9
    assert "out of memory" in err.message and "batch size" in err.message
    assert "allocating a lot" in err.stderr_tail


def test_crash_reports_the_tail_of_stderr(mt, fake_engine_dir):
    with pytest.raises(mt.runner.EngineError) as info:
        fake_runner(mt, fake_engine_dir).run("crash")
    err = info.value
    assert err.kind == "Crash" and err.exit_code == 1
    assert "ZeroDivisionError: division by zero" in err.message
    assert "Traceback" in err.stderr_tail and "Traceback" in err.details()


def test_exit_without_result_is_an_error(mt, fake_engine_dir):
    with pytest.raises(mt.runner.EngineError, match="without a result"):
        fake_runner(mt, fake_engine_dir).run("silent_exit")


def test_missing_interpreter_is_a_clear_error(mt, tmp_path):
    with pytest.raises(mt.runner.EngineError) as info:
        mt.runner.EngineRunner(python=tmp_path / "no-python").run("info")
    assert info.value.kind == "NotFound" and "Set up engine" in info.value.message


def test_a_failing_callback_does_not_leave_the_engine_running(mt, fake_engine_dir, tmp_path, monkeypatch):
    pid_file = tmp_path / "pid"
    monkeypatch.setenv("FAKE_PID_FILE", str(pid_file))

    def boom(fraction, message):
        raise KeyError("callback bug")

    with pytest.raises(KeyError):
        fake_runner(mt, fake_engine_dir).run("slow", on_progress=boom)
    assert _gone(int(pid_file.read_text()))


def test_an_engine_python_without_the_packages_says_to_set_up_the_engine(mt, tmp_path):
    """An interrupted set-up leaves a venv without numpy/torch: the error must say how to fix it."""
    import subprocess

    venv = tmp_path / "half-venv"
    subprocess.run(["python3", "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = mt.environment.venv_python(venv)
    with pytest.raises(mt.runner.EngineError) as info:
        mt.runner.EngineRunner(python=python).run("info", ["--json"])
    err = info.value
    assert err.kind == "MissingPackage" and err.is_user_error
    assert "'numpy'" in err.message and str(python) in err.message
    assert "Set up engine" in err.message and "Engine Python" in err.message
    assert "ModuleNotFoundError" in err.stderr_tail  # the traceback stays in the details
