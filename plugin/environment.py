"""Which Python runs the engine, and how the plugin sets that Python up.

The engine (torch, rasterio, transformers) never loads into QGIS: it runs in its own
environment. :func:`engine_python` picks the interpreter, first match wins:

1. ``MASKTALK_ENGINE_PYTHON`` (tests, CI, power users);
2. the *engine Python* setting, when the user chose one;
3. the plugin-managed venv in the QGIS profile's data folder
   (``<profile>/masktalk/engine-venv``: outside the plugin folder, so plugin upgrades keep it);
4. the repository's ``.venv`` (development checkouts).

*Set up engine…* (:func:`setup_plan` + :func:`run_setup`, wrapped in a task by
:class:`.engine_tasks.SetupEngineTask`) creates the managed venv and installs
``requirements.txt`` with pip: first torch/torchvision from PyTorch's CUDA index that
matches the driver ``nvidia-smi`` reports, or the CPU index when there is no NVIDIA GPU,
then the rest. A local wheel folder makes the install offline (``--no-index
--find-links``). A hash of the requirements is stored in the venv, so an environment
installed for older requirements is reported as stale.

Every command (``nvidia-smi``, ``venv``, ``pip``) runs under :mod:`.supervisor`, the one
child-process supervisor of the plugin: cancel, kill of the whole process group, and the
registry that plugin unload and QGIS exit empty.

No QGIS import at module level: the functions take paths, so tests and scripts use them
directly; :func:`profile_dir` asks QGIS only when it is running.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from .i18n import tr
from .supervisor import clean_environment, run_captured, supervise

PLUGIN_DIR = Path(__file__).resolve().parent.parent
REQUIREMENTS = PLUGIN_DIR / "requirements.txt"
ENV_VAR = "MASKTALK_ENGINE_PYTHON"
#: QgsSettings key of ``PluginSettings.engine_python`` (plugin/settings.py).
ENGINE_PYTHON_KEY = "MaskTalk/engine_python"
VENV_NAME = "engine-venv"
STAMP_NAME = "masktalk-requirements.sha256"
TORCH_INDEX = "https://download.pytorch.org/whl/{tag}"
#: CUDA builds of torch published on PyTorch's index, newest last, with the lowest driver CUDA
#: version each runs on (CUDA minor-version compatibility: a 12.x build runs on any 12.x driver;
#: cu128 is preferred from 12.8 on because it carries kernels for the newest GPUs).
CUDA_BUILDS = (("cu126", (12, 0)), ("cu128", (12, 8)), ("cu130", (13, 0)))
TORCH_PACKAGES = ("torch", "torchvision")


class EnvironmentProblem(Exception):
    """No usable engine Python; the message says how to get one."""


class SetupCancelled(Exception):
    """The user cancelled the set-up; the environment reads as incomplete until it runs again."""


@dataclass(frozen=True)
class EnginePython:
    """The interpreter that will run the engine and why it was chosen."""

    path: Path
    source: str  # "environment variable", "setting", "managed venv", "development .venv"

    def __str__(self) -> str:
        return f"{self.path} ({self.source})"


# -- where things are ----------------------------------------------------------------------
def profile_dir() -> Path:
    """The active QGIS profile's folder (where the managed venv lives)."""
    from qgis.core import QgsApplication

    return Path(QgsApplication.qgisSettingsDirPath())


def managed_venv_dir(profile: Path | None = None) -> Path:
    """``<profile>/masktalk/engine-venv``: survives plugin upgrades and reinstalls."""
    return (profile if profile is not None else profile_dir()) / "masktalk" / VENV_NAME


def venv_python(venv: Path) -> Path:
    """The interpreter inside a venv (``bin/python`` or ``Scripts\\python.exe``)."""
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def development_venv() -> Path:
    return PLUGIN_DIR / ".venv"


def engine_python(configured: str | None = None, profile: Path | None = None) -> EnginePython:
    """Pick the engine interpreter (order in the module docstring).

    Args:
        configured: the *engine Python* setting ("" or None = automatic); None reads it
            from :mod:`.settings` when QGIS is running.
        profile: QGIS profile folder (None = the running QGIS's).

    Raises:
        EnvironmentProblem: nothing usable was found; says what was tried and what to do.
    """
    tried: list[str] = []
    override = os.environ.get(ENV_VAR, "").strip()
    if override:
        path = Path(override)
        if path.is_file():
            return EnginePython(path, "environment variable")
        raise EnvironmentProblem(
            tr("{variable}={value} does not exist; point it at the engine's python executable").format(variable=ENV_VAR, value=override))
    if configured is None:
        configured = _configured_setting()
    if configured:
        path = Path(configured)
        if path.is_file():
            return EnginePython(path, "setting")
        raise EnvironmentProblem(
            tr("the engine Python set in the MaskTalk settings ({path}) does not exist; choose another "
               "interpreter with MaskTalk > Engine Python…, or set it to Automatic there to let MaskTalk find its own "
               "environment").format(path=configured)
        )
    try:
        managed = venv_python(managed_venv_dir(profile))
    except ImportError:  # no QGIS (scripts): skip the profile venv
        managed = None
    if managed is not None:
        if managed.is_file():
            return EnginePython(managed, "managed venv")
        tried.append(str(managed))
    dev = venv_python(development_venv())
    if dev.is_file():
        return EnginePython(dev, "development .venv")
    tried.append(str(dev))
    raise EnvironmentProblem(
        tr("no engine Python found (tried {tried}); run MaskTalk > Set up engine… to create it, or choose an "
           "interpreter that has the packages of requirements.txt with MaskTalk > Engine Python… (or {variable})"
           ).format(tried=", ".join(tried), variable=ENV_VAR)
    )


