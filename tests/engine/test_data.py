"""data.py: chips from a labelled scene and from a dataset folder, split, augmentation, captions."""

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from engine.data import NO_CHANGE_CAPTION, ChangeDataset, augment, load_folder, load_scene
from engine.errors import InputError
from engine.schema import load_preset

from .test_raster import UTM, X0, Y0, write_polys, write_tif


@pytest.fixture
def schema():
    return load_preset("gaza")


@pytest.fixture
def scene(tmp_path):
    """96x96 px scene; after shifted by 4 px; labels over a 64x64 px area with two classes."""
    rng = np.random.default_rng(1)
    img = rng.integers(1, 250, (3, 100, 100)).astype(np.uint8)
    b = write_tif(tmp_path / "b.tif", img[:, :96, :96])
    a = write_tif(tmp_path / "a.tif", img[:, 4:100, 4:100], transform=from_origin(X0 + 4, Y0 - 4, 1, 1))
    labels = write_polys(tmp_path / "labels.gpkg", [
        ((X0 + 10, Y0 - 74, X0 + 74, Y0 - 10), "0"),  # an explicit no-change polygon spanning the AOI
        ((X0 + 12, Y0 - 30, X0 + 30, Y0 - 12), "building destroyed"),
        ((X0 + 50, Y0 - 70, X0 + 70, Y0 - 50), "greenhouse destroyed"),
    ])
    return b, a, labels


def _overlaps(w1, w2, chip):
    (r1, c1), (r2, c2) = w1, w2
    return abs(r1 - r2) < chip and abs(c1 - c2) < chip


def test_scene_chips_split_without_overlap(scene, schema):
    b, a, labels = scene
    cs = load_scene(b, a, labels, schema, chip=16, stride=8, val_fraction=0.25, seed=3)
    assert cs.bands == 3 and cs.before.shape[1:] == (3, 16, 16)
    assert cs.train and cs.val
    wins = cs.info["windows"]
    for i in cs.val:
        for j in cs.train:
            assert not _overlaps(wins[i], wins[j], 16), (wins[i], wins[j])
    # every chip lies in the AOI region starting at the labels' corner (col 10, row 10)
    assert min(r for r, _ in wins) == 10 and min(c for _, c in wins) == 10
    # both sets hold change (stratified draw)
    assert cs.class_pixels(cs.val, 7)[1:].sum() > 0 and cs.class_pixels(cs.train, 7)[1:].sum() > 0
    # the chip data is the before raster at that place
    with rasterio.open(b) as ds:
        full = ds.read()
    r, c = wins[cs.train[0]]
    np.testing.assert_array_equal(cs.before[cs.train[0]], full[:, r : r + 16, c : c + 16])
    # labels: class ids where drawn, 255 beyond the AOI
    r, c = wins[0]
    k = [i for i, w in enumerate(wins) if w == (10, 10)]
    if k:
        assert (cs.labels[k[0]][2:12, 2:12] == 1).all()
    # different seed, different split; same seed, same split
    again = load_scene(b, a, labels, schema, chip=16, stride=8, val_fraction=0.25, seed=3)
    assert again.val == cs.val and again.info["windows"] == wins


def test_scene_from_class_raster(tmp_path, scene, schema):
    b, a, _ = scene
    truth = np.zeros((96, 96), np.uint8)
    truth[20:40, 20:40] = 255  # raw change value mapped to class 1
    c = write_tif(tmp_path / "truth.tif", truth)
    cs = load_scene(b, a, c, schema, label_map={255: 1}, chip=32, seed=0)
    assert set(np.unique(cs.labels)) <= {0, 1, 255}
    assert (cs.labels == 1).sum() == 400
    with pytest.raises(InputError, match="no change class.*--label-map 255:1"):
        load_scene(b, a, c, schema, chip=32)


@pytest.mark.parametrize(
    "case, pattern",
    [
        ("outside", "lie outside the rasters"),
        ("empty", "(has|hold) no polygons"),
        ("unknown", "'rubble' .*not a class"),
        ("only_no_change", "hold no change class"),
        ("too_small", "too small to keep a separate validation area"),
        ("nooverlap", "do not overlap"),
    ],
)
def test_scene_bad_input(tmp_path, scene, schema, case, pattern):
    b, a, labels = scene
    chip = 16
    if case == "outside":
        labels = write_polys(tmp_path / "x.gpkg", [((X0 + 900, Y0 - 30, X0 + 930, Y0 - 10), 1)])
    elif case == "empty":
        labels = write_polys(tmp_path / "x.gpkg", [])
    elif case == "unknown":
        labels = write_polys(tmp_path / "x.gpkg", [((X0 + 10, Y0 - 30, X0 + 30, Y0 - 10), "rubble")])
    elif case == "only_no_change":
        labels = write_polys(tmp_path / "x.gpkg", [((X0 + 10, Y0 - 30, X0 + 30, Y0 - 10), "no change")])
    elif case == "too_small":
        chip = 128
    elif case == "nooverlap":
        a = write_tif(tmp_path / "far.tif", np.ones((3, 32, 32), np.uint8), transform=from_origin(X0 + 5000, Y0, 1, 1))
    with pytest.raises(InputError, match=pattern):
        load_scene(b, a, labels, schema, chip=chip)


def _png(path, arr):
    arr = np.asarray(arr, np.uint8)
    if arr.ndim == 2:
        arr = arr[None]
    with rasterio.open(path, "w", driver="PNG", width=arr.shape[2], height=arr.shape[1], count=arr.shape[0], dtype="uint8") as ds:
        ds.write(arr)


