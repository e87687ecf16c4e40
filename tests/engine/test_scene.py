"""The seeded demo scene: georeferencing, determinism, truth raster == polygons, classes."""

from __future__ import annotations

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio")
fiona = pytest.importorskip("fiona")

from rasterio.features import rasterize  # noqa: E402
from shapely.geometry import shape  # noqa: E402

from engine.captions import caption_raster_windows  # noqa: E402
from engine.errors import InputError  # noqa: E402
from engine.scene import MIN_SIZE, DemoScene, make_demo_scene  # noqa: E402
from engine.schema import load_preset  # noqa: E402

SIZE = 256


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> DemoScene:
    return make_demo_scene(tmp_path_factory.mktemp("scene"), size=SIZE, seed=0)


def read(path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def polygons(path) -> list[tuple[dict, str, int]]:
    with fiona.open(path, layer="labels") as src:
        return [(f.geometry, f.properties["class"], f.properties["class_id"]) for f in src]


def test_paths_and_schema(scene):
    assert scene.schema == "gaza" and scene.size == SIZE and scene.seed == 0
    names = {p.name for p in (scene.before, scene.after, scene.truth, scene.labels, scene.aoi)}
    assert names == {"before.tif", "after.tif", "truth.tif", "labels.gpkg", "aoi.gpkg"}
    assert all(p.is_file() for p in (scene.before, scene.after, scene.truth, scene.labels, scene.aoi))


def test_georeferenced_tiled_rgb_pair_on_one_grid(scene):
    grids = []
    for path, count in ((scene.before, 3), (scene.after, 3), (scene.truth, 1)):
        with rasterio.open(path) as src:
            assert src.crs.to_epsg() == 32636
            assert src.res == (0.5, 0.5)
            assert (src.width, src.height, src.count) == (SIZE, SIZE, count)
            assert src.dtypes == ("uint8",) * count
            (bh, bw), *_ = src.block_shapes
            assert bh == bw < SIZE and src.compression is not None  # tiled, compressed
            grids.append(src.transform)
    assert grids[0] == grids[1] == grids[2]
    with rasterio.open(scene.before) as src:
        assert src.colorinterp[:3] == (
            rasterio.enums.ColorInterp.red, rasterio.enums.ColorInterp.green, rasterio.enums.ColorInterp.blue
        )  # fmt: skip


def test_truth_raster_equals_rasterised_polygons(scene):
    gaza = load_preset("gaza")
    feats = polygons(scene.labels)
    assert feats, "no label polygon"
    with fiona.open(scene.labels, layer="labels") as src:
        assert src.crs.to_epsg() == 32636
        assert set(src.schema["properties"]) >= {"class"}
    with rasterio.open(scene.truth) as src:
        truth, transform = src.read(1), src.transform
    shapes = [(geom, gaza.lookup(name)) for geom, name, _ in feats]
    assert all(gaza.lookup(name) == cid for _, name, cid in feats)
    again = rasterize(shapes, out_shape=truth.shape, transform=transform, fill=0, dtype="uint8")
    np.testing.assert_array_equal(again, truth)
    # Polygons do not overlap: their pixel areas add up to the changed pixels.
    areas = sum(shape(g).area for g, _, _ in feats) / 0.25
    assert areas == pytest.approx(int((truth > 0).sum()))


def test_every_gaza_class_is_present(scene):
    gaza = load_preset("gaza")
    truth = read(scene.truth)[0]
    counts = np.bincount(truth.ravel(), minlength=256)
    assert set(np.flatnonzero(counts)) == set(range(gaza.num_classes))
    assert {name for _, name, _ in polygons(scene.labels)} == {c.name for c in gaza.change_classes}
    chips = list(caption_raster_windows(truth, gaza, rng=0))
    assert [q["class_id"] for q in chips[0]["quadruples"]] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("size", [MIN_SIZE, 192])
def test_every_class_present_at_small_sizes(tmp_path, size):
    s = make_demo_scene(tmp_path, size=size, seed=5)
    truth = read(s.truth)[0]
    assert set(np.unique(truth)) == set(range(7))


def test_aoi_is_the_whole_scene(scene):
    with rasterio.open(scene.before) as src:
        bounds = src.bounds
    with fiona.open(scene.aoi, layer="aoi") as src:
        (feat,) = list(src)
        assert src.crs.to_epsg() == 32636
    assert shape(feat.geometry).bounds == pytest.approx(tuple(bounds))


def test_changes_are_visible_and_dates_differ_mildly(scene):
    before = read(scene.before).astype(np.float32)
    after = read(scene.after).astype(np.float32)
    truth = read(scene.truth)[0]
    diff = np.abs(after - before).mean(axis=0)
    unchanged = diff[truth == 0]
    assert 0 < np.median(unchanged) < 15  # radiometric difference and noise, not a new scene
    for cid in range(1, 7):
        assert diff[truth == cid].mean() > 2 * unchanged.mean(), cid
    # Each class has its own look in the after image (mean colours differ pairwise).
    means = np.array([after[:, truth == cid].mean(axis=1) for cid in range(1, 7)])
    dist = np.linalg.norm(means[:, None] - means[None], axis=-1)
    assert dist[~np.eye(6, dtype=bool)].min() > 5


def test_same_seed_same_files_other_seed_other_scene(tmp_path, scene):
    again = make_demo_scene(tmp_path / "again", size=SIZE, seed=0)
    for a, b in ((scene.before, again.before), (scene.after, again.after), (scene.truth, again.truth)):
        np.testing.assert_array_equal(read(a), read(b))
    assert polygons(scene.labels) == polygons(again.labels)
    other = make_demo_scene(tmp_path / "other", size=SIZE, seed=1)
    assert not np.array_equal(read(scene.truth), read(other.truth))
    assert not np.array_equal(read(scene.before), read(other.before))


def test_regenerating_in_place_replaces_the_files(tmp_path):
    first = make_demo_scene(tmp_path, size=MIN_SIZE, seed=2)
    n_first = len(polygons(first.labels))
    second = make_demo_scene(tmp_path, size=MIN_SIZE, seed=2)
    assert len(polygons(second.labels)) == n_first  # not appended to the old layer


def test_too_small_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match=f"at least {MIN_SIZE}"):
        make_demo_scene(tmp_path, size=64)
