"""Plugin object: everything registered in :meth:`initGui` is removed in :meth:`unload`.

What it registers: the translator for the QGIS locale (in ``__init__``, so that the menu
texts are translated), the Processing provider, the dock and its menu/toolbar actions,
the engine actions (*Set up engine…*, *Engine Python…*, *Diagnostics*) and a handler of
``QgsApplication.aboutToQuit``. Unload and quit both end every engine or set-up process
still running (:func:`.supervisor.terminate_all`): nothing outlives QGIS or the plugin.
"""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

from . import supervisor
from .i18n import install_translator, remove_translator, tr

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
        self._quit_connected = False
        self.translator = install_translator()

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
        self.iface.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
        self.dock.hide()

        show = QAction(icon(), "MaskTalk", self.iface.mainWindow())
        show.setObjectName("mMaskTalkShowDock")
        show.setCheckable(True)
        show.setToolTip(tr("Show the MaskTalk change-detection dock"))
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
        self.engine_actions.engine_changed.append(self._engine_changed)
        for text, name, tip, slot in (
            (tr("Set up engine…"), "mMaskTalkSetupEngine",
             tr("Create MaskTalk's own Python environment and install the engine (PyTorch, CUDA when there is a GPU)"),
             self.engine_actions.setup_engine),
            (tr("Engine Python…"), "mMaskTalkEnginePython",
             tr("Choose the Python interpreter that runs the engine, or let MaskTalk find it (automatic)"),
             self.engine_actions.choose_engine_python),
            (tr("Diagnostics"), "mMaskTalkDiagnostics",
             tr("Versions, devices and weights of the engine, for bug reports (copyable)"),
             self.engine_actions.show_diagnostics),
        ):
            action = QAction(text, self.iface.mainWindow())
            action.setObjectName(name)
            action.setToolTip(tip)
            action.triggered.connect(lambda _checked=False, run=slot: run())
            self.iface.addPluginToRasterMenu(MENU, action)
            self.actions.append(action)

        app = QgsApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.on_about_to_quit)
            self._quit_connected = True

    def _engine_changed(self) -> None:
        """Set-up finished or the engine Python changed: the dock asks the engine again."""
        if self.dock is not None and hasattr(self.dock, "engine_changed"):
            self.dock.engine_changed()

    def on_about_to_quit(self) -> None:
        """QGIS is closing: end every engine and set-up process now (the engine commits nothing partial)."""
        supervisor.terminate_all(reason="QGIS is closing")

    def unload(self):
        if self._quit_connected:
            try:
                QgsApplication.instance().aboutToQuit.disconnect(self.on_about_to_quit)
            except (TypeError, RuntimeError):  # already gone with the application
                pass
            self._quit_connected = False
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
        # Tasks were asked to cancel above; whatever still runs (a Processing run, a task
        # started elsewhere) is stopped here, and this returns once every child is gone.
        supervisor.terminate_all(reason="MaskTalk is unloaded")
        remove_translator(self.translator)
        self.translator = None
