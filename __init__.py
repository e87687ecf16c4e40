"""MaskTalk QGIS plugin entry point.

QGIS imports this package and calls :func:`classFactory`. Nothing heavy is imported
here: the deep-learning engine runs in its own Python process (see ``plugin/runner.py``).
"""


def classFactory(iface):  # noqa: N802 - QGIS API name
    """Create the plugin instance (QGIS API)."""
    from .plugin.main import MaskTalkPlugin

    return MaskTalkPlugin(iface)
