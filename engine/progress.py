"""Progress reporting and cancellation, without any GUI dependency.

Every long job takes a :class:`Progress`. Three implementations ship:

- :class:`NullProgress` -- silent (library use, tests);
- :class:`TqdmProgress` -- a progress bar on a terminal (stderr);
- :class:`JsonlProgress` -- one JSON object per line on stdout, the protocol the QGIS
  plugin reads. Events::

      {"event": "start", "command": "train", ...}
      {"event": "progress", "fraction": 0.42, "message": "epoch 3/10", ...}
      {"event": "log", "level": "info", "message": "..."}
      {"event": "metrics", "epoch": 3, "SeK": 0.12, ...}
      {"event": "done", "result": {...}}
      {"event": "cancelled", "message": "..."}
      {"event": "error", "message": "...", "kind": "InputError"}

Cancellation: :func:`install_signal_handlers` turns SIGINT/SIGTERM into a flag that
:meth:`Progress.is_cancelled` returns, so jobs stop at the next step and keep what
they must (for instance the ``last`` checkpoint). :meth:`Progress.check` raises
:class:`~engine.errors.Cancelled` when the flag is set.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import threading
from typing import IO, Any, Callable, Protocol, runtime_checkable

from .errors import Cancelled

_CANCEL = threading.Event()


def request_cancel() -> None:
    """Ask every running job in this process to stop at its next step."""
    _CANCEL.set()


def reset_cancel() -> None:
    """Clear the process-wide cancel flag (tests and long-lived callers)."""
    _CANCEL.clear()


def install_signal_handlers() -> None:
    """Turn SIGINT and SIGTERM into a cancel request (main thread only).

    A second SIGINT falls back to Python's default (KeyboardInterrupt), so a user
    at a terminal can always force the process down.
    """

    def _handler(signum, _frame):
        if _CANCEL.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        _CANCEL.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, _handler)
        except (ValueError, OSError):  # not the main thread, or unsupported
            pass


@runtime_checkable
class Progress(Protocol):
    """What a job may call while it works."""

    def report(self, fraction: float | None = None, message: str = "", **fields: Any) -> None:
        """Report how far the job is (``fraction`` in 0..1) and what it does."""

    def log(self, message: str, level: str = "info") -> None:
        """A line for the user's log."""

    def event(self, name: str, **fields: Any) -> None:
        """Any other event (``metrics``, ``start``, ``done`` ...)."""

    def is_cancelled(self) -> bool:
        """True once the user asked the job to stop."""

    def check(self) -> None:
        """Raise :class:`Cancelled` if the job was asked to stop."""


class BaseProgress:
    """Shared behaviour: cancel flag, optional callback, ``check``."""

    def __init__(self, cancel_callback: Callable[[], bool] | None = None) -> None:
        self._cancel_callback = cancel_callback

    def report(self, fraction: float | None = None, message: str = "", **fields: Any) -> None:
        pass

    def log(self, message: str, level: str = "info") -> None:
        pass

    def event(self, name: str, **fields: Any) -> None:
        pass

    def is_cancelled(self) -> bool:
        if _CANCEL.is_set():
            return True
        return bool(self._cancel_callback and self._cancel_callback())

    def check(self) -> None:
        if self.is_cancelled():
            raise Cancelled("cancelled by the user")

    def close(self) -> None:
        pass


class NullProgress(BaseProgress):
    """Reports nothing; still honours cancellation."""


class CallbackProgress(BaseProgress):
    """Forwards every event to ``callback(event_dict)`` (library use)."""

    def __init__(self, callback: Callable[[dict], None], cancel_callback: Callable[[], bool] | None = None):
        super().__init__(cancel_callback)
        self._callback = callback

    def report(self, fraction=None, message="", **fields):
        self._callback({"event": "progress", "fraction": fraction, "message": message, **fields})

    def log(self, message, level="info"):
        self._callback({"event": "log", "level": level, "message": message})

    def event(self, name, **fields):
        self._callback({"event": name, **fields})


