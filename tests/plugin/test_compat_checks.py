"""`make check`: Python 3.9, Qt5/Qt6, tr() and import checks find what they should, and only that."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: Files of this check's owner that must pass every check whatever the rest of the tree does.
CLEAN = ("__init__.py", "plugin/runner.py", "plugin/environment.py", "plugin/supervisor.py", "plugin/diagnostics.py",
         "plugin/main.py", "plugin/engine_tasks.py", "plugin/i18n.py", "plugin/compat.py")


@pytest.fixture(scope="module")
def cc():
    spec = importlib.util.spec_from_file_location("check_compat", REPO / "scripts" / "check_compat.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_compat"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def codes(findings):
    return sorted((f.line, f.code) for f in findings)


def src(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def test_runtime_unions_are_found_outside_annotations(cc):
    code = src("""
        from __future__ import annotations
        import os
        from pathlib import Path
        from qgis.PyQt.QtCore import Qt

        PathLike = str | os.PathLike
        MaybePath = Path | None
        def f(x: int | None = None) -> dict[str, int] | None:
            y: list[int] | None = None
            return isinstance(x, int | float)
        flags = Qt.AlignLeft | Qt.AlignTop
        bits = 1 | 2
        mode = os.O_RDONLY | os.O_CREAT
        CONSTANT = FLAG_A | FLAG_B
    """)
    assert codes(cc.runtime_unions(code)) == [(6, "MT901"), (7, "MT901"), (10, "MT901")]


def test_annotations_count_without_the_future_import(cc):
    code = src("""
        def f(x: int | None = None) -> str:
            return str(x)
        def g(x: "int | None" = None):
            return x
    """)
    assert codes(cc.runtime_unions(code)) == [(1, "MT901")]


def test_type_checking_blocks_and_get_type_hints(cc):
    code = src("""
        from __future__ import annotations
        from typing import TYPE_CHECKING, get_type_hints
        if TYPE_CHECKING:
            Alias = int | str
        class A:
            x: int | None = None
        hints = get_type_hints(A)
    """)
    assert codes(cc.runtime_unions(code)) == [(6, "MT901")]  # get_type_hints evaluates the annotation


def test_qt5_only_forms_are_found_with_the_form_to_use(cc):
    code = src("""
        from PyQt5.QtCore import QTimer
        from qgis.core import Qgis, QgsTask
        from qgis.PyQt.QtCore import Qt, QVariant
        from qgis.PyQt.QtWidgets import QDialog, QDialogButtonBox, QMessageBox
        def f(box, dialog):
            box.exec_()
            a = Qt.AlignLeft
            b = QVariant.String
            c = QMessageBox.Yes
            d = Qgis.Info
            e = QgsTask.CanCancel
            return QDialogButtonBox.Ok | QDialogButtonBox.Cancel
    """)
    found = cc.qt5_forms(code)
    assert codes(found) == [(1, "MT903"), (6, "MT902"), (7, "MT905"), (8, "MT904"), (9, "MT905"), (10, "MT905"),
                            (11, "MT905"), (12, "MT905"), (12, "MT905")]
    text = "\n".join(f.message for f in found)
    for scoped in ("Qt.AlignmentFlag.AlignLeft", "QMessageBox.StandardButton.Yes", "Qgis.MessageLevel.Info",
                   "QgsTask.Flag.CanCancel", "QDialogButtonBox.StandardButton.Ok", "plugin/compat.py"):
        assert scoped in text


def test_qt_neutral_code_passes(cc):
    code = src("""
        from qgis.core import Qgis, QgsTask
        from qgis.PyQt import QtCore
        from qgis.PyQt.QtCore import Qt, QVariant
        from qgis.PyQt.QtWidgets import QDialogButtonBox, QMessageBox
        from ..compat import STRING
        def f(box):
            box.exec()
            flags = QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
            role = Qt.ItemDataRole.UserRole + 1
            level = Qgis.MessageLevel.Info
            area = QtCore.Qt.DockWidgetArea.RightDockWidgetArea
            value = QVariant()
            return QgsTask.Flag.CanCancel, QMessageBox.StandardButton.Yes, STRING, Qt.AlignmentFlag
    """)
    assert cc.qt5_forms(code) == []


def test_tr_needs_a_literal(cc):
    code = src("""
        from .i18n import tr
        def f(self, n, name):
            ok = tr("{n} layers").format(n=n) + tr("two " "parts") + self.tr("method")
            bad = tr(f"{n} layers")
            worse = tr(name)
            also = tr("x {n}".format(n=n))
            header = tr(HEADERS[n])  # noqa: MT906 - HEADERS are marked with tr_noop
            return ok, bad, worse, also, header
    """)
    assert codes(cc.tr_calls(code)) == [(4, "MT906"), (5, "MT906"), (6, "MT906")]


def _package(root: Path, files: dict) -> list:
    out = []
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(src(text))
        out.append(path)
    return out


def test_import_cycles_are_found_including_function_level_imports(cc, tmp_path):
    files = _package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from .b import x\n",
        "pkg/b.py": "x = 1\ndef f():\n    from . import c\n",
        "pkg/c.py": "from .a import x\n",
        "pkg/d.py": "from .b import x\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/e.py": "from .. import d\n",
    })
    found = cc.import_cycles(files, tmp_path)
    assert len(found) == 1 and found[0].code == "MT907"
    assert "pkg.a -> pkg.b" in found[0].message and "pkg.b -> pkg.c" in found[0].message and "pkg.c -> pkg.a" in found[0].message
    assert "pkg.d" not in found[0].message and "pkg.sub" not in found[0].message


def test_the_plugin_has_no_import_cycle(cc):
    files = [f for f in cc.plugin_files(REPO) if f.parent != REPO]
    graph = cc.import_graph(files, REPO)
    assert "plugin.supervisor" in graph["plugin.runner"] and "plugin.supervisor" in graph["plugin.environment"]
    assert "plugin.environment" in graph["plugin.runner"]  # the runner asks for the interpreter, never the reverse
    assert "plugin.runner" not in graph["plugin.environment"]
    assert "plugin.engine_tasks" in graph["plugin.diagnostics"] and "plugin.diagnostics" not in graph["plugin.engine_tasks"]
    assert cc.import_cycles(files, REPO) == []


def test_light_modules_follow_the_plugin_imports_and_refuse_heavy_ones(cc, tmp_path):
    light = {cc.module_name(p, REPO) for p in cc.light_modules(cc.plugin_files(REPO), REPO)}
    assert {"engine", "engine.schema", "engine.errors", "engine.captions", "engine.config"} <= light
    assert "engine.train" not in light and "engine.models.backbone" not in light
    heavy = tmp_path / "mod.py"
    heavy.write_text(src("""
        import json
        import numpy as np
        import torch
        try:
            import rasterio
        except ImportError:
            rasterio = None
        def later():
            import transformers
    """))
    assert codes(cc.heavy_imports(heavy)) == [(3, "MT908"), (5, "MT908")]


def test_vermin_and_flake8_qgis_are_wired(cc, tmp_path):
    new_syntax = tmp_path / "new.py"
    new_syntax.write_text(src("""
        def f(x):
            match x:
                case 1:
                    return "one"
    """))
    code, out = cc.run_vermin([new_syntax])
    assert code != 0 and "3.10" in out
    qt5 = tmp_path / "qt5.py"
    qt5.write_text("from PyQt5.QtCore import Qt\n\n\ndef f(box):\n    return box.exec_()\n")
    code, out = cc.run_flake8_qgis([qt5])
    assert code != 0 and "QGS103" in out and "QGS107" in out


def test_the_owners_files_pass_every_check(cc):
    files = [REPO / name for name in CLEAN]
    findings = []
    for f in files:
        source = f.read_text(encoding="utf-8")
        findings += cc.runtime_unions(source, f.name) + cc.qt5_forms(source, f.name) + cc.tr_calls(source, f.name)
    assert [str(f) for f in findings] == []
    for run in (cc.run_vermin, cc.run_flake8_qgis):
        code, out = run(files)
        assert code == 0, out
