"""Prediction under ``torchrun``: each rank a block of chip rows, rank 0 assembles.

Each rank predicts a contiguous block of chip rows (:func:`engine.tiling.shard_rows`)
into a sparse part file ``.OUT.parts/rankN.tif`` plus the partly blended cells of its
boundary bands (``rankN.npz``). Rank 0 sums the boundary cells of all ranks (integers,
so the sum is order-free), finalises them, and writes the output row by row from the
part files and the cells: the single-process result, byte for byte. The parts folder is
removed on every rank's way out.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from ..runtime import Dist, barrier
from ..tiling import NODATA, finalize, merge_partials
from .writer import TILE, open_output, raster_profile


def parts_folder(out: Path) -> Path:
    """Where the ranks of a run writing ``out`` keep their parts."""
    return out.with_name(f".{out.name}.parts")


def save_partials(path: Path, partials: dict) -> None:
    """The boundary cells of one rank to an ``.npz`` file."""
    arrays = {}
    for (ci, cj), (acc, wsum) in partials.items():
        if acc is None:
            arrays[f"n_{ci}_{cj}"] = np.zeros(0, np.int8)
        else:
            arrays[f"a_{ci}_{cj}"] = acc
            arrays[f"w_{ci}_{cj}"] = wsum
    np.savez(path, **arrays)


def load_partials(path: Path) -> dict:
    """Read what :func:`save_partials` wrote."""
    out: dict = {}
    with np.load(path) as data:
        for key in data.files:
            kind, ci, cj = key.split("_")
            cell = (int(ci), int(cj))
            if kind == "n":
                out.setdefault(cell, (None, None))
            elif kind == "a":
                out[cell] = (data[key], data[f"w_{ci}_{cj}"])
    return out


def assemble(job, blender, dist: Dist, tmp: Path, progress) -> np.ndarray | None:
    """Merge the ranks' parts into ``tmp`` (rank 0; the others wait and get None).

    Args:
        job: the :class:`~engine.inference.predict.Job` (region, schema, card, config).
        blender: this rank's :class:`~engine.tiling.StreamingBlender`.
        dist: this process's place in the job.
        tmp: rank 0's temporary output path.
        progress: reporter.

    Returns:
        Class counts ``(256,)`` on rank 0, None elsewhere.
    """
    parts = parts_folder(job.final)
    save_partials(parts / f"rank{dist.rank}.npz", blender.partials())
    barrier(dist)
    if not dist.main:
        barrier(dist)  # wait until rank 0 has written the output
        return None
    try:
        cells = _merged_cells(parts, dist.world, blender, job.threshold)
        return _write_assembled(job, parts, dist.world, cells, tmp, progress)
    finally:
        shutil.rmtree(parts, ignore_errors=True)
        barrier(dist)


def _merged_cells(parts: Path, world: int, blender, threshold) -> list:
    merged = merge_partials(load_partials(parts / f"rank{r}.npz") for r in range(world))
    cells = []
    for (ci, cj), (acc, wsum) in merged.items():
        w = blender.cell_window(ci, cj)
        cls, conf = finalize(acc, wsum, (w.height, w.width), threshold)
        cells.append((w, cls, conf))
    return cells


def _write_assembled(job, parts: Path, world: int, cells: list, tmp: Path, progress) -> np.ndarray:
    import rasterio
    from rasterio.windows import Window

    r = job.region
    counts = np.zeros(256, np.int64)
    srcs = [rasterio.open(parts / f"rank{k}.tif") for k in range(world)]
    try:
        with open_output(tmp, job.final, raster_profile(r.width, r.height, r.crs, r.transform), job.schema, job.card, job.config.cache_mb) as dst:
            for r0 in range(0, r.height, TILE):
                progress.check()
                h = min(TILE, r.height - r0)
                win = Window(0, r0, r.width, h)
                cls, conf = _assembled_rows(srcs, cells, win)
                counts += np.bincount(cls.ravel(), minlength=256)
                dst.write(np.stack([cls, conf]), window=win)
                progress.report(0.95 + 0.01 * (r0 + h) / r.height, "assembling the ranks' parts")
    finally:
        for src in srcs:
            src.close()
    return counts


def _assembled_rows(srcs, cells, win) -> tuple[np.ndarray, np.ndarray]:
    r0, h, width = int(win.row_off), int(win.height), int(win.width)
    cls = np.full((h, width), NODATA, np.uint8)
    conf = np.full((h, width), NODATA, np.uint8)
    for src in srcs:
        pc, pf = src.read(window=win)
        m = pc != NODATA
        cls[m], conf[m] = pc[m], pf[m]
    for w, cc, cf in cells:
        a, b = max(w.row_off, r0), min(w.row_end, r0 + h)
        if a < b:
            cls[a - r0 : b - r0, w.col_off : w.col_end] = cc[a - w.row_off : b - w.row_off]
            conf[a - r0 : b - r0, w.col_off : w.col_end] = cf[a - w.row_off : b - w.row_off]
    return cls, conf
