#!/usr/bin/env python3
"""Screenshots of the real QGIS desktop with the MaskTalk dock over the demo scene.

``make screenshots`` runs this script with the system Python. It

1. writes the demo scene (``engine.scene.make_demo_scene``) with the engine's Python;
2. makes a throw-away QGIS profile in which this checkout is the installed plugin;
3. starts ``qgis`` under ``xvfb-run`` with ``--code`` pointing back at this file, which
   (inside QGIS, ``MASKTALK_SCREENSHOT_STAGE=qgis``) loads the scene and does what a new
   user does, nothing more: picks *before*, *after* and the label layer, presses
   *Caption labels*, *Train* and *Detect changes* -- every engine option at its default,
   every folder the dock's default -- saving a PNG of the main window after each step;
4. copies the PNGs to ``docs/screenshots/`` (``--out``) and, with ``--status``, writes
   what happened (each step's job options, engine command, result, the layers Detect
   added) as JSON: ``tests/plugin/test_desktop.py`` runs this script and checks it.

A step that fails (say the engine lacks a command) is logged and the screenshots taken
so far are kept; the exit code is then 1. Nothing is written outside the temporary
folder, ``--out`` and ``--status``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

STAGE_VAR = "MASKTALK_SCREENSHOT_STAGE"
CONFIG_VAR = "MASKTALK_SCREENSHOT_CONFIG"
WINDOW = (1600, 1000)
# QGIS's --code runs this file with exec(), without __file__: the driver passes the path.
SCRIPT = Path(globals().get("__file__") or os.environ.get("MASKTALK_SCREENSHOT_SCRIPT", "scripts/screenshots.py")).resolve()
REPO = SCRIPT.parent.parent
log = logging.getLogger("screenshots")


# =============================================================================== driver
def default_engine_python() -> str:
    env = os.environ.get("MASKTALK_ENGINE_PYTHON")
    if env:
        return env
    return str(REPO / ".venv" / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))


def engine_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("PROJ_DATA", "PROJ_LIB", "PYTHONPATH", "PYTHONHOME"):
        env.pop(name, None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def make_scene(engine_python: str, out: Path, size: int) -> dict[str, str]:
    """Write the demo scene with the engine's Python; return its paths."""
    code = (
        "import json, sys\n"
        "from engine.scene import make_demo_scene\n"
        f"s = make_demo_scene({str(out)!r}, size={size}, seed=0)\n"
        "print(json.dumps({k: str(getattr(s, k)) for k in ('before', 'after', 'labels', 'aoi', 'truth')}))\n"
    )
    done = subprocess.run([engine_python, "-c", code], cwd=REPO, env=engine_env(), capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"could not write the demo scene with {engine_python}:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def make_profile(root: Path) -> Path:
    """A QGIS profiles folder whose ``default`` profile has this checkout as plugin ``masktalk``."""
    profile = root / "profiles" / "default"
    plugins = profile / "python" / "plugins"
    plugins.mkdir(parents=True)
    (plugins / "masktalk").symlink_to(REPO, target_is_directory=True)
    ini = profile / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True)
    ini.write_text(
        "[PythonPlugins]\nmasktalk=true\n\n"
        "[qgis]\ncheckVersion=false\nshowTips=false\nshowTips322=false\nallowVersionCheck=false\n"
        "\n[core]\nlocale\\overrideFlag=true\nlocale\\userLocale=en_US\n",
        encoding="utf-8",
    )
    return root  # QGIS's --profiles-path takes the folder that holds "profiles/"


def qgis_environment(base: dict[str, str]) -> dict[str, str]:
    """Environment for the QGIS desktop: QGIS embeds the *system* Python, which finds its
    home through PATH, so a virtualenv's or pyenv's ``bin`` in front of PATH must go."""
    env = dict(base)
    for name in ("VIRTUAL_ENV", "PYENV_VERSION", "PYENV_DIR", "PYENV_HOOK_PATH", "PYENV_ROOT"):
        env.pop(name, None)
    foreign = {p for p in (sys.prefix, sys.base_prefix, os.environ.get("VIRTUAL_ENV", "")) if p and p not in ("/usr", "/usr/local")}
    keep = [d for d in env.get("PATH", "").split(os.pathsep)
            if d and not any(d == f or d.startswith(f.rstrip("/") + "/") for f in foreign) and ".pyenv" not in d]
    env["PATH"] = os.pathsep.join(keep or ["/usr/bin", "/bin"])
    return env


