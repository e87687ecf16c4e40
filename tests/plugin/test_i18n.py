"""Translations: the template from the code's tr() calls, .qm files by lrelease, the translator for QGIS's locale."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("masktalk_i18n_script", REPO / "scripts" / "i18n.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _checkout(root: Path, code: str) -> Path:
    (root / "plugin").mkdir(parents=True)
    (root / "i18n").mkdir()
    (root / "__init__.py").write_text("")
    (root / "plugin" / "a.py").write_text(textwrap.dedent(code))
    return root


def test_update_writes_the_template_and_keeps_translations(tool, tmp_path):
    root = _checkout(tmp_path / "repo", '''
        from .i18n import tr, tr_noop
        HEADERS = [tr_noop("Class"), tr_noop("Colour")]
        def f(n):
            return tr("{n} layers").format(n=n) + tr("Open", "menu") + tr("Open", "button") + tr("{n} layers")
    ''')
    tool.update(root)
    language, template = tool.read_translations(root / "i18n" / "masktalk.ts")
    assert language == "" and set(template) == {("Class", ""), ("Colour", ""), ("{n} layers", ""), ("Open", "menu"),
                                                ("Open", "button")}
    assert all(kind == "unfinished" for _, kind in template.values())
    (root / "i18n" / "masktalk_de.ts").write_text((root / "i18n" / "masktalk.ts").read_text()
                                                  .replace('version="2.1"', 'version="2.1" language="de"'))
    tool.write_ts(root / "i18n" / "masktalk_de.ts", tool.extract(tool.source_files(root), root), "de",
                  {("Class", ""): ("Klasse", ""), ("Gone", ""): ("Weg", "")})
    (root / "plugin" / "a.py").write_text('from .i18n import tr\nHEADERS = [tr("Class"), tr("New")]\n')
    tool.update(root)
    language, de = tool.read_translations(root / "i18n" / "masktalk_de.ts")
    assert language == "de"
    assert de[("Class", "")] == ("Klasse", "")           # kept
    assert de[("New", "")] == ("", "unfinished")          # added
    assert de[("Gone", "")] == ("Weg", "vanished")        # kept for a translator, not compiled
    assert ("Colour", "") not in de                       # never translated, gone from the code


def test_release_compiles_a_qm_that_qt_reads(tool, tmp_path, qgis_app):
    from qgis.PyQt.QtCore import QCoreApplication, QTranslator

    root = _checkout(tmp_path / "repo", 'from .i18n import tr\nTEXT = tr("Detect changes")\n')
    tool.write_ts(root / "i18n" / "masktalk_es.ts", tool.extract(tool.source_files(root), root), "es",
                  {("Detect changes", ""): ("Detectar cambios", "")})
    written = tool.release(tmp_path / "qm", root / "i18n")
    assert [p.name for p in written] == ["masktalk_es.qm"]
    translator = QTranslator()
    assert translator.load(str(written[0]))
    QCoreApplication.installTranslator(translator)
    try:
        i18n = importlib.import_module("masktalk.plugin.i18n")
        assert i18n.tr("Detect changes") == "Detectar cambios"
        assert i18n.tr("Something else") == "Something else"
    finally:
        QCoreApplication.removeTranslator(translator)


def test_install_translator_picks_the_locale_then_the_language(tmp_path, qgis_app):
    i18n = importlib.import_module("masktalk.plugin.i18n")
    (tmp_path / "masktalk_pt.qm").write_bytes(b"")
    (tmp_path / "masktalk_pt_BR.qm").write_bytes(b"")
    assert i18n.translation_file("pt_BR", tmp_path).name == "masktalk_pt_BR.qm"
    assert i18n.translation_file("pt_PT", tmp_path).name == "masktalk_pt.qm"
    assert i18n.translation_file("de", tmp_path) is None
    assert i18n.install_translator("de", tmp_path) is None  # no file: nothing installed


def test_the_shipped_template_is_current(tool):
    """``make i18n`` was run after the last change of a tr() text (the template is what translators get)."""
    expected = {(m.source, m.comment) for m in tool.extract(tool.source_files(REPO), REPO)}
    _, template = tool.read_translations(REPO / "i18n" / "masktalk.ts")
    assert set(template) == expected, "run make i18n: " + str(sorted(expected ^ set(template))[:10])
