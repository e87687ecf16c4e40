"""raster.py on tiny real GeoTIFFs: alignment, validity, label rasterisation, bad input."""

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

from engine.errors import InputError
from engine.raster import grid_of, open_pair, rasterize_labels, read_class_raster, window_of_bounds
from engine.schema import load_preset

UTM = "EPSG:32636"
X0, Y0 = 500000.0, 3500000.0


def write_tif(path, arr, crs=UTM, transform=None, nodata=None):
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[None]
    transform = transform or from_origin(X0, Y0, 1, 1)
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=arr.shape[0],
                       dtype=arr.dtype, crs=crs, transform=transform, nodata=nodata) as ds:
        ds.write(arr)
    return path


def write_polys(path, polys, crs=UTM, field="class", layer="labels"):
    """polys: list of ((xmin, ymin, xmax, ymax) in UTM, value); reprojected to ``crs``."""
    import fiona
    from fiona.transform import transform_geom
    from shapely.geometry import box, mapping

    ftype = "int" if polys and isinstance(polys[0][1], int) else "str"
    schema = {"geometry": "Polygon", "properties": {field: ftype}}
    with fiona.open(path, "w", driver="GPKG", layer=layer, crs=crs, schema=schema) as dst:
        for b, value in polys:
            g = mapping(box(*b))
            if crs != UTM:
                g = transform_geom(UTM, crs, g)
            dst.write({"geometry": g, "properties": {field: value}})
    return path


@pytest.fixture
def img():
    rng = np.random.default_rng(0)
    return rng.integers(1, 250, (3, 64, 64)).astype(np.uint8)


def test_after_shifted_is_aligned_and_outside_is_invalid(tmp_path, img):
    b = write_tif(tmp_path / "b.tif", img)
    a = write_tif(tmp_path / "a.tif", img, transform=from_origin(X0 + 10, Y0 - 10, 1, 1))
    with open_pair(b, a) as pair:
        assert pair.window == Window(10, 10, 54, 54)
        assert (pair.width, pair.height, pair.count) == (64, 64, 3)
        before, after, valid = pair.read(Window(20, 20, 10, 10))
        np.testing.assert_array_equal(before, img[:, 20:30, 20:30])
        np.testing.assert_array_equal(after, img[:, 10:20, 10:20])  # after's pixel at the same place
        assert valid.all()
        # a window hanging off the top-left corner: only the overlap of both rasters is valid
        before, after, valid = pair.read(Window(-10, -10, 30, 30))
        assert before.shape == (3, 30, 30)
        assert valid.sum() == 100 and valid[20:, 20:].all()
        assert (before[:, ~valid] == 0).all() and (after[:, ~valid] == 0).all()
        # wholly outside
        _, _, valid = pair.read(Window(100, 100, 8, 8))
        assert not valid.any()


def test_after_in_another_crs_is_warped(tmp_path):
    from rasterio.warp import transform_bounds

    yy, xx = np.mgrid[0:64, 0:64]
    smooth = (np.stack([xx * 3, yy * 3, xx + yy]) + 10).astype(np.float32)
    b = write_tif(tmp_path / "b.tif", smooth)
    l, bo, r, t = transform_bounds(UTM, "EPSG:4326", X0, Y0 - 64, X0 + 64, Y0)
    # same content, resampled on a geographic grid at ~2x resolution
    from rasterio.warp import reproject, Resampling

    tr = from_origin(l, t, (r - l) / 128, (t - bo) / 128)
    dst = np.zeros((3, 128, 128), np.float32)
    reproject(smooth, dst, src_transform=from_origin(X0, Y0, 1, 1), src_crs=UTM, dst_transform=tr, dst_crs="EPSG:4326",
              resampling=Resampling.bilinear, dst_nodata=-1)
    a = write_tif(tmp_path / "a.tif", dst, crs="EPSG:4326", transform=tr, nodata=-1)
    with open_pair(b, a, bands=3) as pair:
        before, after, valid = pair.read(Window(8, 8, 48, 48))
        assert valid.mean() > 0.95
        assert np.abs(before - after)[:, valid].mean() < 1.5


