"""The one child-process supervisor: lines, cancel, kill of the whole group, the registry, shutdown."""

from __future__ import annotations

import importlib
import os
import sys
import threading
import time
from pathlib import Path

import pytest


@pytest.fixture()
def sv():
    return importlib.import_module("masktalk.plugin.supervisor")


def _gone(pid: int) -> bool:
    """True when the process no longer exists (not even as a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("X", "Z") and not _is_our_child(pid)


def _is_our_child(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1]) == os.getpid()
    except FileNotFoundError:
        return False


def _wait_for(predicate, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


#: A parent that starts a grandchild (inheriting its stdout), prints both pids, then sleeps.
FAMILY = r"""
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
print("pids", os.getpid(), child.pid, flush=True)
if sys.argv[1] == "leave":
    sys.exit(0)  # the grandchild keeps our stdout open
time.sleep(120)
"""


def _family():
    """(pids list filled by the callback, the callback)."""
    pids = []

    def on_line(line):
        if line.startswith("pids"):
            pids.extend(int(p) for p in line.split()[1:])

    return pids, on_line


def test_lines_reach_the_callback_in_order_and_the_exit_code_comes_back(sv):
    lines = []
    outcome = sv.supervise([sys.executable, "-c", "import sys\nfor i in range(3): print('line', i)\nsys.exit(3)"],
                           on_line=lines.append)
    assert [line.rstrip() for line in lines] == ["line 0", "line 1", "line 2"]
    assert outcome.returncode == 3 and not outcome.stop_requested and not outcome.killed
    assert sv.live_children() == []


def test_cancel_kills_the_whole_process_group(sv):
    pids, on_line = _family()
    outcome = sv.supervise([sys.executable, "-c", FAMILY, "stay"], on_line=on_line, should_stop=lambda: bool(pids), grace_s=5)
    # SIGTERM ended the parent (default action); the grandchild ignores nothing but got no signal:
    # closing the supervised child kills what is left of its group.
    assert outcome.stop_requested and outcome.returncode != 0
    assert len(pids) == 2 and _wait_for(lambda: all(_gone(p) for p in pids), 5), pids
    assert sv.live_children() == []


def test_a_grandchild_holding_the_output_open_does_not_hang_the_run_and_is_killed(sv):
    pids, on_line = _family()
    started = time.monotonic()
    outcome = sv.supervise([sys.executable, "-c", FAMILY, "leave"], on_line=on_line)
    assert outcome.returncode == 0
    assert time.monotonic() - started < sv.DRAIN_AFTER_EXIT_S + 5  # not the grandchild's 120 s
    assert len(pids) == 2 and _wait_for(lambda: _gone(pids[1]), 5)


def test_a_stubborn_child_is_killed_after_the_grace_period(sv):
    code = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\ntime.sleep(60)"
    seen = []
    started = time.monotonic()
    outcome = sv.supervise([sys.executable, "-c", code], on_line=seen.append, should_stop=lambda: bool(seen), grace_s=0.5)
    assert outcome.killed and outcome.returncode == -9
    assert 0.5 <= time.monotonic() - started < 5


def test_a_raising_callback_leaves_no_child(sv):
    holder = {}

    def boom(line):
        raise KeyError("callback bug")

    with pytest.raises(KeyError):
        sv.supervise([sys.executable, "-c", "import time\nprint('x', flush=True)\ntime.sleep(60)"], on_line=boom,
                     on_start=lambda child: holder.update(pid=child.pid))
    assert _wait_for(lambda: _gone(holder["pid"]), 5) and sv.live_children() == []


def test_timeout_stops_the_child(sv):
    outcome = sv.supervise([sys.executable, "-c", "import time; time.sleep(60)"], timeout_s=0.3, grace_s=1)
    assert outcome.timed_out and outcome.stop_requested and outcome.seconds < 5


def test_run_captured_returns_the_output_or_none_on_timeout(sv, tmp_path):
    code, out = sv.run_captured([sys.executable, "-c", "import sys; print('hello'); sys.stderr.write('noise')"])
    assert code == 0 and out == "hello\n"
    code, out = sv.run_captured([sys.executable, "-c", "import time; time.sleep(60)"], timeout_s=0.3)
    assert code is None
    assert sv.run_captured([str(tmp_path / "missing")]) == (None, "")


def test_terminate_all_stops_a_run_in_another_thread_and_the_run_says_why(mt, sv, fake_engine_dir, tmp_path, monkeypatch):
    """What plugin unload and QGIS exit do: the run ends as cancelled, nothing is left running."""
    pid_file = tmp_path / "pid"
    monkeypatch.setenv("FAKE_PID_FILE", str(pid_file))
    runner = mt.runner.EngineRunner(python=sys.executable, plugin_dir=fake_engine_dir)
    errors = []
    ticks = []

    def work():
        try:
            runner.run("slow", on_progress=lambda f, m: ticks.append(m))
        except Exception as exc:  # noqa: BLE001 - examined below
            errors.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    assert _wait_for(lambda: len(ticks) >= 2, 30)
    pid = runner.pid
    assert [c.pid for c in sv.live_children()] == [pid]
    started = time.monotonic()
    assert sv.terminate_all(grace_s=5, reason="test") == [pid]
    assert time.monotonic() - started < 5  # the fake engine stops at its next tick
    assert _gone(pid)
    thread.join(10)
    assert len(errors) == 1 and isinstance(errors[0], mt.runner.EngineCancelled)
    assert "QGIS is closing or MaskTalk was unloaded" in errors[0].message
    assert sv.live_children() == []


def test_terminate_all_kills_what_ignores_the_stop(sv):
    code = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\ntime.sleep(60)"
    ready = threading.Event()
    result = {}

    def work():
        result["outcome"] = sv.supervise([sys.executable, "-c", code], on_line=lambda line: ready.set(), grace_s=60)

    thread = threading.Thread(target=work)
    thread.start()
    assert ready.wait(30)
    started = time.monotonic()
    pids = sv.terminate_all(grace_s=0.5)
    assert 0.5 <= time.monotonic() - started < 5 and len(pids) == 1 and _gone(pids[0])
    thread.join(10)
    assert result["outcome"].shutdown and result["outcome"].returncode == -9


def test_setup_step_cancel_stops_pip_and_its_children(mt, sv):
    """environment's set-up steps run under the same supervisor (no second one)."""
    pids = []

    def on_log(line):
        if line.startswith("pids"):
            pids.extend(int(p) for p in line.split()[1:])

    code, tail = mt.environment._run_step([sys.executable, "-c", FAMILY, "stay"], on_log, lambda: bool(pids))
    assert code is None and "pids" in tail
    assert len(pids) == 2 and _wait_for(lambda: all(_gone(p) for p in pids), 5)


def test_environment_and_runner_share_the_supervisor_code():
    """No second Popen loop: only supervisor.py starts processes in the plugin."""
    plugin = Path(__file__).resolve().parents[2] / "plugin"
    starters = sorted(p.name for p in plugin.rglob("*.py") if "subprocess.Popen(" in p.read_text(encoding="utf-8")
                      or "subprocess.run(" in p.read_text(encoding="utf-8"))
    assert starters == ["supervisor.py"]
