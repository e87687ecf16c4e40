"""Inference over whole scenes: tiled, streamed, blended, written window by window.

:func:`predict` runs a change model over a *before*/*after* pair and writes a GeoTIFF on
*before*'s grid (or the part of it given by ``extent``):

- band 1, ``class``: uint8 class id with the schema's colour table, 255 = nodata;
- band 2, ``confidence``: uint8, the blended probability of that class in percent
  (0-100), 255 = nodata.

How it stays fast, seamless and memory-flat:

- chips come from :func:`engine.tiling.chip_grid` (every pixel covered); by default a
  chip is the model's training chip plus ``overlap`` pixels, so a 2048 px scene at a
  512 px training chip costs 4 x 4 chips of 544 px: 88 % of the pixels a model computes
  are output pixels;
- a background thread (several on CUDA) owns the rasterio datasets, reads and
  normalises batches ahead of the model (GDAL's block cache is capped, so reading does
  not grow with the raster);
- the model runs under ``torch.inference_mode``: fp32 on the CPU, autocast (bf16/fp16)
  and channels-last on CUDA; a CUDA out-of-memory error halves the batch and retries;
- :class:`engine.tiling.StreamingBlender` cross-fades overlapping chips and hands back
  finished rows; rows are written in whole tile rows to a tiled, compressed GeoTIFF
  under a temporary name that is renamed only when the file is complete. Memory holds
  a batch, the rows of the chips in flight and one overlap band -- never the raster.

Under ``torchrun`` (``WORLD_SIZE`` > 1) each rank predicts a contiguous block of chip
rows into its own sparse part file plus the partly blended cells of its boundary bands;
rank 0 merges them into the final GeoTIFF. Blending is done in integers, so the
result is the single-process result, byte for byte.

Heavy module (torch, rasterio): import it only where it is needed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import queue
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .config import JobConfig, check_choice, check_positive
from .errors import InputError, ModelError
from .progress import NullProgress, Progress, SubProgress
from .schema import NODATA_CLASS, ClassSchema
from .tiling import (
    NODATA,
    PROB_SCALE,
    ChipGrid,
    RowBlock,
    StreamingBlender,
    chip_grid,
    finalize,
    merge_partials,
    shard_rows,
)

log = logging.getLogger(__name__)

#: Output tile side (pixels); rows are written in whole tile rows.
TILE = 256
DEVICES = ("auto", "cpu", "cuda")


@dataclasses.dataclass(frozen=True)
class PredictConfig(JobConfig):
    """Settings of one prediction.

    Attributes:
        before: path of the first-date raster (defines the output grid).
        after: path of the second-date raster (aligned onto *before*'s grid).
        model: checkpoint folder, or a training run folder (its ``best/``).
        out: output GeoTIFF path.
        vectors: optional output GeoPackage (layers ``changes`` and ``captions``).
        chip: chip side in pixels; None = the model's training chip + ``overlap``,
            rounded up to the backbone's size multiple.
        overlap: pixels shared by neighbouring chips (blended), 0 .. chip/2.
        batch_size: chips per forward pass.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        extent: ``(xmin, ymin, xmax, ymax)`` in *before*'s CRS, or None = all of *before*.
        min_area: smallest change polygon kept, square metres (0 = no limit).
        min_pixels: smallest change polygon kept, pixels.
        readers: reading threads (0 = 1 on the CPU, 4 on CUDA).
        shift: offset of the chip grid in pixels (compare runs with other chip borders).
        cache_mb: GDAL block cache while reading and writing, MiB.
        caption_seed: seed of the template draw of the chip captions.
    """

    before: str = ""
    after: str = ""
    model: str = ""
    out: str = ""
    vectors: str | None = None
    chip: int | None = None
    overlap: int = 32
    batch_size: int = 4
    device: str = "auto"
    extent: tuple[float, float, float, float] | None = None
    min_area: float = 0.0
    min_pixels: int = 4
    readers: int = 0
    shift: int = 0
    cache_mb: int = 64
    caption_seed: int = 0

    def __post_init__(self) -> None:
        for name in ("before", "after", "out"):
            if not getattr(self, name):
                raise InputError(f"predict needs --{name}")
        if self.chip is not None:
            check_positive("chip", self.chip)
        check_positive("overlap", self.overlap, allow_zero=True)
        check_positive("batch_size", self.batch_size)
        check_positive("min_area", self.min_area, allow_zero=True)
        check_positive("min_pixels", self.min_pixels, allow_zero=True)
        check_positive("readers", self.readers, allow_zero=True)
        check_positive("shift", self.shift, allow_zero=True)
        check_positive("cache_mb", self.cache_mb)
        check_choice("device", self.device, DEVICES)
        if self.extent is not None:
            if len(self.extent) != 4:
                raise InputError(f"extent must be xmin,ymin,xmax,ymax; got {self.extent}")
            xmin, ymin, xmax, ymax = self.extent
            if not (xmin < xmax and ymin < ymax):
                raise InputError(f"extent {self.extent}: need xmin < xmax and ymin < ymax")
        if Path(self.out).suffix.lower() not in (".tif", ".tiff"):
            raise InputError(f"--out {self.out}: the prediction is a GeoTIFF; give a .tif path")
        if self.vectors and Path(self.vectors).suffix.lower() != ".gpkg":
            raise InputError(f"--vectors {self.vectors}: the change polygons are a GeoPackage; give a .gpkg path")


def parse_extent(text: str | None) -> tuple[float, float, float, float] | None:
    """``"xmin,ymin,xmax,ymax"`` -> tuple of floats (None passes through)."""
    if not text:
        return None
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 4:
        raise InputError(f"--extent {text!r}: expected four numbers xmin,ymin,xmax,ymax in the before raster's CRS")
    return values  # type: ignore[return-value]


# ----------------------------------------------------------------------------- helpers


def _schema_of(card) -> ClassSchema:
    schema = card.schema
    return schema if isinstance(schema, ClassSchema) else ClassSchema.from_dict(schema, source="model card")


def resolve_device(name: str):
    """``auto``/``cpu``/``cuda`` -> ``torch.device``; InputError for CUDA without a GPU."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA GPU is available to PyTorch here; use --device cpu or auto")
    return torch.device(name)