def run_qgis(cmd: list[str], env: dict[str, str], cwd: Path, timeout: int) -> tuple[int, str]:
    """Run QGIS in its own process group; on timeout the whole group (Xvfb too) is killed."""
    with tempfile.TemporaryFile() as output:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
            note = ""
        except subprocess.TimeoutExpired:
            code = 124
            note = f"QGIS did not finish within {timeout} s (a dialog may be waiting; see the screenshots)\n"
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        output.seek(0)
        return code, note + output.read().decode("utf-8", errors="replace")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "screenshots"), help="folder for the PNGs")
    parser.add_argument("--size", type=int, default=1024, help="demo scene size in pixels (default 1024, as `engine demo`)")
    parser.add_argument("--status", help="also write what happened in QGIS (steps, jobs, layers added) to this JSON file")
    parser.add_argument("--engine-python", default=default_engine_python(), help="the engine's Python")
    parser.add_argument("--qgis", default=shutil.which("qgis") or "/usr/bin/qgis", help="QGIS desktop executable")
    parser.add_argument("--no-train", action="store_true", help="skip training and detection (layers and captions only)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds before QGIS is stopped (default 1800)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (printed)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    xvfb = shutil.which("xvfb-run")
    if not xvfb:
        raise SystemExit("xvfb-run is missing: apt-get install xvfb (make setup installs it)")
    if not Path(args.qgis).is_file():
        raise SystemExit(f"QGIS desktop not found at {args.qgis}: apt-get install qgis, or pass --qgis")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="masktalk-screenshots-"))
    try:
        log.info("demo scene (%d px) ...", args.size)
        scene = make_scene(args.engine_python, work / "demo", args.size)
        profiles = make_profile(work)
        shots = work / "shots"
        shots.mkdir()
        config = {"scene": scene, "shots": str(shots), "train": not args.no_train, "window": WINDOW}
        (work / "config.json").write_text(json.dumps(config), encoding="utf-8")
        env = qgis_environment(engine_env())
        env.update({STAGE_VAR: "qgis", CONFIG_VAR: str(work / "config.json"), "MASKTALK_ENGINE_PYTHON": args.engine_python,
                    "MASKTALK_SCREENSHOT_SCRIPT": str(SCRIPT), "XDG_RUNTIME_DIR": env.get("XDG_RUNTIME_DIR") or str(work / "runtime"),
                    "QT_QPA_PLATFORM": "xcb"})
        Path(env["XDG_RUNTIME_DIR"]).mkdir(mode=0o700, exist_ok=True)
        cmd = [xvfb, "-a", "-s", f"-screen 0 {WINDOW[0]}x{WINDOW[1]}x24", args.qgis, "--nologo", "--noversioncheck",
               "--profiles-path", str(profiles), "--code", str(SCRIPT)]
        log.info("QGIS under Xvfb ...")
        code, qgis_log = run_qgis(cmd, env, work, args.timeout)
        status_file = shots / "status.json"
        status = json.loads(status_file.read_text(encoding="utf-8")) if status_file.is_file() else {}
        status["qgis_exit_code"] = code
        if args.status:
            Path(args.status).write_text(json.dumps(status, indent=1), encoding="utf-8")
        pngs = sorted(shots.glob("*.png"))
        for png in pngs:
            shutil.copy2(png, out / png.name)
            log.info("wrote %s", out / png.name)
        failed = status.get("errors") or []
        for err in failed:
            log.error("step failed: %s", err)
        if failed and (shots / "masktalk.log").is_file():
            log.error("MaskTalk log:\n%s", (shots / "masktalk.log").read_text(encoding="utf-8")[-4000:])
        if code != 0 or not pngs or failed or not status.get("finished"):
            log.error("QGIS exit code %s; its output:\n%s", code, qgis_log[-4000:])
            return 1
        return 0
    finally:
        if args.keep:
            log.info("kept %s", work)
        else:
            shutil.rmtree(work, ignore_errors=True)


