"""Window maths: coverage, blending weights, streaming blend (numpy only)."""

import numpy as np
import pytest

from engine.errors import InputError
from engine.tiling import (
    NODATA,
    PROB_SCALE,
    WEIGHT_SCALE,
    StreamingBlender,
    blend_weights,
    caption_grid,
    chip_grid,
    classify,
    finalize,
    merge_partials,
    ramp,
    shard_rows,
)


def _coverage(grid):
    cover = np.zeros((grid.height, grid.width), np.int32)
    for i, j in grid.indices():
        w = grid.window(i, j).clip(grid.height, grid.width)
        cover[w.row_off : w.row_end, w.col_off : w.col_end] += 1
    return cover


@pytest.mark.parametrize(
    "height,width,chip,overlap,shift",
    [(100, 70, 128, 16, 0), (300, 301, 128, 16, 0), (257, 511, 64, 32, 0), (256, 256, 64, 0, 0), (200, 333, 64, 8, 32)],
)
def test_every_pixel_covered_at_most_twice_per_axis(height, width, chip, overlap, shift):
    grid = chip_grid(height, width, chip, overlap, shift)
    cover = _coverage(grid)
    assert cover.min() >= 1
    assert cover.max() <= 4
    # chips never start after the region and the last one reaches its end
    assert grid.row_starts[0] <= 0 and grid.col_starts[0] <= 0
    assert grid.row_starts[-1] + chip >= height and grid.col_starts[-1] + chip >= width
    # no chip wholly outside the region
    assert all(s < height for s in grid.row_starts) and all(s + chip > 0 for s in grid.row_starts)


def test_raster_smaller_than_chip_is_one_chip():
    grid = chip_grid(40, 25, 128, 16)
    assert len(grid) == 1
    assert _coverage(grid).min() == 1


def test_overlap_cost_is_small_at_defaults():
    # a 2048 px scene with 512 px chip centres and 32 px of overlap: 4 x 4 chips of 544 px
    grid = chip_grid(2048, 2048, 544, 32)
    assert (grid.n_rows, grid.n_cols) == (4, 4)


def test_bad_overlap_and_sizes_are_input_errors():
    with pytest.raises(InputError, match="overlap"):
        chip_grid(100, 100, 64, 40)
    with pytest.raises(InputError, match="empty"):
        chip_grid(0, 100, 64, 8)


def test_ramps_of_neighbours_sum_to_one_on_the_overlap():
    chip, overlap = 64, 16
    r = ramp(chip, overlap)
    assert r.min() > 0 and r.max() == 1
    stride = chip - overlap
    np.testing.assert_allclose(r[stride:] + r[:overlap], 1.0, atol=1e-12)
    w = blend_weights(chip, overlap)
    assert w.shape == (chip, chip) and w.dtype == np.float32
    np.testing.assert_allclose(w, w.T)


def _blend(grid, K, fn, chips=None):
    """Run a blender with probabilities from fn(window) -> (K, chip, chip) float in 0..1."""
    blender = StreamingBlender(grid, K, chips=chips)
    cls = np.full((grid.height, grid.width), 77, np.uint8)
    conf = np.full((grid.height, grid.width), 77, np.uint8)
    rows = []
    for block in blender.pop_ready():
        rows.append(block)
    for i, j in chips if chips is not None else grid.indices():
        p = np.rint(fn(grid.window(i, j)) * PROB_SCALE).astype(np.int32)
        rows.extend(blender.add(i, j, p))
    assert blender.done
    for b in rows:
        cls[b.row_off : b.row_off + len(b.classes)] = b.classes
        conf[b.row_off : b.row_off + len(b.classes)] = b.confidence
    return cls, conf, rows, blender


def _smooth_field(K, H, W):
    yy, xx = np.mgrid[0:H, 0:W]
    return np.stack([np.sin(xx / 17.0 + k) + np.cos(yy / 23.0 - k) for k in range(K)])


def test_blend_of_a_global_field_is_exact_and_rows_are_contiguous():
    """Chips cut from one probability field blend back to that field: no seams."""
    H, W, K = 150, 130, 3
    grid = chip_grid(H, W, 48, 16)
    field = _smooth_field(K, H + 200, W + 200)  # padded so chips outside read something
    probs = np.exp(field) / np.exp(field).sum(0)

    def fn(win):
        return probs[:, win.row_off + 100 : win.row_end + 100, win.col_off + 100 : win.col_end + 100]

    cls, conf, rows, _ = _blend(grid, K, fn)
    truth = probs[:, 100 : 100 + H, 100 : 100 + W]
    assert (cls == truth.argmax(0)).mean() > 0.999
    np.testing.assert_allclose(conf, np.rint(truth.max(0) * 100), atol=1)
    # row blocks are contiguous, top to bottom, and cover the region once
    offs = [b.row_off for b in rows]
    assert offs == sorted(offs) and offs[0] == 0
    assert sum(len(b.classes) for b in rows) == H


def test_nodata_and_skipped_chips_give_nodata():
    H, W, K = 70, 90, 2
    grid = chip_grid(H, W, 32, 8)
    blender = StreamingBlender(grid, K)
    out = np.full((H, W), 77, np.uint8)
    blocks = blender.pop_ready()
    for i, j in grid.indices():
        if (i, j) == (0, 0):
            blocks += blender.skip(i, j)
            continue
        p = np.zeros((K, 32, 32), np.int32)
        p[1] = PROB_SCALE
        valid = np.ones((32, 32), bool)
        valid[:, :8] = False  # the first 8 columns of every chip are nodata
        blocks += blender.add(i, j, p, valid)
    for b in blocks:
        out[b.row_off : b.row_off + len(b.classes)] = b.classes
    assert set(np.unique(out)) <= {1, NODATA}
    # pixels only chip (0,0) covers are nodata
    assert out[0, 0] == NODATA
    win = grid.window(1, 1)
    assert out[win.row_off + 10, win.col_off + 10] == 1
    # chips of column 0 start at -4: their nodata columns 0..3 have no other chip; the
    # nodata columns of later chips lie in the overlap, where the left chip is valid
    assert (out[40, :4] == NODATA).all() and (out[40, 4:] == 1).all()