def test_nodata_in_either_date_is_invalid(tmp_path, img):
    img_b = img.copy()
    img_b[:, 0:5, :] = 0
    img_a = img.copy()
    img_a[:, :, 60:] = 255
    b = write_tif(tmp_path / "b.tif", img_b, nodata=0)
    a = write_tif(tmp_path / "a.tif", img_a, nodata=255)
    with open_pair(b, a) as pair:
        _, _, valid = pair.read(Window(0, 0, 64, 64))
    assert not valid[:5].any() and not valid[:, 60:].any()
    assert valid[5:, :60].all()


def test_after_on_the_same_grid_is_read_directly_with_its_masks(tmp_path, img):
    from rasterio.vrt import WarpedVRT

    img_a = img.copy()
    img_a[:, 10:12, :] = 255
    b = write_tif(tmp_path / "b.tif", img)
    a = write_tif(tmp_path / "a.tif", img_a, nodata=255)
    with open_pair(b, a) as pair:
        assert not isinstance(pair.after, WarpedVRT)  # no warp onto an identical grid
        assert pair.window == Window(0, 0, 64, 64)
        before, after, valid = pair.read(Window(0, 0, 64, 64))
        np.testing.assert_array_equal(before[:, valid], img[:, valid].astype(np.float32))
        np.testing.assert_array_equal(after[:, valid], img_a[:, valid].astype(np.float32))
        assert not valid[10:12].any() and valid[:10].all() and valid[12:].all()
        assert (before[:, ~valid] == 0).all() and (after[:, ~valid] == 0).all()
        # a window hanging off the bottom-right corner is padded as invalid
        before, _, valid = pair.read(Window(60, 60, 8, 8))
        assert before.shape == (3, 8, 8) and valid.sum() == 16 and valid[:4, :4].all()
    # a float raster without nodata: NaN pixels are invalid and 0, not NaN
    fb = img.astype(np.float32) / 255
    fb[0, 3, 4] = np.nan
    b = write_tif(tmp_path / "fb.tif", fb)
    a = write_tif(tmp_path / "fa.tif", img.astype(np.float32) / 255)
    with open_pair(b, a) as pair:
        before, after, valid = pair.read(Window(0, 0, 64, 64))
    assert not valid[3, 4] and valid.sum() == 64 * 64 - 1
    assert np.isfinite(before).all() and before[0, 3, 4] == 0 and after[:, 3, 4].tolist() == [0, 0, 0]


