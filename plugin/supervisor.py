"""One supervisor for every child process the plugin starts: the engine and the set-up steps.

:func:`supervise` starts a command, hands each line of its standard output to a callback
in the calling thread, and stops it on request: first politely (SIGTERM on POSIX,
CTRL_BREAK on Windows: the engine finishes its current step and commits nothing
half-written), then, after a grace period, for good (SIGKILL to the whole process group
on POSIX, ``TerminateJobObject`` on Windows, so DataLoader workers and pip's own
children go too). Whatever happens (a callback raising, a cancel, a timeout), the child
is reaped, its pipes are closed and it leaves the registry.

The registry of live children is what makes *no orphans* possible: plugin unload and
QGIS's ``aboutToQuit`` call :func:`terminate_all`, which stops every child this plugin
started, waits for them, and kills the stubborn ones. On Windows each child is also in a
job object that kills it when QGIS's handle closes, even if QGIS crashes.

Standard library only, no QGIS: used from tasks, Processing algorithms and tests alike.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import IO, Any, Callable, Optional, Sequence, Union

log = logging.getLogger("masktalk.supervisor")

#: Environment variables of QGIS that break another Python/GDAL/PROJ in a child:
#: rasterio and fiona ship their own GDAL and PROJ; QGIS on Windows sets PYTHONHOME.
CHILD_ENV_DROP = (
    "PROJ_DATA",
    "PROJ_LIB",
    "GDAL_DATA",
    "GDAL_DRIVER_PATH",
    "PYTHONHOME",
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "PYTHONEXECUTABLE",
    "VIRTUAL_ENV",
    "__PYVENV_LAUNCHER__",
)
DEFAULT_GRACE_S = 10.0
#: Grace given at plugin unload / QGIS exit: long enough for the engine's next cancel
#: check (one chip, one training step), short enough not to hold QGIS's exit for long.
SHUTDOWN_GRACE_S = 5.0
#: After the child exited, how long to wait for the end of its output when a grandchild
#: still holds the pipe open (it is then killed with the rest of the group).
DRAIN_AFTER_EXIT_S = 2.0

#: Where a child's standard error goes: a file, ``subprocess.STDOUT`` (merged into the
#: lines), ``subprocess.DEVNULL``, or None (inherited).
Stderr = Union[IO[Any], int, None]  # Union: evaluated at import time, Python 3.9


def clean_environment(base: Optional[dict] = None) -> dict:
    """Environment for a child Python: QGIS's PROJ/GDAL/Python variables dropped
    (see :data:`CHILD_ENV_DROP`), stdout unbuffered UTF-8, no bytecode files."""
    env = dict(os.environ if base is None else base)
    for name in CHILD_ENV_DROP:
        env.pop(name, None)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


class _Empty:
    """No line within the timeout (the child still runs)."""


EMPTY = _Empty()

# -- registry of live children --------------------------------------------------------------
_LIVE: "set[ChildProcess]" = set()
_LIVE_LOCK = threading.Lock()


def live_children() -> list:
    """The children started by this plugin that have not been reaped yet."""
    with _LIVE_LOCK:
        return list(_LIVE)


def terminate_all(grace_s: float = SHUTDOWN_GRACE_S, reason: str = "shutdown") -> list:
    """Stop every live child (plugin unload, QGIS exit): polite stop, wait, then kill.

    Returns when every child has exited (at most about ``grace_s`` plus the kill), so
    that nothing outlives the plugin. The threads that supervise them see the exit and
    report the run as stopped (:attr:`Outcome.shutdown`).

    Returns:
        The process ids that were stopped.
    """
    children = live_children()
    if not children:
        return []
    log.info("stopping %d engine process(es): %s", len(children), reason)
    for child in children:
        child.request_stop(shutdown=True)
    deadline = time.monotonic() + max(0.0, grace_s)
    for child in children:
        try:
            child.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for child in children:
        if child.poll() is None:
            log.warning("process %s did not stop within %.0f s; killing it", child.pid, grace_s)
        child.kill()  # also the group's leftovers when the leader already left
        try:
            child.wait(5.0)
        except subprocess.TimeoutExpired:  # pragma: no cover - the kernel did not deliver SIGKILL
            log.error("process %s survived SIGKILL", child.pid)
    return [c.pid for c in children]


atexit.register(terminate_all, SHUTDOWN_GRACE_S, "Python exits")  # last resort when no unload ran


# -- one child ---------------------------------------------------------------------------------
class ChildProcess:
    """A started child in its own process group (POSIX) or job object (Windows).

    A reader thread turns standard output into lines (:meth:`read_line`). The child is in
    the registry from :meth:`start` until :meth:`close`.
    """

    def __init__(self, proc: subprocess.Popen, name: str) -> None:
        self.proc = proc
        self.name = name
        self.started = time.monotonic()
        self.stop_requested_at: Optional[float] = None
        self.shutdown = False
        self._killed = False
        self._eof = threading.Event()
        self._lines: queue.Queue = queue.Queue()
        self._job = _windows_job(proc) if os.name == "nt" else None
        self._reader = threading.Thread(target=self._pump, name=f"masktalk-{name}-stdout", daemon=True)
        self._reader.start()
        with _LIVE_LOCK:
            _LIVE.add(self)

    @classmethod
    def start(
        cls,
        argv: Sequence[str],
        cwd: Optional[str] = None,
        env: Optional[dict] = None,
        stderr: Stderr = None,
        name: str = "child",
    ) -> "ChildProcess":
        """Start ``argv`` with stdin closed and stdout piped.

        Raises:
            OSError: the program could not be started (missing, not executable).
        """
        kwargs: dict = {}
        if os.name == "nt":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)
        else:
            kwargs["start_new_session"] = True  # its own process group: a kill reaches its children
        log.info("starting %s: %s", name, subprocess.list2cmdline(list(argv)))
        proc = subprocess.Popen(  # nosec B603 - argv is a list (no shell): the engine or pip, built by the plugin
            list(argv), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, **kwargs
        )
        return cls(proc, name)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stop_requested(self) -> bool:
        return self.stop_requested_at is not None

    @property
    def killed(self) -> bool:
        return self._killed

    def poll(self) -> Optional[int]:
        return self.proc.poll()

    def wait(self, timeout: Optional[float] = None) -> int:
        return self.proc.wait(timeout)

    def read_line(self, timeout: float):
        """The next output line, :data:`EMPTY` when none came within ``timeout``, None at the end."""
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            return EMPTY

    def request_stop(self, shutdown: bool = False) -> None:
        """Polite stop (thread-safe, once): the engine stops at its next step and exits 130."""
        if shutdown:
            self.shutdown = True
        if self.stop_requested_at is not None:
            return
        self.stop_requested_at = time.monotonic()
        if self.proc.poll() is not None:
            return
        try:
            if os.name == "nt":
                self.proc.send_signal(signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]
            else:
                self.proc.send_signal(signal.SIGTERM)
        except OSError:
            pass

    def kill(self) -> None:
        """Hard stop of the child and of everything it started (its process group / job)."""
        alive = self.proc.poll() is None
        if os.name == "nt":
            if self._job is not None and _terminate_job(self._job):
                self._killed = self._killed or alive
                return
            if alive:
                self._killed = True
                try:
                    self.proc.kill()
                except OSError:
                    pass
            return
        if not alive and self._eof.is_set():
            return  # gone, and no grandchild holds its output open
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (OSError, ProcessLookupError):
            if alive:
                try:
                    self.proc.kill()
                except OSError:
                    pass
        self._killed = self._killed or alive

    def close(self) -> None:
        """Reap the child (killing it if it still runs), join the reader, leave the registry."""
        try:
            if self.proc.poll() is None or not self._eof.is_set():
                self.kill()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:  # pragma: no cover
                log.error("%s (pid %s) could not be reaped", self.name, self.proc.pid)
            self._reader.join(timeout=5)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            if self._job is not None:
                _close_handle(self._job)
                self._job = None
        finally:
            with _LIVE_LOCK:
                _LIVE.discard(self)

    def _pump(self) -> None:
        stream = self.proc.stdout
        try:
            for raw in iter(stream.readline, b""):
                self._lines.put(raw.decode("utf-8", errors="replace"))
        except (OSError, ValueError):
            pass
        finally:
            self._eof.set()
            self._lines.put(None)


@dataclass
class Outcome:
    """How a supervised command ended.

    Attributes:
        returncode: the exit code (negative: killed by that signal).
        stop_requested: a stop was asked (cancel, timeout or shutdown).
        killed: it did not stop within the grace period and was killed.
        timed_out: the stop was asked because ``timeout_s`` passed.
        shutdown: the stop came from :func:`terminate_all` (plugin unload, QGIS exit).
        seconds: wall time from start to exit.
    """

    returncode: int
    stop_requested: bool = False
    killed: bool = False
    timed_out: bool = False
    shutdown: bool = False
    seconds: float = 0.0


def supervise(
    argv: Sequence[str],
    on_line: Optional[Callable[[str], None]] = None,
    should_stop: Optional[Callable[[], bool]] = None,
    grace_s: float = DEFAULT_GRACE_S,
    timeout_s: Optional[float] = None,
    cwd: Optional[str] = None,
    env: Optional[dict] = None,
    stderr: Stderr = None,
    name: str = "child",
    on_start: Optional[Callable[[ChildProcess], None]] = None,
    poll_s: float = 0.1,
) -> Outcome:
    """Run ``argv`` to its end; ``on_line`` gets each stdout line (with its newline) in this thread.

    Args:
        argv: the command (no shell).
        on_line: called for every line of standard output.
        should_stop: polled about every ``poll_s``; True asks the child to stop.
        grace_s: seconds between the polite stop and the kill.
        timeout_s: ask the child to stop after this many seconds.
        cwd, env: working folder and environment of the child.
        stderr: where standard error goes (see :data:`Stderr`).
        name: for logs and thread names.
        on_start: called with the :class:`ChildProcess` once it runs.
        poll_s: how often ``should_stop`` and the clocks are looked at.

    Raises:
        OSError: the command could not be started.
        Whatever ``on_line`` or ``should_stop`` raise (the child is killed first).
    """
    child = ChildProcess.start(argv, cwd=cwd, env=env, stderr=stderr, name=name)
    timed_out = False
    exited_at: Optional[float] = None

    def check_stop() -> None:
        nonlocal timed_out
        if not child.stop_requested:
            if timeout_s is not None and time.monotonic() - child.started > timeout_s:
                log.warning("%s ran longer than %.0f s; stopping it", name, timeout_s)
                timed_out = True
                child.request_stop()
            elif should_stop is not None and should_stop():
                child.request_stop()
        if child.stop_requested and not child.killed and child.poll() is None:
            if time.monotonic() - (child.stop_requested_at or 0.0) > grace_s:
                log.warning("%s did not stop within %.0f s of the request; killing it", name, grace_s)
                child.kill()

    try:
        if on_start is not None:
            on_start(child)
        while True:
            check_stop()
            line = child.read_line(poll_s)
            if line is None:
                break
            if line is EMPTY:
                if child.poll() is not None:
                    exited_at = exited_at or time.monotonic()
                    if time.monotonic() - exited_at > DRAIN_AFTER_EXIT_S:
                        break  # a grandchild holds the pipe: close() kills the group
                continue
            if on_line is not None:
                on_line(line)
        while True:
            try:
                code = child.wait(poll_s)
                break
            except subprocess.TimeoutExpired:
                check_stop()
    except BaseException:
        child.kill()  # a callback raised, or we are interrupted: never leave the child behind
        raise
    finally:
        child.close()
    return Outcome(
        returncode=code,
        stop_requested=child.stop_requested,
        killed=child.killed,
        timed_out=timed_out,
        shutdown=child.shutdown,
        seconds=time.monotonic() - child.started,
    )


def run_captured(argv: Sequence[str], timeout_s: float = 10.0, env: Optional[dict] = None) -> tuple:
    """A short command's exit code and standard output (stderr dropped), supervised.

    Returns:
        ``(exit code, output)``; the code is None when the command could not start or
        ran past ``timeout_s`` (it is then stopped).
    """
    lines: list = []
    try:
        outcome = supervise(argv, on_line=lines.append, timeout_s=timeout_s, grace_s=1.0, env=env,
                            stderr=subprocess.DEVNULL, name=os.path.basename(str(argv[0])))
    except OSError:
        return None, ""
    return (None if outcome.timed_out else outcome.returncode), "".join(lines)


# -- Windows: a job object per child -----------------------------------------------------------
_KERNEL32 = None


def _kernel32():  # pragma: no cover - Windows only
    """kernel32 with the signatures used here (HANDLE arguments are pointer-sized)."""
    global _KERNEL32
    if _KERNEL32 is None:
        import ctypes
        from ctypes import wintypes

        k = ctypes.WinDLL("kernel32", use_last_error=True)
        k.CreateJobObjectW.restype = wintypes.HANDLE
        k.CreateJobObjectW.argtypes = [ctypes.c_void_p, wintypes.LPCWSTR]
        k.SetInformationJobObject.restype = wintypes.BOOL
        k.SetInformationJobObject.argtypes = [wintypes.HANDLE, ctypes.c_int, ctypes.c_void_p, wintypes.DWORD]
        k.AssignProcessToJobObject.restype = wintypes.BOOL
        k.AssignProcessToJobObject.argtypes = [wintypes.HANDLE, wintypes.HANDLE]
        k.TerminateJobObject.restype = wintypes.BOOL
        k.TerminateJobObject.argtypes = [wintypes.HANDLE, wintypes.UINT]
        k.CloseHandle.restype = wintypes.BOOL
        k.CloseHandle.argtypes = [wintypes.HANDLE]
        _KERNEL32 = k
    return _KERNEL32


def _windows_job(proc: subprocess.Popen):  # pragma: no cover - Windows only
    """A job object holding ``proc`` that kills it (and its children) when its last handle closes."""
    try:
        import ctypes
        from ctypes import wintypes

        class IoCounters(ctypes.Structure):
            _fields_ = [(n, ctypes.c_ulonglong) for n in (
                "ReadOperationCount", "WriteOperationCount", "OtherOperationCount",
                "ReadTransferCount", "WriteTransferCount", "OtherTransferCount")]

        class BasicLimits(ctypes.Structure):
            _fields_ = [
                ("PerProcessUserTimeLimit", ctypes.c_int64),
                ("PerJobUserTimeLimit", ctypes.c_int64),
                ("LimitFlags", wintypes.DWORD),
                ("MinimumWorkingSetSize", ctypes.c_size_t),
                ("MaximumWorkingSetSize", ctypes.c_size_t),
                ("ActiveProcessLimit", wintypes.DWORD),
                ("Affinity", ctypes.c_size_t),
                ("PriorityClass", wintypes.DWORD),
                ("SchedulingClass", wintypes.DWORD),
            ]

        class ExtendedLimits(ctypes.Structure):
            _fields_ = [
                ("BasicLimitInformation", BasicLimits),
                ("IoInfo", IoCounters),
                ("ProcessMemoryLimit", ctypes.c_size_t),
                ("JobMemoryLimit", ctypes.c_size_t),
                ("PeakProcessMemoryUsed", ctypes.c_size_t),
                ("PeakJobMemoryUsed", ctypes.c_size_t),
            ]

        k = _kernel32()
        job = k.CreateJobObjectW(None, None)
        if not job:
            return None
        limits = ExtendedLimits()
        limits.BasicLimitInformation.LimitFlags = 0x2000  # JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
        extended_limit_information = 9  # JobObjectExtendedLimitInformation
        ok = k.SetInformationJobObject(job, extended_limit_information, ctypes.byref(limits), ctypes.sizeof(limits))
        if ok:
            ok = k.AssignProcessToJobObject(job, int(proc._handle))  # noqa: SLF001 - Popen's process handle
        if not ok:
            log.warning("could not put pid %s in a job object (error %s); a kill reaches it alone",
                        proc.pid, ctypes.get_last_error())
            k.CloseHandle(job)
            return None
        return job
    except Exception as exc:  # noqa: BLE001 - no job object: fall back to killing the process alone
        log.warning("no job object for pid %s: %s", proc.pid, exc)
        return None


def _terminate_job(job) -> bool:  # pragma: no cover - Windows only
    return bool(_kernel32().TerminateJobObject(job, 1))


def _close_handle(job) -> None:  # pragma: no cover - Windows only
    _kernel32().CloseHandle(job)
