"""Change-class schema: which classes a model predicts and how captions name them.

A schema is a JSON file::

    {
      "name": "gaza",
      "version": 1,
      "classes": [
        {"id": 0, "name": "no change", "category": "", "type": "", "color": "#000000"},
        {"id": 1, "name": "building destroyed", "category": "buildings",
         "category_singular": "building", "type": "destroyed", "color": "#e31a1c"}
      ]
    }

Rules (each broken rule is an :class:`~engine.errors.InputError` that names the file
and the class):

- ``id`` 0 is always *no change*. It may be omitted (it is added); if present it must be
  named ``no change`` and carry no category or type.
- Change-class ids are integers 1..254 (255 is the nodata value of class rasters),
  unique, and contiguous from 1 (the model has one output per id).
- ``name``, ``category`` and ``type`` are non-empty strings for change classes;
  names are unique (case-insensitive) because label polygons may refer to classes by
  name. ``category`` is the plural noun used in captions; ``category_singular`` is
  optional and used with the quantity *a single* (defaults to ``category``).
- ``color`` is ``#rrggbb``.

This module imports only the standard library: the QGIS plugin loads it in-process.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .errors import InputError

PRESETS_DIR = Path(__file__).resolve().parent / "presets"
NO_CHANGE_NAME = "no change"
NODATA_CLASS = 255
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
_REQUIRED = ("id", "name", "category", "type", "color")


@dataclass(frozen=True)
class ChangeClass:
    """One class of the schema. ``id`` 0 is *no change*."""

    id: int
    name: str
    category: str
    type: str
    color: str
    category_singular: str = ""

    @property
    def is_change(self) -> bool:
        return self.id != 0

    @property
    def singular(self) -> str:
        return self.category_singular or self.category

    def rgb(self) -> tuple[int, int, int]:
        c = self.color.lstrip("#")
        return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not d["category_singular"]:
            del d["category_singular"]
        return d


NO_CHANGE = ChangeClass(0, NO_CHANGE_NAME, "", "", "#000000")


@dataclass(frozen=True)
class ClassSchema:
    """An ordered, validated list of classes (index == id)."""

    name: str
    classes: tuple[ChangeClass, ...]
    version: int = 1
    source: str = field(default="", compare=False)

    @property
    def num_classes(self) -> int:
        """Number of model outputs, *no change* included."""
        return len(self.classes)

    @property
    def change_classes(self) -> tuple[ChangeClass, ...]:
        return self.classes[1:]

    @property
    def is_binary(self) -> bool:
        return self.num_classes == 2

    def __getitem__(self, class_id: int) -> ChangeClass:
        if not 0 <= class_id < len(self.classes):
            raise KeyError(class_id)
        return self.classes[class_id]

    def lookup(self, value: Any, where: str = "") -> int:
        """Class id of a label value given as an id (int or numeric string) or a name.

        Raises:
            InputError: the value names no class of this schema.
        """
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, (int, float)) and float(value).is_integer():
            cid = int(value)
            if 0 <= cid < self.num_classes:
                return cid
        elif isinstance(value, str):
            text = value.strip()
            if re.fullmatch(r"\d+", text) and int(text) < self.num_classes:
                return int(text)
            for c in self.classes:
                if c.name.lower() == text.lower():
                    return c.id
        known = ", ".join(f"{c.id}={c.name!r}" for c in self.classes)
        loc = f" in {where}" if where else ""
        raise InputError(f"label value {value!r}{loc} is not a class of schema {self.name!r}; known classes: {known}")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "classes": [c.to_dict() for c in self.classes]}

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    @classmethod
    def from_dict(cls, data: Any, source: str = "<schema>") -> "ClassSchema":
        return _parse(data, source)


def _parse(data: Any, source: str) -> ClassSchema:
    where = f"schema {source}"
    if not isinstance(data, dict) or not isinstance(data.get("classes"), list):
        raise InputError(f"{where}: expected a JSON object with a 'classes' list")
    raw = data["classes"]
    if not raw:
        raise InputError(f"{where}: 'classes' is empty; list at least one change class")
    parsed: dict[int, ChangeClass] = {}
    for i, item in enumerate(raw):
        at = f"{where}, class #{i + 1}"
        if not isinstance(item, dict):
            raise InputError(f"{at}: expected an object, got {type(item).__name__}")
        cid = item.get("id")
        if not isinstance(cid, int) or isinstance(cid, bool):
            raise InputError(f"{at}: missing or non-integer 'id'")
        at = f"{where}, class id {cid}"
        if cid in parsed:
            raise InputError(f"{at}: duplicate id {cid}")
        if cid == 0:
            name = str(item.get("name", NO_CHANGE_NAME)).strip().lower()
            if name != NO_CHANGE_NAME or item.get("category") or item.get("type"):
                raise InputError(
                    f"{at}: id 0 is reserved for 'no change' (no category, no type); "
                    f"give your class {item.get('name')!r} an id from 1"
                )
            color = item.get("color") or NO_CHANGE.color
            if not isinstance(color, str) or not _COLOR.match(color):
                raise InputError(f"{at}: 'color' must look like '#rrggbb', got {color!r}")
            parsed[0] = ChangeClass(0, NO_CHANGE_NAME, "", "", color.lower())
            continue
        if not 1 <= cid < NODATA_CLASS:
            raise InputError(f"{at}: ids must be between 1 and {NODATA_CLASS - 1} (255 is nodata)")
        missing = [k for k in _REQUIRED if k not in item]
        if missing:
            raise InputError(f"{at}: missing field(s) {', '.join(missing)}; every class needs {', '.join(_REQUIRED)}")
        for key in ("name", "category", "type"):
            if not isinstance(item[key], str) or not item[key].strip():
                raise InputError(f"{at}: '{key}' must be a non-empty string")
        color = item["color"]
        if not isinstance(color, str) or not _COLOR.match(color):
            raise InputError(f"{at}: 'color' must look like '#rrggbb', got {color!r}")
        singular = item.get("category_singular", "") or ""
        if not isinstance(singular, str):
            raise InputError(f"{at}: 'category_singular' must be a string")
        parsed[cid] = ChangeClass(
            cid, item["name"].strip(), item["category"].strip(), item["type"].strip(), color.lower(), singular.strip()
        )
    parsed.setdefault(0, NO_CHANGE)
    ids = sorted(parsed)
    if ids != list(range(len(ids))):
        gaps = sorted(set(range(max(ids) + 1)) - set(ids))
        raise InputError(f"{where}: class ids must be contiguous from 0; missing id(s) {gaps}")
    if len(ids) < 2:
        raise InputError(f"{where}: no change class; list at least one class with id 1")
    seen: dict[str, int] = {}
    for cid in ids:
        key = parsed[cid].name.lower()
        if key in seen:
            raise InputError(f"{where}: class name {parsed[cid].name!r} used by ids {seen[key]} and {cid}")
        seen[key] = cid
    version = data.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InputError(f"{where}: 'version' must be a positive integer, got {version!r}")
    return ClassSchema(str(data.get("name") or Path(source).stem), tuple(parsed[i] for i in ids), int(version), source)


def preset_names() -> list[str]:
    """Names of the presets shipped with the engine."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.json"))