def default_chip(card, overlap: int, multiple: int) -> int:
    """The model's training chip plus the overlap, rounded up to ``multiple``."""
    return int(math.ceil((int(card.chip_size) + overlap) / multiple) * multiple)


def size_multiple(model) -> int:
    """Chip sides must be a multiple of this (the backbone's patch size or total stride)."""
    backbone = getattr(model, "backbone", None)
    return int(getattr(backbone, "size_multiple", 1) or 1)


@dataclasses.dataclass
class _Batch:
    seq: int
    chips: list[tuple[int, int]]
    before: np.ndarray | None  # (B, C, chip, chip) float32 normalised, invalid = 0
    after: np.ndarray | None
    valid: np.ndarray | None  # (B, chip, chip) bool
    skipped: list[tuple[int, int]]  # chips without a valid pixel (not in the arrays)
    read_s: float = 0.0


class _Reader:
    """Background threads that own the rasterio datasets and read batches in order.

    Each thread opens its own :class:`~engine.raster.RasterPair` (datasets are not
    thread-safe), takes batch numbers from a queue and leaves finished batches in a
    dictionary; :meth:`__iter__` yields them in order. At most ``prefetch`` batches are
    read ahead, which bounds memory.
    """

    def __init__(self, cfg: PredictConfig, bands: int, grid: ChipGrid, origin: tuple[int, int], chips, batch_size: int,
                 mean: np.ndarray, std: np.ndarray, threads: int, prefetch: int) -> None:
        self.cfg, self.bands, self.grid, self.origin = cfg, bands, grid, origin
        self.batches = [list(chips[k : k + batch_size]) for k in range(0, len(chips), batch_size)]
        self.mean, self.std = mean[:, None, None], std[:, None, None]
        self.prefetch = max(prefetch, threads)
        self._tasks: queue.Queue = queue.Queue()
        self._done: dict[int, Any] = {}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._next_submit = 0
        self._threads = [threading.Thread(target=self._work, name=f"masktalk-read-{k}", daemon=True) for k in range(threads)]
        for t in self._threads:
            t.start()
        for _ in range(min(self.prefetch, len(self.batches))):
            self._submit()

    def _submit(self) -> None:
        if self._next_submit < len(self.batches):
            self._tasks.put(self._next_submit)
            self._next_submit += 1

    def _work(self) -> None:
        from .raster import open_pair

        pair = None
        try:
            # GDAL's block cache size is process-wide: predict() caps it around the run.
            pair = open_pair(self.cfg.before, self.cfg.after, bands=self.bands)
            while not self._stop.is_set():
                seq = self._tasks.get()
                if seq is None:
                    break
                t0 = time.perf_counter()
                batch = self._read(pair, seq)
                batch.read_s = time.perf_counter() - t0
                with self._cond:
                    self._done[seq] = batch
                    self._cond.notify_all()
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            with self._cond:
                self._done[-1] = exc
                self._cond.notify_all()
        finally:
            if pair is not None:
                pair.close()

    def _read(self, pair, seq: int) -> _Batch:
        from rasterio.windows import Window as RWindow

        chips = self.batches[seq]
        bs, as_, vs, kept, skipped = [], [], [], [], []
        r0, c0 = self.origin
        for i, j in chips:
            w = self.grid.window(i, j)
            b, a, v = pair.read(RWindow(c0 + w.col_off, r0 + w.row_off, w.width, w.height))
            # only pixels inside the region count (the blender ignores the rest anyway)
            if not v.any():
                skipped.append((i, j))
                continue
            b -= self.mean
            b /= self.std
            a -= self.mean
            a /= self.std
            b[:, ~v] = 0.0
            a[:, ~v] = 0.0
            bs.append(b)
            as_.append(a)
            vs.append(v)
            kept.append((i, j))
        if not kept:
            return _Batch(seq, [], None, None, None, skipped)
        return _Batch(seq, kept, np.stack(bs), np.stack(as_), np.stack(vs), skipped)

    def __iter__(self) -> Iterator[_Batch]:
        for seq in range(len(self.batches)):
            with self._cond:
                while seq not in self._done and -1 not in self._done:
                    self._cond.wait(timeout=0.5)
                if -1 in self._done:
                    exc = self._done.pop(-1)
                    raise exc
                batch = self._done.pop(seq)
            self._submit()
            yield batch

    def close(self) -> None:
        self._stop.set()
        for _ in self._threads:
            self._tasks.put(None)
        for t in self._threads:
            t.join(timeout=30)


