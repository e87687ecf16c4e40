"""Styles of the layers the dock makes: the label layer and the captions.

The colours of a schema are the colours of its classes everywhere: the label layer the
analyst draws in here, the change raster and ``changes`` polygons of a detection
(styled by :mod:`.layers` with the model card's schema). Styles are programmatic
(not static ``.qml`` files) because the classes are the user's: a QML file would only
fit one preset. A user who wants to keep a style saves it from Layer Properties as usual.

Every function here works on a layer that is already loaded and touches no project.
"""

from __future__ import annotations

from typing import Iterable

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsEditorWidgetSetup,
    QgsFillSymbol,
    QgsPalLayerSettings,
    QgsRendererCategory,
    QgsTextBufferSettings,
    QgsTextFormat,
    QgsVectorLayer,
    QgsVectorLayerSimpleLabeling,
)
from qgis.PyQt.QtGui import QColor, QFont

CAPTION_FIELD_CANDIDATES = ("caption", "sentence", "text", "captions")


def _classes(schema) -> list:
    """Change classes of a schema (``ClassSchema`` or anything with ``change_classes``)."""
    return list(schema.change_classes)


def _fill(color: QColor, fill_alpha: int, outline_width_mm: float = 0.5) -> QgsFillSymbol:
    fill = QColor(color)
    fill.setAlpha(fill_alpha)
    return QgsFillSymbol.createSimple(
        {
            "color": f"{fill.red()},{fill.green()},{fill.blue()},{fill.alpha()}",
            "outline_color": f"{color.red()},{color.green()},{color.blue()},255",
            "outline_width": str(outline_width_mm),
            "outline_width_unit": "MM",
        }
    )


def find_field(layer: QgsVectorLayer, candidates: Iterable[str]) -> str | None:
    """The first field of ``layer`` whose name (case-insensitive) is in ``candidates``."""
    names = {f.name().lower(): f.name() for f in layer.fields()}
    for c in candidates:
        if c.lower() in names:
            return names[c.lower()]
    return None


def value_map_setup(schema) -> QgsEditorWidgetSetup:
    """A *Value Map* edit widget listing the schema's change classes by name."""
    return QgsEditorWidgetSetup("ValueMap", {"map": [{c.name: c.name} for c in _classes(schema)]})


def categorized_renderer(schema, field: str, by_id: bool = False, fill_alpha: int = 90) -> QgsCategorizedSymbolRenderer:
    """Categories per change class on ``field`` (values are class names, or ids with ``by_id``)."""
    categories = []
    for c in _classes(schema):
        value = c.id if by_id else c.name
        categories.append(QgsRendererCategory(value, _fill(QColor(c.color), fill_alpha), c.name, True))
    renderer = QgsCategorizedSymbolRenderer(field, categories)
    return renderer


def style_label_layer(layer: QgsVectorLayer, schema, field: str = "class") -> None:
    """Colour label polygons by class and edit their class with a value map of the schema.

    Args:
        layer: polygon layer the analyst draws change labels in.
        schema: the ``ClassSchema`` whose class names the ``field`` holds.
        field: attribute holding the class name.
    """
    idx = layer.fields().indexOf(field)
    if idx < 0:
        return
    layer.setEditorWidgetSetup(idx, value_map_setup(schema))
    layer.setRenderer(categorized_renderer(schema, field, fill_alpha=90))
    layer.triggerRepaint()


def caption_text_format(size_pt: float = 8.0) -> QgsTextFormat:
    fmt = QgsTextFormat()
    fmt.setFont(QFont("Sans Serif"))
    fmt.setSize(size_pt)
    fmt.setColor(QColor("#111111"))
    buffer = QgsTextBufferSettings()
    buffer.setEnabled(True)
    buffer.setSize(1.0)
    buffer.setColor(QColor(255, 255, 255, 220))
    fmt.setBuffer(buffer)
    return fmt


def style_captions_layer(layer: QgsVectorLayer) -> None:
    """Chip footprints as dashed outlines labelled with their S2M sentence.

    The label field is found by name (``caption``, ``sentence``, ``text``), so a layer
    whose sentence field is named differently still gets its labels.
    """
    symbol = QgsFillSymbol.createSimple(
        {"color": "0,0,0,0", "outline_color": "40,40,40,200", "outline_style": "dash", "outline_width": "0.4"}
    )
    renderer = layer.renderer()
    if renderer is not None and hasattr(renderer, "setSymbol"):
        renderer.setSymbol(symbol)
    field = find_field(layer, CAPTION_FIELD_CANDIDATES)
    if field is not None:
        settings = QgsPalLayerSettings()
        settings.fieldName = field
        settings.isExpression = False
        settings.setFormat(caption_text_format())
        settings.placement = QgsPalLayerSettings.OverPoint
        # Long sentences wrap instead of running across the neighbouring chips.
        settings.autoWrapLength = 28
        layer.setLabeling(QgsVectorLayerSimpleLabeling(settings))
        layer.setLabelsEnabled(True)
    layer.triggerRepaint()