def _configured_setting() -> str:
    """The *engine Python* setting, read straight from QgsSettings.

    Not through :class:`.settings.PluginSettings`: settings imports the engine options,
    which run the engine through :mod:`.runner`, which asks this module for the
    interpreter -- importing settings here would close that loop. The key is
    ``PluginSettings.engine_python``'s (``MaskTalk/engine_python``); the menu-action test
    saves it through PluginSettings and expects this function to find it.
    """
    try:
        from qgis.core import QgsSettings
    except ImportError:  # no QGIS (scripts)
        return ""
    return str(QgsSettings().value(ENGINE_PYTHON_KEY, "") or "").strip()


# -- staleness -----------------------------------------------------------------------------
def requirements_hash(requirements: Path = REQUIREMENTS) -> str:
    """SHA-256 of the requirement lines that matter (comments and blank lines ignored)."""
    lines = []
    for line in requirements.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            lines.append(line)
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def stamp_path(venv: Path) -> Path:
    return venv / STAMP_NAME


def venv_state(venv: Path, requirements: Path = REQUIREMENTS) -> str:
    """``missing``, ``incomplete`` (no stamp: set-up never finished), ``stale`` or ``ready``."""
    if not venv_python(venv).is_file():
        return "missing"
    stamp = stamp_path(venv)
    if not stamp.is_file():
        return "incomplete"
    return "ready" if stamp.read_text(encoding="utf-8").strip() == requirements_hash(requirements) else "stale"


# -- GPU detection -------------------------------------------------------------------------
@dataclass(frozen=True)
class GpuInfo:
    """What ``nvidia-smi`` reports (empty when there is no NVIDIA GPU or driver)."""

    names: tuple[str, ...] = ()
    memory_mib: tuple[int, ...] = ()
    cuda_version: tuple[int, int] | None = None

    @property
    def available(self) -> bool:
        return bool(self.names)


def parse_nvidia_smi(summary: str, query: str) -> GpuInfo:
    """Parse ``nvidia-smi`` (its header has ``CUDA Version: X.Y``) and
    ``nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits``."""
    names, memory = [], []
    for line in query.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 2 and parts[0]:
            names.append(parts[0])
            try:
                memory.append(int(float(parts[1])))
            except ValueError:
                memory.append(0)
    m = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", summary)
    cuda = (int(m.group(1)), int(m.group(2))) if m else None
    return GpuInfo(tuple(names), tuple(memory), cuda)


