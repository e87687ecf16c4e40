"""The engine's options as the plugin sees them: one source of truth, the engine's argparse.

The dock and the Processing algorithms build their choices, defaults, ranges and
tooltips from :class:`EngineOptions`, and jobs turn the values a user changed into the
command line with :meth:`EngineOptions.args` -- nothing here retypes an engine option.

:func:`load` runs ``<engine Python> -m engine options --json --environment`` once (through
:class:`~.runner.EngineRunner`, the plugin's one child-process supervisor) and caches the
answer in memory and on disk (``<QGIS profile>/masktalk/cache/engine-options-<key>.json``),
keyed by the engine Python's path and modification time, a hash of the engine's
option-declaring source files and ``MASKTALK_WEIGHTS``. Without an engine Python (before
*Set up engine…*), or when it fails, the options come from the engine bundled with the
plugin, read in-process (``engine/options.py`` is light): the same declarations, without
the facts of an environment (``environment`` is ``{}``: no DINOv3 weights count as found).
:func:`invalidate` drops both caches (after *Set up engine…* / *Engine Python…*).

Rules are matched by the engine's own code (:func:`engine.options.violations`), so the
dock disables exactly what the engine would refuse. Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Mapping

from ..engine import options as _engine

log = logging.getLogger("masktalk.engine_options")

Option = _engine.Option
Rule = _engine.Rule
DEFAULT_ONLY, REQUIRED, MULTIPLE_OF = _engine.DEFAULT_ONLY, _engine.REQUIRED, _engine.MULTIPLE_OF

PLUGIN_DIR = Path(__file__).resolve().parent.parent
CACHE_PREFIX = "engine-options-"
#: Source files whose change changes the published options (relative to the plugin folder).
DECLARING = ("engine/__init__.py", "engine/options.py", "engine/inference/config.py", "engine/commands/*.py")
BUNDLED = "bundled"

_lock = threading.Lock()
_memory: dict[str, "EngineOptions"] = {}


class EngineOptions:
    """Every engine command's options and rules, from ``python -m engine options --json``.

    Attributes:
        version: the engine's version.
        backbones: name -> ``{"attention", "needs_weights", "size_multiple", "default"}``.
        environment: facts of the engine environment (``cuda``, ``onnxruntime``,
            ``default_backbone``, ``dinov3_weights``, ``weights_found``); ``{}`` when unknown.
        source: ``engine`` (asked the engine Python), ``cache`` (its cached answer) or
            ``bundled`` (the plugin's engine, read in-process).
    """

    def __init__(self, data: Mapping[str, Any], source: str = "engine") -> None:
        self.data = dict(data)
        self.version = str(data.get("engine_version") or "")
        self.backbones = dict(data.get("backbones") or {})
        self.environment = dict(data.get("environment") or {})
        self.text_encoders = list(data.get("text_encoders") or [])
        self.source = source
        commands = data.get("commands") or {}
        self._help = {name: str(c.get("help") or "") for name, c in commands.items()}
        self._options = {name: [Option.from_dict(o) for o in c.get("options") or []] for name, c in commands.items()}
        self._rules = {name: [Rule.from_dict(r) for r in c.get("rules") or []] for name, c in commands.items()}

    def __repr__(self) -> str:
        return f"EngineOptions(engine {self.version}, {self.source}, commands {self.commands()})"

    # -- declarations ------------------------------------------------------------------------------
    def commands(self) -> list[str]:
        return list(self._options)

    def help(self, command: str) -> str:
        """The command's one-line help."""
        return self._help[command]

    def options(self, command: str) -> list[Option]:
        """The command's options in declaration order (KeyError for an unknown command)."""
        if command not in self._options:
            raise KeyError(f"the engine has no command {command!r} (it has {', '.join(self._options)})")
        return list(self._options[command])

    def option(self, command: str, dest: str) -> Option:
        """One option (KeyError if the command has no option ``dest``)."""
        for o in self.options(command):
            if o.dest == dest:
                return o
        raise KeyError(f"engine command {command!r} has no option {dest!r}")

    def default(self, command: str, dest: str) -> Any:
        return self.option(command, dest).default

    def rules(self, command: str) -> list[Rule]:
        self.options(command)  # KeyError for an unknown command
        return list(self._rules.get(command, ()))

    # -- values ------------------------------------------------------------------------------------
    def blocked(self, command: str, values: Mapping[str, Any]) -> dict[str, str]:
        """dest -> why for every option a rule pins to its default at ``values``
        (missing dests = their defaults): the dock disables those widgets, ``why`` as tooltip."""
        return _engine.blocked(self.options(command), self.rules(command), values)

    def problems(self, command: str, values: Mapping[str, Any]) -> list[str]:
        """What the engine would refuse in ``values``: options not declared, numbers out of
        range, a non-default value of a blocked option, a missing required one, a size
        that is not a multiple. Empty when the engine accepts them."""
        options = {o.dest: o for o in self.options(command)}
        out = [f"{dest}: the engine's {command} has no such option" for dest in values if dest not in options]
        for dest, value in values.items():
            o = options.get(dest)
            if o is None or value is None or value == "" or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if (o.minimum is not None and value < o.minimum) or (o.maximum is not None and value > o.maximum):
                low = "" if o.minimum is None else f"{o.minimum:g}"
                high = "" if o.maximum is None else f"{o.maximum:g}"
                out.append(f"{o.flag or dest} {value:g}: outside the range {low}..{high}")
        known = {k: v for k, v in values.items() if k in options}
        out += [message for _, message in _engine.violations(self.options(command), self.rules(command), known)]
        return out

    def args(self, command: str, values: Mapping[str, Any]) -> list[str]:
        """The command line for ``values`` (dest -> value): positionals first, then the
        options whose value differs from the default, in declaration order. A bool is a
        bare flag; None and "" are left out; a list repeats the flag.

        Raises:
            ValueError: a dest the command does not declare.
        """
        options = self.options(command)
        known = {o.dest for o in options}
        unknown = [d for d in values if d not in known]
        if unknown:
            raise ValueError(f"the engine's {command} has no option {', '.join(map(repr, unknown))}")
        positional: list[str] = []
        flags: list[str] = []
        for o in options:
            if o.dest not in values:
                continue
            value = values[o.dest]
            if value is None or value == "" or (value == o.default and not o.required):
                continue
            if o.type == "bool":
                if value:
                    flags.append(str(o.flag))
                continue
            items = list(value) if isinstance(value, (list, tuple)) else [value]
            if o.flag is None:
                positional += [_text(v) for v in items]
            else:
                for v in items:
                    flags += [o.flag, _text(v)]
        return positional + flags

    def to_dict(self) -> dict[str, Any]:
        return dict(self.data)


def _text(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


# -- loading -------------------------------------------------------------------------------------------
def load(engine_python: str | os.PathLike | None = None, *, refresh: bool = False, timeout_s: float = 60.0,
         spawn: bool = True) -> EngineOptions:
    """The engine's options, from the engine Python when there is one (cached).

    Args:
        engine_python: the interpreter; None = the plugin's choice (:func:`.environment.engine_python`).
        refresh: ask the engine again even when cached (the cache is then rewritten).
        timeout_s: longest wait for the engine (its ``--environment`` imports torch).
        spawn: False never starts a process: the cached answer, else the bundled engine's
            declarations (for the main thread, e.g. when a widget is built).

    Returns:
        :class:`EngineOptions`; ``source`` says where they came from. Never raises for a
        missing or broken engine: it falls back to the bundled engine (logged).
    """
    python = _resolve(engine_python)
    if python is None:
        return bundled()
    key = cache_key(python)
    if not refresh:
        with _lock:
            hit = _memory.get(key)
        if hit is not None:
            return hit
        cached = _read_cache(key)
        if cached is not None:
            with _lock:
                _memory[key] = cached
            return cached
    if not spawn:
        return bundled()
    try:
        data = _ask_engine(python, timeout_s)
    except Exception as exc:  # noqa: BLE001 - a broken engine must not break the dock; it is reported where it runs
        log.warning("could not read the engine's options with %s (%s); using the bundled engine's declarations", python, exc)
        return bundled()
    options = EngineOptions(data, "engine")
    with _lock:
        _memory[key] = options
    _write_cache(key, data)
    return options


def bundled() -> EngineOptions:
    """The declarations of the engine bundled with the plugin, read in-process (no environment facts)."""
    with _lock:
        hit = _memory.get(BUNDLED)
    if hit is None:
        hit = EngineOptions(_engine.describe(with_environment=False), BUNDLED)
        with _lock:
            _memory[BUNDLED] = hit
    return hit


def invalidate() -> None:
    """Forget the engine's options (memory and disk): the next :func:`load` asks the engine again."""
    with _lock:
        _memory.clear()
    folder = cache_dir()
    if folder is None or not folder.is_dir():
        return
    for path in folder.glob(f"{CACHE_PREFIX}*.json"):
        try:
            path.unlink()
        except OSError as exc:
            log.warning("could not remove the cached engine options %s: %s", path, exc)


def _resolve(engine_python: str | os.PathLike | None) -> Path | None:
    if engine_python is not None:
        path = Path(engine_python)
        return path if path.is_file() else None
    from .environment import EnvironmentProblem, engine_python as find

    try:
        return find().path
    except EnvironmentProblem:
        return None


def _ask_engine(python: Path, timeout_s: float) -> dict:
    from .runner import EngineRunner

    result = EngineRunner(python=python, plugin_dir=PLUGIN_DIR).run("options", ["--environment"], timeout_s=timeout_s)
    if not isinstance(result.get("commands"), dict):
        raise ValueError("the engine's answer has no commands")
    return result


# -- the disk cache ---------------------------------------------------------------------------------------
def cache_dir() -> Path | None:
    """``<QGIS profile>/masktalk/cache``, or None outside QGIS (memory cache only)."""
    try:
        from .environment import profile_dir

        return profile_dir() / "masktalk" / "cache"
    except Exception:  # noqa: BLE001 - no QGIS here (scripts): no disk cache
        return None


def cache_key(python: Path) -> str:
    """What the options depend on: the interpreter (path, mtime), the declaring sources, the weights folder."""
    digest = hashlib.sha256()
    try:
        mtime = python.stat().st_mtime_ns
    except OSError:
        mtime = 0
    digest.update(f"{python}\0{mtime}\0{os.environ.get('MASKTALK_WEIGHTS', '')}\0".encode())
    for pattern in DECLARING:
        for path in sorted(PLUGIN_DIR.glob(pattern)):
            digest.update(path.relative_to(PLUGIN_DIR).as_posix().encode() + b"\0")
            try:
                digest.update(path.read_bytes())
            except OSError:
                pass
    return digest.hexdigest()[:24]


def _cache_file(key: str) -> Path | None:
    folder = cache_dir()
    return folder / f"{CACHE_PREFIX}{key}.json" if folder is not None else None


def _read_cache(key: str) -> EngineOptions | None:
    path = _cache_file(key)
    if path is None or not path.is_file():
        return None
    try:
        return EngineOptions(json.loads(path.read_text(encoding="utf-8")), "cache")
    except (OSError, ValueError, TypeError, KeyError) as exc:
        log.warning("ignoring the unreadable engine options cache %s: %s", path, exc)
        return None


def _write_cache(key: str, data: dict) -> None:
    path = _cache_file(key)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".engine-options-", suffix=".json", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("could not cache the engine options in %s: %s", path, exc)
