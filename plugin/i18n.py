"""Translation of the plugin's user strings.

Every string a user reads goes through :func:`tr` so that the template extractor
(``scripts/i18n.py``, ``make i18n``) finds it and a ``.qm`` file
(``i18n/masktalk_<locale>.qm``, built by ``make package``) translates it. One translation
context, ``MaskTalk``, for the whole plugin keeps the template simple.

Rules the extractor relies on (``make check`` enforces them): the first argument of
``tr()`` is a string literal (implicit concatenation is fine), and values are formatted
*after* translation: ``tr("{n} layers").format(n=n)``, never ``tr(f"{n} layers")``.

Texts written in one place and translated in another (a table's headers) are marked with
:func:`tr_noop` where they are written, so that the extractor finds them, and translated
with ``tr(text)  # noqa: MT906`` where they are shown.

Without QGIS (scripts, the runner used outside QGIS) :func:`tr` returns the text itself.
:func:`install_translator` is called by the plugin (``plugin/main.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

try:
    from qgis.PyQt.QtCore import QCoreApplication
except ImportError:  # no QGIS: plain text
    QCoreApplication = None

CONTEXT = "MaskTalk"
I18N_DIR = Path(__file__).resolve().parent.parent / "i18n"


def tr(text: str, disambiguation: Optional[str] = None, n: int = -1) -> str:
    """``text`` translated into the user's QGIS locale (the text itself when untranslated)."""
    if QCoreApplication is None:
        return text
    return QCoreApplication.translate(CONTEXT, text, disambiguation, n)


def tr_noop(text: str) -> str:
    """Mark ``text`` for the translation template without translating it now (``QT_TR_NOOP``)."""
    return text


def qgis_locale() -> str:
    """The locale QGIS runs in (``fr``, ``pt_BR`` ...): its override setting, else the system's."""
    from qgis.core import QgsApplication

    return QgsApplication.locale() or "en"


def translation_file(locale: str, folder: Path = I18N_DIR) -> Optional[Path]:
    """``masktalk_<locale>.qm`` for ``pt_BR``, else ``masktalk_pt.qm``, else None."""
    names = [locale, locale.split("_")[0]] if locale else []
    for name in names:
        path = folder / f"masktalk_{name}.qm"
        if path.is_file():
            return path
    return None


def install_translator(locale: Optional[str] = None, folder: Path = I18N_DIR):
    """Install the plugin's translator for ``locale`` (default: QGIS's); the translator, or None.

    Keep the returned object and pass it to :func:`remove_translator` at unload.
    """
    from qgis.PyQt.QtCore import QTranslator

    path = translation_file(locale if locale is not None else qgis_locale(), folder)
    if path is None:
        return None
    translator = QTranslator()
    if not translator.load(str(path)):
        return None
    QCoreApplication.installTranslator(translator)
    return translator


def remove_translator(translator) -> None:
    """Undo :func:`install_translator` (plugin unload)."""
    if translator is not None and QCoreApplication is not None:
        QCoreApplication.removeTranslator(translator)
