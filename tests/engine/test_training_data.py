"""engine.training: labelled data by reference (folder, scene), the split, the crop sampler, the datasets."""

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from engine.errors import InputError
from engine.schema import NODATA_CLASS, load_preset
from engine.training import augment
from engine.training.dataset import NO_CHANGE_CAPTION, CropDataset, ValDataset
from engine.training.sampler import CropSampler
from engine.training.sources import CELL, FolderSource, SceneSource
from engine.training.split import split

from .test_raster import X0, Y0, write_polys, write_tif


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


def _png(path, arr):
    arr = np.asarray(arr, np.uint8)
    if arr.ndim == 2:
        arr = arr[None]
    with rasterio.open(path, "w", driver="PNG", width=arr.shape[2], height=arr.shape[1], count=arr.shape[0], dtype="uint8") as ds:
        ds.write(arr)


def make_folder(root, n=4, size=32, lists=True, seed=0):
    rng = np.random.default_rng(seed)
    for d in ("A", "B", "label", "list"):
        (root / d).mkdir(parents=True, exist_ok=True)
    names = [f"t{i}" for i in range(n)]
    for name in names:
        img = rng.integers(0, 255, (3, size, size))
        lab = np.zeros((size, size), np.uint8)
        r, c = rng.integers(0, size - 8, 2)
        lab[r : r + 8, c : c + 8] = 255
        after = img.copy()
        after[:, lab > 0] = 250
        _png(root / "A" / f"{name}.png", img)
        _png(root / "B" / f"{name}.png", after)
        _png(root / "label" / f"{name}.png", lab)
    if lists:
        (root / "list" / "train.txt").write_text("\n".join(f"{n}.png" for n in names[:-1]) + "\n")
        (root / "list" / "val.txt").write_text(names[-1] + "\n")
    return names


# ----------------------------------------------------------------------------- sources


def test_scene_source_reads_windows_lazily_on_befores_grid(scene, schema):
    b, a, labels = scene
    src = SceneSource(b, a, labels, schema)
    (im,) = src.images
    assert (im.height, im.width) == (64, 64) and im.origin == (10, 10)
    xb, xa, lab = src.read(0, 0, 0, 64, 64)
    with rasterio.open(b) as ds:
        np.testing.assert_array_equal(xb, ds.read(window=((10, 74), (10, 74))).astype(np.float32))
    assert set(np.unique(lab)) == {0, 1, 5}  # no change, building destroyed, greenhouse destroyed
    # outside the labelled area: ignored label, zero pixels
    _, _, lab2 = src.read(0, 56, 56, 16, 16)
    assert (lab2[8:, :] == NODATA_CLASS).all() and (lab2[:8, :8] != NODATA_CLASS).all()
    # only summaries and the labelled area's label raster are held: no image pixels
    held = [v for v in vars(src).values() if isinstance(v, np.ndarray)]
    assert all(v.dtype == np.uint8 and v.size <= 64 * 64 for v in held)


def test_scene_source_class_raster_and_bad_values(tmp_path, scene, schema):
    b, a, _ = scene
    lab = np.zeros((96, 96), np.uint8)
    lab[20:40, 20:40] = 255
    path = write_tif(tmp_path / "lab.tif", lab)
    with pytest.raises(InputError, match="--label-map"):
        SceneSource(b, a, path, load_preset("building"))
    src = SceneSource(b, a, path, load_preset("building"), label_map={255: 1})
    assert src.images[0].changed.any()


@pytest.mark.parametrize("case, pattern", [
    ("only_no_change", "no change class"),
    ("nooverlap", "do not overlap"),
])
def test_scene_source_bad_input(tmp_path, scene, schema, case, pattern):
    b, a, labels = scene
    if case == "only_no_change":
        labels = write_polys(tmp_path / "x.gpkg", [((X0 + 10, Y0 - 30, X0 + 30, Y0 - 10), "no change")])
    else:
        a = write_tif(tmp_path / "far.tif", np.ones((3, 32, 32), np.uint8), transform=from_origin(X0 + 5000, Y0, 1, 1))
    with pytest.raises(InputError, match=pattern):
        SceneSource(b, a, labels, schema)


def test_folder_source_maps_labels_and_reads_lazily(tmp_path):
    binary = load_preset("building")
    make_folder(tmp_path, n=4, size=32)
    src = FolderSource(tmp_path, binary, label_map={255: 1})
    assert len(src.images) == 4 and src.bands == 3 and src.dtype == "uint8"
    assert all(im.changed.any() for im in src.images)
    b, a, lab = src.read(1, -8, -8, 48, 48)  # a window reaching outside the image
    assert b.shape == (3, 48, 48) and (lab[:8] == NODATA_CLASS).all() and (lab[-8:] == NODATA_CLASS).all()
    assert (lab == 1).sum() == 64
    with rasterio.open(tmp_path / "A" / "t1.png") as ds:
        np.testing.assert_array_equal(b[:, 8:40, 8:40], ds.read().astype(np.float32))
    assert src.split_lists() == (["t0", "t1", "t2"], ["t3"])
    with pytest.raises(InputError, match="--label-map 255:1"):
        FolderSource(tmp_path, binary)


