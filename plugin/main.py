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
        self.engine_actions = None

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

        from .diagnostics import EngineActions

        self.engine_actions = EngineActions(self.iface)
        for text, name, tip, slot in (
            ("Set up engine…", "mMaskTalkSetupEngine", "Create MaskTalk's own Python environment and install the engine (PyTorch, CUDA when there is a GPU)", self.engine_actions.setup_engine),
            ("Engine Python…", "mMaskTalkEnginePython", "Choose the Python interpreter that runs the engine, or let MaskTalk find it (automatic)", self.engine_actions.choose_engine_python),
            ("Diagnostics", "mMaskTalkDiagnostics", "Versions, devices and weights of the engine, for bug reports (copyable)", self.engine_actions.show_diagnostics),
        ):
            action = QAction(text, self.iface.mainWindow())
            action.setObjectName(name)
            action.setToolTip(tip)
            action.triggered.connect(lambda _checked=False, run=slot: run())
            self.iface.addPluginToRasterMenu(MENU, action)
            self.actions.append(action)

    def unload(self):
        for action in self.actions:
            self.iface.removePluginRasterMenu(MENU, action)
            self.iface.removeRasterToolBarIcon(action)
            action.deleteLater()
        self.actions.clear()
        if self.engine_actions is not None:
            self.engine_actions.shutdown()
            self.engine_actions = None
        if self.dock is not None:
            self.iface.removeDockWidget(self.dock)
            self.dock.shutdown()
            self.dock.deleteLater()
            self.dock = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
