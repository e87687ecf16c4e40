"""Change polygons and chip captions written to a GeoPackage, checked with fiona."""

from __future__ import annotations

import json

import fiona
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from scipy import ndimage
from shapely.geometry import shape

from engine.captions import TEMPLATES, caption_chip, direction_of, quadruples, quantity_of, render
from engine.schema import load_preset
from engine.vectorize import CAPTIONS_FIELDS, CHANGES_FIELDS, vectorize

SCHEMA = load_preset("gaza")
CHIP = 64


def write_classes(path, cls, conf=None, crs="EPSG:32636", transform=from_origin(638000.0, 3486000.0, 0.5, 0.5)):
    h, w = cls.shape
    conf = np.where(cls == 255, 255, 80).astype(np.uint8) if conf is None else conf
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=2, dtype="uint8", crs=crs, transform=transform, nodata=255) as dst:
        dst.write(np.stack([cls, conf]))
    return path


def scene():
    """A class raster whose regions cross the 64-row strips in every awkward way."""
    cls = np.zeros((300, 200), np.uint8)
    cls[10:200, 5:25] = 1  # tall block over four strips
    cls[30:150, 100:106] = 2  # a U: two arms ...
    cls[30:150, 120:126] = 2
    cls[140:150, 100:126] = 2  # ... joined only in the third strip
    cls[70:80, 150:160] = 3  # two blocks touching at a corner only:
    cls[80:90, 160:170] = 3  # two regions (4-connectivity)
    cls[250:260, 40:60] = 4
    cls[250:260, 60:70] = 5  # touches class 4: still a separate region
    cls[5, 190] = 6  # one pixel: below min_pixels
    cls[280:300, 150:200] = 255  # nodata
    cls[270:290, 130:160] = 6  # partly under nodata
    cls[270:290, 150:160] = 255
    return cls


@pytest.fixture
def gpkg(tmp_path):
    raster = write_classes(tmp_path / "pred.tif", scene())
    out = tmp_path / "pred.gpkg"
    result = vectorize(raster, out, SCHEMA, chip_size=CHIP, min_pixels=4)
    return raster, out, result


def features(path, layer):
    with fiona.open(path, layer=layer) as src:
        return list(src), src.schema, src.crs


def test_layers_and_every_field(gpkg):
    raster, out, result = gpkg
    assert set(fiona.listlayers(out)) == {"changes", "captions"}
    feats, schema, crs = features(out, "changes")
    assert set(schema["properties"]) == set(CHANGES_FIELDS)
    for name in ("class_id", "class_name", "category", "change_type", "area_m2", "confidence", "direction", "quantity", "caption"):
        assert name in schema["properties"]
    caps, cschema, _ = features(out, "captions")
    assert set(cschema["properties"]) == set(CAPTIONS_FIELDS)
    with rasterio.open(raster) as src:
        assert rasterio.crs.CRS.from_user_input(crs) == src.crs
    assert result["changes"] == len(feats) and result["captions"] == len(caps)
    assert not list(out.parent.glob("*.incomplete"))


def test_one_polygon_per_connected_region_and_class(gpkg):
    _, out, result = gpkg
    cls = scene()
    feats, _, _ = features(out, "changes")
    expected = []
    for c in SCHEMA.change_classes:
        labels, n = ndimage.label(cls == c.id)
        sizes = np.bincount(labels.ravel())[1:]
        expected += [(c.id, int(s)) for s in sizes if s >= 4]
    got = sorted((f.properties["class_id"], f.properties["pixels"]) for f in feats)
    assert got == sorted(expected)
    assert result["dropped"] == 1  # the one-pixel region
    for f in feats:
        p = f.properties
        geom = shape(f.geometry)
        assert geom.geom_type == "Polygon" and geom.is_valid
        assert geom.area == pytest.approx(p["pixels"] * 0.25)
        assert p["area_m2"] == pytest.approx(p["pixels"] * 0.25)
        c = SCHEMA[p["class_id"]]
        assert (p["class_name"], p["change_type"]) == (c.name, c.type)
        assert p["category"] == c.category
        assert p["confidence"] == pytest.approx(0.80)
    # the U is one polygon with a hole-free outline and its exact pixel count
    u = [f for f in feats if f.properties["class_id"] == 2]
    assert len(u) == 1 and u[0].properties["pixels"] == 2 * 120 * 6 + 10 * 14