# ======================================================================= inside QGIS
def _layer_facts(node) -> dict:  # pragma: no cover - runs inside the QGIS desktop
    from qgis.core import QgsRasterLayer

    layer = node.layer()
    renderer = layer.renderer() if hasattr(layer, "renderer") else None
    facts = {"name": layer.name(), "kind": "raster" if isinstance(layer, QgsRasterLayer) else "vector",
             "renderer": renderer.type() if renderer is not None else None, "visible": node.isVisible(),
             "source": layer.source(), "valid": layer.isValid()}
    if facts["kind"] == "raster" and hasattr(renderer, "band"):
        facts["band"] = renderer.band()
    if facts["kind"] == "vector":
        facts["features"] = layer.featureCount()
        facts["labels"] = bool(layer.labelsEnabled())
    return facts


def _in_qgis() -> None:  # pragma: no cover - runs inside the QGIS desktop
    """Load the scene, drive the dock as a new user and take the screenshots (QGIS ``--code``)."""
    import time
    import traceback

    import qgis.utils
    from qgis.core import QgsApplication, QgsProject, QgsRasterLayer, QgsSettings, QgsVectorLayer
    from qgis.PyQt.QtCore import QEventLoop, Qt, QTimer
    from qgis.PyQt.QtGui import QImage
    from qgis.PyQt.QtWidgets import QApplication, QDockWidget

    config = json.loads(Path(os.environ[CONFIG_VAR]).read_text(encoding="utf-8"))
    shots = Path(config["shots"])
    status: dict = {"errors": [], "shots": [], "finished": False, "steps": {}}
    iface = qgis.utils.iface

    def on_message(message, tag, level):
        if tag == "MaskTalk":
            with open(shots / "masktalk.log", "a", encoding="utf-8") as fh:
                fh.write(f"[{int(level)}] {message}\n")

    QgsApplication.messageLog().messageReceived.connect(on_message)

    def save_status():
        (shots / "status.json").write_text(json.dumps(status, indent=1, default=str), encoding="utf-8")

    def pump(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            QApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
            time.sleep(0.02)

    def wait_canvas() -> None:
        canvas = iface.mapCanvas()
        canvas.refreshAllLayers()
        pump(0.5)
        end = time.monotonic() + 30
        while canvas.isDrawing() and time.monotonic() < end:
            pump(0.1)
        pump(0.5)

    def shot(name: str) -> None:
        wait_canvas()
        path = shots / f"{name}.png"
        # 256 colours with diffusion dithering: a third of the size of a full-colour PNG,
        # text stays crisp and imagery keeps its colours.
        image = iface.mainWindow().grab().toImage().convertToFormat(
            QImage.Format.Format_Indexed8, Qt.ImageConversionFlag.AutoColor | Qt.ImageConversionFlag.DiffuseDither)
        image.save(str(path), "PNG", 0)
        status["shots"].append(path.name)
        save_status()

    def focus(dock, *sections: str) -> None:
        """Expand the dock's sections named (object names), collapse the others."""
        from qgis.gui import QgsCollapsibleGroupBox

        for box in dock.findChildren(QgsCollapsibleGroupBox):
            if box.objectName() in ("MaskTalkLayers", "MaskTalkClasses", "MaskTalkCaptions", "MaskTalkTrain", "MaskTalkDetect"):
                box.setCollapsed(box.objectName() not in sections)
        pump(0.3)

    def press(dock, kind: str, timeout: float) -> dict:
        """Press a section's run button (as a click) and wait for its task to end."""
        section = dock.run_sections()[kind]
        result: dict = {}

        def on_finished(k, ok):
            if k == kind:
                result["ok"] = ok

        dock.taskFinished.connect(on_finished)
        step: dict = {"enabled": section.run.button.isEnabled(), "tooltip": section.run.button.toolTip()}
        started = time.monotonic()
        section.run.button.click()
        task = dock.tasks.get(kind)
        if task is not None:
            step["options"] = dict(getattr(task.job, "options", {}) or {})
            end = time.monotonic() + timeout
            while "ok" not in result and time.monotonic() < end:
                pump(0.2)
            step.update(ok=bool(result.get("ok")), seconds=round(time.monotonic() - started, 1),
                        command=list(task.runner.last_command or []), status=section.run.status.text(),
                        error=task.error.details() if task.error is not None else None,
                        result={k: v for k, v in (task.result or {}).items() if k != "json"})
        else:
            step.update(ok=False, status=section.run.status.text(), error="the task did not start")
        dock.taskFinished.disconnect(on_finished)
        status["steps"][kind] = step
        save_status()
        return step

    def run():
        try:
            win = iface.mainWindow()
            win.showNormal()
            win.setGeometry(0, 0, *config["window"])
            stored = QgsSettings()
            stored.beginGroup("MaskTalk/options")
            status["stored_options"] = list(stored.allKeys())  # a fresh profile: none
            stored.endGroup()
            plugin = qgis.utils.plugins.get("masktalk")
            if plugin is None:
                raise RuntimeError("the MaskTalk plugin did not load in this profile")
            dock = plugin.dock
            scene = config["scene"]
            project = QgsProject.instance()
            before = QgsRasterLayer(scene["before"], "before")
            after = QgsRasterLayer(scene["after"], "after")
            labels = QgsVectorLayer(f"{scene['labels']}|layername=labels", "labels", "ogr")
            aoi = QgsVectorLayer(scene["aoi"], "aoi", "ogr")
            for layer in (before, after, aoi, labels):
                if not layer.isValid():
                    raise RuntimeError(f"cannot open {layer.source()}")
            project.addMapLayers([labels, aoi, after, before])  # listed top to bottom
            project.layerTreeRoot().findLayer(before.id()).setItemVisibilityChecked(False)
            project.layerTreeRoot().findLayer(aoi.id()).setItemVisibilityChecked(False)
            for name in ("Browser", "Browser2"):  # more room for the map
                panel = win.findChild(QDockWidget, name)
                if panel is not None:
                    panel.hide()
            dock.show()
            dock.raise_()
            win.resizeDocks([dock], [480], Qt.Orientation.Horizontal)
            # what a new user touches: the two dates and the label layer, nothing else
            dock.layers.before_combo.setLayer(before)
            dock.layers.after_combo.setLayer(after)
            dock.layers.label_combo.setLayer(labels)
            status["class_field"] = dock.layers.class_field()
            iface.mapCanvas().setExtent(after.extent())
            end = time.monotonic() + 120
            while "options" in dock.tasks and time.monotonic() < end:  # the engine's own options arrive
                pump(0.2)
            pump(2)
            status["engine_options"] = getattr(dock.engine_options, "source", None)
            focus(dock, "MaskTalkLayers", "MaskTalkClasses")
            shot("01-dock-layers")
            sections = {"caption": ("MaskTalkCaptions",), "train": ("MaskTalkTrain",), "detect": ("MaskTalkDetect", "MaskTalkTrain")}
            steps = [("caption", 300, "02-captions")]
            if config.get("train"):
                steps += [("train", 3600, "03-train"), ("detect", 900, "04-detect")]
            for kind, timeout, name in steps:
                if kind == "detect":
                    # the caption layer of the labels would hide the detection's own captions
                    for layer in project.mapLayersByName("captions"):
                        node = project.layerTreeRoot().findLayer(layer.id())
                        if node is not None:
                            node.setItemVisibilityChecked(False)
                    project.layerTreeRoot().findLayer(labels.id()).setItemVisibilityChecked(False)
                focus(dock, *sections[kind])
                step = press(dock, kind, timeout)
                if not step.get("ok"):
                    status["errors"].append(f"{kind} did not finish successfully: {step.get('status')} (see the MaskTalk log)")
                    shot(name + "-failed")
                    break
                if kind == "detect":
                    groups = [g for g in project.layerTreeRoot().children() if g.name().startswith("MaskTalk ") and g.name() != "MaskTalk captions"]
                    status["detection_groups"] = [{"name": g.name(), "layers": [_layer_facts(n) for n in g.findLayers()]} for g in groups]
                shot(name)
            status["finished"] = True
        except Exception:  # noqa: BLE001 - report everything to the driver
            status["errors"].append(traceback.format_exc())
        finally:
            save_status()
            QgsApplication.exit(0)

    QTimer.singleShot(1500, run)


if os.environ.get(STAGE_VAR) == "qgis":
    _in_qgis()
elif __name__ == "__main__":
    sys.exit(main())