def detect_gpu(nvidia_smi: str | None = None, timeout_s: float = 10.0) -> GpuInfo:
    """Ask ``nvidia-smi`` which NVIDIA GPUs and which driver CUDA version are present."""
    exe = nvidia_smi or shutil.which("nvidia-smi")
    if not exe:
        return GpuInfo()
    code, summary = run_captured([exe], timeout_s)
    if code is None:
        return GpuInfo()
    _, query = run_captured([exe, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"], timeout_s)
    return parse_nvidia_smi(summary, query)


def torch_build(gpu: GpuInfo) -> str:
    """PyTorch wheel tag for this machine: the newest CUDA build the driver supports, else ``cpu``."""
    if not gpu.available or gpu.cuda_version is None:
        return "cpu"
    usable = [tag for tag, minimum in CUDA_BUILDS if gpu.cuda_version >= minimum]
    return usable[-1] if usable else "cpu"


# -- set-up ----------------------------------------------------------------------------------
@dataclass
class SetupStep:
    """One command of the set-up, with a short description and its share of the progress bar."""

    title: str
    argv: list[str]
    weight: float = 1.0


@dataclass
class SetupPlan:
    """Everything *Set up engine…* will do, computed up front (shown, logged, tested)."""

    venv: Path
    requirements: Path
    build: str  # "cpu", "cu128" ...
    steps: list[SetupStep] = field(default_factory=list)

    def describe(self) -> str:
        lines = [tr("engine environment: {venv}").format(venv=self.venv), tr("torch build: {build}").format(build=self.build)]
        lines += [f"- {s.title}: {subprocess.list2cmdline(s.argv)}" for s in self.steps]
        return "\n".join(lines)


def base_python() -> str:
    """A Python that can create venvs (QGIS's own ``sys.executable`` may be the QGIS binary)."""
    candidates = [getattr(sys, "_base_executable", ""), sys.executable]
    if os.name == "nt":
        candidates.append(str(Path(sys.exec_prefix) / "python.exe"))
        candidates.append(str(Path(sys.exec_prefix) / "python3.exe"))
    else:
        candidates.append(str(Path(sys.exec_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"))
        candidates.append(shutil.which("python3") or "")
    for c in candidates:
        if c and Path(c).is_file() and Path(c).name.lower().startswith("python"):
            return c
    raise EnvironmentProblem(tr("no Python interpreter found to create the engine environment; install Python 3 and retry"))


def setup_plan(
    venv: Path,
    requirements: Path = REQUIREMENTS,
    gpu: GpuInfo | None = None,
    wheel_dir: Path | None = None,
    python: str | None = None,
    system_site_packages: bool = False,
) -> SetupPlan:
    """The commands that create ``venv`` and install ``requirements`` into it.

    Args:
        venv: folder of the environment (created, or reused when it has a Python already).
        requirements: pinned requirements (the plugin's ``requirements.txt``).
        gpu: what :func:`detect_gpu` found; None = detect now.
        wheel_dir: install offline from this folder of wheels (``--no-index --find-links``).
        python: interpreter that creates the venv (default :func:`base_python`).
        system_site_packages: let the venv see the system's packages (Debian GDAL etc.).
    """
    gpu = detect_gpu() if gpu is None else gpu
    build = torch_build(gpu)
    py = str(venv_python(venv))
    pip = [py, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--progress-bar", "off"]
    if wheel_dir is not None:
        pip += ["--no-index", "--find-links", str(wheel_dir)]
    plan = SetupPlan(venv, requirements, build)
    if not venv_python(venv).is_file():
        create = [python or base_python(), "-m", "venv"]
        if system_site_packages:
            create.append("--system-site-packages")
        plan.steps.append(SetupStep(tr("create the environment"), create + [str(venv)], 1.0))
    torch_reqs = [r for r in _requirement_lines(requirements) if _req_name(r) in TORCH_PACKAGES]
    if torch_reqs and wheel_dir is None:
        plan.steps.append(
            SetupStep(
                tr("install PyTorch (CUDA {version} build)").format(version=build[2:]) if build != "cpu"
                else tr("install PyTorch (CPU build)"),
                pip + ["--index-url", TORCH_INDEX.format(tag=build), *torch_reqs],
                6.0,
            )
        )
    plan.steps.append(SetupStep(tr("install the engine's packages"), pip + ["-r", str(requirements)], 4.0))
    return plan


def _requirement_lines(requirements: Path) -> list[str]:
    out = []
    for line in requirements.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            out.append(line)
    return out


def _req_name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].strip().lower()


def run_setup(
    plan: SetupPlan,
    on_progress: Callable[[float, str], None] | None = None,
    on_log: Callable[[str], None] | None = None,
    is_cancelled: Callable[[], bool] | None = None,
) -> Path:
    """Run a :class:`SetupPlan`; write the requirements stamp when every step succeeded.

    Returns:
        The engine Python of the new environment.

    Raises:
        EnvironmentProblem: a step failed (message has its command and last output lines).
        SetupCancelled: the user cancelled (the stamp is not written: the venv reads as incomplete).
    """
    total = sum(s.weight for s in plan.steps) or 1.0
    done = 0.0
    plan.venv.parent.mkdir(parents=True, exist_ok=True)
    stamp = stamp_path(plan.venv)
    if stamp.exists():
        stamp.unlink()  # from now on the environment is incomplete until the end
    for step in plan.steps:
        if on_progress:
            on_progress(done / total, step.title)
        if on_log:
            on_log("$ " + subprocess.list2cmdline(step.argv))
        code, tail = _run_step(step.argv, on_log, is_cancelled)
        if code is None:
            raise SetupCancelled(tr("engine set-up cancelled; run it again to finish"))
        if code != 0:
            raise EnvironmentProblem(
                tr("engine set-up failed at '{step}' (exit code {code}).").format(step=step.title, code=code)
                + "\n" + tr("command: {command}").format(command=subprocess.list2cmdline(step.argv)) + "\n" + tail
            )
        done += step.weight
    stamp.write_text(requirements_hash(plan.requirements) + "\n", encoding="utf-8")
    if on_progress:
        on_progress(1.0, tr("engine environment ready"))
    return venv_python(plan.venv)


def _run_step(argv: Sequence[str], on_log, is_cancelled, grace_s: float = 10.0) -> tuple[int | None, str]:
    """Run one command under the supervisor, passing its output lines to ``on_log`` in the calling thread.

    Returns:
        (exit code, last output lines); the exit code is None when cancelled.
    """
    tail: deque = deque(maxlen=30)

    def on_line(line: str) -> None:
        line = line.rstrip()
        tail.append(line)
        if on_log:
            on_log(line)

    try:
        outcome = supervise(list(argv), on_line=on_line, should_stop=is_cancelled, grace_s=grace_s,
                            env=clean_environment(), stderr=subprocess.STDOUT, name="set-up")
    except OSError as exc:
        return 127, tr("could not start {program}: {error}").format(program=argv[0], error=exc)
    return (None if outcome.stop_requested else outcome.returncode), "\n".join(list(tail)[-15:])
