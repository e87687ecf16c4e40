"""Plugin settings (QgsSettings), project settings (the project file) and job settings.

Three kinds of settings, three dataclasses families:

- :class:`PluginSettings` -- per user, in ``QgsSettings`` under ``MaskTalk/``: the engine
  Python, a local wheel folder for offline set-up, the device, the last used model;
- :class:`ProjectSettings` -- per project, in the ``.qgz`` (``QgsProject`` entries under
  ``MaskTalk``): schema/preset, layers, model and output folder of *this* analysis;
- :class:`CaptionJob`, :class:`TrainJob`, :class:`DetectJob` -- what one run needs. The dock
  (and the Processing algorithms) fill one in and hand it to a task (:mod:`.tasks`); the
  task resolves layers into files (:mod:`.layers`) and :meth:`engine_args` turns the rest
  into the engine's command line.

A job holds layers and where outputs go; every engine setting travels in its ``options``
dict (engine dest -> value, only what the user changed): the engine declares the options,
their defaults and choices once (``python -m engine options``, :mod:`.engine_options`),
and :meth:`.engine_options.EngineOptions.args` writes the flags. Nothing here retypes an
engine option; an option the engine does not declare is a ``ValueError`` at once.
Class schema presets: :func:`engine.schema.preset_names`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

SETTINGS_GROUP = "MaskTalk"
PROJECT_SCOPE = "MaskTalk"


def _cast(value: Any, default: Any) -> Any:
    """QgsSettings returns strings from INI files: cast back to the default's type."""
    if value is None:
        return default
    if isinstance(default, bool):
        return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
    if isinstance(default, int):
        try:
            return int(value)
        except (TypeError, ValueError):
            return default
    if isinstance(default, float):
        try:
            return float(value)
        except (TypeError, ValueError):
            return default
    return str(value)


@dataclass
class PluginSettings:
    """Per-user settings, stored with ``QgsSettings`` under ``MaskTalk/``.

    Attributes:
        engine_python: interpreter that runs the engine; "" = automatic
            (see :func:`.environment.engine_python`).
        wheel_dir: local folder of wheels for an offline engine set-up ("" = the internet).
        device: ``auto``, ``cpu`` or ``cuda``.
        cancel_grace_s: seconds the engine gets to stop cleanly before it is killed.
        last_model: the last trained or used checkpoint folder.
    """

    engine_python: str = ""
    wheel_dir: str = ""
    device: str = "auto"
    cancel_grace_s: float = 10.0
    last_model: str = ""

    @classmethod
    def load(cls) -> "PluginSettings":
        from qgis.core import QgsSettings

        s = QgsSettings()
        kwargs = {}
        for f in dataclasses.fields(cls):
            kwargs[f.name] = _cast(s.value(f"{SETTINGS_GROUP}/{f.name}", f.default), f.default)
        obj = cls(**kwargs)
        from ..engine.inference.config import DEVICES

        if obj.device not in DEVICES:
            obj.device = "auto"
        return obj

    def save(self) -> None:
        from qgis.core import QgsSettings

        s = QgsSettings()
        for f in dataclasses.fields(self):
            s.setValue(f"{SETTINGS_GROUP}/{f.name}", getattr(self, f.name))


@dataclass
class ProjectSettings:
    """Settings that belong to one analysis, saved in the project file.

    Attributes:
        preset: schema preset name (used when ``schema_path`` is empty).
        schema_path: a schema JSON file.
        before_layer, after_layer, labels_layer, aoi_layer: layer ids in the project.
        class_field: field of the label layer that holds class names or ids.
        model: checkpoint or training run folder used for detection.
        output_dir: where runs and detections are written.
    """

    preset: str = "gaza"
    schema_path: str = ""
    before_layer: str = ""
    after_layer: str = ""
    labels_layer: str = ""
    aoi_layer: str = ""
    class_field: str = "class"
    model: str = ""
    output_dir: str = ""

    @classmethod
    def load(cls, project=None) -> "ProjectSettings":
        from qgis.core import QgsProject

        project = project or QgsProject.instance()
        kwargs = {}
        for f in dataclasses.fields(cls):
            value, ok = project.readEntry(PROJECT_SCOPE, f.name, f.default)
            kwargs[f.name] = value if ok else f.default
        return cls(**kwargs)

    def save(self, project=None) -> None:
        from qgis.core import QgsProject

        project = project or QgsProject.instance()
        for f in dataclasses.fields(self):
            project.writeEntry(PROJECT_SCOPE, f.name, str(getattr(self, f.name)))

    def schema_args(self) -> list[str]:
        return schema_args(self.preset, self.schema_path)


