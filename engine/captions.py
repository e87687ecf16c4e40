"""S2M captions: turn a class raster into semantic quadruples and sentences.

This is section 3.1 of the S2M paper ("Masks can talk"). For every change class present
in a chip, one *quadruple* is extracted:

- **direction** -- where the centroid of the class's pixels lies on a 3x3 grid over the
  chip. The centroid is the mean of the 0-based row and column indices of the pixels;
  row ``< H/3`` is *north*, ``< 2H/3`` *centre*, else *south*; likewise columns give
  *west* / *centre* / *east*. The two are combined into one of nine names: ``northwest``,
  ``north``, ``northeast``, ``west``, ``center``, ``east``, ``southwest``, ``south``,
  ``southeast`` (the vertical word first, centre dropped when the other axis is not centre).
- **quantity** -- from the class's pixel count ``N`` with the paper's thresholds
  800 / 4000 / 8000 (*a single* ``N < 800``, *a few* ``800 <= N < 4000``, *several*
  ``4000 <= N < 8000``, *multiple* ``N >= 8000``). They are defined for a 512x512 chip and
  are scaled by the chip's area, ``h * w / 512**2``, for any other chip. An edge chip that
  is smaller than the nominal chip size uses its *own* height and width for both the
  direction grid and the threshold scaling: it is described as the image it is, exactly
  as a smaller image would be.
- **category** and **type** -- from the class schema (:mod:`engine.schema`). The schema's
  ``category`` is the plural noun (``buildings``); with the quantity *a single* the
  singular (``ChangeClass.singular``, e.g. ``building``) is used instead, so that the
  sentence reads "a single destroyed building". :attr:`Quadruple.category` holds the
  noun exactly as it appears in the sentence.

Each quadruple becomes one sentence from the five templates of Table 1; one template is
drawn at random per sample (per chip), with a seedable generator. ``is``/``are`` agrees
with the quantity (*a single* -> ``is``). Whenever the direction is ``center`` the
paper's neutral variant "The scene shows Q T C in the center." is used whatever template
was drawn. Sentences start with a capital letter and end with exactly one period.

Pixels equal to :data:`engine.schema.NODATA_CLASS` (255) are ignored; any other value that
is not a class id of the schema is an :class:`~engine.errors.InputError`.

Standard library + numpy only: the QGIS plugin imports this module in-process.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from .errors import InputError
from .schema import NODATA_CLASS, ClassSchema

#: Chip side (pixels) for which the paper's quantity thresholds are defined.
REFERENCE_CHIP = 512
#: Pixel-count thresholds of the paper for a 512x512 chip and the quantity words.
QUANTITY_THRESHOLDS = (800, 4000, 8000)
QUANTITIES = ("a single", "a few", "several", "multiple")
#: The nine direction names, north to south, west to east.
DIRECTIONS = ("northwest", "north", "northeast", "west", "center", "east", "southwest", "south", "southeast")

#: Table 1 of the paper. ``{q}`` quantity, ``{t}`` type, ``{c}`` category, ``{d}``
#: direction, ``{be}`` "is"/"are". Template 5 gets its final period from :func:`render`.
TEMPLATES = (
    "The scene shows {q} {t} {c} in the {d}.",
    "Observing {q} {t} {c} towards the {d}.",
    "{q} {t} {c} located in the {d}.",
    "In the {d}, {q} {t} {c} {be} visible.",
    "There {be} {q} {t} {c} in the {d} region",
)
#: The neutral variant used whenever the direction is ``center``.
CENTER_TEMPLATE = "The scene shows {q} {t} {c} in the center."


@dataclass(frozen=True)
class Quadruple:
    """The S2M description of one change class in one chip.

    Attributes:
        class_id: Class id in the schema (1..254).
        category: The noun as used in the sentence (singular with ``a single``).
        type: The change type, e.g. ``destroyed``.
        direction: One of :data:`DIRECTIONS`.
        quantity: One of :data:`QUANTITIES`.
        pixels: Number of pixels of the class in the chip.
    """

    class_id: int
    category: str
    type: str
    direction: str
    quantity: str
    pixels: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict with the keys of the caption command's output."""
        return asdict(self)