@pytest.mark.parametrize(
    "case, pattern",
    [
        ("missing", "a.tif does not exist"),
        ("unreadable", "cannot read after raster .*a.tif"),
        ("bands", "has 3 band\\(s\\) but a.tif has 4"),
        ("expected", "b.tif has 3 band\\(s\\); the model expects 4"),
        ("nocrs", "b.tif has a coordinate reference system but a.tif has none"),
        ("nooverlap", "do not overlap"),
    ],
)
def test_open_pair_bad_input(tmp_path, img, case, pattern):
    b = write_tif(tmp_path / "b.tif", img)
    a = tmp_path / "a.tif"
    bands = None
    if case == "unreadable":
        a.write_text("this is not a raster")
    elif case == "bands":
        write_tif(a, np.concatenate([img, img[:1]]))
    elif case == "expected":
        write_tif(a, img)
        bands = 4
    elif case == "nocrs":
        with rasterio.open(a, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8") as ds:
            ds.write(img)
    elif case == "nooverlap":
        write_tif(a, img, transform=from_origin(X0 + 1000, Y0, 1, 1))
    with pytest.raises(InputError, match=pattern):
        open_pair(b, a, bands=bands)


def test_rasterize_labels_names_ids_reprojection_and_aoi(tmp_path, img):
    schema = load_preset("gaza")
    b = write_tif(tmp_path / "b.tif", img)
    # polygons stored in EPSG:4326, class by name and by id (as text)
    lab = write_polys(tmp_path / "l.gpkg", [
        ((X0 + 10, Y0 - 20, X0 + 20, Y0 - 10), "building destroyed"),
        ((X0 + 30, Y0 - 50, X0 + 40, Y0 - 20), "3"),
    ], crs="EPSG:4326")
    out = rasterize_labels(lab, schema, grid_of(b))
    assert out.dtype == np.uint8 and out.shape == (64, 64)
    assert (out[10:20, 10:20] == 1).mean() > 0.9
    assert (out[20:50, 30:40] == 3).mean() > 0.9
    # AOI = labels' extent (rows 10..50, cols 10..40): unlabelled inside is 0, outside 255
    assert out[45, 15] == 0
    assert (out[:9] == 255).all() and (out[:, 41:] == 255).all()
    # explicit AOI: the whole raster
    aoi = write_polys(tmp_path / "aoi.gpkg", [((X0, Y0 - 64, X0 + 64, Y0), 1)], layer="aoi", field="id")
    out2 = rasterize_labels(lab, schema, grid_of(b), aoi=aoi)
    assert (out2 != 255).all() and out2[0, 0] == 0
    # a window of the grid
    part = rasterize_labels(lab, schema, grid_of(b), window=Window(10, 10, 16, 16))
    np.testing.assert_array_equal(part, out[10:26, 10:26])


@pytest.mark.parametrize(
    "case, pattern",
    [
        ("unknown_class", "'bulding destroyed'.*not a class of schema 'gaza'"),
        ("no_field", "has no field 'class'; its fields are kind"),
        ("empty", "hold no polygons"),
        ("outside", "lie outside the rasters"),
        ("unreadable", "cannot read labels"),
    ],
)
def test_rasterize_labels_bad_input(tmp_path, img, case, pattern):
    schema = load_preset("gaza")
    b = write_tif(tmp_path / "b.tif", img)
    path = tmp_path / "l.gpkg"
    inside = (X0 + 10, Y0 - 20, X0 + 20, Y0 - 10)
    if case == "unknown_class":
        write_polys(path, [(inside, "bulding destroyed")])
    elif case == "no_field":
        write_polys(path, [(inside, "building destroyed")], field="kind")
    elif case == "empty":
        write_polys(path, [])
    elif case == "outside":
        write_polys(path, [((X0 + 500, Y0 - 20, X0 + 520, Y0 - 10), 1)])
    elif case == "unreadable":
        path.write_text("garbage")
    with pytest.raises(InputError, match=pattern):
        rasterize_labels(path, schema, grid_of(b))


def test_read_class_raster_label_map_nodata_and_warp(tmp_path, img):
    b = write_tif(tmp_path / "b.tif", img)
    lab = np.zeros((32, 32), np.uint8)
    lab[:8, :8] = 255
    lab[8:16, :8] = 7  # nodata
    # half the resolution, offset by 16 m
    c = write_tif(tmp_path / "c.tif", lab, transform=from_origin(X0 + 16, Y0, 1, 1), nodata=7)
    out = read_class_raster(c, grid_of(b), label_map={255: 1})
    assert (out[:8, 16:24] == 1).all()
    assert (out[8:16, 16:24] == 255).all()  # nodata -> ignore
    assert (out[16:32, 16:48] == 0).all()
    assert (out[:, :16] == 255).all() and (out[32:] == 255).all()  # outside the class raster


def test_window_of_bounds_rounds_inward(tmp_path, img):
    g = grid_of(write_tif(tmp_path / "b.tif", img))
    w = window_of_bounds(g, (X0 + 2.5, Y0 - 10.5, X0 + 8.5, Y0 - 1.2))
    assert w == Window(3, 2, 5, 8)
    assert window_of_bounds(g, (X0 - 100, Y0 - 10, X0 - 50, Y0)) is None