def test_sharded_blend_equals_single_blend_exactly():
    H, W, K = 120, 100, 4
    grid = chip_grid(H, W, 40, 12)
    rng = np.random.default_rng(0)
    chip_probs = {ij: rng.dirichlet(np.ones(K), size=(40, 40)).transpose(2, 0, 1) for ij in grid.indices()}

    def fn_for(ij_iter):
        it = iter(ij_iter)

        def fn(win):
            return chip_probs[next(it)]

        return fn

    single, single_conf, _, _ = _blend(grid, K, fn_for(grid.indices()))
    out = np.full((H, W), NODATA, np.uint8)
    partials = []
    for rank in range(3):
        chips = list(grid.indices(shard_rows(grid.n_rows, 3, rank)))
        cls, _, _, blender = _blend(grid, K, fn_for(chips), chips=chips)
        out = np.where(cls != NODATA, cls, out)
        partials.append(blender.partials())
    assert any(partials)
    merged = merge_partials(partials)
    from engine.tiling import finalize

    probe = StreamingBlender(grid, K)
    for (ci, cj), (acc, wsum) in merged.items():
        win = probe.cell_window(ci, cj)
        c, _ = finalize(acc, wsum, (win.height, win.width))
        out[win.row_off : win.row_end, win.col_off : win.col_end] = c
    np.testing.assert_array_equal(out, single)


def test_memory_held_by_the_blender_is_bounded_by_chips_not_height():
    K = 4

    def peak(H):
        grid = chip_grid(H, 200, 48, 16)
        blender = StreamingBlender(grid, K)
        top = 0
        for i, j in grid.indices():
            blender.add(i, j, np.full((K, 48, 48), PROB_SCALE // K, np.int32))
            top = max(top, blender.live_bytes())
        return top

    assert peak(800) == peak(200)


def test_shard_rows_and_caption_grid():
    rows = [list(shard_rows(10, 3, r)) for r in range(3)]
    assert sum(rows, []) == list(range(10))
    assert list(shard_rows(1, 2, 1)) == []
    wins = caption_grid(100, 70, 32)
    area = sum(w.height * w.width for w in wins)
    assert area == 100 * 70 and wins[-1].height == 4 and wins[-1].width == 6


@pytest.mark.parametrize("threshold", [None, 0.3])
def test_single_chip_confidence_table_is_the_float_arithmetic(threshold):
    # cells covered by one chip take their confidence from a table: bitwise what the
    # weighted float path gives with a weight sum of 1, nodata where the weight is 0
    rng = np.random.default_rng(3)
    for k in (2, 4):
        acc = rng.integers(0, PROB_SCALE + 1, (k, 40, 50)).astype(np.int32)
        acc[:, 5, 5] = PROB_SCALE  # the ends of the table
        acc[:, 6, 6] = 0
        wsum = (rng.random((40, 50)) > 0.1).astype(np.int32)
        fast = finalize(acc, wsum, wsum.shape, threshold, single=True)
        slow = finalize(acc, wsum, wsum.shape, threshold)
        np.testing.assert_array_equal(fast[0], slow[0])
        np.testing.assert_array_equal(fast[1], slow[1])
        assert (fast[1][wsum == 0] == NODATA).all() and fast[1][wsum == 1].max() <= 100


@pytest.mark.parametrize("threshold", [0.0, 0.1, 0.37, 0.5, 1.0])
def test_binary_threshold_decides_as_the_general_path(threshold):
    # two classes take a shortcut (class 1's share); a third class that is never probable
    # sends the same sums through the general path: same classes and confidences
    rng = np.random.default_rng(7)
    acc = rng.integers(0, 4 * PROB_SCALE * WEIGHT_SCALE // 2, (2, 60, 70)).astype(np.int32)
    acc[:, :4] = 1000  # ties: P(change) is exactly 0.5
    acc[0, 4:8], acc[1, 8:12] = 0, 0  # certain either way
    wsum = rng.integers(0, 4 * WEIGHT_SCALE, (60, 70)).astype(np.int32)
    three = np.concatenate([acc, np.zeros((1, 60, 70), np.int32)])
    for got, want in zip(finalize(acc, wsum, wsum.shape, threshold), finalize(three, wsum, wsum.shape, threshold)):
        np.testing.assert_array_equal(got, want)
    cls = classify(acc, threshold)
    assert (cls[:4] == (1 if threshold <= 0.5 else 0)).all()  # a tie at 0.5 counts as change
    assert (cls[4:8] == 1).all() and (cls[8:12] == (1 if threshold == 0 else 0)).all()


def test_a_raster_no_larger_than_the_chip_is_one_chip_without_padding():
    # the overlap hangs the first chip over the edge; where one chip covers an axis that
    # made two chips, both seeing padding instead of the raster's own pixels
    grid = chip_grid(256, 256, 256, 32)
    assert grid.row_starts == grid.col_starts == (0,)
    tall = chip_grid(300, 200, 320, 32)  # a chip larger than the raster: padded at the far edge only
    assert tall.row_starts == tall.col_starts == (0,)
    assert chip_grid(256, 257, 256, 32).col_starts[0] == -16  # larger than the chip: the usual grid
    assert chip_grid(256, 256, 256, 32, shift=8).row_starts[0] < 0  # a shifted grid stays shifted