def _jsonable(value: Any) -> Any:
    """Make numpy / torch scalars and non-finite floats JSON-safe."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


class JsonlProgress(BaseProgress):
    """One JSON object per line, flushed at once (the plugin's protocol)."""

    def __init__(self, stream: IO[str] | None = None, cancel_callback=None) -> None:
        super().__init__(cancel_callback)
        self._stream = stream or sys.stdout
        self._lock = threading.Lock()
        self._last_fraction = -1.0

    def _write(self, obj: dict) -> None:
        line = json.dumps(_jsonable(obj), ensure_ascii=False)
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()

    def report(self, fraction=None, message="", **fields):
        # Throttle: at most one event per 0.1 % unless something else changed.
        if fraction is not None and not fields and abs(fraction - self._last_fraction) < 1e-3 and fraction < 1:
            return
        if fraction is not None:
            self._last_fraction = fraction
        self._write({"event": "progress", "fraction": fraction, "message": message, **fields})

    def log(self, message, level="info"):
        self._write({"event": "log", "level": level, "message": message})

    def event(self, name, **fields):
        self._write({"event": name, **fields})


class TqdmProgress(BaseProgress):
    """A progress bar on stderr for people at a terminal; logs go to stderr too."""

    def __init__(self, cancel_callback=None) -> None:
        super().__init__(cancel_callback)
        self._bar = None

    def _ensure_bar(self):
        if self._bar is None:
            try:
                from tqdm import tqdm
            except ImportError:  # tqdm is optional for light commands
                return None
            self._bar = tqdm(total=1000, file=sys.stderr, leave=False, bar_format="{l_bar}{bar}| {elapsed}<{remaining}")
        return self._bar

    def report(self, fraction=None, message="", **fields):
        bar = self._ensure_bar()
        if bar is None:
            return
        if message:
            bar.set_description_str(message[:60], refresh=False)
        if fraction is not None:
            bar.n = int(max(0.0, min(1.0, fraction)) * 1000)
            bar.refresh()

    def log(self, message, level="info"):
        text = f"{level}: {message}" if level != "info" else message
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def event(self, name, **fields):
        if name == "metrics":
            self.log(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items()))

    def close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def make_progress(kind: str = "auto") -> BaseProgress:
    """Build the reporter named on the command line (``auto`` picks tqdm on a TTY)."""
    if kind == "jsonl":
        return JsonlProgress()
    if kind == "none":
        return NullProgress()
    if kind == "tqdm" or (kind == "auto" and sys.stderr.isatty()):
        return TqdmProgress()
    return _StderrLogProgress()


class _StderrLogProgress(BaseProgress):
    """Non-interactive default: log lines to stderr, no bar."""

    def log(self, message, level="info"):
        text = f"{level}: {message}" if level != "info" else message
        print(text, file=sys.stderr, flush=True)

    def event(self, name, **fields):
        if name == "metrics":
            self.log(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items()))


class SubProgress:
    """A part of a job: its own 0..1 progress mapped into ``[start, stop]`` of ``parent``.

    Everything else (``log``, ``event``, ``check``, ``is_cancelled``) goes to ``parent``
    unchanged, so a sub-job (vectorising after predicting, training inside the demo)
    keeps one monotonic progress bar.
    """

    def __init__(self, parent: Any, start: float, stop: float, prefix: str = "", **fields: Any) -> None:
        self._parent, self._start, self._span = parent, float(start), float(stop) - float(start)
        self._prefix, self._fields = prefix, fields

    def report(self, fraction: float | None = None, message: str = "", **fields: Any) -> None:
        overall = None if fraction is None else self._start + self._span * max(0.0, min(1.0, float(fraction)))
        for key, value in self._fields.items():
            fields.setdefault(key, value)
        if self._prefix:
            message = f"{self._prefix}: {message}" if message else self._prefix
        self._parent.report(overall, message, **fields)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._parent, name)
