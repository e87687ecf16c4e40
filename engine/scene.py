"""A synthetic, seeded before/after scene with its truth: the demo and the test fixture.

:func:`make_demo_scene` draws a small town seen from above at 0.5 m per pixel (UTM zone
36N, EPSG:32636, near Gaza City): sandy ground, a grid of asphalt roads, urban blocks
with flat roofs that cast shadows, agricultural parcels (crop rows, tilled soil,
orchards), greenhouse rows and open land with shrubs. The *after* image shows the six
change classes of the ``gaza`` preset:

====  ================================  =====================================================
id    class                             what it looks like in *after*
====  ================================  =====================================================
1     building destroyed                rubble (grey/brown speckle, dark holes), no shadow
2     building newly built              a clean bright roof with its shadow on a former lot
3     refugee camp newly established    rows of small white and blue tents on trampled ground
4     agricultural land destroyed       a scorched parcel with craters and vehicle tracks
5     greenhouse destroyed              torn plastic: frame lines, soil showing, white shreds
6     greenhouse newly built            a new white greenhouse with ridges on a bare slot
====  ================================  =====================================================

The two dates also differ by a mild gain/offset per band and independent sensor noise,
so unchanged pixels are not identical. Every change is an axis-aligned rectangle on
whole pixels; the same rectangles give the truth polygons (``labels.gpkg``) and, through
``rasterio.features.rasterize``, the truth raster (``truth.tif``), so the two agree
exactly. Everything comes from one ``numpy`` generator seeded with ``seed``: the same
``(size, seed)`` gives the same files.

Heavy module (rasterio, fiona, shapely, scipy): import it only where it is needed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError

log = logging.getLogger(__name__)

PIXEL_SIZE = 0.5  # metres
CRS = "EPSG:32636"
ORIGIN = (638000.0, 3486000.0)  # upper-left corner (easting, northing), near Gaza City
SCHEMA = "gaza"
MIN_SIZE = 128

DESTROYED_BUILDING, NEW_BUILDING, CAMP, DESTROYED_FIELD, DESTROYED_GREENHOUSE, NEW_GREENHOUSE = 1, 2, 3, 4, 5, 6

SAND = (196.0, 181.0, 150.0)
ASPHALT = (86.0, 87.0, 92.0)
KERB = (172.0, 168.0, 158.0)
ROOFS = ((206, 204, 199), (191, 187, 179), (216, 210, 198), (172, 170, 168), (184, 124, 104), (199, 196, 185))
NEW_ROOF = (232, 231, 226)
RUBBLE = (148.0, 140.0, 128.0)
SHADOW = 0.55
TENTS = ((238, 238, 240), (228, 230, 236), (112, 142, 192), (236, 236, 238), (200, 206, 214))
CROPS = ((76, 116, 50), (96, 134, 58), (118, 148, 72))
SOIL = (142.0, 114.0, 84.0)
SCORCHED = (64.0, 56.0, 49.0)
GREENHOUSE = (222.0, 226.0, 229.0)
SHRUB = (88.0, 98.0, 62.0)

Rect = tuple[int, int, int, int]  # row0, col0, row1, col1 (end exclusive), pixels


@dataclass(frozen=True)
class DemoScene:
    """Paths of a generated demo scene.

    Attributes:
        before: RGB uint8 GeoTIFF of the first date ``(3, size, size)``.
        after: RGB uint8 GeoTIFF of the second date, same grid.
        truth: uint8 class raster, same grid, values = ``gaza`` class ids (0 = no change).
        labels: GeoPackage, layer ``labels``, one polygon per change, field ``class`` =
            class name of the ``gaza`` preset (and ``class_id``).
        aoi: GeoPackage, layer ``aoi``: one polygon, the labelled area (the whole scene).
        schema: Name of the class schema preset (``gaza``).
        size: Side of the scene in pixels.
        seed: Seed of the generator.
    """

    before: Path
    after: Path
    truth: Path
    labels: Path
    aoi: Path
    schema: str = SCHEMA
    size: int = 0
    seed: int = 0


@dataclass
class _Obj:
    """One object of the layout; ``state`` says what the two dates show."""

    kind: str  # building | parcel | greenhouse | camp
    rect: Rect
    state: str  # kept | destroyed | new | none (an empty slot in both dates)
    style: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- textures


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Zero-mean, unit-ish smooth noise ``(h, w)`` with features of about ``cell`` pixels."""
    from scipy import ndimage

    cell = max(1, int(cell))
    grid = rng.standard_normal((h // cell + 2, w // cell + 2)).astype(np.float32)
    return ndimage.zoom(grid, cell, order=1)[:h, :w]


def _patch(rng: np.random.Generator, h: int, w: int, colour, amp: float = 6.0, smooth: float = 0.0, cell: int = 6) -> np.ndarray:
    """A textured colour patch ``(h, w, 3)``: colour, per-pixel noise and optional blotches."""
    base = np.asarray(colour, np.float32)
    tex = rng.standard_normal((h, w, 1)).astype(np.float32) * amp
    if smooth:
        tex = tex + _smooth_noise(rng, h, w, cell)[..., None] * smooth
    return base + tex * (base / 160.0)


def _view(img: np.ndarray, rect: Rect) -> np.ndarray:
    r0, c0, r1, c1 = rect
    return img[r0:r1, c0:c1]


# ----------------------------------------------------------------------------- layout


def _layout(rng: np.random.Generator, size: int) -> tuple[list[tuple[str, int, int]], list[tuple[Rect, str]]]:
    """Roads ``(axis, centre, width)`` and blocks ``(interior rect, land use)``."""
    nb = max(3, round(size / 200))
    step = size / nb
    cuts = [0] + [int(round(i * step + rng.uniform(-0.1, 0.1) * step)) for i in range(1, nb)] + [size]
    widths = [int(rng.integers(10, 15)) for _ in range(nb - 1)]
    widths_c = [int(rng.integers(10, 15)) for _ in range(nb - 1)]
    cuts_c = [0] + [int(round(i * step + rng.uniform(-0.1, 0.1) * step)) for i in range(1, nb)] + [size]
    roads = [("row", cuts[i], widths[i - 1]) for i in range(1, nb)] + [("col", cuts_c[i], widths_c[i - 1]) for i in range(1, nb)]
    margin = 3

    def spans(edges, ws):
        out = []
        for i in range(nb):
            a = edges[i] + (ws[i - 1] // 2 + margin if i > 0 else margin)
            b = edges[i + 1] - (ws[i] - ws[i] // 2 + margin if i < nb - 1 else margin)
            out.append((a, b))
        return out

    rows, cols = spans(cuts, widths), spans(cuts_c, widths_c)
    n = nb * nb
    uses = ["urban", "fields", "greenhouses", "camp"]
    extra = rng.choice(["urban", "fields", "greenhouses", "open"], size=n - len(uses), p=[0.45, 0.25, 0.15, 0.15])
    uses += [str(u) for u in extra]
    order = rng.permutation(n)
    blocks = []
    for k, idx in enumerate(order):
        (r0, r1), (c0, c1) = rows[idx // nb], cols[idx % nb]
        blocks.append(((r0, c0, r1, c1), uses[k]))
    blocks.sort(key=lambda b: (b[0][0], b[0][1]))
    return roads, blocks


def _urban(rng, rect: Rect, objs: list[_Obj]) -> None:
    r0, c0, r1, c1 = rect
    damage = float(rng.choice([0.1, 0.3, 0.6]))
    growth = float(rng.choice([0.2, 0.5]))
    lot = min(int(rng.integers(26, 42)), max(12, min(r1 - r0, c1 - c0) // 2))  # 2x2 lots at least
    small = lot < 20
    nr, nc = max(1, (r1 - r0) // lot), max(1, (c1 - c0) // lot)
    re = np.linspace(r0, r1, nr + 1).astype(int)
    ce = np.linspace(c0, c1, nc + 1).astype(int)
    for i in range(nr):
        for j in range(nc):
            lr0, lr1, lc0, lc1 = re[i], re[i + 1], ce[j], ce[j + 1]
            m = rng.integers(1, 3, size=4) if small else rng.integers(2, 6, size=4)
            b = (int(lr0 + m[0]), int(lc0 + m[1]), int(lr1 - m[2]), int(lc1 - m[3]))
            if b[2] - b[0] < 6 or b[3] - b[1] < 6:
                continue
            if rng.random() < 0.22:
                state = "new" if rng.random() < growth else "none"
            else:
                state = "destroyed" if rng.random() < damage else "kept"
            style = {"roof": ROOFS[int(rng.integers(len(ROOFS)))], "shadow": int(rng.integers(2, 4) if small else rng.integers(3, 7)), "seed": int(rng.integers(2**31))}
            objs.append(_Obj("building", b, state, style))


def _fields(rng, rect: Rect, objs: list[_Obj]) -> None:
    r0, c0, r1, c1 = rect
    horizontal = (r1 - r0) < (c1 - c0)  # parcels side by side along the longer axis
    length = (c1 - c0) if horizontal else (r1 - r0)
    n = int(min(max(2, length // 24), rng.integers(2, 5)))
    edges = np.linspace(c0 if horizontal else r0, c1 if horizontal else r1, n + 1).astype(int)
    for k in range(n):
        a, b = int(edges[k]) + (1 if k else 0), int(edges[k + 1]) - (1 if k < n - 1 else 0)
        p = (r0, a, r1, b) if horizontal else (a, c0, b, c1)
        state = "destroyed" if rng.random() < 0.35 else "kept"
        crop = str(rng.choice(["rows", "rows", "tilled", "orchard"]))
        style = {"crop": crop, "colour": CROPS[int(rng.integers(len(CROPS)))], "period": int(rng.integers(3, 6)), "vertical": bool(rng.random() < 0.5), "seed": int(rng.integers(2**31))}
        objs.append(_Obj("parcel", p, state, style))


def _greenhouses(rng, rect: Rect, objs: list[_Obj]) -> None:
    r0, c0, r1, c1 = rect
    horizontal = (c1 - c0) >= (r1 - r0)  # long sides along the longer axis
    across = (r1 - r0) if horizontal else (c1 - c0)
    pos, slots = 0, []
    while True:
        w = min(int(rng.integers(12, 19)), max(6, (across - 3) // 2))  # two slots at least
        if pos + w > across:
            break
        slots.append((pos, pos + w))
        pos += w + (3 if across < 48 else int(rng.integers(3, 6)))
    length = (c1 - c0) if horizontal else (r1 - r0)
    pieces = [(0, length)] if length <= 140 else [(0, length // 2 - 2), (length // 2 + 2, length)]
    for a, b in slots:
        for p0, p1 in pieces:
            g = (r0 + a, c0 + p0, r0 + b, c0 + p1) if horizontal else (r0 + p0, c0 + a, r0 + p1, c0 + b)
            if rng.random() < 0.25:
                state = "new" if rng.random() < 0.6 else "none"
            else:
                state = "destroyed" if rng.random() < 0.35 else "kept"
            objs.append(_Obj("greenhouse", g, state, {"horizontal": horizontal, "seed": int(rng.integers(2**31))}))


def _camp(rng, rect: Rect, objs: list[_Obj]) -> None:
    r0, c0, r1, c1 = rect
    m = int(min(6, max(1, (r1 - r0) // 10)))
    objs.append(_Obj("camp", (r0 + m, c0 + m, r1 - m, c1 - m), "new", {"seed": int(rng.integers(2**31))}))


def _ensure_every_class(rng, objs: list[_Obj]) -> None:
    """Make sure each of the six classes occurs at least once (small scenes)."""

    def pick(kind, states):
        cands = [o for o in objs if o.kind == kind and o.state in states]
        return cands[int(rng.integers(len(cands)))] if cands else None

    for kind, wanted, donors in (
        ("building", "destroyed", ("kept", "none", "new")),
        ("building", "new", ("none", "kept", "destroyed")),
        ("parcel", "destroyed", ("kept",)),
        ("greenhouse", "destroyed", ("kept", "none", "new")),
        ("greenhouse", "new", ("none", "kept", "destroyed")),
    ):
        if any(o.kind == kind and o.state == wanted for o in objs):
            continue
        for state in donors:  # take from the most common state first
            o = pick(kind, (state,))
            if o is not None and (sum(p.kind == kind and p.state == state for p in objs) > 1 or state in ("kept", "none")):
                o.state = wanted
                break


# ----------------------------------------------------------------------------- painting


def _paint_roads(rng, img: np.ndarray, roads) -> None:
    size = img.shape[0]
    for axis, centre, width in roads:
        a, b = centre - width // 2, centre - width // 2 + width
        rect = (a, 0, b, size) if axis == "row" else (0, a, size, b)
        h, w = rect[2] - rect[0], rect[3] - rect[1]
        _view(img, rect)[:] = _patch(rng, h, w, ASPHALT, amp=4, smooth=5, cell=12)
        for edge in (a, b - 1):  # kerbs
            kerb = (edge, 0, edge + 1, size) if axis == "row" else (0, edge, size, edge + 1)
            _view(img, kerb)[:] = KERB
        if width >= 12:  # dashed centre line
            line = np.arange(size) % 12 < 6
            if axis == "row":
                img[centre, line] = (224, 222, 210)
            else:
                img[line, centre] = (224, 222, 210)


def _paint_shrubs(rng, img: np.ndarray, rect: Rect, density: float) -> None:
    r0, c0, r1, c1 = rect
    n = int((r1 - r0) * (c1 - c0) * density)
    for _ in range(n):
        rad = float(rng.uniform(1.0, 3.2))
        rc, cc = rng.uniform(r0 + rad, r1 - rad), rng.uniform(c0 + rad, c1 - rad)
        _disc(img, rc, cc, rad, np.asarray(SHRUB) * rng.uniform(0.85, 1.15), shadow=True)


def _disc(img: np.ndarray, rc: float, cc: float, rad: float, colour, shadow: bool = False, alpha: float = 1.0) -> None:
    """Paint a filled circle (centre in pixels, radius in pixels), optional NW shadow."""
    H, W = img.shape[:2]
    r0, r1 = max(0, int(rc - rad - 2)), min(H, int(rc + rad + 2))
    c0, c1 = max(0, int(cc - rad - 2)), min(W, int(cc + rad + 2))
    if r0 >= r1 or c0 >= c1:
        return
    rr, cc_ = np.ogrid[r0:r1, c0:c1]
    view = img[r0:r1, c0:c1]
    if shadow:
        sh = (rr - rc + 1.5) ** 2 + (cc_ - cc + 1.5) ** 2 <= rad * rad
        view[sh] *= 0.7
    inside = (rr - rc) ** 2 + (cc_ - cc) ** 2 <= rad * rad
    view[inside] = (1 - alpha) * view[inside] + alpha * np.asarray(colour, np.float32)


def _roof(rng, h: int, w: int, colour) -> np.ndarray:
    roof = _patch(rng, h, w, colour, amp=3.0, smooth=3.0, cell=8)
    roof[[0, -1], :] *= 0.86  # parapet
    roof[:, [0, -1]] *= 0.86
    if h > 12 and w > 12:
        if rng.random() < 0.6:  # water tanks
            r, c = int(rng.integers(2, h - 5)), int(rng.integers(2, w - 5))
            roof[r : r + 3, c : c + 3] = (70, 76, 92) if rng.random() < 0.5 else (214, 214, 220)
        if rng.random() < 0.35:  # solar panel
            r, c = int(rng.integers(2, h - 6)), int(rng.integers(2, w - 8))
            roof[r : r + 4, c : c + 6] = (44, 54, 82)
    return roof


def _rubble(rng, h: int, w: int) -> np.ndarray:
    tex = _patch(rng, h, w, RUBBLE, amp=26.0, smooth=18.0, cell=3)
    chunks = rng.random((h, w)) < 0.08
    tex[chunks] = rng.choice([[225, 222, 214], [92, 86, 80], [170, 120, 96]], size=int(chunks.sum()))
    holes = _smooth_noise(rng, h, w, 4) > 1.1
    tex[holes] *= 0.45
    return tex


def _parcel(rng, h: int, w: int, style: dict) -> np.ndarray:
    crop = style["crop"]
    soil = _patch(rng, h, w, SOIL, amp=5.0, smooth=6.0, cell=10)
    if crop == "tilled":
        idx = np.arange(w if style["vertical"] else h) % style["period"] == 0
        if style["vertical"]:
            soil[:, idx] *= 0.8
        else:
            soil[idx, :] *= 0.8
        return soil
    if crop == "orchard":
        for r in range(3, h - 2, 7):
            for c in range(3, w - 2, 7):
                _disc(soil, r + rng.uniform(-0.5, 0.5), c + rng.uniform(-0.5, 0.5), float(rng.uniform(1.8, 2.8)), (58, 88, 44), shadow=True)
        return soil
    green = _patch(rng, h, w, style["colour"], amp=6.0, smooth=8.0, cell=12)
    period = style["period"]
    idx = np.arange(w if style["vertical"] else h) % period < period - 1
    if style["vertical"]:
        soil[:, idx] = green[:, idx]
    else:
        soil[idx, :] = green[idx, :]
    return soil


def _scorched(rng, h: int, w: int) -> np.ndarray:
    tex = _patch(rng, h, w, SCORCHED, amp=9.0, smooth=16.0, cell=9)
    ash = _smooth_noise(rng, h, w, 7) > 0.8
    tex[ash] = tex[ash] * 0.5 + np.asarray((150, 142, 132), np.float32) * 0.5
    for _ in range(max(1, h * w // 700)):  # craters: dark pit, pale rim
        rad = float(rng.uniform(2.5, 7.0))
        rc, cc = rng.uniform(0, h), rng.uniform(0, w)
        _disc(tex, rc, cc, rad * 1.35, (178, 168, 150), alpha=0.8)
        _disc(tex, rc, cc, rad, (34, 30, 27))
    for _ in range(int(rng.integers(1, 3))):  # vehicle tracks
        slope = rng.uniform(-0.8, 0.8)
        start = rng.uniform(0, w)
        for r in range(h):
            c = int(start + slope * r)
            for off in (0, 4):
                if 0 <= c + off < w:
                    tex[r, c + off] = (120, 108, 92)
    return tex


def _greenhouse(rng, h: int, w: int, horizontal: bool) -> np.ndarray:
    tex = _patch(rng, h, w, GREENHOUSE, amp=3.0, smooth=2.5, cell=10)
    idx = np.arange(h if horizontal else w) % 4 == 0  # ridges along the long side
    if horizontal:
        tex[idx, :] *= 0.9
    else:
        tex[:, idx] *= 0.9
    tex[[0, -1], :] *= 0.82
    tex[:, [0, -1]] *= 0.82
    return tex


def _torn_greenhouse(rng, h: int, w: int, horizontal: bool, ground: np.ndarray) -> np.ndarray:
    tex = ground.copy() * 0.85
    shreds = _smooth_noise(rng, h, w, 3) > 0.6
    tex[shreds] = _patch(rng, h, w, (212, 214, 212), amp=12.0)[shreds]
    frame = np.zeros((h, w), bool)
    frame[[0, -1], :] = True
    frame[:, [0, -1]] = True
    if horizontal:
        frame[:, ::10] = True
    else:
        frame[::10, :] = True
    broken = rng.random((h, w)) < 0.3
    tex[frame & ~broken] = (104, 102, 98)
    return tex


def _paint_camp(rng, before: np.ndarray, after: np.ndarray, rect: Rect) -> None:
    r0, c0, r1, c1 = rect
    h, w = r1 - r0, c1 - c0
    ground = _view(after, rect)
    ground[:] = ground * 0.6 + _patch(rng, h, w, (214, 202, 176), amp=5.0) * 0.4  # trampled
    th, tw = int(rng.integers(4, 6)), int(rng.integers(6, 9))
    gap, aisle = int(rng.integers(2, 4)), int(rng.integers(3, 5))
    for r in range(1, h - th, th + aisle):
        for c in range(1, w - tw, tw + gap):
            if rng.random() < 0.08:
                continue
            colour = np.asarray(TENTS[int(rng.integers(len(TENTS)))], np.float32)
            tent = ground[r : r + th, c : c + tw]
            tent[:] = colour + rng.standard_normal((th, tw, 1)).astype(np.float32) * 3
            tent[:, tw // 2] *= 0.9  # ridge
            if r + th < h:
                ground[r + th, c : c + tw] *= SHADOW  # a thin shadow on the ground beside each tent


def _paint(rng, size: int, roads, blocks, objs: list[_Obj]) -> tuple[np.ndarray, np.ndarray, list[tuple[int, Rect]]]:
    """Paint both dates; returns ``(before, after, changes)`` with images ``(H, W, 3)`` float."""
    ground = _patch(rng, size, size, SAND, amp=4.0, smooth=7.0, cell=5)
    ground *= 1.0 + 0.06 * _smooth_noise(rng, size, size, 64)[..., None]
    _paint_roads(rng, ground, roads)
    for rect, use in blocks:
        if use in ("open", "camp"):
            _paint_shrubs(rng, ground, rect, 0.0015 if use == "camp" else 0.004)
        elif use == "urban":
            _view(ground, rect)[:] *= 0.97  # packed earth between houses
    before, after = ground, ground.copy()
    changes: list[tuple[int, Rect]] = []

    for o in objs:  # flat objects: parcels, greenhouses, camps
        h, w = o.rect[2] - o.rect[0], o.rect[3] - o.rect[1]
        orng = np.random.default_rng(o.style.get("seed", 0))
        if o.kind == "parcel":
            tex = _parcel(orng, h, w, o.style)
            _view(before, o.rect)[:] = tex
            if o.state == "destroyed":
                _view(after, o.rect)[:] = _scorched(orng, h, w)
                changes.append((DESTROYED_FIELD, o.rect))
            else:
                _view(after, o.rect)[:] = tex
        elif o.kind == "greenhouse":
            soil = _patch(orng, h, w, SOIL, amp=5.0, smooth=5.0) * 0.5 + _view(before, o.rect) * 0.5
            gh = _greenhouse(orng, h, w, o.style["horizontal"])
            _view(before, o.rect)[:] = gh if o.state in ("kept", "destroyed") else soil
            if o.state == "kept":
                _view(after, o.rect)[:] = gh
            elif o.state == "destroyed":
                _view(after, o.rect)[:] = _torn_greenhouse(orng, h, w, o.style["horizontal"], soil)
                changes.append((DESTROYED_GREENHOUSE, o.rect))
            elif o.state == "new":
                _view(after, o.rect)[:] = _greenhouse(orng, h, w, o.style["horizontal"]) * 1.03
                changes.append((NEW_GREENHOUSE, o.rect))
            else:
                _view(after, o.rect)[:] = soil
        elif o.kind == "camp":
            _paint_camp(orng, before, after, o.rect)
            changes.append((CAMP, o.rect))

    buildings = [o for o in objs if o.kind == "building"]
    for img, date in ((before, "before"), (after, "after")):  # shadows first, then roofs
        stands = ("kept", "destroyed") if date == "before" else ("kept", "new")
        shade = np.ones((size, size), np.float32)
        for o in buildings:
            if o.state in stands:
                s = o.style["shadow"]
                r0, c0, r1, c1 = o.rect
                shade[max(0, r0 - s) : max(0, r1 - s), max(0, c0 - s) : max(0, c1 - s)] = SHADOW
        img *= shade[..., None]
    for o in buildings:
        h, w = o.rect[2] - o.rect[0], o.rect[3] - o.rect[1]
        orng = np.random.default_rng(o.style["seed"])
        roof = _roof(orng, h, w, o.style["roof"])
        if o.state in ("kept", "destroyed"):
            _view(before, o.rect)[:] = roof
        if o.state == "kept":
            _view(after, o.rect)[:] = roof
        elif o.state == "destroyed":
            _view(after, o.rect)[:] = _rubble(orng, h, w)
            changes.append((DESTROYED_BUILDING, o.rect))
        elif o.state == "new":
            _view(after, o.rect)[:] = _roof(orng, h, w, NEW_ROOF)
            changes.append((NEW_BUILDING, o.rect))

    # Mild radiometric difference between the dates and independent sensor noise.
    after *= np.asarray((1.04, 1.03, 0.98), np.float32)
    after += np.asarray((4.0, 2.0, -3.0), np.float32) + 3.0 * _smooth_noise(rng, size, size, 128)[..., None]
    before += rng.standard_normal(before.shape, dtype=np.float32) * 2.0
    after += rng.standard_normal(after.shape, dtype=np.float32) * 2.0
    return before, after, changes


# ----------------------------------------------------------------------------- writing


def _rect_polygon(rect: Rect, transform):
    from shapely.geometry import box

    r0, c0, r1, c1 = rect
    x0, y0 = transform * (c0, r0)
    x1, y1 = transform * (c1, r1)
    return box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def _block(size: int) -> int:
    """Tile side: 256, or smaller so that a small scene still has several tiles."""
    return min(256, max(16, size // 2 // 16 * 16))


def _write_rgb(path: Path, img: np.ndarray, transform) -> None:
    import rasterio

    size = img.shape[0]
    data = np.clip(np.rint(img), 0, 255).astype(np.uint8).transpose(2, 0, 1)
    profile = {
        "driver": "GTiff", "height": size, "width": size, "count": 3, "dtype": "uint8", "crs": CRS,
        "transform": transform, "tiled": True, "blockxsize": _block(size), "blockysize": _block(size),
        "compress": "deflate", "predictor": 2, "photometric": "RGB", "interleave": "pixel",
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for band, name in enumerate(("red", "green", "blue"), start=1):
            dst.set_band_description(band, name)


def make_demo_scene(out_dir: str | Path, size: int = 1024, seed: int = 0) -> DemoScene:
    """Generate the demo scene into ``out_dir`` (created; existing scene files are replaced).

    Args:
        out_dir: Folder for ``before.tif``, ``after.tif``, ``truth.tif``, ``labels.gpkg``
            and ``aoi.gpkg``.
        size: Side of the square scene in pixels (0.5 m each), at least 128.
        seed: Seed: the same ``(size, seed)`` gives the same files.

    Returns:
        The paths of the files written.
    """
    import fiona
    import rasterio
    from fiona.crs import CRS as FionaCRS
    from rasterio.features import rasterize
    from rasterio.transform import from_origin
    from shapely.geometry import box, mapping

    from .schema import load_preset

    size = int(size)
    if size < MIN_SIZE:
        raise InputError(f"demo scene size must be at least {MIN_SIZE} pixels to hold every class, got {size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scene = DemoScene(out / "before.tif", out / "after.tif", out / "truth.tif", out / "labels.gpkg", out / "aoi.gpkg", SCHEMA, size, int(seed))
    schema = load_preset(SCHEMA)
    rng = np.random.default_rng(int(seed))
    transform = from_origin(ORIGIN[0], ORIGIN[1], PIXEL_SIZE, PIXEL_SIZE)

    roads, blocks = _layout(rng, size)
    objs: list[_Obj] = []
    builders = {"urban": _urban, "fields": _fields, "greenhouses": _greenhouses, "camp": _camp}
    for rect, use in blocks:
        if use in builders and rect[2] - rect[0] >= 16 and rect[3] - rect[1] >= 16:
            builders[use](rng, rect, objs)
    _ensure_every_class(rng, objs)
    before, after, changes = _paint(rng, size, roads, blocks, objs)
    changes.sort(key=lambda c: (c[1][0], c[1][1], c[0]))

    _write_rgb(scene.before, before, transform)
    _write_rgb(scene.after, after, transform)
    shapes = [(_rect_polygon(rect, transform), cid) for cid, rect in changes]
    truth = rasterize(shapes, out_shape=(size, size), transform=transform, fill=0, dtype="uint8") if shapes else np.zeros((size, size), np.uint8)
    profile = {
        "driver": "GTiff", "height": size, "width": size, "count": 1, "dtype": "uint8", "crs": CRS,
        "transform": transform, "tiled": True, "blockxsize": _block(size), "blockysize": _block(size), "compress": "deflate",
    }  # fmt: skip
    with rasterio.open(scene.truth, "w", **profile) as dst:
        dst.write(truth, 1)
        dst.write_colormap(1, {c.id: (*c.rgb(), 255) for c in schema.classes})

    for path in (scene.labels, scene.aoi):
        if path.exists():
            path.unlink()
    crs = FionaCRS.from_string(CRS)
    vschema = {"geometry": "Polygon", "properties": {"class": "str", "class_id": "int"}}
    with fiona.open(scene.labels, "w", driver="GPKG", layer="labels", crs=crs, schema=vschema) as dst:
        dst.writerecords(
            {"geometry": mapping(geom), "properties": {"class": schema[cid].name, "class_id": cid}} for geom, cid in shapes
        )
    left, top = ORIGIN
    aoi = box(left, top - size * PIXEL_SIZE, left + size * PIXEL_SIZE, top)
    with fiona.open(scene.aoi, "w", driver="GPKG", layer="aoi", crs=crs, schema={"geometry": "Polygon", "properties": {"name": "str"}}) as dst:
        dst.write({"geometry": mapping(aoi), "properties": {"name": "demo scene"}})
    counts = np.bincount(truth.ravel(), minlength=schema.num_classes)
    log.info("demo scene %dx%d seed %d: %d changes, pixels per class %s", size, size, seed, len(changes), counts.tolist())
    return scene