def direction_of(row: float, col: float, height: int, width: int) -> str:
    """Direction name of a centroid on the paper's 3x3 grid.

    Args:
        row: Centroid row, in 0-based pixel indices (mean of the rows of the pixels).
        col: Centroid column, in 0-based pixel indices.
        height: Chip height H in pixels.
        width: Chip width W in pixels.

    Returns:
        One of :data:`DIRECTIONS`: ``north`` when ``row < H/3``, ``center`` vertically
        when ``row < 2H/3``, else ``south``; likewise ``west``/``east`` for columns.
    """
    vertical = "north" if row < height / 3 else ("center" if row < 2 * height / 3 else "south")
    horizontal = "west" if col < width / 3 else ("center" if col < 2 * width / 3 else "east")
    if vertical == "center":
        return horizontal  # "center" when both are centre
    if horizontal == "center":
        return vertical
    return vertical + horizontal


def quantity_of(pixels: int, height: int = REFERENCE_CHIP, width: int = REFERENCE_CHIP) -> str:
    """Quantity word for a pixel count, thresholds scaled to the chip's area.

    The thresholds 800 / 4000 / 8000 hold for a 512x512 chip; for an ``h x w`` chip each
    is multiplied by ``h * w / 512**2`` (for 256x256: 200 / 1000 / 2000). The comparison
    is done in integers, so a count exactly on a scaled threshold falls in the upper
    level, as in the paper (``800 <= N`` is *a few*).

    Args:
        pixels: Pixel count N of the class in the chip.
        height: Chip height in pixels.
        width: Chip width in pixels.
    """
    area = int(height) * int(width)
    ref = REFERENCE_CHIP * REFERENCE_CHIP
    level = sum(1 for t in QUANTITY_THRESHOLDS if int(pixels) * ref >= t * area)
    return QUANTITIES[level]


def _as_class_array(label: Any, where: str = "") -> np.ndarray:
    """Validate a 2-D integer class raster ``(H, W)``."""
    arr = np.asarray(label)
    loc = f" in {where}" if where else ""
    if arr.ndim != 2:
        raise InputError(f"label raster{loc} must be 2-D (H, W) class ids; got shape {arr.shape}")
    if arr.dtype.kind == "b":
        return arr.astype(np.uint8)
    if arr.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            bad = arr[~np.isfinite(arr) | (arr != np.floor(arr))]
        if bad.size:
            raise InputError(
                f"label raster{loc} holds non-integer value {float(bad.flat[0])!r}; "
                "class rasters hold integer class ids (0 = no change, 255 = ignore)"
            )
        return arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise InputError(f"label raster{loc} has data type {arr.dtype}; expected integer class ids")
    return arr


def check_values(label: Any, schema: ClassSchema, where: str = "") -> np.ndarray:
    """Raise :class:`InputError` if the raster holds a value that is no class of ``schema``.

    Args:
        label: Class raster ``(H, W)``; 255 (nodata) is allowed.
        schema: The class schema.
        where: File name (or other place) used in the error message.

    Returns:
        The raster as an integer numpy array ``(H, W)``.
    """
    arr = _as_class_array(label, where)
    if arr.size == 0:
        return arr
    if arr.dtype == np.uint8:
        present = np.flatnonzero(np.bincount(arr.ravel(), minlength=256))
    else:
        present = np.unique(arr)
    bad = [int(v) for v in present if not (0 <= v < schema.num_classes or v == NODATA_CLASS)]
    if bad:
        loc = f" in {where}" if where else ""
        shown = ", ".join(str(v) for v in bad[:10]) + (" ..." if len(bad) > 10 else "")
        known = ", ".join(f"{c.id}={c.name!r}" for c in schema.classes)
        raise InputError(
            f"label value(s) {shown}{loc} are not classes of schema {schema.name!r} "
            f"(known: {known}; 255 = ignore). Remap raw values with --label-map RAW:CLASS "
            f"(e.g. --label-map 255:1 for 0/255 masks) or use a schema that lists them."
        )
    return arr


