"""Prediction's chip reader: 8-bit, 16-bit and float pairs are normalised alike, bit for bit."""

import numpy as np
import pytest

from engine.inference.reader import ChipReader, ReadPlan
from engine.tiling import chip_grid

from .test_raster import write_tif


@pytest.mark.parametrize("dtype, top", [(np.uint8, 255), (np.uint16, 4000), (np.float32, 1.0)])
def test_chips_are_normalised_the_same_whatever_the_data_type(tmp_path, dtype, top):
    rng = np.random.default_rng(0)
    raw_b = (rng.random((3, 80, 72)) * top).astype(dtype)
    raw_a = (rng.random((3, 80, 72)) * top).astype(dtype)
    nodata = 0
    raw_a[:, 5:9, 10:20] = nodata  # nodata in the after date only
    b = write_tif(tmp_path / "b.tif", raw_b)
    a = write_tif(tmp_path / "a.tif", raw_a, nodata=nodata)
    mean = np.array([0.3, 0.5, 0.7], np.float32) * top
    std = np.array([0.2, 0.25, 0.1], np.float32) * top
    grid = chip_grid(80, 72, 64, 16)
    chips = list(grid.indices())
    reader = ChipReader(ReadPlan(str(b), str(a), 3, grid, (0, 0), mean, std), chips, 2, 1, prefetch=1)
    try:
        batches = list(reader)
    finally:
        reader.close()
    got = [(ij, bb, aa, vv) for batch in batches for ij, bb, aa, vv in zip(batch.chips, batch.before, batch.after, batch.valid)]
    assert [g[0] for g in got] == chips
    pad = 64  # chips of the grid hang over the raster's edges: pixels out there are invalid
    inside = np.pad(np.ones((80, 72), bool), pad)
    padded_b, padded_a = (np.pad(x, ((0, 0), (pad, pad), (pad, pad))) for x in (raw_b, raw_a))
    for (i, j), bb, aa, vv in got:
        r, c = grid.row_starts[i] + pad, grid.col_starts[j] + pad
        win = (slice(None), slice(r, r + 64), slice(c, c + 64))
        truth_valid = (padded_a[win] != nodata).all(0) & inside[win[1:]]
        np.testing.assert_array_equal(vv, truth_valid)
        for x, raw in ((bb, padded_b), (aa, padded_a)):
            want = (raw[win].astype(np.float32) - mean[:, None, None]) * (1.0 / std)[:, None, None].astype(np.float32)
            want = want * truth_valid
            np.testing.assert_array_equal(x, want)  # integers are read raw and cast in the subtraction
            assert x.dtype == np.float32 and (x[:, ~truth_valid] == 0).all()