def schema_args(preset: str = "", schema_path: str = "") -> list[str]:
    """``--schema FILE`` when a file is given, else ``--preset NAME``."""
    if schema_path:
        return ["--schema", str(schema_path)]
    return ["--preset", preset or "gaza"]


def load_schema(preset: str = "", schema_path: str = ""):
    """The :class:`engine.schema.ClassSchema` of a preset or file (in-process: stdlib only)."""
    from ..engine.schema import resolve_schema

    return resolve_schema(preset or None, schema_path or None, default="gaza")


def model_schema(model: str, fallback_preset: str = "", fallback_schema: str = ""):
    """The class schema a trained model predicts, read from its model card (``card.json``).

    ``model`` is a checkpoint folder or a training run folder (its ``best/``, else ``last/``).
    Falls back to the preset/schema file when no card is found (e.g. before the run exists).
    """
    import json
    from pathlib import Path

    from ..engine.schema import ClassSchema

    root = Path(model) if model else None
    for card in ([root / "card.json", root / "best" / "card.json", root / "last" / "card.json"] if root else []):
        if card.is_file():
            try:
                return ClassSchema.from_dict(json.loads(card.read_text(encoding="utf-8"))["schema"], source=str(card))
            except (ValueError, KeyError, TypeError):
                break
    return load_schema(fallback_preset, fallback_schema)


def engine_values(options: Mapping[str, Any] | None, **layers: Any) -> dict[str, Any]:
    """A job's engine values: what the user changed (``options``) plus the job's own
    paths and schema (``layers``, None = not given). The job's own values win."""
    values = dict(options or {})
    values.update({k: v for k, v in layers.items() if v is not None and v != ""})
    return values


def _schema_values(preset: str, schema_path: str) -> dict[str, Any]:
    """``schema`` when a file is given, else ``preset`` (as :func:`schema_args`)."""
    return {"schema": str(schema_path)} if schema_path else {"preset": preset or "gaza"}


def _args(command: str, values: Mapping[str, Any], engine_options=None) -> list[str]:
    if engine_options is None:
        from .engine_options import load

        engine_options = load(spawn=False)  # declarations only: cached or bundled, never a process
    return engine_options.args(command, values)


@dataclass
class CaptionJob:
    """Caption a label layer with S2M sentences (``python -m engine caption``).

    Attributes:
        labels: class raster (``QgsRasterLayer`` or path; values = class ids) or label
            polygons (``QgsVectorLayer``; rasterised on ``reference``'s grid first).
        preset, schema_path: class schema preset, or a schema JSON file (wins).
        class_field: field with class names or ids (vector labels).
        reference: raster layer or path whose grid (CRS, pixel size) vector labels are
            rasterised on; None = ``resolution`` in the label layer's CRS.
        resolution: pixel size in the label layer's CRS units when there is no reference.
        label_map: raw value remapping, e.g. ``255:1`` (LEVIR-CD).
        add_layer: add a ``captions`` layer to the project when done.
        out_dir: folder of the captions GeoPackage when it cannot go beside the label file
            ("" = ``masktalk/`` beside the project); see :func:`.layers.captions_path`.
        options: engine options of ``caption`` the user changed (``chip``, ``seed``).
    """

    labels: Any
    preset: str = "gaza"
    schema_path: str = ""
    class_field: str = "class"
    reference: Any = None
    resolution: float | None = None
    label_map: str = ""
    add_layer: bool = True
    out_dir: str = ""
    options: dict = field(default_factory=dict)

    command: ClassVar[str] = "caption"

    def engine_args(self, label_path: str, engine_options=None) -> list[str]:
        values = engine_values(self.options, label=str(label_path), label_map=self.label_map,
                               **_schema_values(self.preset, self.schema_path))
        return _args(self.command, values, engine_options) + ["--json"]


