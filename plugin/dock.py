"""The MaskTalk dock (filled in by the dock issue; for now an empty, restorable dock)."""

from __future__ import annotations

from qgis.PyQt.QtWidgets import QDockWidget, QLabel, QVBoxLayout, QWidget


class MaskTalkDock(QDockWidget):
    """Dock widget; ``objectName`` is set so QGIS restores its place."""

    def __init__(self, iface, parent=None):
        super().__init__("MaskTalk", parent)
        self.iface = iface
        self.setObjectName("MaskTalkDock")
        body = QWidget(self)
        layout = QVBoxLayout(body)
        layout.addWidget(QLabel("MaskTalk: change detection whose masks talk."))
        layout.addStretch(1)
        self.setWidget(body)

    def menu_actions(self):
        """Extra actions for the plugin menu (set-up, diagnostics ...)."""
        return []

    def shutdown(self):
        """Cancel running tasks and disconnect signals before the dock goes away."""
