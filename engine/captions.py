"""S2M captions: turn a class raster into semantic quadruples and sentences.

This is section 3.1 of the S2M paper ("Masks can talk"). For every change class present
in a chip, one *quadruple* is extracted:

- **direction** -- where the centroid of the class's pixels lies on a 3x3 grid over the
  chip. The centroid is the mean of the 0-based row and column indices of the pixels;
  row ``< H/3`` is *north*, ``< 2H/3`` *centre*, else *south*; likewise columns give
  *west* / *centre* / *east*. The two are combined into one of nine names: ``northwest``,
  ``north``, ``northeast``, ``west``, ``center``, ``east``, ``southwest``, ``south``,
  ``southeast`` (the vertical word first, centre dropped when the other axis is not centre).
- **quantity** -- from the class's pixel count ``N`` in the chip with the paper's
  thresholds (eq. 3), in pixels of the change mask whatever the chip size: *a single*
  ``N < 800``, *a few* ``800 <= N < 4000``, *several* ``4000 <= N < 8000``, *multiple*
  ``N >= 8000``. An optional ``quantity_scale`` multiplies the three thresholds (default
  1.0 = the paper); :func:`resolution_scale` gives the factor for a raster whose pixel
  size differs from the paper's ~0.5 m imagery (1 m pixels: thresholds divided by 4). An
  edge chip smaller than the nominal chip size uses its *own* height and width for the
  direction grid; the quantity thresholds do not depend on the chip size.
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

For ablations (paper Table 5) :func:`render` can leave elements out (``drop``, a subset of
:data:`ELEMENTS`); see :func:`render` for the wording of each reduced sentence.

Pixels equal to :data:`engine.schema.NODATA_CLASS` (255) are ignored; any other value that
is not a class id of the schema is an :class:`~engine.errors.InputError`.

Standard library + numpy only: the QGIS plugin imports this module in-process.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
import math
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from .errors import InputError
from .schema import NODATA_CLASS, ClassSchema

#: Pixel-count thresholds of the paper (eq. 3) and the quantity words.
QUANTITY_THRESHOLDS = (800, 4000, 8000)
#: Pixel size (m) of the paper's imagery, the reference of :func:`resolution_scale`.
REFERENCE_PIXEL_M = 0.5
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
#: Table 1 without the location (``drop`` holds ``"location"``), one per template.
NO_LOCATION_TEMPLATES = (
    "The scene shows {q} {t} {c}.",
    "Observing {q} {t} {c}.",
    "{q} {t} {c} located in the scene.",
    "{q} {t} {c} {be} visible.",
    "There {be} {q} {t} {c}.",
)
#: The quadruple elements that :func:`render` can leave out (paper Table 5).
ELEMENTS = ("quantity", "type", "category", "location")
#: Nouns used when the category is dropped: (with the type kept, without it), singular/plural.
NEUTRAL_NOUNS = {True: ("area", "areas"), False: ("area of change", "areas of change")}


def check_drop(drop: Iterable[str] | str = ()) -> frozenset[str]:
    """Validate the elements to leave out of a sentence.

    Args:
        drop: Names from :data:`ELEMENTS`; a single name may be given as a string.

    Returns:
        The names as a frozenset.

    Raises:
        InputError: a name that is not in :data:`ELEMENTS`.
    """
    names = (drop,) if isinstance(drop, str) else tuple(drop)
    for name in names:
        if name not in ELEMENTS:
            raise InputError(f"cannot drop {name!r}: the quadruple elements are {', '.join(ELEMENTS)}")
    return frozenset(names)


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

    def key(self, drop: Iterable[str] | str = ()) -> tuple[Any, ...]:
        """Hashable identity of the elements kept in the sentence.

        The class id comes first when both type and category are kept (it names the
        class), then the kept element values in :data:`ELEMENTS` order: quantity, type,
        category (the noun as in the sentence, so singular with *a single*) and the
        direction for the location. Two quadruples with equal keys are described alike
        whatever the template; the pixel count is not part of the key.

        Args:
            drop: Elements left out, see :func:`check_drop`.
        """
        kept = [e for e in ELEMENTS if e not in check_drop(drop)]
        values = {"quantity": self.quantity, "type": self.type, "category": self.category, "location": self.direction}
        head = (self.class_id,) if "type" in kept and "category" in kept else ()
        return head + tuple(values[e] for e in kept)


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


def quantity_of(pixels: int, *, scale: float = 1.0) -> str:
    """Quantity word for a pixel count with the paper's thresholds (eq. 3).

    *a single* ``N < 800``, *a few* ``800 <= N < 4000``, *several* ``4000 <= N < 8000``,
    *multiple* ``N >= 8000``, whatever the chip size. A count exactly on a threshold
    falls in the upper level, as in the paper.

    Args:
        pixels: Pixel count N of the class in the chip.
        scale: Factor on the three thresholds (1.0 = the paper); see
            :func:`resolution_scale`. Keyword-only.

    Raises:
        InputError: ``scale`` is not a finite number > 0.
    """
    scale = _check_scale(scale)
    level = sum(1 for t in QUANTITY_THRESHOLDS if int(pixels) >= t * scale)
    return QUANTITIES[level]


def resolution_scale(pixel_size_m: float, reference_m: float = REFERENCE_PIXEL_M) -> float:
    """Threshold factor for a raster whose pixels are not the paper's size.

    An object covers ``(reference_m / pixel_size_m) ** 2`` times as many pixels at
    ``pixel_size_m`` as at ``reference_m``; multiplying the thresholds by that keeps
    the quantity of an object of a given ground area (1 m pixels: 0.25).

    Args:
        pixel_size_m: Ground size of the raster's pixels in metres.
        reference_m: Pixel size the thresholds were calibrated for (paper: ~0.5 m).

    Raises:
        InputError: a size that is not a finite number > 0.
    """
    for name, value in (("pixel size", pixel_size_m), ("reference pixel size", reference_m)):
        if not (isinstance(value, (int, float, np.number)) and math.isfinite(value) and value > 0):
            raise InputError(f"{name} must be a positive number of metres, got {value!r}")
    return (float(reference_m) / float(pixel_size_m)) ** 2


def _check_scale(scale: float) -> float:
    """``scale`` as a float, or :class:`InputError` if it is not finite and > 0."""
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.number)) or not (math.isfinite(scale) and scale > 0):
        raise InputError(f"quantity scale must be a finite number > 0, got {scale!r}")
    return float(scale)


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


def quadruples(label: Any, schema: ClassSchema, where: str = "", quantity_scale: float = 1.0) -> list[Quadruple]:
    """One quadruple per change class present in a chip, sorted by class id.

    Args:
        label: Class raster of the chip ``(h, w)``, values = class ids, 255 ignored.
        schema: The class schema naming categories and types.
        where: File name used in error messages.
        quantity_scale: Factor on the quantity thresholds (1.0 = the paper), see
            :func:`quantity_of`.

    Returns:
        Quadruples of the change classes with at least one pixel; empty if none.

    Raises:
        InputError: a value that is neither a class id of ``schema`` nor 255.
    """
    quantity_scale = _check_scale(quantity_scale)
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
        quantity = quantity_of(n, scale=quantity_scale)
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


def render(quadruple: Quadruple, template_index: int, drop: Iterable[str] | str = ()) -> str:
    """The sentence of a quadruple with template ``template_index`` (0..4) of Table 1.

    The neutral centre variant replaces any template when the direction is ``center``.
    The result starts with a capital letter and ends with exactly one period.

    ``drop`` leaves elements out for ablations (paper Table 5) and keeps the sentence
    grammatical; the grammatical number (singular for *a single*) stays, as the noun
    and ``is``/``are`` carry it:

    - ``quantity``: the word goes; a singular noun gets ``a``/``an``
      ("The scene shows destroyed buildings in the northeast.",
      "The scene shows a destroyed building in the northeast.").
    - ``type``: the word goes ("The scene shows a few buildings in the northeast.").
    - ``category``: the neutral noun ``area``/``areas`` takes its place, or
      ``area of change``/``areas of change`` when the type is dropped too
      ("The scene shows a few destroyed areas in the northeast.").
    - ``location``: the template's location-free form of :data:`NO_LOCATION_TEMPLATES`,
      also for a ``center`` direction, so nothing tells where ("The scene shows several
      destroyed buildings.", "Observing several destroyed buildings.", "Several destroyed
      buildings located in the scene.", "Several destroyed buildings are visible.",
      "There are several destroyed buildings.").

    Args:
        quadruple: The quadruple to describe.
        template_index: Template 0..4 of :data:`TEMPLATES`.
        drop: Elements of :data:`ELEMENTS` to leave out.

    Raises:
        ValueError: a template index outside 0..4.
        InputError: an unknown element in ``drop``.
    """
    if not 0 <= int(template_index) < len(TEMPLATES):
        raise ValueError(f"template_index must be 0..{len(TEMPLATES) - 1}, got {template_index}")
    dropped = check_drop(drop)
    if "location" in dropped:
        template = NO_LOCATION_TEMPLATES[int(template_index)]
    else:
        template = CENTER_TEMPLATE if quadruple.direction == "center" else TEMPLATES[int(template_index)]
    single = quadruple.quantity == QUANTITIES[0]
    text = template.format(**_words(quadruple, dropped, single), be="is" if single else "are")
    text = " ".join(text.split()).rstrip(". ")
    return text[:1].upper() + text[1:] + "."


def _words(quadruple: Quadruple, dropped: frozenset[str], single: bool) -> dict[str, str]:
    """The ``q``/``t``/``c``/``d`` words of a sentence with the ``dropped`` elements left out."""
    t = "" if "type" in dropped else quadruple.type
    c = quadruple.category if "category" not in dropped else NEUTRAL_NOUNS[bool(t)][0 if single else 1]
    q = quadruple.quantity
    if "quantity" in dropped:
        q = ("an" if (t or c)[:1].lower() in "aeiou" else "a") if single else ""
    return {"q": q, "t": t, "c": c, "d": "" if "location" in dropped else quadruple.direction}


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
    quantity_scale: float = 1.0,
    drop: Iterable[str] | str = (),
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
        quantity_scale: Factor on the quantity thresholds (1.0 = the paper).
        drop: Elements of :data:`ELEMENTS` left out of the sentences (ablation, see
            :func:`render`); the quadruples stay complete.

    Returns:
        ``(quadruples, sentences)`` with ``sentences[i]`` describing ``quadruples[i]``.
    """
    dropped = check_drop(drop)
    quads = quadruples(label, schema, where, quantity_scale)
    if not quads:
        return [], []
    if template is None:
        template = make_rng(rng).randrange(len(TEMPLATES))
    return quads, [render(q, template, dropped) for q in quads]


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
    quantity_scale: float = 1.0,
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
        quantity_scale: Factor on the quantity thresholds (1.0 = the paper).

    Yields:
        For each chip with at least one change class, in raster order:
        ``{"window": {"row_off", "col_off", "height", "width"},
        "quadruples": [Quadruple.to_dict(), ...], "sentences": [str, ...]}``.
    """
    quantity_scale = _check_scale(quantity_scale)
    arr = check_values(label_array, schema, where)
    gen = make_rng(rng)
    windows = chip_windows(arr.shape[0], arr.shape[1], chip)
    for i, win in enumerate(windows):
        if progress is not None:
            progress.check()
        r, c, h, w = win["row_off"], win["col_off"], win["height"], win["width"]
        quads, sentences = caption_chip(arr[r : r + h, c : c + w], schema, gen, where=where, quantity_scale=quantity_scale)
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
