"""The MaskTalk dock, one module per section (layers, classes, captions, train, detect).

:class:`MaskTalkDock` (:mod:`.panel`) assembles the sections and runs the jobs they emit.
"""

from .panel import MaskTalkDock

__all__ = ["MaskTalkDock"]
