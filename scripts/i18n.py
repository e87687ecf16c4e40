"""Translations of the plugin: the template (``.ts``) from the code, ``.qm`` files for QGIS.

Why not ``pylupdate5``: it guesses a context from the enclosing class, while the plugin
translates everything in one context (``MaskTalk``, see ``plugin/i18n.py``) through a
module-level ``tr()`` (and marks deferred texts with ``tr_noop()``); and Qt 5's ``lupdate`` does not read Python. So this script reads
the code's ``tr("...")`` calls with :mod:`ast` (literals only, which ``make check``
enforces) and writes the Qt Linguist TS format itself. Compiling a TS file is
``lrelease``'s job (Debian package ``qttools5-dev-tools``; ``make setup`` installs it).

Commands:

- ``update`` (``make i18n``): write the template ``i18n/masktalk.ts`` and bring every
  translation ``i18n/masktalk_<locale>.ts`` up to date: new strings are added as
  unfinished, translations of strings that are gone are kept as ``vanished``;
- ``release --out DIR`` (``make package``): compile each ``masktalk_<locale>.ts`` into
  ``DIR/masktalk_<locale>.qm``; prints the files written.

A translator copies ``masktalk.ts`` to ``masktalk_<locale>.ts``, sets its ``language``
attribute and fills it in Qt Linguist; ``plugin/main.py`` installs the ``.qm`` matching
QGIS's locale.
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import subprocess  # nosec B404 - runs lrelease
import sys
import xml.etree.ElementTree as ET  # nosec B405 - parses the repository's own .ts files
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
I18N = ROOT / "i18n"
TEMPLATE = I18N / "masktalk.ts"
CONTEXT = "MaskTalk"
SOURCES = ("__init__.py", "plugin")
LRELEASE_CANDIDATES = ("/usr/lib/qt5/bin/lrelease", "lrelease-qt5", "lrelease", "/usr/lib/qt6/bin/lrelease", "lrelease-qt6")


@dataclass
class Message:
    source: str
    comment: str = ""  # tr()'s disambiguation
    numerus: bool = False
    locations: list = field(default_factory=list)  # (relative file, line)


def source_files(root: Path = ROOT) -> list:
    out = []
    for name in SOURCES:
        path = root / name
        out += [path] if path.is_file() else sorted(p for p in path.rglob("*.py") if "__pycache__" not in p.parts)
    return out


def _literal(node) -> Optional[str]:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def extract(files, root: Path = ROOT) -> list:
    """Every ``tr("literal"[, "disambiguation"][, n])`` call, merged by (text, disambiguation)."""
    found: dict = {}
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            names = ("tr", "tr_noop")
            if not ((isinstance(func, ast.Name) and func.id in names) or (isinstance(func, ast.Attribute) and func.attr in names)):
                continue
            text = _literal(node.args[0])
            if text is None:
                continue  # make check reports it (MT906)
            kwargs = {k.arg: k.value for k in node.keywords}
            comment = _literal(node.args[1]) if len(node.args) > 1 else _literal(kwargs.get("disambiguation"))
            numerus = len(node.args) > 2 or "n" in kwargs
            key = (text, comment or "")
            message = found.setdefault(key, Message(text, comment or "", numerus))
            message.numerus = message.numerus or numerus
            message.locations.append((os.path.relpath(path, root / "i18n").replace(os.sep, "/"), node.lineno))
    return sorted(found.values(), key=lambda m: (m.locations[0], m.source))


def read_translations(path: Path) -> tuple:
    """(language, {(source, comment): (translation text or numerus forms, type)}) of a TS file."""
    tree = ET.parse(path)  # nosec B314 - our own file
    language = tree.getroot().get("language", "")
    out = {}
    for msg in tree.iter("message"):
        source = msg.findtext("source") or ""
        comment = msg.findtext("comment") or ""
        tr_node = msg.find("translation")
        if tr_node is None:
            continue
        forms = [f.text or "" for f in tr_node.findall("numerusform")]
        out[(source, comment)] = (forms if forms else (tr_node.text or ""), tr_node.get("type", ""))
    return language, out


def write_ts(path: Path, messages: list, language: str = "", old: Optional[dict] = None) -> None:
    """Write a TS file; ``old`` translations are kept (gone strings as ``vanished``)."""
    old = dict(old or {})
    root = ET.Element("TS", {"version": "2.1", "sourcelanguage": "en"})
    if language:
        root.set("language", language)
    context = ET.SubElement(root, "context")
    ET.SubElement(context, "name").text = CONTEXT

    def add(source, comment, numerus, locations, translation, kind):
        msg = ET.SubElement(context, "message", {"numerus": "yes"} if numerus else {})
        for filename, line in locations:
            ET.SubElement(msg, "location", {"filename": filename, "line": str(line)})
        ET.SubElement(msg, "source").text = source
        if comment:
            ET.SubElement(msg, "comment").text = comment
        node = ET.SubElement(msg, "translation", {"type": kind} if kind else {})
        if numerus:
            for form in (translation if isinstance(translation, list) else [translation or ""]):
                ET.SubElement(node, "numerusform").text = form
        else:
            node.text = translation if isinstance(translation, str) else ""

    for m in messages:
        text, kind = old.pop((m.source, m.comment), ("", "unfinished"))
        if kind == "vanished":
            kind = "unfinished"  # back in the code: to be checked
        add(m.source, m.comment, m.numerus, m.locations, text, kind if (text or not language) else "unfinished")
    for (source, comment), (text, kind) in sorted(old.items()):
        if text:
            add(source, comment, False, [], text, "vanished")
    ET.indent(root, space="    ")
    body = ET.tostring(root, encoding="unicode")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE TS>\n' + body + "\n", encoding="utf-8")


def translations(folder: Path = I18N) -> list:
    """The translation files ``masktalk_<locale>.ts`` (not the template)."""
    return sorted(folder.glob("masktalk_*.ts"))


def update(root: Path = ROOT) -> list:
    messages = extract(source_files(root), root)
    folder = root / "i18n"
    write_ts(folder / "masktalk.ts", [Message(m.source, m.comment, m.numerus, m.locations) for m in messages])
    written = [folder / "masktalk.ts"]
    for path in translations(folder):
        language, old = read_translations(path)
        write_ts(path, messages, language or path.stem.split("_", 1)[1], old)
        written.append(path)
    return written


def find_lrelease() -> Optional[str]:
    for candidate in LRELEASE_CANDIDATES:
        path = candidate if os.path.isabs(candidate) else shutil.which(candidate)
        if path and os.path.isfile(path):
            return path
    return None


def release(out: Path, folder: Path = I18N) -> list:
    """Compile every translation into ``out``; the ``.qm`` files written.

    Raises:
        SystemExit: lrelease is missing or fails.
    """
    files = translations(folder)
    if not files:
        return []
    lrelease = find_lrelease()
    if lrelease is None:
        raise SystemExit("i18n: lrelease not found; install Qt's Linguist tools (Debian: apt-get install qttools5-dev-tools, "
                         "part of `make setup`)")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for ts in files:
        qm = out / (ts.stem + ".qm")
        done = subprocess.run([lrelease, "-silent", "-nounfinished", str(ts), "-qm", str(qm)],  # nosec B603
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0 or not qm.is_file():
            raise SystemExit(f"i18n: lrelease failed on {ts}: {(done.stdout + done.stderr).strip()}")
        written.append(qm)
    return written


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("update", help="write i18n/masktalk.ts and refresh the translations from the code")
    rel = sub.add_parser("release", help="compile the translations into .qm files")
    rel.add_argument("--out", type=Path, default=I18N)
    args = parser.parse_args(argv)
    paths = update() if args.command == "update" else release(args.out)
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