@pytest.mark.parametrize("case, pattern", [
    ("size", "size mismatch for 't1'"),
    ("missing", "t2.png has no counterpart in .*label"),
    ("unreadable", "cannot read after image .*t0.png"),
    ("nodir", "has no B/ sub-folder"),
    ("list", "line 1: 'nope.png' is not an image"),
])
def test_folder_source_bad_input(tmp_path, case, pattern):
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
        FolderSource(tmp_path, binary, label_map={255: 1}).split_lists()


# ----------------------------------------------------------------------------- split + sampler


def _val_mask(images, parts):
    masks = [np.zeros((im.height, im.width), bool) for im in images]
    for i, r, c, h, w in parts.val:
        masks[i][r : r + h, c : c + w] = True
    return masks


@pytest.mark.parametrize("n, size, rule", [(7, 256, "strips"), (2, 1024, "blocks"), (24, 64, "images")])
def test_split_rules_and_no_validation_pixel_in_training(tmp_path, n, size, rule):
    binary = load_preset("building")
    make_folder(tmp_path, n=n, size=size, lists=False)
    src = FolderSource(tmp_path, binary, label_map={255: 1})
    parts = split(src.images, val_fraction=0.2, crop=128 if size >= 128 else 32, chip=256, seed=0)
    assert parts.rule == rule
    if rule == "strips":  # every image gives validation pixels
        assert sorted(v[0] for v in parts.val) == list(range(n))
    masks = _val_mask(src.images, parts)
    frac = sum(m.sum() for m in masks) / sum(m.size for m in masks)
    assert 0.1 < frac < 0.3
    crop = 128 if size >= 128 else 32
    sampler = CropSampler(src.images, parts, crop, seed=0)
    for step in range(50):
        for c in sampler.sample(step, 8):
            im = src.images[c.image]
            assert 0 <= c.row <= max(im.height - crop, 0) and 0 <= c.col <= max(im.width - crop, 0)
            assert not masks[c.image][c.row : c.row + crop, c.col : c.col + crop].any(), (step, c)


def test_sampler_is_seeded_fresh_every_step_and_stays_in_the_labelled_area(scene, schema):
    b, a, labels = scene
    src = SceneSource(b, a, labels, schema)
    parts = split(src.images, val_fraction=0.25, crop=32, chip=64, seed=1)
    s1, s2 = CropSampler(src.images, parts, 32, seed=3), CropSampler(src.images, parts, 32, seed=3)
    assert s1.sample(5, 4) == s2.sample(5, 4)
    assert s1.sample(5, 4) != s1.sample(6, 4)
    assert CropSampler(src.images, parts, 32, seed=4).sample(5, 4) != s1.sample(5, 4)
    positions = {(c.row, c.col) for step in range(100) for c in s1.sample(step, 4)}
    assert len(positions) > 50  # positions are drawn over pixels, not a fixed grid
    for step in range(30):
        for c in s1.sample(step, 4):
            _, _, lab = src.read(c.image, c.row, c.col, 32, 32)
            assert (lab != NODATA_CLASS).any()


def test_change_crops_balance_the_change_classes_and_keep_out_of_validation(tmp_path):
    """A class with 1/16 of the other's pixels is seen in about as many crops as the common one."""
    xbd = load_preset("xbd")
    for d in ("A", "B", "label"):
        (tmp_path / d).mkdir()
    rng = np.random.default_rng(0)
    for k in range(3):
        lab = np.zeros((256, 256), np.uint8)
        lab[20:84, 20:84] = 1  # common class: 4096 px per image
        lab[200:216, 200:216] = 3  # rare class: 256 px per image
        img = rng.integers(0, 255, (3, 256, 256))
        _png(tmp_path / "A" / f"t{k}.png", img)
        _png(tmp_path / "B" / f"t{k}.png", img)
        _png(tmp_path / "label" / f"t{k}.png", lab)
    src = FolderSource(tmp_path, xbd)
    assert src.images[0].classes[1, 1] == 1 and src.images[0].classes[13, 13] == 4  # bit c - 1 of class c
    parts = split(src.images, val_fraction=0.2, crop=64, chip=128, seed=0)
    masks = _val_mask(src.images, parts)

    def seen(sampler):
        counts = np.zeros(4)
        for step in range(60):
            for c in sampler.sample(step, 8):
                assert not masks[c.image][c.row : c.row + 64, c.col : c.col + 64].any()
                _, _, lab = src.read(c.image, c.row, c.col, 64, 64)
                counts += [(lab == v).any() for v in range(4)]
        return counts / 480

    uniform, balanced = seen(CropSampler(src.images, parts, 64, seed=0)), seen(CropSampler(src.images, parts, 64, seed=0, focus=0.5))
    assert uniform[3] < 0.15 < balanced[3]  # the rare class in > 1 crop of 4 (~0.25 + uniform hits)
    assert balanced[1] > uniform[1]
    assert abs(balanced[3] - balanced[1]) < 0.2 + (uniform[1] - uniform[3])  # balanced up to the uniform share
    assert CropSampler(src.images, parts, 64, seed=0, focus=0.5).sample(7, 8) == CropSampler(src.images, parts, 64, seed=0, focus=0.5).sample(7, 8)


