"""Writing the prediction GeoTIFF row by row (band 1 class, band 2 confidence, 255 = nodata).

The file is tiled (:data:`TILE` px), deflate-compressed and written in whole tile rows
(:class:`RowWriter`), so memory holds one tile row, never the raster. The writer always
writes to the temporary path its :class:`~engine.outputs.OutputSet` gives;
:func:`open_output` turns a GDAL failure (disk full, a file system that refuses) into
one :class:`~engine.errors.InputError` naming the final file.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..errors import InputError
from ..schema import NODATA_CLASS, ClassSchema
from ..tiling import NODATA, RowBlock

#: Output tile side (pixels); rows are written in whole tile rows.
TILE = 256


def raster_profile(width: int, height: int, crs, transform, sparse: bool = False) -> dict:
    """GDAL creation options of the prediction GeoTIFF (``sparse`` for rank part files)."""
    profile = dict(driver="GTiff", width=width, height=height, count=2, dtype="uint8", crs=crs, transform=transform,
                   nodata=NODATA, tiled=True, blockxsize=TILE, blockysize=TILE, compress="deflate", interleave="pixel",
                   BIGTIFF="IF_SAFER", ZLEVEL=1)  # level 1: a quarter of level 6's CPU for ~12 % more bytes
    if sparse:
        profile["SPARSE_OK"] = "TRUE"
    return profile


def style_output(dst, schema: ClassSchema, card) -> None:
    """Colour table, band names and the schema as tags."""
    cmap = {c.id: (*c.rgb(), 255) for c in schema.classes}
    cmap[NODATA_CLASS] = (0, 0, 0, 0)
    dst.write_colormap(1, cmap)
    dst.set_band_description(1, "class")
    dst.set_band_description(2, "confidence (%)")
    dst.update_tags(masktalk_schema=json.dumps(schema.to_dict(), ensure_ascii=False),
                    masktalk_backbone=str(getattr(card, "backbone", "")))
    dst.update_tags(1, classes=", ".join(f"{c.id}={c.name}" for c in schema.classes) + ", 255=nodata")


def write_error(final: Path, exc: Exception) -> InputError:
    """One line for a GDAL failure while writing the output that will be ``final``."""
    reason = str(exc.__cause__ or exc).splitlines()[0].rstrip(". ")
    return InputError(f"cannot write {final}: {reason}. Check the free space and permissions of {final.parent}, "
                      "or choose another --out; nothing was replaced")


@contextlib.contextmanager
def open_output(tmp: Path, final: Path, profile: dict, schema: ClassSchema, card, cache_mb: int) -> Iterator:
    """Open ``tmp`` for writing, styled; failures to create or close it name ``final``.

    Raises:
        InputError: GDAL could not create or finish the file.
    """
    import rasterio
    from rasterio.errors import RasterioError

    with rasterio.Env(GDAL_CACHEMAX=cache_mb * 2**20):
        try:
            dst = rasterio.open(tmp, "w", **profile)
            style_output(dst, schema, card)
        except RasterioError as exc:
            raise write_error(final, exc) from None
        ok = False
        try:
            yield dst
            ok = True
        finally:
            try:
                dst.close()
            except RasterioError as exc:
                if ok:
                    raise write_error(final, exc) from None


class RowWriter:
    """Buffers finished rows and writes them in whole tile rows (and counts classes).

    Args:
        dst: the open dataset.
        height, width: raster size.
        final: the output's final path (for messages).
        sparse: leave all-nodata tile rows unwritten (part files of a sharded run).
    """

    def __init__(self, dst, height: int, width: int, final: Path, sparse: bool = False) -> None:
        self.dst, self.height, self.width, self.final, self.sparse = dst, height, width, final, sparse
        self.blocks: list[RowBlock] = []
        self.buffered = 0
        self.next_row = 0
        self.counts = np.zeros(256, np.int64)

    def add(self, blocks: Sequence[RowBlock]) -> None:
        for b in blocks:
            self.blocks.append(b)
            self.buffered += len(b.classes)
        if not self.buffered:
            return
        end = self.next_row + self.buffered
        if end >= self.height:
            self._write(self.buffered)
        else:
            n = (end // TILE) * TILE - self.next_row
            if n > 0:
                self._write(n)

    def _write(self, n: int) -> None:
        from rasterio.windows import Window

        cls = np.concatenate([b.classes for b in self.blocks])
        conf = np.concatenate([b.confidence for b in self.blocks])
        out_c, out_f = cls[:n], conf[:n]
        rest = len(cls) - n
        self.blocks = [RowBlock(self.next_row + n, cls[n:], conf[n:])] if rest else []
        self.buffered = rest
        self.counts += np.bincount(out_c.ravel(), minlength=256)
        if not (self.sparse and (out_c == NODATA).all()):
            from rasterio.errors import RasterioError

            try:
                self.dst.write(np.stack([out_c, out_f]), window=Window(0, self.next_row, self.width, n))
            except RasterioError as exc:
                raise write_error(self.final, exc) from None
        self.next_row += n

    @property
    def complete(self) -> bool:
        return self.next_row == self.height
