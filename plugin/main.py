"""Plugin object: everything registered in :meth:`initGui` is removed in :meth:`unload`."""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

PLUGIN_DIR = Path(__file__).resolve().parent.parent
MENU = "&MaskTalk"


def icon() -> QIcon:
    return QIcon(str(PLUGIN_DIR / "resources" / "icon.png"))


class MaskTalkPlugin:
    """QGIS plugin instance created by ``classFactory``."""

    def __init__(self, iface):
        self.iface = iface
        self.dock = None
        self.actions: list[QAction] = []
        self.provider = None

    # -- QGIS API -------------------------------------------------------------------
    def initProcessing(self):  # noqa: N802 - QGIS API name
        try:
            from .processing.provider import MaskTalkProvider
        except ImportError:  # provider not available (e.g. Processing disabled)
            return
        self.provider = MaskTalkProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802 - QGIS API name
        self.initProcessing()
        from .dock import MaskTalkDock

        self.dock = MaskTalkDock(self.iface, self.iface.mainWindow())
        self.iface.addDockWidget(Qt.RightDockWidgetArea, self.dock)
        self.dock.hide()

        show = QAction(icon(), "MaskTalk", self.iface.mainWindow())
        show.setObjectName("mMaskTalkShowDock")
        show.setCheckable(True)
        show.setToolTip("Show the MaskTalk change-detection dock")
        show.toggled.connect(self.dock.setVisible)
        self.dock.visibilityChanged.connect(show.setChecked)
        self.iface.addPluginToRasterMenu(MENU, show)
        self.iface.addRasterToolBarIcon(show)
        self.actions.append(show)
        for action in self.dock.menu_actions():
            self.iface.addPluginToRasterMenu(MENU, action)
            self.actions.append(action)

    def unload(self):
        for action in self.actions:
            self.iface.removePluginRasterMenu(MENU, action)
            self.iface.removeRasterToolBarIcon(action)
            action.deleteLater()
        self.actions.clear()
        if self.dock is not None:
            self.iface.removeDockWidget(self.dock)
            self.dock.shutdown()
            self.dock.deleteLater()
            self.dock = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