class _Runner:
    """Runs the model on batches: inference mode, AMP + channels-last on CUDA, OOM retry."""

    def __init__(self, model, device, batch_size: int, amp: bool = True) -> None:
        import torch

        self.torch = torch
        self.device = device
        self.cuda = device.type == "cuda"
        self.batch_size = batch_size
        self.model = model.to(device).eval()
        self.amp_dtype = None
        if self.cuda:
            self.model = self.model.to(memory_format=torch.channels_last)
            if amp:
                self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    def _forward(self, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        torch = self.torch
        b = torch.from_numpy(before)
        a = torch.from_numpy(after)
        if self.cuda:
            b = b.pin_memory().to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            a = a.pin_memory().to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        ctx = torch.autocast("cuda", dtype=self.amp_dtype) if self.amp_dtype is not None else contextlib.nullcontext()
        with torch.inference_mode(), ctx:
            out = self.model(b, a)
            logits = out["logits"] if isinstance(out, dict) else out
            if tuple(logits.shape[-2:]) != tuple(before.shape[-2:]):
                logits = torch.nn.functional.interpolate(logits.float(), size=before.shape[-2:], mode="bilinear", align_corners=False)
            probs = torch.softmax(logits.float(), dim=1)
            q = torch.round(probs * PROB_SCALE).to(torch.int32)
        return q.cpu().numpy()

    def __call__(self, before: np.ndarray, after: np.ndarray, log_fn=None) -> np.ndarray:
        """Fixed-point probabilities ``(B, K, chip, chip)`` int32 for a normalised batch."""
        torch = self.torch
        n = before.shape[0]
        if n > self.batch_size:
            step = self.batch_size  # fixed here: a retry inside may lower self.batch_size
            return np.concatenate([self(before[k : k + step], after[k : k + step], log_fn) for k in range(0, n, step)])
        try:
            return self._forward(before, after)
        except torch.cuda.OutOfMemoryError:
            if not self.cuda or n == 1:
                raise ModelError(
                    "the GPU ran out of memory with one chip per batch; use a smaller --chip or --device cpu"
                ) from None
            torch.cuda.empty_cache()
            self.batch_size = max(1, n // 2)
            if log_fn:
                log_fn(f"CUDA out of memory with {n} chips per batch; retrying with {self.batch_size}", "warning")
            return self(before, after, log_fn)


class _RowWriter:
    """Buffers finished rows and writes them in whole tile rows (and counts classes)."""

    def __init__(self, dst, height: int, width: int, sparse: bool = False) -> None:
        self.dst, self.height, self.width, self.sparse = dst, height, width, sparse
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
            win = Window(0, self.next_row, self.width, n)
            self.dst.write(np.stack([out_c, out_f]), window=win)
        self.next_row += n


def _profile(width: int, height: int, crs, transform, sparse: bool = False) -> dict:
    profile = dict(
        driver="GTiff",
        width=width,
        height=height,
        count=2,
        dtype="uint8",
        crs=crs,
        transform=transform,
        nodata=NODATA,
        tiled=True,
        blockxsize=TILE,
        blockysize=TILE,
        compress="deflate",
        interleave="pixel",
        BIGTIFF="IF_SAFER",
    )
    if sparse:
        profile["SPARSE_OK"] = "TRUE"
    return profile


def _style_output(dst, schema: ClassSchema, card) -> None:
    cmap = {c.id: (*c.rgb(), 255) for c in schema.classes}
    cmap[NODATA_CLASS] = (0, 0, 0, 0)
    dst.write_colormap(1, cmap)
    dst.set_band_description(1, "class")
    dst.set_band_description(2, "confidence (%)")
    import json

    dst.update_tags(
        masktalk_schema=json.dumps(schema.to_dict(), ensure_ascii=False),
        masktalk_backbone=str(getattr(card, "backbone", "")),
    )
    dst.update_tags(1, classes=", ".join(f"{c.id}={c.name}" for c in schema.classes) + ", 255=nodata")


def _tmp_path(out: Path) -> Path:
    return out.with_name(out.name + ".incomplete")


def _dist_info() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    rank = int(os.environ.get("RANK", "0") or 0)
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    return rank, world, local


# ----------------------------------------------------------------------------- predict


def _check_values(pair, win, card, progress) -> None:
    """Check a few windows of both dates against the model's training values.

    Reads up to 9 windows of 256 px spread over ``win`` (the output region) and runs
    :func:`engine.normalization.check_input` on each date; warnings go to
    ``progress.log``, an :class:`InputError` (meaningless result) propagates.
    """
    from rasterio.windows import Window as RWindow

    from .normalization import check_input, normalization_of, sample_windows

    norm = normalization_of(card)
    c0, r0 = int(win.col_off), int(win.row_off)
    reads = [pair.read(RWindow(c0 + c, r0 + r, w, h)) for c, r, w, h in sample_windows(int(win.width), int(win.height))]
    valid = np.concatenate([v.reshape(-1) for _, _, v in reads])
    for k, (path, ds) in enumerate(((pair.before_path, pair.before), (pair.after_path, pair.after))):
        sample = np.concatenate([r[k].reshape(r[k].shape[0], -1) for r in reads], axis=1)
        for message in check_input(norm, ds.dtypes[0], sample, valid, Path(path).name):
            progress.log(message, "warning")


def load_model(path: str, device: str = "cpu"):
    """(model, card) from a checkpoint or training run folder."""
    from .checkpoint import load_checkpoint

    return load_checkpoint(path, device=device)


def predict(config: PredictConfig, progress: Progress | None = None, *, model=None, card=None) -> dict:
    """Predict change classes over a scene and write the GeoTIFF (and vectors).

    Args:
        config: the settings.
        progress: progress reporter and cancel flag.
        model: an already loaded model (``model(before, after)["logits"]`` ->
            ``(B, K, H, W)``); None loads ``config.model``.
        card: its model card (``in_bands``, ``mean``, ``std``, ``chip_size``, ``schema``,
            ``num_classes``); required with ``model``.

    Returns:
        ``{"raster", "vectors", "classes" {name: pixels}, "pixels_changed",
        "pixels_valid", "width", "height", "chips", "chips_skipped", "chip", "overlap",
        "batch_size", "device", "seconds", "megapixels_per_second", "read_seconds",
        "model_seconds", "world_size"}``.

    Raises:
        InputError: bad inputs (files, extent, chip size), or raster values the model
            cannot read (checked on a sample before anything is written, see
            :func:`engine.normalization.check_input`).
        ModelError: unusable checkpoint, or out of GPU memory at batch size 1.
        Cancelled: the user cancelled; no output file is left behind.
    """
    import rasterio
    import torch
    from rasterio.windows import Window as RWindow

    from .raster import open_pair, window_of_bounds

    progress = progress or NullProgress()
    t_start = time.perf_counter()
    rank, world, local_rank = _dist_info()
    distributed = world > 1
    if distributed and rank != 0:
        progress = NullProgress()  # one voice: rank 0 reports (the cancel flag still works)
    device = resolve_device(config.device)
    if distributed and device.type == "cuda":
        device = torch.device("cuda", local_rank)
    if model is None:
        if not config.model:
            raise InputError("predict needs --model: a checkpoint folder or a training run folder")
        progress.report(0.0, "loading the model")
        model, card = load_model(config.model, device="cpu")
    elif card is None:
        raise ValueError("predict(model=...) needs the model's card too")
    schema = _schema_of(card)
    num_classes = int(card.num_classes)
    mean = np.asarray(card.mean, np.float32)
    std = np.asarray(card.std, np.float32)
    if np.any(std <= 0):
        raise ModelError(f"model card has a non-positive std {list(std)}; the checkpoint is damaged")
    mult = size_multiple(model)
    chip = config.chip or default_chip(card, config.overlap, mult)
    if chip % mult:
        raise InputError(f"--chip {chip}: the {getattr(card, 'backbone', 'model')} backbone needs a multiple of {mult} px; try {int(math.ceil(chip / mult) * mult)}")
    out = Path(config.out)
    vectors = Path(config.vectors) if config.vectors else None
    if not out.parent.exists():
        raise InputError(f"--out {out}: folder {out.parent} does not exist; create it first")

    # Grid of the output: before's grid or the extent on it.
    with open_pair(config.before, config.after, bands=int(card.in_bands)) as pair:
        crs, base_transform = pair.crs, pair.transform
        full_w, full_h = pair.width, pair.height
        if config.extent is not None:
            win = window_of_bounds(pair, config.extent)
            if win is None:
                b = pair.before.bounds
                raise InputError(
                    f"--extent {config.extent} does not overlap {Path(config.before).name}, which covers "
                    f"({b.left:.6g}, {b.bottom:.6g}, {b.right:.6g}, {b.top:.6g}) in {crs}"
                )
        else:
            win = RWindow(0, 0, full_w, full_h)
        _check_values(pair, win, card, progress)
    origin = (int(win.row_off), int(win.col_off))
    width, height = int(win.width), int(win.height)
    transform = rasterio.windows.transform(win, base_transform)
    grid = chip_grid(height, width, chip, config.overlap, config.shift)
    rows = shard_rows(grid.n_rows, world, rank) if distributed else range(grid.n_rows)
    chips = list(grid.indices(rows))
    threads = config.readers or (4 if device.type == "cuda" else 1)
    spec = getattr(card, "backbone_config", None) or {}
    progress.log(f"model {config.model or '(in memory)'}: backbone {getattr(card, 'backbone', 'unknown')} "
                 f"(initialised from {spec.get('weights', 'unknown weights')}), "
                 f"stage {getattr(card, 'stage', '?')}, {schema.num_classes} classes")
    progress.log(
        f"predicting {width} x {height} px with {len(grid)} chips of {chip} px (overlap {config.overlap}) "
        f"on {device}" + (f", rank {rank}/{world}: {len(chips)} chips" if distributed else "")
    )

    if distributed:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo")
        parts = out.with_name(f".{out.name}.parts")
        parts.mkdir(exist_ok=True)
        target = parts / f"rank{rank}.tif"
    else:
        target = _tmp_path(out)
    for stale in (target,):
        if stale.exists():
            stale.unlink()

    runner = _Runner(model, device, config.batch_size)
    blender = StreamingBlender(grid, num_classes, chips=chips)
    reader = None
    n_done = n_skipped = 0
    read_s = model_s = 0.0
    ok = False
    try:
        with rasterio.Env(GDAL_CACHEMAX=config.cache_mb * 2**20):
            with rasterio.open(target, "w", **_profile(width, height, crs, transform, sparse=distributed)) as dst:
                _style_output(dst, schema, card)
                writer = _RowWriter(dst, height, width, sparse=distributed)
                writer.add(blender.pop_ready())
                reader = _Reader(config, int(card.in_bands), grid, origin, chips, runner.batch_size, mean, std, threads, prefetch=2 * threads)
                for batch in reader:
                    progress.check()
                    read_s += batch.read_s
                    for i, j in batch.skipped:
                        writer.add(blender.skip(i, j))
                    if batch.chips:
                        t0 = time.perf_counter()
                        probs = runner(batch.before, batch.after, progress.log)
                        model_s += time.perf_counter() - t0
                        for k, (i, j) in enumerate(batch.chips):
                            writer.add(blender.add(i, j, probs[k], batch.valid[k]))
                    n_done += len(batch.chips) + len(batch.skipped)
                    n_skipped += len(batch.skipped)
                    progress.report(0.95 * n_done / max(len(chips), 1), f"chip {n_done}/{len(chips)}")
                writer.add(blender.pop_ready())
                if not blender.done or writer.next_row != height:
                    raise RuntimeError(f"internal error: {writer.next_row} of {height} rows written")
                counts = writer.counts
        ok = True
    finally:
        if reader is not None:
            reader.close()
        if not ok:
            _remove(target)
            if distributed:
                # leave nothing that looks like a result; rank 0 also removes the parts
                pass

    if distributed:
        counts = _assemble(config, grid, blender, rank, world, width, height, crs, transform, schema, card, progress)
        if counts is None:  # ranks other than 0
            elapsed = time.perf_counter() - t_start
            return {"raster": str(out), "rank": rank, "world_size": world, "chips": len(chips), "seconds": round(elapsed, 3)}
    else:
        os.replace(target, out)

    valid_px = int(counts[:NODATA].sum())
    result = {
        "raster": str(out),
        "vectors": None,
        "classes": {c.name: int(counts[c.id]) for c in schema.classes},
        "pixels_changed": int(counts[1:NODATA].sum()),
        "pixels_valid": valid_px,
        "width": width,
        "height": height,
        "chips": len(grid),
        "chips_skipped": n_skipped,
        "chip": chip,
        "overlap": config.overlap,
        "batch_size": runner.batch_size,
        "device": str(device),
        "world_size": world,
        "read_seconds": round(read_s, 3),
        "model_seconds": round(model_s, 3),
    }
    if vectors is not None:
        from .vectorize import vectorize

        progress.report(0.96, "vectorising changes")
        result["vectors"] = str(
            vectorize(out, vectors, schema, chip_size=int(card.chip_size), min_area=config.min_area,
                      min_pixels=config.min_pixels, seed=config.caption_seed,
                      progress=SubProgress(progress, 0.96, 0.995, prefix="vectorising"))["path"]
        )
    elapsed = time.perf_counter() - t_start
    result["seconds"] = round(elapsed, 3)
    result["megapixels_per_second"] = round(width * height / 1e6 / max(elapsed, 1e-9), 4)
    progress.report(1.0, "done")
    return result


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _save_partials(path: Path, partials: dict) -> None:
    arrays = {}
    for (ci, cj), (acc, wsum) in partials.items():
        if acc is None:
            arrays[f"n_{ci}_{cj}"] = np.zeros(0, np.int8)
        else:
            arrays[f"a_{ci}_{cj}"] = acc
            arrays[f"w_{ci}_{cj}"] = wsum
    np.savez(path, **arrays)


def _load_partials(path: Path) -> dict:
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


def _assemble(config, grid, blender, rank, world, width, height, crs, transform, schema, card, progress):
    """Merge the ranks' part files and boundary cells into the output (rank 0)."""
    import rasterio
    import torch.distributed as dist
    from rasterio.windows import Window

    out = Path(config.out)
    parts = out.with_name(f".{out.name}.parts")
    _save_partials(parts / f"rank{rank}.npz", blender.partials())
    dist.barrier()
    if rank != 0:
        dist.barrier()  # wait until rank 0 has written the output
        return None
    tmp = _tmp_path(out)
    ok = False
    try:
        merged = merge_partials(_load_partials(parts / f"rank{r}.npz") for r in range(world))
        cells = []
        for (ci, cj), (acc, wsum) in merged.items():
            w = blender.cell_window(ci, cj)
            cls, conf = finalize(acc, wsum, (w.height, w.width))
            cells.append((w, cls, conf))
        counts = np.zeros(256, np.int64)
        with rasterio.Env(GDAL_CACHEMAX=config.cache_mb * 2**20):
            srcs = [rasterio.open(parts / f"rank{r}.tif") for r in range(world)]
            try:
                with rasterio.open(tmp, "w", **_profile(width, height, crs, transform)) as dst:
                    _style_output(dst, schema, card)
                    for r0 in range(0, height, TILE):
                        progress.check()
                        h = min(TILE, height - r0)
                        win = Window(0, r0, width, h)
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
                        counts += np.bincount(cls.ravel(), minlength=256)
                        dst.write(np.stack([cls, conf]), window=win)
                        progress.report(0.95 + 0.01 * (r0 + h) / height, "assembling the ranks' parts")
            finally:
                for src in srcs:
                    src.close()
        os.replace(tmp, out)
        ok = True
    finally:
        if not ok:
            _remove(tmp)
        shutil.rmtree(parts, ignore_errors=True)
        dist.barrier()
    return counts