def load_preset(name: str) -> ClassSchema:
    path = PRESETS_DIR / f"{name}.json"
    if not path.is_file():
        raise InputError(f"unknown preset {name!r}; choose one of {', '.join(preset_names())}")
    return load_schema(path)


def load_schema(path: str | Path) -> ClassSchema:
    """Read and validate a schema file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read schema {p}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"schema {p} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    return _parse(data, str(p))


def resolve_schema(preset: str | None = None, schema: str | Path | None = None, default: str | None = None) -> ClassSchema:
    """The schema named on a command line: ``--schema FILE`` wins over ``--preset NAME``."""
    if schema:
        return load_schema(schema)
    if preset:
        return load_preset(preset)
    if default:
        return load_preset(default)
    raise InputError("no class schema given: use --preset NAME or --schema FILE")


def parse_label_map(text: str | None) -> dict[int, int]:
    """Parse ``"255:1,128:2"`` into ``{255: 1, 128: 2}`` (raw value -> class id)."""
    if not text:
        return {}
    mapping: dict[int, int] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"(-?\d+)\s*:\s*(\d+)", part)
        if not m:
            raise InputError(f"bad --label-map entry {part!r}: expected RAW:CLASS, e.g. 255:1")
        mapping[int(m.group(1))] = int(m.group(2))
    return mapping


def iter_classes(schema: ClassSchema, include_no_change: bool = False) -> Iterable[ChangeClass]:
    return schema.classes if include_no_change else schema.change_classes