def quadruples(label: Any, schema: ClassSchema, where: str = "") -> list[Quadruple]:
    """One quadruple per change class present in a chip, sorted by class id.

    Args:
        label: Class raster of the chip ``(h, w)``, values = class ids, 255 ignored.
        schema: The class schema naming categories and types.
        where: File name used in error messages.

    Returns:
        Quadruples of the change classes with at least one pixel; empty if none.

    Raises:
        InputError: a value that is neither a class id of ``schema`` nor 255.
    """
    arr = check_values(label, schema, where)
    h, w = arr.shape
    rows, cols = np.arange(h, dtype=np.int64), np.arange(w, dtype=np.int64)
    out = []
    for cls in schema.change_classes:
        mask = arr == cls.id  # (h, w) bool: one byte a pixel, whatever the raster size
        per_row = mask.sum(axis=1, dtype=np.int64)
        n = int(per_row.sum())
        if n == 0:
            continue
        per_col = mask.sum(axis=0, dtype=np.int64)
        quantity = quantity_of(n, h, w)
        out.append(
            Quadruple(
                class_id=cls.id,
                category=cls.singular if quantity == QUANTITIES[0] else cls.category,
                type=cls.type,
                direction=direction_of(int(per_row @ rows) / n, int(per_col @ cols) / n, h, w),
                quantity=quantity,
                pixels=n,
            )
        )
    return out


def render(quadruple: Quadruple, template_index: int) -> str:
    """The sentence of a quadruple with template ``template_index`` (0..4) of Table 1.

    The neutral centre variant replaces any template when the direction is ``center``.
    The result starts with a capital letter and ends with exactly one period.
    """
    if not 0 <= int(template_index) < len(TEMPLATES):
        raise ValueError(f"template_index must be 0..{len(TEMPLATES) - 1}, got {template_index}")
    template = CENTER_TEMPLATE if quadruple.direction == "center" else TEMPLATES[int(template_index)]
    text = template.format(
        q=quadruple.quantity,
        t=quadruple.type,
        c=quadruple.category,
        d=quadruple.direction,
        be="is" if quadruple.quantity == QUANTITIES[0] else "are",
    )
    text = " ".join(text.split()).rstrip(". ")
    return text[:1].upper() + text[1:] + "."


def make_rng(rng: random.Random | int | None = None) -> random.Random:
    """A :class:`random.Random` from a generator (returned as is), a seed, or ``None`` (unseeded)."""
    if isinstance(rng, random.Random):
        return rng
    if rng is None:
        return random.Random()
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return random.Random(int(rng))
    raise TypeError(f"rng must be a random.Random, an int seed or None, got {type(rng).__name__}")


def caption_chip(
    label: Any,
    schema: ClassSchema,
    rng: random.Random | int | None = None,
    template: int | None = None,
    where: str = "",
) -> tuple[list[Quadruple], list[str]]:
    """Quadruples and sentences of one chip (one sample).

    One template is drawn per chip (the paper draws one per training sample) and used for
    every quadruple of the chip; the draw happens only if the chip has a change class,
    so a seeded generator gives the same captions for the same chips.

    Args:
        label: Class raster of the chip ``(h, w)``.
        schema: The class schema.
        rng: ``random.Random``, int seed, or ``None`` for an unseeded draw.
        template: Force template 0..4 instead of drawing one.
        where: File name used in error messages.

    Returns:
        ``(quadruples, sentences)`` with ``sentences[i]`` describing ``quadruples[i]``.
    """
    quads = quadruples(label, schema, where)
    if not quads:
        return [], []
    if template is None:
        template = make_rng(rng).randrange(len(TEMPLATES))
    return quads, [render(q, template) for q in quads]


def chip_windows(height: int, width: int, chip: int | None = None) -> list[dict[str, int]]:
    """Non-overlapping chip windows in raster order (rows, then columns).

    Args:
        height: Raster height in pixels.
        width: Raster width in pixels.
        chip: Chip side in pixels; ``None`` = the whole raster as one chip. Edge chips are
            cut to the raster (smaller than ``chip``).

    Returns:
        Dicts ``{"row_off", "col_off", "height", "width"}``.
    """
    if chip is None:
        return [{"row_off": 0, "col_off": 0, "height": int(height), "width": int(width)}] if height and width else []
    if int(chip) <= 0:
        raise InputError(f"chip size must be a positive number of pixels, got {chip}")
    chip = int(chip)
    return [
        {"row_off": r, "col_off": c, "height": min(chip, height - r), "width": min(chip, width - c)}
        for r in range(0, height, chip)
        for c in range(0, width, chip)
    ]


