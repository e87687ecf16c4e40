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
  keeps its ``last`` checkpoint), then kills the process group after a grace period;
- plugin unload and QGIS exit stop it too (:func:`.supervisor.terminate_all`).

Starting, reading, cancelling and killing are :mod:`.supervisor`'s job (the same code
runs the set-up steps of :mod:`.environment`); this module speaks the engine's protocol.
It imports no QGIS (:func:`.i18n.tr` falls back to the text itself without QGIS): it is
used from tasks, Processing algorithms and tests alike.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from .i18n import tr
from .supervisor import CHILD_ENV_DROP, DEFAULT_GRACE_S, ChildProcess, Outcome, clean_environment, supervise

log = logging.getLogger("masktalk.runner")

PLUGIN_DIR = Path(__file__).resolve().parent.parent
#: Exit codes of ``engine/cli.py``.
EXIT_OK, EXIT_INTERNAL, EXIT_INPUT, EXIT_MODEL, EXIT_CANCELLED = 0, 1, 2, 3, 130
__all__ = ["CHILD_ENV_DROP", "EngineCancelled", "EngineError", "EngineRun", "EngineRunner", "child_environment", "run_engine"]
STDERR_TAIL_CHARS = 4000

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
            parts.append(tr("command: {command}").format(command=subprocess.list2cmdline(self.command)))
        if self.exit_code is not None:
            parts.append(tr("exit code: {code}").format(code=self.exit_code))
        if self.traceback:
            parts.append(self.traceback.rstrip())
        if self.stderr_tail:
            parts.append(tr("engine stderr (last lines):") + "\n" + self.stderr_tail.rstrip())
        return "\n".join(parts)


class EngineCancelled(EngineError):
    """The engine stopped because the user cancelled (not a failure)."""

    def __init__(self, message: str = "", **kw: Any) -> None:
        kw.setdefault("kind", "Cancelled")
        super().__init__(message or tr("cancelled by the user"), **kw)


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
    env = clean_environment(base)
    env["PYTHONPATH"] = str(plugin_dir)
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
    return tr(
        "the engine Python {python} lacks the package '{package}': its environment is incomplete (an interrupted "
        "or failed set-up) or is not an engine environment; run MaskTalk > Set up engine… to install the engine's "
        "packages, or choose another interpreter with MaskTalk > Engine Python…"
    ).format(python=python, package=package)


def _oom_hint(code: int) -> str:
    return tr(
        "the engine was killed (exit code {code}), most likely by the operating system because it ran out "
        "of memory; try a smaller chip size or batch size, a smaller extent, or close other programs"
    ).format(code=code)


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
        self._child: ChildProcess | None = None
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
            return self._child is not None and self._child.poll() is None

    @property
    def pid(self) -> int | None:
        with self._lock:
            return self._child.pid if self._child is not None else None

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
        events: list[dict] = []
        final: dict | None = None

        def on_line(line: str) -> None:
            nonlocal final
            event = _parse(line)
            if event is None:
                if line.strip() and on_log is not None:
                    on_log("info", line.rstrip())
                return
            events.append(event)
            name = event.get("event")
            if name in ("done", "error", "cancelled"):
                final = event
            if on_event is not None:
                on_event(event)
            if name == "progress" and on_progress is not None:
                fraction = event.get("fraction")
                on_progress(None if fraction is None else float(fraction), str(event.get("message") or ""))
            elif name == "log" and on_log is not None:
                on_log(str(event.get("level") or "info"), str(event.get("message") or ""))

        self._check_python(argv)
        with tempfile.TemporaryFile(prefix="masktalk-engine-", suffix=".stderr") as stderr:
            env = child_environment(self.plugin_dir)
            env.update(self.extra_env)
            try:
                outcome = supervise(
                    argv, on_line=on_line, should_stop=lambda: self._wants_stop(is_cancelled), grace_s=self.grace_s,
                    timeout_s=timeout_s, cwd=str(self.plugin_dir), env=env, stderr=stderr, name="engine",
                    on_start=self._started,
                )
            except OSError as exc:
                raise EngineError(tr("could not start the engine ({python}): {error}").format(python=argv[0], error=exc),
                                  kind="NotFound", command=argv) from exc
            finally:
                with self._lock:
                    self._child = None
            tail = _tail(stderr)
        return self._outcome(argv, outcome, final, events, tail)

    # -- internals -------------------------------------------------------------------------
    @staticmethod
    def _check_python(argv: list[str]) -> None:
        if not Path(argv[0]).is_file():
            raise EngineError(
                tr("the engine Python {python} does not exist; set up the engine (MaskTalk menu > Set up engine…) "
                   "or choose an existing interpreter with MaskTalk > Engine Python…").format(python=argv[0]),
                kind="NotFound",
                command=argv,
            )

    def _started(self, child: ChildProcess) -> None:
        with self._lock:
            self._child = child

    def _wants_stop(self, is_cancelled) -> bool:
        if self._cancel.is_set():
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
    def _outcome(argv, run: Outcome, final: dict | None, events: list[dict], tail: str) -> EngineRun:
        """Turn how the process ended and its last event into a result or one error."""
        code = run.returncode
        name = final.get("event") if final else None
        info = {"exit_code": code, "stderr_tail": tail, "command": argv}
        if name == "done" and code == EXIT_OK:
            result = final.get("result") or {}
            return EngineRun(result if isinstance(result, dict) else {"value": result}, events, code, run.seconds)
        if name == "cancelled" or code == EXIT_CANCELLED or (run.stop_requested and name != "error"):
            if run.shutdown:
                msg = tr("the engine was stopped because QGIS is closing or MaskTalk was unloaded")
            elif run.timed_out:
                msg = tr("the engine was stopped: it ran past its time limit ({seconds:.0f} s)").format(seconds=run.seconds)
            elif run.stop_requested:
                msg = tr("cancelled by the user")
            else:
                msg = tr("the engine stopped: {message}").format(message=(final or {}).get("message") or tr("cancelled"))
            raise EngineCancelled(msg, **info)
        missing = _missing_package(str((final or {}).get("message") or ""), tail) if name in ("error", None) else None
        if missing is not None and code not in (-9, 137):
            raise EngineError(_missing_package_message(argv[0], missing), kind="MissingPackage",
                              traceback=str((final or {}).get("traceback") or ""), **info)
        if name == "error":
            raise EngineError(str(final.get("message") or tr("the engine reported an error")),
                              kind=str(final.get("kind") or "EngineError"), traceback=str(final.get("traceback") or ""), **info)
        if code in (-9, 137):
            raise EngineError(_oom_hint(code), kind="OutOfMemory", **info)
        if code < 0:
            raise EngineError(tr("the engine crashed (killed by signal {signal})").format(signal=-code), kind="Crash", **info)
        last = tail.strip().splitlines()[-1] if tail.strip() else tr("no message")
        if code == EXIT_OK:
            raise EngineError(tr("the engine ended without a result: {last}").format(last=last), kind="Crash", **info)
        raise EngineError(tr("the engine failed (exit code {code}): {last}").format(code=code, last=last), kind="Crash", **info)


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
