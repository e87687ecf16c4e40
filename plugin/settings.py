"""Plugin settings (QgsSettings), project settings (the project file) and job settings.

Three kinds of settings, three dataclasses families:

- :class:`PluginSettings` -- per user, in ``QgsSettings`` under ``MaskTalk/``: the engine
  Python, a local wheel folder for offline set-up, the device, the last used model;
- :class:`ProjectSettings` -- per project, in the ``.qgz`` (``QgsProject`` entries under
  ``MaskTalk``): schema/preset, layers, model and output folder of *this* analysis;
- :class:`CaptionJob`, :class:`TrainJob`, :class:`DetectJob` -- what one run needs. The dock
  (and the Processing algorithms) fill one in and hand it to a task (:mod:`.tasks`); the
  task resolves layers into files (:mod:`.layers`) and :meth:`engine_args` turns the rest
  into the engine's command line. ``None`` means "the engine's default".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

DEVICES = ("auto", "cpu", "cuda")
#: Backbones the engine registers (engine/models/registry.py); the first is the default.
BACKBONES = ("efficientnet_lite0", "dinov3_vits16", "dinov3_vitb16", "dinov3_vitl16")
PRESETS = ("gaza", "xbd", "building")
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


def _opt(args: list[str], flag: str, value: Any) -> None:
    if value is None or value == "":
        return
    args += [flag, str(value)]


@dataclass
class CaptionJob:
    """Caption a label layer with S2M sentences (``python -m engine caption``).

    Attributes:
        labels: class raster (``QgsRasterLayer`` or path; values = class ids) or label
            polygons (``QgsVectorLayer``; rasterised on ``reference``'s grid first).
        class_field: field with class names or ids (vector labels).
        reference: raster layer or path whose grid (CRS, pixel size) vector labels are
            rasterised on; None = ``resolution`` in the label layer's CRS.
        resolution: pixel size in the label layer's CRS units when there is no reference.
        chip: chip size in pixels (captions are per chip); None = the whole raster.
        seed: template draw seed (reproducible sentences).
        label_map: raw value remapping, e.g. ``255:1`` (LEVIR-CD).
        add_layer: add a ``captions`` layer to the project when done.
    """

    labels: Any
    preset: str = "gaza"
    schema_path: str = ""
    class_field: str = "class"
    reference: Any = None
    resolution: float | None = None
    chip: int | None = 256
    seed: int | None = 0
    label_map: str = ""
    add_layer: bool = True

    command: ClassVar[str] = "caption"

    def engine_args(self, label_path: str) -> list[str]:
        args = [str(label_path), *schema_args(self.preset, self.schema_path), "--json"]
        _opt(args, "--chip", self.chip)
        _opt(args, "--seed", self.seed)
        _opt(args, "--label-map", self.label_map)
        return args


@dataclass
class TrainJob:
    """Fine-tune a change model (``python -m engine train``).

    Attributes:
        before, after: raster layers or paths (non-file layers are exported for
            ``extent`` at ``resolution`` first).
        labels: label polygons (layer of any provider, or a path).
        aoi: optional polygon layer/path bounding the labelled area.
        out_dir: the run folder (``best/``, ``last/``, metrics).
        extent: ``QgsReferencedRectangle`` limiting exports of non-file rasters
            (default: the labels' extent).
        resolution: pixel size (in the raster's CRS units) for exports of non-file rasters.
    """

    before: Any
    after: Any
    labels: Any
    out_dir: str
    class_field: str = "class"
    aoi: Any = None
    preset: str = "gaza"
    schema_path: str = ""
    backbone: str | None = None
    weights: str | None = None
    text_encoder: str | None = None
    stage1_epochs: int | None = None
    stage2_epochs: int | None = None
    chip: int | None = None
    batch_size: int | None = None
    lora_rank: int | None = None
    device: str = "auto"
    seed: int | None = None
    extent: Any = None
    resolution: float | None = None
    extra_args: list[str] = field(default_factory=list)

    command: ClassVar[str] = "train"

    def engine_args(self, before: str, after: str, labels: str, aoi: str | None = None) -> list[str]:
        args = ["--before", str(before), "--after", str(after), "--labels", str(labels)]
        _opt(args, "--class-field", self.class_field)
        _opt(args, "--aoi", aoi)
        args += schema_args(self.preset, self.schema_path)
        args += ["--out", str(self.out_dir)]
        _opt(args, "--backbone", self.backbone)
        _opt(args, "--weights", self.weights)
        _opt(args, "--text-encoder", self.text_encoder)
        _opt(args, "--stage1-epochs", self.stage1_epochs)
        _opt(args, "--stage2-epochs", self.stage2_epochs)
        _opt(args, "--chip", self.chip)
        _opt(args, "--batch-size", self.batch_size)
        _opt(args, "--lora-rank", self.lora_rank)
        _opt(args, "--device", self.device if self.device in DEVICES else "auto")
        _opt(args, "--seed", self.seed)
        return args + list(self.extra_args)


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
        threshold: probability of change from which a pixel is changed; None = the
            model card's, else the engine's (0.5 for two classes, the most probable class
            for more).
        min_area: smallest change polygon kept, square metres; None = the engine's.
        extent: ``QgsReferencedRectangle`` to limit the detection; None = whole *before*.
        resolution: pixel size for exports of non-file rasters.
        add_layers: add the outputs to the project (in a group named ``group_name``).
    """

    before: Any
    after: Any
    model: str
    out_raster: str
    out_vectors: str = ""
    overwrite: bool = False
    threshold: float | None = None
    min_area: float | None = None
    chip: int | None = None
    overlap: int | None = None
    batch_size: int | None = None
    device: str = "auto"
    extent: Any = None
    resolution: float | None = None
    add_layers: bool = True
    group_name: str = ""
    preset: str = "gaza"
    schema_path: str = ""
    extra_args: list[str] = field(default_factory=list)

    command: ClassVar[str] = "predict"

    def engine_args(self, before: str, after: str, extent: tuple[float, float, float, float] | None = None) -> list[str]:
        args = ["--before", str(before), "--after", str(after), "--model", str(self.model), "--out", str(self.out_raster)]
        _opt(args, "--vectors", self.out_vectors)
        if self.overwrite:
            args.append("--overwrite")
        _opt(args, "--threshold", self.threshold)
        _opt(args, "--min-area", self.min_area)
        _opt(args, "--chip", self.chip)
        _opt(args, "--overlap", self.overlap)
        _opt(args, "--batch-size", self.batch_size)
        _opt(args, "--device", self.device if self.device in DEVICES else "auto")
        if extent is not None:
            args += ["--extent", ",".join(repr(float(v)) for v in extent)]
        return args + list(self.extra_args)