def apply_label_map(label: Any, mapping: Mapping[int, int]) -> np.ndarray:
    """Remap raw label values to class ids (``{255: 1}`` for 0/255 masks).

    Values not in ``mapping`` are kept. The mapping reads the original values, so
    ``{1: 2, 2: 1}`` swaps classes.

    Args:
        label: Raw label raster ``(H, W)``.
        mapping: Raw value -> class id (0..255).
    """
    arr = np.asarray(label)
    if not mapping:
        return arr
    targets = list(mapping.values())
    dtype = arr.dtype
    if dtype.kind not in "iu" or not all(np.iinfo(dtype).min <= t <= np.iinfo(dtype).max for t in targets):
        dtype = np.int32 if dtype.kind != "f" else dtype
    out = arr.astype(dtype, copy=True)
    for raw, cid in mapping.items():
        out[arr == raw] = cid
    return out


def caption_raster_windows(
    label_array: Any,
    schema: ClassSchema,
    chip: int | None = None,
    rng: random.Random | int | None = None,
    progress: Any = None,
    where: str = "",
) -> Iterator[dict[str, Any]]:
    """Caption a whole class raster chip by chip.

    Values are checked once for the whole raster first, so a bad value is reported
    before any chip is produced.

    Args:
        label_array: Class raster ``(H, W)``, values = class ids, 255 ignored.
        schema: The class schema.
        chip: Chip side in pixels, ``None`` = the whole raster as one chip.
        rng: ``random.Random`` or int seed shared by all chips (one template draw per
            chip with a change class), ``None`` = unseeded.
        progress: Optional :class:`engine.progress.Progress`: ``check()`` and
            ``report()`` once per chip.
        where: File name used in error messages.

    Yields:
        For each chip with at least one change class, in raster order:
        ``{"window": {"row_off", "col_off", "height", "width"},
        "quadruples": [Quadruple.to_dict(), ...], "sentences": [str, ...]}``.
    """
    arr = check_values(label_array, schema, where)
    gen = make_rng(rng)
    windows = chip_windows(arr.shape[0], arr.shape[1], chip)
    for i, win in enumerate(windows):
        if progress is not None:
            progress.check()
        r, c, h, w = win["row_off"], win["col_off"], win["height"], win["width"]
        quads, sentences = caption_chip(arr[r : r + h, c : c + w], schema, gen, where=where)
        if progress is not None:
            progress.report((i + 1) / len(windows), f"chip {i + 1}/{len(windows)}")
        if quads:
            yield {"window": dict(win), "quadruples": [q.to_dict() for q in quads], "sentences": sentences}


#: Attributes of a chip-captions feature (engine GeoPackage and plugin memory layers alike).
CHIP_CAPTION_FIELDS = ("chip_row", "chip_col", "caption", "classes", "directions", "quantities", "changed_pixels", "quadruples")


def chip_caption_attributes(row_off: int, col_off: int, quads: Sequence[Quadruple | Mapping[str, Any]], sentences: Sequence[str]) -> dict[str, Any]:
    """The attributes of one captioned chip, keyed by :data:`CHIP_CAPTION_FIELDS`.

    ``classes``, ``directions`` and ``quantities`` are ``"; "``-separated in the order of
    the sentences (readable in an attribute table); ``quadruples`` is the JSON list of
    the quadruples (for programs); ``changed_pixels`` sums their pixels.
    """
    import json

    dicts = [q.to_dict() if isinstance(q, Quadruple) else dict(q) for q in quads]
    return {
        "chip_row": int(row_off),
        "chip_col": int(col_off),
        "caption": " ".join(sentences),
        "classes": "; ".join(f"{q.get('type', '')} {q.get('category', '')}".strip() for q in dicts),
        "directions": "; ".join(str(q.get("direction", "")) for q in dicts),
        "quantities": "; ".join(str(q.get("quantity", "")) for q in dicts),
        "changed_pixels": int(sum(int(q.get("pixels", 0)) for q in dicts)),
        "quadruples": json.dumps(dicts, ensure_ascii=False),
    }
