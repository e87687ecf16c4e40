"""Normalisation statistics from real GeoTIFFs, and the input check against them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

from engine.errors import InputError, ModelError
from engine.normalization import (
    Normalization,
    StatsAccumulator,
    check_input,
    imagenet_mean_std,
    legacy_normalization,
    normalization_of,
    sample_windows,
)
from engine.raster import open_pair

TRANSFORM = from_origin(638000.0, 3486000.0, 0.5, 0.5)


def write_raster(path, data, nodata=None):
    c, h, w = data.shape
    profile = dict(driver="GTiff", width=w, height=h, count=c, dtype=data.dtype, crs="EPSG:32636", transform=TRANSFORM)
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def stats_of(path, chip=64):
    """Feed a raster to the accumulator chip by chip, as training reads it."""
    with open_pair(path, path) as pair:
        acc = StatsAccumulator(pair.count, reservoir=4096)
        for r in range(0, pair.height, chip):
            for c in range(0, pair.width, chip):
                b, _, v = pair.read(Window(c, r, chip, chip))  # edge chips: valid False outside
                acc.update(b, v)
        return acc.finish(pair.dtype), pair.dtype


def read_valid(path):
    with open_pair(path, path) as pair:
        b, _, v = pair.read(pair.window)
    return b, v


def test_uint8_gives_the_imagenet_convention(tmp_path):
    rng = np.random.default_rng(0)
    path = write_raster(tmp_path / "rgbn.tif", rng.integers(0, 256, (4, 96, 96), dtype=np.uint8))
    norm, dtype = stats_of(path)
    assert dtype == "uint8" and norm.convention == "imagenet-8bit" and norm.dtype == "uint8"
    from engine.models.backbone import default_mean_std

    assert (norm.mean, norm.std) == imagenet_mean_std(4) == default_mean_std(4)
    assert norm.value_range == (0.0, 255.0)
    assert len(norm.percentiles) == 4 and all(0 <= p1 < p99 <= 255 for p1, p99 in norm.percentiles)


def test_uint16_gives_measured_stats_that_standardise_the_data(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.integers(0, 4001, (3, 120, 100)).astype(np.uint16)
    data[1] = np.clip(data[1] // 4 + 500, 1, 4000)  # bands of different scale
    data[:, :20, :30] = 0  # nodata: must not count
    path = write_raster(tmp_path / "s2.tif", data, nodata=0)
    norm, _ = stats_of(path)
    assert norm.convention == "measured" and norm.dtype == "uint16"
    x, valid = read_valid(path)
    z = norm.apply(x)[:, valid]
    np.testing.assert_allclose(z.mean(1), 0.0, atol=1e-4)
    np.testing.assert_allclose(z.std(1), 1.0, atol=1e-4)
    assert 0 < norm.value_range[0] and norm.value_range[1] <= 4000
    p1, p99 = norm.percentiles[0]
    assert 0 < p1 < 150 and 3850 < p99 <= 4000


def test_float_reflectance_is_not_a_constant_after_normalisation(tmp_path):
    rng = np.random.default_rng(2)
    path = write_raster(tmp_path / "refl.tif", rng.random((3, 80, 80), dtype=np.float32))
    norm, _ = stats_of(path)
    assert norm.convention == "measured" and norm.dtype == "float32"
    x, valid = read_valid(path)
    assert norm.apply(x)[:, valid].std(1) == pytest.approx([1, 1, 1], abs=1e-3)
    imagenet = Normalization(*imagenet_mean_std(3), "uint8", "imagenet-8bit")
    assert (imagenet.apply(x)[:, valid].std(1) < 0.01).all()  # what the old value-range rule did to it


def test_streaming_statistics_match_the_whole_array():
    rng = np.random.default_rng(3)
    parts = [rng.normal(5000, 30, (2, 16, 16 + k)) for k in range(10)]
    acc = StatsAccumulator(2)
    for p in parts:
        acc.update(p)
    full = np.concatenate([p.reshape(2, -1) for p in parts], axis=1)
    norm = acc.finish("int16")
    np.testing.assert_allclose(norm.mean, full.mean(1), rtol=1e-12)
    np.testing.assert_allclose(norm.std, full.std(1), rtol=1e-9)
    assert acc.count == full.shape[1]


def test_memory_is_bounded_by_the_reservoir():
    rng = np.random.default_rng(4)
    acc = StatsAccumulator(3, reservoir=1000)
    acc.update(rng.normal(0, 1, (3, 64, 64)))
    shape, nbytes = acc.reservoir.shape, acc.reservoir.nbytes
    for _ in range(199):
        acc.update(rng.normal(0, 1, (3, 64, 64)), rng.random((64, 64)) > 0.1)
    assert acc.reservoir.shape == shape == (1000, 3) and acc.reservoir.nbytes == nbytes
    assert acc.count > 100 * 64 * 64
    p1, p99 = acc.finish("float32").percentiles[0]
    assert p1 == pytest.approx(-2.33, abs=0.3) and p99 == pytest.approx(2.33, abs=0.3)


def test_no_valid_pixel_and_bad_shapes():
    acc = StatsAccumulator(2)
    acc.update(np.ones((2, 4, 4)), np.zeros((4, 4), bool))
    acc.update(np.full((2, 4, 4), np.nan))
    with pytest.raises(InputError, match="no valid pixel"):
        acc.finish("uint16")
    with pytest.raises(ValueError, match=r"\(2, h, w\)"):
        acc.update(np.ones((3, 4, 4)))


def test_round_trip_and_validation():
    norm = Normalization([1.0, 2.0], [0.5, 0.25], "uint16", "measured", (0.0, 9.0), [[0.0, 8.0], [1.0, 7.0]])
    assert Normalization.from_dict(json.loads(json.dumps(norm.to_dict()))) == norm
    with pytest.raises(ModelError, match="std > 0"):
        Normalization.from_dict({**norm.to_dict(), "std": [1.0, 0.0]})
    with pytest.raises(ModelError, match="convention"):
        Normalization.from_dict({**norm.to_dict(), "convention": "minmax"})
    with pytest.raises(ModelError, match="dtype"):
        Normalization.from_dict({**norm.to_dict(), "dtype": "uint9"})
    with pytest.raises(ModelError, match="percentiles"):
        Normalization.from_dict({**norm.to_dict(), "percentiles": [[0.0, 1.0]]})
    with pytest.raises(ModelError, match="missing"):
        Normalization.from_dict({"mean": [1.0]})


def test_legacy_cards_read_by_their_mean():
    old_8bit = legacy_normalization(*imagenet_mean_std(4))
    assert (old_8bit.convention, old_8bit.dtype, old_8bit.percentiles) == ("imagenet-8bit", "uint8", None)
    old = legacy_normalization([128.0] * 3, [64.0] * 3)
    assert (old.convention, old.dtype, old.value_range) == ("measured", "", None)
    card = type("Card", (), {"mean": [1.0], "std": [2.0], "normalization": None})()
    assert normalization_of(card) == legacy_normalization([1.0], [2.0])
    card.normalization = Normalization([3.0], [1.0], "int16", "measured").to_dict()
    assert normalization_of(card).dtype == "int16"


# ----------------------------------------------------------------------------- check_input


@pytest.fixture(scope="module")
def trained():
    """(8-bit record, uint16 record) measured on realistic value ranges."""
    rng = np.random.default_rng(5)
    acc8, acc16 = StatsAccumulator(3), StatsAccumulator(3)
    for _ in range(4):
        acc8.update(rng.normal(110, 30, (3, 64, 64)).clip(0, 255).round())
        acc16.update(rng.normal(1200, 300, (3, 64, 64)).clip(0, 4000).round())
    return acc8.finish("uint8"), acc16.finish("uint16")


def test_refuses_a_uint16_scene_on_an_8bit_model(trained, tmp_path):
    rng = np.random.default_rng(6)
    path = write_raster(tmp_path / "before.tif", rng.integers(0, 3001, (3, 64, 64)).astype(np.uint16))
    x, v = read_valid(path)
    x[0, 0, 0] = 3000
    msg = "before.tif is uint16 with values up to 3000; the model was trained on 8-bit imagery (0–255): rescale to 8 bit or train on this imagery"
    with pytest.raises(InputError) as err:
        check_input(trained[0], "uint16", x, v, "before.tif")
    assert str(err.value) == msg


def test_refuses_float_reflectance_on_an_8bit_model(trained, tmp_path):
    path = write_raster(tmp_path / "after.tif", np.random.default_rng(7).random((3, 64, 64), dtype=np.float32))
    x, v = read_valid(path)
    with pytest.raises(InputError, match="after.tif is float32 with values in 0.*8-bit.*constant"):
        check_input(trained[0], "float32", x, v, "after.tif")
    legacy = legacy_normalization(*imagenet_mean_std(3))  # an old card with ImageNet stats too
    with pytest.raises(InputError, match="constant"):
        check_input(legacy, "float32", x, v, "after.tif")


def test_refuses_values_on_another_scale_on_a_measured_model(trained):
    refl = np.random.default_rng(8).random((3, 32, 32))
    with pytest.raises(InputError, match="values only up to .* uint16 imagery .* times larger"):
        check_input(trained[1], "float32", refl, None, "after.tif")
    with pytest.raises(InputError, match="times smaller"):
        check_input(trained[1], "uint32", refl * 1e6, None, "after.tif")


def test_matching_data_passes_and_shifted_data_warns(trained):
    rng = np.random.default_rng(9)
    assert check_input(trained[0], "uint8", rng.normal(110, 30, (3, 64, 64)).clip(0, 255).round(), None, "a.tif") == []
    same = rng.normal(1200, 300, (3, 64, 64)).clip(0, 4000).round()
    assert check_input(trained[1], "uint16", same, None, "a.tif") == []
    shifted = same.copy()
    shifted[2] += 2500
    warnings = check_input(trained[1], "uint16", shifted, None, "a.tif")
    assert len(warnings) == 1 and "band 3 median" in warnings[0] and "band 1" not in warnings[0]
    bright = rng.normal(245, 5, (3, 64, 64)).clip(0, 255).round()  # training p99 ~ 180
    assert "unlike the training imagery" in check_input(trained[0], "uint8", bright, None, "a.tif")[0]


def test_another_dtype_with_fitting_values_warns(trained):
    x = np.random.default_rng(10).normal(110, 30, (3, 32, 32)).clip(0, 255).astype(np.float32)
    warnings = check_input(trained[0], "float32", x, None, "b.tif")
    assert len(warnings) == 1 and "b.tif is float32, the model was trained on uint8" in warnings[0]
    y = np.random.default_rng(11).normal(1200, 300, (3, 32, 32)).clip(0, 4000)
    assert "trained on uint16" in check_input(trained[1], "float32", y, None, "b.tif")[0]


def test_an_all_nodata_sample_warns(trained):
    x = np.full((3, 16, 16), 5000.0)
    warnings = check_input(trained[0], "uint16", x, np.zeros((16, 16), bool), "b.tif")
    assert warnings == ["b.tif: no valid pixel in the sample; its values could not be checked against the model's training data"]
    with pytest.raises(InputError, match="has 2 band"):
        check_input(trained[0], "uint8", x[:2], None, "b.tif")


def test_sample_windows_spread_over_the_area():
    wins = sample_windows(1000, 600)
    assert len(wins) == 9 and wins[0] == (0, 0, 256, 256) and wins[-1] == (744, 344, 256, 256)
    assert sample_windows(27, 19) == [(0, 0, 27, 19)]
    assert len(sample_windows(300, 100)) == 3


def test_sample_windows_start_on_tile_borders():
    # a 2048 px area of a raster tiled in 256 px blocks: each window is exactly one tile
    wins = sample_windows(2048, 2048, blocks=(256, 256, 0, 0))
    assert len(wins) == 9
    assert all(c % 256 == 0 and r % 256 == 0 and w == h == 256 for c, r, w, h in wins)
    assert {c for c, _, _, _ in wins} == {0, 768, 1792}  # still spread: first, middle, last tile
    # an area starting at col 100, row 300 of the raster: the borders are at raster multiples of 256
    wins = sample_windows(1000, 600, blocks=(256, 256, 100, 300))
    assert all((100 + c) % 256 == 0 or c == 0 for c, _, _, _ in wins)
    assert all((300 + r) % 256 == 0 or r == 0 for _, r, _, _ in wins)
    assert all(0 <= c <= 1000 - 256 and 0 <= r <= 600 - 256 for c, r, _, _ in wins)
    # strips (one row per block, the whole width): nothing to align, the same spread
    assert sample_windows(1000, 600, blocks=(1000, 1, 0, 0)) == sample_windows(1000, 600)


def test_module_does_not_import_torch():
    code = "import sys, engine.normalization; assert 'torch' not in sys.modules and 'rasterio' not in sys.modules"
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)
