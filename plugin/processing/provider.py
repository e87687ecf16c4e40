"""The MaskTalk Processing provider: *Caption change labels*, *Train change model*, *Detect changes*."""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ..i18n import tr
from .algorithms import CaptionLabelsAlgorithm, DetectChangesAlgorithm, TrainChangeModelAlgorithm

PLUGIN_DIR = Path(__file__).resolve().parents[2]


class MaskTalkProvider(QgsProcessingProvider):
    """Provider ``masktalk``: the engine's jobs in the Toolbox, batch mode, the modeler and ``qgis_process``."""

    def id(self) -> str:
        return "masktalk"

    def name(self) -> str:
        return "MaskTalk"

    def longName(self) -> str:  # noqa: N802 - QGIS API name
        return tr("MaskTalk change detection (S2M)")

    def icon(self) -> QIcon:
        return QIcon(str(PLUGIN_DIR / "resources" / "icon.png"))

    def loadAlgorithms(self) -> None:  # noqa: N802 - QGIS API name
        for alg in (CaptionLabelsAlgorithm(), TrainChangeModelAlgorithm(), DetectChangesAlgorithm()):
            self.addAlgorithm(alg)