def test_sampler_refuses_a_crop_that_cannot_fit(tmp_path):
    binary = load_preset("building")
    make_folder(tmp_path, n=3, size=32, lists=False)
    src = FolderSource(tmp_path, binary, label_map={255: 1})
    parts = split(src.images, val_fraction=0.5, crop=32, chip=32, seed=0)
    with pytest.raises(InputError, match="smaller --crop"):
        CropSampler(src.images, parts, 32, seed=0)
    assert CropSampler(src.images, parts, 16, seed=0).positions > 0


def test_split_trust_rule(tmp_path):
    binary = load_preset("building")
    make_folder(tmp_path, n=3, size=256, lists=False)
    src = FolderSource(tmp_path, binary, label_map={255: 1})
    small = split(src.images, val_fraction=0.2, crop=128, chip=256, seed=0)
    assert not small.trusted  # 3 strips of ~50 rows: too little to pick a checkpoint on


# ----------------------------------------------------------------------------- datasets


def test_augment_geometry_is_shared_and_photometry_is_per_date():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(2, 8, 8)).astype(np.float32)
    label = (base[0] > 0).astype(np.uint8)
    seen = set()
    for s in range(60):
        b, a, lab = augment.geometric([base, base.copy(), label], np.random.default_rng(s))
        np.testing.assert_array_equal(b, a)
        np.testing.assert_array_equal(lab, (b[0] > 0).astype(np.uint8))
        seen.add(b.tobytes())
    assert len(seen) == 8  # the dihedral group
    b = augment.photometric(base, np.random.default_rng(1))
    a = augment.photometric(base, np.random.default_rng(2))
    assert not np.allclose(a, b)
    assert np.corrcoef(b.ravel(), base.ravel())[0, 1] > 0.9  # radiometric, never geometric
    np.testing.assert_array_equal(augment.photometric(base, np.random.default_rng(1), 0.0), base)


def test_crop_dataset_normalises_captions_and_is_reproducible(scene, schema):
    b, a, labels = scene
    src = SceneSource(b, a, labels, schema)
    parts = split(src.images, val_fraction=0.25, crop=32, chip=64, seed=0)
    sampler = CropSampler(src.images, parts, 32, seed=0)
    kw = dict(batch=2, schema=schema, seed=0, captions=True)
    ds = CropDataset(src, sampler, [100.0] * 3, [50.0] * 3, **kw)
    x, y = ds[3], CropDataset(src, sampler, [100.0] * 3, [50.0] * 3, **kw)[3]
    np.testing.assert_array_equal(x["before"].numpy(), y["before"].numpy())
    assert x["sentences"] == y["sentences"] and x["before"].shape == (3, 32, 32)
    assert abs(float(x["before"].mean())) < 1.5  # normalised
    seen = [ds[i] for i in range(40)]
    assert any(s["sentences"] == [NO_CHANGE_CAPTION] and s["quads"] == () for s in seen)
    assert any(s["quads"] and s["sentences"][0].endswith(".") for s in seen)
    # two processes of one step draw different crops
    r0 = CropDataset(src, sampler, [100.0] * 3, [50.0] * 3, world=2, rank=0, **kw)
    r1 = CropDataset(src, sampler, [100.0] * 3, [50.0] * 3, world=2, rank=1, **kw)
    assert r0.crop(0)[0] != r1.crop(0)[0]


def test_val_dataset_scores_only_the_validation_region(scene, schema):
    b, a, labels = scene
    src = SceneSource(b, a, labels, schema)
    parts = split(src.images, val_fraction=0.25, crop=32, chip=64, seed=0)
    val = ValDataset(src, parts.val, [0.0] * 3, [1.0] * 3, chip=64, multiple=32)
    masks = _val_mask(src.images, parts)
    scored = sum(int((val[t]["label"] != NODATA_CLASS).sum()) for t in range(len(val)))
    _, _, full = src.read(0, 0, 0, 64, 64)
    assert scored == int(((full != NODATA_CLASS) & masks[0]).sum())
    for t in range(len(val)):
        assert val[t]["before"].shape[-1] % 32 == 0


def test_memory_does_not_depend_on_the_folder_size(tmp_path):
    """Only summaries are held per image: a CELL x CELL cell is one byte."""
    binary = load_preset("building")
    make_folder(tmp_path, n=6, size=64, lists=False)
    src = FolderSource(tmp_path, binary, label_map={255: 1})
    per_image = sum(im.labelled.nbytes + im.changed.nbytes + im.classes.nbytes for im in src.images) / len(src.images)
    assert per_image <= 6 * (64 // CELL) ** 2  # labelled share, change flag, class bits
