"""Styles of the layers the dock makes: the label layer and the captions.

The colours of a schema are the colours of its classes everywhere: the label layer the
analyst draws in here, the change raster and ``changes`` polygons of a detection
(styled by :mod:`.layers` with the model card's schema). Styles are programmatic
(not static ``.qml`` files) because the classes are the user's: a QML file would only
fit one preset. A user who wants to keep a style saves it from Layer Properties as usual.

Static styles that do not depend on the classes live in ``resources/styles/*.qml``
(the confidence band of a detection).

Every function here works on a layer that is already loaded and touches no project.
"""

from __future__ import annotations

from typing import Iterable

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsCoordinateReferenceSystem,
    QgsEditorWidgetSetup,
    QgsFillSymbol,
    QgsPalLayerSettings,
    QgsRendererCategory,
    QgsTextBufferSettings,
    QgsTextFormat,
    QgsUnitTypes,
    QgsVectorLayer,
    QgsVectorLayerSimpleLabeling,
)
from qgis.PyQt.QtGui import QColor, QFont

CAPTION_FIELD_CANDIDATES = ("caption", "sentence", "text", "captions")
#: Caption labels show once a chip spans at least this much of the screen (metres of
#: screen at the map scale): zoomed out, the sentences would cover the imagery.
CAPTION_MIN_CHIP_ON_SCREEN_M = 0.1


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


def value_map_setup(schema, by_id: bool = False) -> QgsEditorWidgetSetup:
    """A *Value Map* edit widget listing the schema's change classes by name (storing the
    name, or the class id with ``by_id``)."""
    return QgsEditorWidgetSetup("ValueMap", {"map": [{c.name: (c.id if by_id else c.name)} for c in _classes(schema)]})


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
    layer.setCustomProperty(STYLED_BY, field)
    layer.triggerRepaint()


#: Custom layer property: the class field MaskTalk styled the layer by.
STYLED_BY = "masktalk/styled_by"


def follows_schema(layer: QgsVectorLayer, field: str) -> bool:
    """Whether the dock may (re)style ``layer`` by class: its renderer is QGIS's default
    single symbol, one MaskTalk gave it, or categorised on ``field``. A layer the user
    styled otherwise keeps its style; its class form is updated all the same."""
    renderer = layer.renderer()
    if renderer is None:
        return True
    if isinstance(renderer, QgsCategorizedSymbolRenderer):
        return renderer.classAttribute() in (field, layer.customProperty(STYLED_BY))
    return renderer.type() == "singleSymbol" and layer.customProperty(STYLED_BY) is None


def follow_schema(layer: QgsVectorLayer, schema, field: str) -> bool:
    """Bring a label layer's class form (value map) and, when :func:`follows_schema`, its
    colours up to date with ``schema``. A numeric class field holds class ids, a text
    field class names. Returns True when the colours were set."""
    idx = layer.fields().indexOf(field)
    if idx < 0:
        return False
    by_id = layer.fields().at(idx).isNumeric()
    layer.setEditorWidgetSetup(idx, value_map_setup(schema, by_id))
    if not follows_schema(layer, field):
        return False
    layer.setRenderer(categorized_renderer(schema, field, by_id=by_id, fill_alpha=90))
    layer.setCustomProperty(STYLED_BY, field)
    layer.triggerRepaint()
    return True


def caption_text_format(size_pt: float = 8.0) -> QgsTextFormat:
    fmt = QgsTextFormat()
    fmt.setFont(QFont("Sans Serif"))
    fmt.setSize(size_pt)
    fmt.setColor(QColor("#111111"))
    buffer = QgsTextBufferSettings()
    buffer.setEnabled(True)
    buffer.setSize(1.0)
    buffer.setColor(QColor(255, 255, 255, 170))  # the imagery shows through
    fmt.setBuffer(buffer)
    return fmt


def _chip_width_m(layer: QgsVectorLayer) -> float | None:
    """Width of one chip footprint of a captions layer, in metres (None if unknown)."""
    feature = next(layer.getFeatures(), None)
    if feature is None or feature.geometry().isNull():
        return None
    width = feature.geometry().boundingBox().width()
    crs: QgsCoordinateReferenceSystem = layer.crs()
    factor = QgsUnitTypes.fromUnitToUnitFactor(crs.mapUnits(), QgsUnitTypes.DistanceUnit.DistanceMeters) if crs.isValid() else 1.0
    if crs.isGeographic():
        factor = 111_320.0  # metres per degree at the equator: good enough for a visibility scale
    return width * factor if width > 0 else None


def caption_label_scale(chip_width_m: float | None) -> float:
    """The smallest map scale (largest denominator) at which caption labels show: a chip
    spans :data:`CAPTION_MIN_CHIP_ON_SCREEN_M` of the screen; 0 = always."""
    if not chip_width_m:
        return 0.0
    return float(round(chip_width_m / CAPTION_MIN_CHIP_ON_SCREEN_M))


def style_captions_layer(layer: QgsVectorLayer) -> None:
    """Chip footprints as dashed outlines labelled with their S2M sentence.

    Labels are scale-dependent (they show once a chip is large enough on screen to hold
    its sentence, :func:`caption_label_scale`), stay inside their chip and wrap, so that
    zoomed out the imagery is not hidden under text. The label field is found by name
    (``caption``, ``sentence``, ``text``), so a layer whose sentence field is named
    differently still gets its labels.
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
        settings.placement = QgsPalLayerSettings.Placement.Horizontal
        settings.fitInPolygonOnly = True  # a sentence never spills over the neighbouring chips
        settings.autoWrapLength = 28
        scale = caption_label_scale(_chip_width_m(layer))
        if scale > 0:
            settings.scaleVisibility = True
            settings.minimumScale = scale  # most zoomed-out scale at which labels show
            settings.maximumScale = 0.0
        layer.setLabeling(QgsVectorLayerSimpleLabeling(settings))
        layer.setLabelsEnabled(True)
    layer.triggerRepaint()