def make_folder(root, n=4, size=32, lists=True):
    rng = np.random.default_rng(0)
    for d in ("A", "B", "label", "list"):
        (root / d).mkdir(parents=True, exist_ok=True)
    names = [f"t{i}" for i in range(n)]
    for name in names:
        img = rng.integers(0, 255, (3, size, size))
        lab = np.zeros((size, size), np.uint8)
        lab[4:12, 4:12] = 255
        _png(root / "A" / f"{name}.png", img)
        _png(root / "B" / f"{name}.png", img[:, ::-1])
        _png(root / "label" / f"{name}.png", lab)
    if lists:
        (root / "list" / "train.txt").write_text("\n".join(f"{n}.png" for n in names[:-1]) + "\n")
        (root / "list" / "val.txt").write_text(names[-1] + "\n")
    return names


def test_folder_with_lists_and_label_map(tmp_path):
    binary = load_preset("building")
    make_folder(tmp_path, n=4, size=32)
    cs = load_folder(tmp_path, binary, label_map={255: 1}, chip=16)
    assert len(cs.val) == 4 and len(cs.train) == 12  # 4 chips per 32x32 image
    assert (cs.labels == 1).sum() == 4 * 64
    # without the map the LEVIR-style labels are rejected with a hint
    with pytest.raises(InputError, match="--label-map 255:1"):
        load_folder(tmp_path, binary, chip=16)


def test_folder_split_without_lists_is_by_image(tmp_path):
    binary = load_preset("building")
    make_folder(tmp_path, n=5, size=16, lists=False)
    cs = load_folder(tmp_path, binary, label_map={255: 1}, chip=16, val_fraction=0.2, seed=0)
    assert len(cs.val) == 1 and len(cs.train) == 4


@pytest.mark.parametrize(
    "case, pattern",
    [
        ("size", "size mismatch for 't1'"),
        ("missing", "t2.png has no counterpart in .*label"),
        ("unreadable", "cannot read after image .*t0.png"),
        ("nodir", "has no B/ sub-folder"),
        ("list", "line 1: 'nope.png' is not an image"),
    ],
)
def test_folder_bad_input(tmp_path, case, pattern):
    binary = load_preset("building")
    make_folder(tmp_path, n=3, size=16)
    if case == "size":
        _png(tmp_path / "label" / "t1.png", np.zeros((8, 16), np.uint8))
    elif case == "missing":
        (tmp_path / "label" / "t2.png").unlink()
    elif case == "unreadable":
        (tmp_path / "B" / "t0.png").write_bytes(b"not a png")
    elif case == "nodir":
        import shutil

        shutil.rmtree(tmp_path / "B")
    elif case == "list":
        (tmp_path / "list" / "val.txt").write_text("nope.png\n")
    with pytest.raises(InputError, match=pattern):
        load_folder(tmp_path, binary, label_map={255: 1}, chip=16)


def test_augment_is_identical_for_both_dates_and_label():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(2, 8, 8)).astype(np.float32)
    label = (base[0] > 0).astype(np.uint8)
    seen = set()
    for s in range(40):
        b, a, lab = augment(base, base.copy(), label, np.random.default_rng(s), jitter=0.0)
        np.testing.assert_array_equal(b, a)
        np.testing.assert_array_equal(lab, (b[0] > 0).astype(np.uint8))
        seen.add(b.tobytes())
    assert len(seen) == 8  # the dihedral group: 4 rotations x flips
    # jitter: per-date, mild, never geometric
    b, a, lab = augment(base, base.copy(), label, np.random.default_rng(5), jitter=0.1)
    assert not np.allclose(b, a)
    corr = np.corrcoef(b.ravel(), a.ravel())[0, 1]
    assert corr > 0.99


def test_dataset_normalises_captions_and_is_reproducible(scene, schema):
    b, a, labels = scene
    cs = load_scene(b, a, labels, schema, chip=16, seed=0)
    mean, std = [100.0, 110.0, 120.0], [50.0, 40.0, 30.0]
    val = ChangeDataset(cs, cs.val, schema, mean, std, train=False, captions=False)
    item = val[0]
    k = cs.val[0]
    expected = (cs.before[k] - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]
    np.testing.assert_allclose(item["before"].numpy(), expected, rtol=1e-5)
    assert item["label"].dtype.is_floating_point is False and item["caption"] == ""

    ds = ChangeDataset(cs, cs.train, schema, mean, std, train=True, seed=4)
    changed = [i for i, k in enumerate(cs.train) if ((cs.labels[k] > 0) & (cs.labels[k] != 255)).any()]
    unchanged = [i for i, k in enumerate(cs.train) if not ((cs.labels[k] > 0) & (cs.labels[k] != 255)).any()]
    ds.set_epoch(0)
    off_centre = [i for i in changed if "center" not in ds[i]["caption"]]
    assert off_centre, "the fixture should have a chip with change away from its centre"
    i = off_centre[0]
    captions = []
    for epoch in range(12):
        ds.set_epoch(epoch)
        captions.append(ds[i]["caption"])
    assert all(c and c != NO_CHANGE_CAPTION for c in captions)
    assert len(set(captions)) > 1  # a fresh draw (template / orientation) across epochs
    ds.set_epoch(3)
    again = ds[i]
    assert again["caption"] == captions[3]
    ds.set_epoch(3)
    np.testing.assert_array_equal(ds[i]["after"].numpy(), again["after"].numpy())
    if unchanged:
        assert ds[unchanged[0]]["caption"] == NO_CHANGE_CAPTION
    with pytest.raises(InputError, match="mean/std for 2 band"):
        ChangeDataset(cs, cs.train, schema, [0, 0], [1, 1])
