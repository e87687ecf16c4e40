"""Run ``python -m engine <command>`` in the engine environment and read its JSON lines.

The engine never runs inside QGIS: it runs in its own Python (see :mod:`.environment`)
as a child process that prints one JSON object per line on stdout
(``--progress jsonl``, see ``engine/progress.py``). :class:`EngineRunner` starts it,
turns those lines into callbacks (progress, log lines, other events) and returns the
``done`` event's result, or raises one :class:`EngineError` that carries the engine's
own message (``error`` event) or, for a crash, the exit code and the tail of stderr.

Guarantees, whatever happens (error, cancel, exception in a callback):

- the child is waited for (no zombie), its pipes are closed;
- stderr goes to an anonymous temporary file (no file is left behind) whose tail ends
  up in the error;
- cancel sends SIGTERM, which the engine turns into "stop at the next step" (training
  keeps its ``last`` checkpoint), then kills the process group after a grace period.

This module imports no QGIS: it is used from tasks, Processing algorithms and tests alike.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

log = logging.getLogger("masktalk.runner")

PLUGIN_DIR = Path(__file__).resolve().parent.parent
#: Exit codes of ``engine/cli.py``.
EXIT_OK, EXIT_INTERNAL, EXIT_INPUT, EXIT_MODEL, EXIT_CANCELLED = 0, 1, 2, 3, 130
#: Environment variables of QGIS that break another Python/GDAL/PROJ in the child:
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
STDERR_TAIL_CHARS = 4000
DEFAULT_GRACE_S = 10.0

ProgressCallback = Callable[[Optional[float], str], None]  # Optional: evaluated at import, Python 3.9
LogCallback = Callable[[str, str], None]
EventCallback = Callable[[dict], None]


class EngineError(Exception):
    """The engine failed; ``str(error)`` is the message to show the user.

    Attributes:
        message: the engine's own message (``error`` event) or a description of the crash.
        kind: the engine's error class (``InputError``, ``ModelError``, ``InternalError``),
            ``Crash`` when the process died without saying why, ``OutOfMemory`` when it was
            killed (most likely by the kernel's out-of-memory killer), ``NotFound`` when it
            could not start.
        exit_code: the process exit code (negative: killed by that signal), None if it never ran.
        stderr_tail: the last lines the engine wrote on stderr (tracebacks, library warnings).
        command: the command line that was run.
    """

    def __init__(
        self,
        message: str,
        kind: str = "EngineError",
        exit_code: int | None = None,
        stderr_tail: str = "",
        command: Sequence[str] = (),
        traceback: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.exit_code = exit_code
        self.stderr_tail = stderr_tail
        self.command = list(command)
        self.traceback = traceback

    @property
    def is_user_error(self) -> bool:
        """True for errors the user can fix (bad input, unusable model)."""
        return self.kind in ("InputError", "ModelError", "NotFound", "MissingPackage")

    def details(self) -> str:
        """Everything useful for a bug report: message, command, exit code, stderr tail."""
        parts = [self.message]
        if self.command:
            parts.append("command: " + subprocess.list2cmdline(self.command))
        if self.exit_code is not None:
            parts.append(f"exit code: {self.exit_code}")
        if self.traceback:
            parts.append(self.traceback.rstrip())
        if self.stderr_tail:
            parts.append("engine stderr (last lines):\n" + self.stderr_tail.rstrip())
        return "\n".join(parts)


class EngineCancelled(EngineError):
    """The engine stopped because the user cancelled (not a failure)."""

    def __init__(self, message: str = "cancelled by the user", **kw: Any) -> None:
        kw.setdefault("kind", "Cancelled")
        super().__init__(message, **kw)


@dataclass
class EngineRun:
    """What one engine run produced (returned by :meth:`EngineRunner.run_full`)."""

    result: dict
    events: list[dict] = field(default_factory=list)
    exit_code: int = 0
    seconds: float = 0.0


def child_environment(plugin_dir: Path = PLUGIN_DIR, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the engine process.

    Drops QGIS's PROJ/GDAL/Python variables (see :data:`CHILD_ENV_DROP`), puts the plugin
    folder on ``PYTHONPATH`` so ``-m engine`` resolves to the engine that ships with this
    plugin, and makes stdout unbuffered UTF-8.
    """
    env = dict(os.environ if base is None else base)
    for name in CHILD_ENV_DROP:
        env.pop(name, None)
    env["PYTHONPATH"] = str(plugin_dir)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _tail(handle, limit: int = STDERR_TAIL_CHARS) -> str:
    try:
        handle.flush()
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(0, size - limit))
        data = handle.read()
    except (OSError, ValueError):
        return ""
    text = data.decode("utf-8", errors="replace")
    if len(data) >= limit and "\n" in text:
        text = text.split("\n", 1)[1]  # drop the cut first line
    return text.strip()