def test_change_captions_follow_the_paper(gpkg):
    _, out, _ = gpkg
    feats, _, _ = features(out, "changes")
    by_class = {f.properties["class_id"]: f.properties for f in feats if f.properties["class_id"] in (4, 5)}
    # class 4: 200 px, centroid row 254.5, col 49.5 -> chip (3, 0) is rows 192..255 (64 x 64):
    # row 62.5 of 64 is south, col 49.5 of 64 is east; eq. 3 counts pixels whatever the chip
    # size (800 / 4000 / 8000), so 200 px is "a single", with the singular noun
    assert by_class[4]["direction"] == "southeast"
    assert by_class[4]["quantity"] == "a single"
    assert by_class[4]["caption"] == f"The scene shows a single destroyed {SCHEMA[4].singular} in the southeast."
    for f in feats:
        p = f.properties
        cls = scene()
        geom = shape(f.geometry)
        # centroid in pixels from the polygon (origin 638000, 3486000, 0.5 m)
        col = (geom.centroid.x - 638000.0) / 0.5 - 0.5
        row = (3486000.0 - geom.centroid.y) / 0.5 - 0.5
        r0, c0 = int(row // CHIP) * CHIP, int(col // CHIP) * CHIP
        h, w = min(CHIP, cls.shape[0] - r0), min(CHIP, cls.shape[1] - c0)
        assert p["direction"] == direction_of(row - r0, col - c0, h, w)
        assert p["quantity"] == quantity_of(p["pixels"])
        noun = SCHEMA[p["class_id"]].singular if p["quantity"] == "a single" else SCHEMA[p["class_id"]].category
        if p["direction"] == "center":
            assert p["caption"] == f"The scene shows {p['quantity']} {p['change_type']} {noun} in the center."
        else:
            assert p["caption"] == f"The scene shows {p['quantity']} {p['change_type']} {noun} in the {p['direction']}."


def test_chip_captions_are_the_training_captioner_on_predicted_classes(gpkg):
    _, out, _ = gpkg
    cls = scene()
    caps, _, _ = features(out, "captions")
    seen = set()
    for f in caps:
        p = f.properties
        r, c = p["chip_row"] * CHIP, p["chip_col"] * CHIP
        label = cls[r : r + CHIP, c : c + CHIP]
        quads = quadruples(label, SCHEMA)
        assert json.loads(p["quadruples"]) == [q.to_dict() for q in quads]
        assert p["changed_pixels"] == sum(q.pixels for q in quads)
        # one template per chip, drawn from the five of Table 1 (centre variant when centred)
        options = [" ".join(render(q, t) for q in quads) for t in range(len(TEMPLATES))]
        assert p["caption"] in options
        geom = shape(f.geometry)
        assert geom.area == pytest.approx(label.shape[0] * label.shape[1] * 0.25)
        seen.add((p["chip_row"], p["chip_col"]))
    # every chip with a change class has a caption, and no other chip
    expected = {
        (i, j)
        for i in range(0, 300, CHIP)
        for j in range(0, 200, CHIP)
        if quadruples(cls[i : i + CHIP, j : j + CHIP], SCHEMA)
    }
    assert seen == {(i // CHIP, j // CHIP) for i, j in expected}


def test_min_area_and_seeded_captions(tmp_path):
    raster = write_classes(tmp_path / "p.tif", scene())
    a = vectorize(raster, tmp_path / "a.gpkg", SCHEMA, chip_size=CHIP, min_area=100.0)
    feats, _, _ = features(tmp_path / "a.gpkg", "changes")
    assert all(f.properties["area_m2"] >= 100.0 for f in feats) and a["dropped"] > 1
    vectorize(raster, tmp_path / "b.gpkg", SCHEMA, chip_size=CHIP, seed=0)
    vectorize(raster, tmp_path / "c.gpkg", SCHEMA, chip_size=CHIP, seed=0)
    b, _, _ = features(tmp_path / "b.gpkg", "captions")
    c, _, _ = features(tmp_path / "c.gpkg", "captions")
    assert [f.properties["caption"] for f in b] == [f.properties["caption"] for f in c]


def test_geographic_crs_gets_geodesic_square_metres(tmp_path):
    cls = np.zeros((40, 40), np.uint8)
    cls[10:30, 10:30] = 1
    deg = 1e-5  # about 1.1 m at the equator
    raster = write_classes(tmp_path / "g.tif", cls, crs="EPSG:4326", transform=from_origin(34.0, 0.0002, deg, deg))
    vectorize(raster, tmp_path / "g.gpkg", SCHEMA, chip_size=CHIP)
    feats, _, _ = features(tmp_path / "g.gpkg", "changes")
    assert len(feats) == 1
    expected = 400 * (deg * 111319.49) * (deg * 110574.0)
    assert feats[0].properties["area_m2"] == pytest.approx(expected, rel=0.01)


def test_captions_layer_fields_are_the_shared_chip_caption_fields():
    """The GeoPackage `captions` layer and the plugin's caption layers share one field list."""
    from engine.captions import CHIP_CAPTION_FIELDS
    from engine.vectorize import CAPTIONS_FIELDS

    assert list(CAPTIONS_FIELDS) == list(CHIP_CAPTION_FIELDS)
