"""The region to predict on *before*'s grid, and the checks made before any chip is read.

:func:`plan_region` opens the pair once and settles where the output lies: all of
*before*, the ``--extent`` box, the bounding box of the ``--aoi`` polygons, or where both
overlap. It checks a sample of both dates against the model's training values
(:func:`check_values`); after the prediction :func:`check_coverage` refuses a result
without one valid pixel (all nodata) and warns when very few pixels had data.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..errors import InputError
from .reader import AoiMask, read_window

#: Below this share of valid pixels in the region, the log warns.
FEW_VALID = 0.01


@dataclasses.dataclass(frozen=True)
class Region:
    """The output's pixels: a window of *before*'s grid and its georeferencing.

    Attributes:
        window: the region on *before*'s grid (integer offsets and size).
        crs, transform: the output's CRS and affine transform (of the window).
        aoi: the AOI polygons as a mask function, or None.
    """

    window: object
    crs: object
    transform: object
    aoi: AoiMask | None = None

    @property
    def origin(self) -> tuple[int, int]:
        return int(self.window.row_off), int(self.window.col_off)

    @property
    def width(self) -> int:
        return int(self.window.width)

    @property
    def height(self) -> int:
        return int(self.window.height)


def plan_region(config, card) -> Region:
    """Open the pair and settle the region (extent, AOI).

    Raises:
        InputError: unreadable inputs, or an extent or AOI outside *before*.
    """
    import rasterio
    from rasterio.windows import Window

    from ..raster import open_pair

    with open_pair(config.before, config.after, bands=int(card.in_bands)) as pair:
        win = Window(0, 0, pair.width, pair.height)
        if config.extent is not None:
            win = _extent_window(pair, config)
        aoi = None
        if config.aoi:
            win, aoi = _aoi_window(pair, config, win)
        return Region(win, pair.crs, rasterio.windows.transform(win, pair.transform), aoi)


def _extent_window(pair, config):
    from ..raster import window_of_bounds

    win = window_of_bounds(pair, config.extent)
    if win is None:
        b = pair.before.bounds
        raise InputError(f"--extent {config.extent} does not overlap {Path(config.before).name}, which covers "
                         f"({b.left:.6g}, {b.bottom:.6g}, {b.right:.6g}, {b.top:.6g}) in {pair.crs}")
    return win


def _aoi_window(pair, config, win):
    """The region within the AOI's bounding box, and the AOI mask."""
    from rasterio.windows import WindowError, intersection

    # raster.py's reader of polygon layers (reprojection, empty layers, unknown layers)
    from ..raster import Grid, _geoms_window, _read_geoms

    grid = Grid(pair.crs, pair.transform, pair.width, pair.height)
    geoms = _read_geoms(config.aoi, config.aoi_layer, grid, "AOI")
    if not geoms:
        raise InputError(f"--aoi {config.aoi} has no polygons; draw the area to predict, or leave --aoi out")
    aoi_win = _geoms_window(geoms, grid, config.aoi, "AOI")
    try:
        inner = intersection(win, aoi_win)
    except WindowError:
        inner = None
    if inner is None or inner.width < 1 or inner.height < 1:
        raise InputError(f"--aoi {config.aoi} and --extent {config.extent} do not overlap; give an extent around the AOI or leave one out")
    return inner, AoiMask([g for g, _ in geoms], pair.transform)


class ValueCheck:
    """:func:`check_values` in a thread of its own, while the runtime starts and chips are read.

    The check reads 9 windows of both dates (a third of a second on a 2048 px scene), which
    is time the main thread would otherwise wait alone. Call :meth:`result` before anything
    is committed (and between batches to stop early): it re-raises the check's refusal.
    """

    def __init__(self, config, card, region: Region, progress) -> None:
        import threading

        self._error: BaseException | None = None
        self._args = (config, card, region, progress)
        self._thread = threading.Thread(target=self._run, name="masktalk-check-values", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from ..raster import open_pair

        config, card, region, progress = self._args
        try:
            with open_pair(config.before, config.after, bands=int(card.in_bands)) as pair:
                check_values(pair, region.window, card, progress)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self._error = exc

    def failed(self) -> bool:
        return not self._thread.is_alive() and self._error is not None

    def result(self) -> None:
        """Wait for the check; raise what it raised (an :class:`InputError` refusing the values)."""
        self._thread.join()
        if self._error is not None:
            raise self._error


def check_values(pair, win, card, progress) -> None:
    """Check a few windows of both dates against the model's training values.

    Reads up to 9 windows of 256 px spread over ``win`` (the output region; starts on
    *before*'s tile borders, see :func:`~engine.normalization.sample_windows`) and runs
    :func:`engine.normalization.check_input` on each date; warnings go to
    ``progress.log``, an :class:`InputError` (meaningless result) propagates.
    """
    from rasterio.windows import Window

    from ..normalization import check_input, normalization_of, sample_windows

    norm = normalization_of(card)
    c0, r0 = int(win.col_off), int(win.row_off)
    bh, bw = pair.before.block_shapes[0]
    windows = sample_windows(int(win.width), int(win.height), blocks=(bw, bh, c0, r0))
    reads = [read_window(pair, Window(c0 + c, r0 + r, w, h)) for c, r, w, h in windows]
    valid = np.concatenate([v.reshape(-1) for _, _, v in reads])
    for k, (path, ds) in enumerate(((pair.before_path, pair.before), (pair.after_path, pair.after))):
        sample = np.concatenate([r[k].reshape(r[k].shape[0], -1) for r in reads], axis=1)
        for message in check_input(norm, ds.dtypes[0], sample, valid, Path(path).name):
            progress.log(message, "warning")


def check_coverage(valid_px: int, region: Region, config, progress) -> None:
    """Refuse a result without a valid pixel; warn when under 1 % of the region had data.

    Raises:
        InputError: no pixel of the region has data in both dates (and inside the AOI).
    """
    total = region.width * region.height
    names = f"{Path(config.before).name} and {Path(config.after).name}"
    where = "inside the AOI" if config.aoi else ("inside --extent" if config.extent else "")
    if valid_px == 0:
        raise InputError(
            f"no pixel {where + ' ' if where else ''}has data in both {names}: they are nodata there (or do not overlap), "
            "so there is nothing to predict and nothing was written. Check the nodata value of the rasters, the extent or AOI"
        )
    if valid_px < FEW_VALID * total:
        progress.log(f"only {valid_px / total:.2%} of the {region.width} x {region.height} px region has data in both {names} "
                     f"{where}; the rest is nodata (255) in the output".replace("  ", " "), "warning")