_MISSING_MODULE = re.compile(r"No module named '([A-Za-z0-9_]+)")


def _missing_package(*texts: str) -> str | None:
    """The top-level package named by a ``ModuleNotFoundError`` in ``texts`` (not the engine itself)."""
    for text in texts:
        m = _MISSING_MODULE.search(text or "")
        if m and m.group(1) != "engine":
            return m.group(1)
    return None


def _missing_package_message(python: str, package: str) -> str:
    return (
        f"the engine Python {python} lacks the package '{package}': its environment is incomplete (an interrupted "
        "or failed set-up) or is not an engine environment; run MaskTalk > Set up engine… to install the engine's "
        "packages, or choose another interpreter with MaskTalk > Engine Python…"
    )


def _oom_hint(code: int) -> str:
    return (
        f"the engine was killed (exit code {code}), most likely by the operating system because it ran out "
        "of memory; try a smaller chip size or batch size, a smaller extent, or close other programs"
    )


class EngineRunner:
    """Starts engine commands in the engine environment, one at a time per instance.

    Args:
        python: the engine interpreter; None = :func:`.environment.engine_python` (setting,
            managed venv, development ``.venv``; ``MASKTALK_ENGINE_PYTHON`` overrides).
        plugin_dir: folder that holds the ``engine`` package (working directory of the child).
        grace_s: seconds between the polite stop request (SIGTERM) and the kill.
        extra_env: variables added to the child's environment.
    """

    def __init__(
        self,
        python: str | os.PathLike | None = None,
        plugin_dir: str | os.PathLike = PLUGIN_DIR,
        grace_s: float = DEFAULT_GRACE_S,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self._python = str(python) if python is not None else None
        self.plugin_dir = Path(plugin_dir)
        self.grace_s = grace_s
        self.extra_env = dict(extra_env or {})
        self._proc: subprocess.Popen | None = None
        self.last_command: list[str] = []
        self._cancel = threading.Event()
        self._lock = threading.Lock()

    # -- public API -----------------------------------------------------------------------
    @property
    def python(self) -> str:
        """The engine interpreter (resolved on first use)."""
        if self._python is None:
            from .environment import engine_python

            self._python = str(engine_python().path)
        return self._python

    def command_line(self, command: str, args: Sequence[str] = ()) -> list[str]:
        """The exact argv of a run: ``python -m engine COMMAND ARGS --progress jsonl``."""
        return [self.python, "-m", "engine", command, *[str(a) for a in args], "--progress", "jsonl"]

    def cancel(self) -> None:
        """Ask the running command to stop (thread-safe; a no-op when nothing runs)."""
        self._cancel.set()

    @property
    def running(self) -> bool:
        with self._lock:
            return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        with self._lock:
            return self._proc.pid if self._proc is not None else None

    def run(
        self,
        command: str,
        args: Sequence[str] = (),
        on_progress: ProgressCallback | None = None,
        on_log: LogCallback | None = None,
        on_event: EventCallback | None = None,
        is_cancelled: Callable[[], bool] | None = None,
        timeout_s: float | None = None,
    ) -> dict:
        """Run one engine command to its end and return the ``done`` event's result.

        Callbacks are called in the calling thread (a QgsTask's ``run()``, a Processing
        algorithm's thread), never from a helper thread.

        Args:
            command: engine subcommand (``caption``, ``train``, ``predict`` ...).
            args: its arguments (``--progress jsonl`` is added).
            on_progress: ``(fraction 0..1 or None, message)`` for each ``progress`` event.
            on_log: ``(level, message)`` for ``log`` events and non-JSON stdout lines.
            on_event: every parsed event (``metrics``, ``start`` ...), progress included.
            is_cancelled: polled about ten times a second; True asks the engine to stop.
            timeout_s: treat a run longer than this as cancelled (tests, CI).

        Returns:
            The ``result`` object of the ``done`` event.

        Raises:
            EngineCancelled: the run was cancelled (by :meth:`cancel` or ``is_cancelled``).
            EngineError: the engine reported an error, crashed, was killed or could not start.
        """
        return self.run_full(command, args, on_progress, on_log, on_event, is_cancelled, timeout_s).result

    def run_full(
        self,
        command: str,
        args: Sequence[str] = (),
        on_progress: ProgressCallback | None = None,
        on_log: LogCallback | None = None,
        on_event: EventCallback | None = None,
        is_cancelled: Callable[[], bool] | None = None,
        timeout_s: float | None = None,
    ) -> EngineRun:
        """Like :meth:`run`, returning the result with every event and the exit code."""
        argv = self.command_line(command, args)
        self.last_command = argv
        self._cancel.clear()
        started = time.monotonic()
        events: list[dict] = []
        outcome: dict | None = None
        with tempfile.TemporaryFile(prefix="masktalk-engine-", suffix=".stderr") as stderr:
            proc = self._start(argv, stderr)
            lines: queue.Queue = queue.Queue()
            reader = threading.Thread(target=_pump, args=(proc.stdout, lines), name="masktalk-engine-stdout", daemon=True)
            reader.start()
            stop_sent_at: float | None = None
            killed = False
            try:
                eof = False
                while not eof:
                    if stop_sent_at is None and self._wants_stop(is_cancelled, started, timeout_s):
                        stop_sent_at = time.monotonic()
                        self._terminate(proc)
                    if stop_sent_at is not None and not killed and time.monotonic() - stop_sent_at > self.grace_s:
                        log.warning("engine did not stop within %.0f s of the request; killing it", self.grace_s)
                        self._kill(proc)
                        killed = True
                    try:
                        line = lines.get(timeout=0.1)
                    except queue.Empty:
                        continue
                    if line is None:
                        eof = True
                        continue
                    event = _parse(line)
                    if event is None:
                        if line.strip() and on_log is not None:
                            on_log("info", line.rstrip())
                        continue
                    events.append(event)
                    name = event.get("event")
                    if name in ("done", "error", "cancelled"):
                        outcome = event
                    if on_event is not None:
                        on_event(event)
                    if name == "progress" and on_progress is not None:
                        fraction = event.get("fraction")
                        on_progress(None if fraction is None else float(fraction), str(event.get("message") or ""))
                    elif name == "log" and on_log is not None:
                        on_log(str(event.get("level") or "info"), str(event.get("message") or ""))
                code = self._wait(proc, stop_sent_at)
            except BaseException:
                # A callback raised, or we were interrupted: never leave the child behind.
                self._kill(proc)
                proc.wait()
                raise
            finally:
                reader.join(timeout=5)
                if proc.stdout is not None:
                    proc.stdout.close()
                with self._lock:
                    self._proc = None
            tail = _tail(stderr)
        seconds = time.monotonic() - started
        return self._outcome(argv, code, outcome, events, tail, seconds, cancelled=stop_sent_at is not None)

    # -- internals -------------------------------------------------------------------------
    def _start(self, argv: list[str], stderr) -> subprocess.Popen:
        if not Path(argv[0]).is_file():
            raise EngineError(
                f"the engine Python {argv[0]} does not exist; set up the engine (MaskTalk menu > Set up engine…) "
                "or choose an existing interpreter with MaskTalk > Engine Python…",
                kind="NotFound",
                command=argv,
            )
        env = child_environment(self.plugin_dir)
        env.update(self.extra_env)
        kwargs: dict[str, Any] = {}
        if os.name == "nt":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)
        else:
            kwargs["start_new_session"] = True  # its own process group: kill reaches DataLoader workers
        log.info("starting engine: %s", subprocess.list2cmdline(argv))
        try:
            proc = subprocess.Popen(
                argv,
                cwd=str(self.plugin_dir),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                **kwargs,
            )
        except OSError as exc:
            raise EngineError(f"could not start the engine ({argv[0]}): {exc}", kind="NotFound", command=argv) from exc
        with self._lock:
            self._proc = proc
        return proc

    def _wants_stop(self, is_cancelled, started: float, timeout_s: float | None) -> bool:
        if self._cancel.is_set():
            return True
        if timeout_s is not None and time.monotonic() - started > timeout_s:
            log.warning("engine run exceeded %.0f s; stopping it", timeout_s)
            self._cancel.set()
            return True
        if is_cancelled is not None:
            try:
                if is_cancelled():
                    self._cancel.set()
                    return True
            except RuntimeError:  # the task object is gone: stop
                self._cancel.set()
                return True
        return False

    @staticmethod
    def _terminate(proc: subprocess.Popen) -> None:
        """Polite stop: the engine finishes its current step and exits with ``cancelled``."""
        if proc.poll() is not None:
            return
        try:
            if os.name == "nt":
                proc.send_signal(signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]
            else:
                proc.send_signal(signal.SIGTERM)
        except OSError:
            pass

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        """Hard stop of the engine and anything it started."""
        if proc.poll() is not None:
            return
        try:
            if os.name == "nt":
                proc.kill()
            else:
                os.killpg(proc.pid, signal.SIGKILL)
        except (OSError, ProcessLookupError):
            try:
                proc.kill()
            except OSError:
                pass

    def _wait(self, proc: subprocess.Popen, stop_sent_at: float | None) -> int:
        """Wait for the exit after stdout closed; kill if a requested stop takes too long."""
        while True:
            try:
                return proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                if stop_sent_at is None and self._cancel.is_set():
                    stop_sent_at = time.monotonic()
                    self._terminate(proc)
                if stop_sent_at is not None and time.monotonic() - stop_sent_at > self.grace_s:
                    self._kill(proc)

    @staticmethod
    def _outcome(argv, code: int, outcome: dict | None, events: list[dict], tail: str, seconds: float, cancelled: bool) -> EngineRun:
        name = outcome.get("event") if outcome else None
        if name == "done" and code == EXIT_OK:
            result = outcome.get("result") or {}
            return EngineRun(result if isinstance(result, dict) else {"value": result}, events, code, seconds)
        if name == "cancelled" or code == EXIT_CANCELLED or (cancelled and name != "error"):
            msg = "cancelled by the user" if cancelled else f"the engine stopped: {(outcome or {}).get('message') or 'cancelled'}"
            raise EngineCancelled(msg, exit_code=code, stderr_tail=tail, command=argv)
        missing = _missing_package(str((outcome or {}).get("message") or ""), tail) if name in ("error", None) else None
        if missing is not None and code not in (-9, 137):
            raise EngineError(
                _missing_package_message(argv[0], missing),
                kind="MissingPackage",
                exit_code=code,
                stderr_tail=tail,
                command=argv,
                traceback=str((outcome or {}).get("traceback") or ""),
            )
        if name == "error":
            raise EngineError(
                str(outcome.get("message") or "the engine reported an error"),
                kind=str(outcome.get("kind") or "EngineError"),
                exit_code=code,
                stderr_tail=tail,
                command=argv,
                traceback=str(outcome.get("traceback") or ""),
            )
        if code in (-9, 137):
            raise EngineError(_oom_hint(code), kind="OutOfMemory", exit_code=code, stderr_tail=tail, command=argv)
        if code < 0:
            raise EngineError(f"the engine crashed (killed by signal {-code})", kind="Crash", exit_code=code, stderr_tail=tail, command=argv)
        last = tail.strip().splitlines()[-1] if tail.strip() else "no message"
        if code == EXIT_OK:
            raise EngineError(f"the engine ended without a result: {last}", kind="Crash", exit_code=code, stderr_tail=tail, command=argv)
        raise EngineError(f"the engine failed (exit code {code}): {last}", kind="Crash", exit_code=code, stderr_tail=tail, command=argv)


def _pump(stream, lines: queue.Queue) -> None:
    """Reader thread: stdout lines into the queue, then None at end of file."""
    try:
        for raw in iter(stream.readline, b""):
            lines.put(raw.decode("utf-8", errors="replace"))
    except (OSError, ValueError):
        pass
    finally:
        lines.put(None)


def _parse(line: str) -> dict | None:
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) and "event" in obj else None


def run_engine(command: str, args: Sequence[str] = (), **kwargs: Any) -> dict:
    """One-shot helper: ``EngineRunner().run(command, args, **kwargs)``."""
    return EngineRunner().run(command, args, **kwargs)