@dataclass
class TrainJob:
    """Fine-tune a change model (``python -m engine train``).

    Attributes:
        before, after: raster layers or paths (non-file layers are exported for
            ``extent`` at ``resolution`` first).
        labels: label polygons (layer of any provider, or a path).
        out_dir: the run folder (``best/``, ``last/``, metrics).
        class_field: field of the labels with class names or ids.
        aoi: optional polygon layer/path of the labelled area (``--aoi``).
        aoi_selected_only: only the AOI layer's selected features.
        preset, schema_path: class schema preset, or a schema JSON file (wins).
        extent: ``QgsReferencedRectangle`` limiting exports of non-file rasters
            (default: the labels' extent).
        resolution: pixel size (in the raster's CRS units) for exports of non-file rasters.
        options: engine options of ``train`` the user changed (``backbone``, ``lora_rank``,
            ``chip`` ...); everything else is the engine's default.
    """

    before: Any
    after: Any
    labels: Any
    out_dir: str
    class_field: str = "class"
    aoi: Any = None
    aoi_selected_only: bool = False
    preset: str = "gaza"
    schema_path: str = ""
    extent: Any = None
    resolution: float | None = None
    options: dict = field(default_factory=dict)

    command: ClassVar[str] = "train"

    def engine_args(self, before: str, after: str, labels: str, aoi: str | None = None, engine_options=None) -> list[str]:
        values = engine_values(self.options, before=str(before), after=str(after), labels=str(labels), aoi=aoi,
                               class_field=self.class_field, out=str(self.out_dir),
                               **_schema_values(self.preset, self.schema_path))
        return _args(self.command, values, engine_options)


@dataclass
class DetectJob:
    """Detect changes over a scene (``python -m engine predict``).

    Attributes:
        before, after: raster layers or paths.
        model: checkpoint folder or training run folder.
        out_raster: output GeoTIFF (class band with colour table + confidence).
        out_vectors: output GeoPackage (``changes`` and ``captions``); "" = none.
        overwrite: replace existing outputs (``--overwrite``); set only after the user
            agreed (the dock asks; Processing asks in its own file dialog). Without it
            the engine refuses an existing output.
        aoi: optional polygon layer/path: nothing is detected outside its polygons (``--aoi``).
        aoi_selected_only: only the AOI layer's selected features.
        extent: ``QgsReferencedRectangle`` to limit the detection; None = whole *before*.
        resolution: pixel size for exports of non-file rasters.
        add_layers: add the outputs to the project (in a group named ``group_name``).
        preset, schema_path: the schema used when the model has no card.
        options: engine options of ``predict`` the user changed (``threshold``,
            ``min_area``, ``device``, ``chip`` ...).
    """

    before: Any
    after: Any
    model: str
    out_raster: str
    out_vectors: str = ""
    overwrite: bool = False
    aoi: Any = None
    aoi_selected_only: bool = False
    extent: Any = None
    resolution: float | None = None
    add_layers: bool = True
    group_name: str = ""
    preset: str = "gaza"
    schema_path: str = ""
    options: dict = field(default_factory=dict)

    command: ClassVar[str] = "predict"

    def engine_args(self, before: str, after: str, extent: tuple[float, float, float, float] | None = None,
                    aoi: str | None = None, engine_options=None) -> list[str]:
        values = engine_values(self.options, before=str(before), after=str(after), model=str(self.model),
                               out=str(self.out_raster), vectors=self.out_vectors, aoi=aoi,
                               overwrite=True if self.overwrite else None,
                               extent=",".join(repr(float(v)) for v in extent) if extent is not None else None)
        return _args(self.command, values, engine_options)
