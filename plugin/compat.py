"""Qt5 / Qt6 neutral forms used across the plugin (QGIS 3.22 ... QGIS 4).

* Field types: QGIS < 3.38 with Qt5 takes ``QVariant.Type`` (``QVariant.String``); Qt6
  builds have no ``QVariant.Type`` at all and take ``QMetaType.Type``. :data:`STRING`,
  :data:`INT`, :data:`DOUBLE` hold whichever this QGIS understands.
* Dialogs and menus: ``exec()`` exists on PyQt5 (Python 3) and PyQt6; ``exec_()`` is
  Qt5-only and must not be used.
"""

from qgis.PyQt.QtCore import QMetaType, QVariant


def _field_type(qvariant_name: str, metatype_name: str):
    if hasattr(QVariant, qvariant_name):  # Qt5
        return getattr(QVariant, qvariant_name)
    return getattr(QMetaType.Type, metatype_name)  # Qt6


STRING = _field_type("String", "QString")
INT = _field_type("Int", "Int")
DOUBLE = _field_type("Double", "Double")
