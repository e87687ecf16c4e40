""":func:`predict`: the orchestration of one prediction, step by step.

1. check the outputs against the inputs (:class:`~engine.outputs.OutputSet`) -- before
   anything is loaded or read;
2. load the model, settle the chip, the threshold and the region (extent, AOI), check
   the input values (:mod:`.region`);
3. pick the runtime (:mod:`.backend`: ONNX Runtime or PyTorch);
4. stream chips: read ahead (:mod:`.reader`), run the model, blend
   (:class:`~engine.tiling.StreamingBlender`), write rows (:mod:`.writer`) -- or, under
   ``torchrun``, a block of chip rows per rank, assembled by rank 0 (:mod:`.distributed`);
5. refuse a result without a valid pixel, vectorise, and commit every output together.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from pathlib import Path

import numpy as np

from ..outputs import OutputSet
from ..progress import NullProgress, Progress, SubProgress
from ..runtime import Dist, close_distributed, device_kind, init_distributed
from ..schema import ClassSchema
from ..tiling import NODATA, ChipGrid, StreamingBlender, chip_grid, shard_rows
from .config import PredictConfig
from .region import Region, ValueCheck, check_coverage, plan_region


@dataclasses.dataclass
class Job:
    """Everything settled before the first chip is read.

    ``model`` is loaded only when a runtime needs the PyTorch model (:meth:`torch_model`):
    a cached ONNX export runs from the card and the export alone, without PyTorch.
    """

    config: PredictConfig
    model: object | None
    card: object
    schema: ClassSchema
    checkpoint: Path | None
    device: str  # "cpu", "cuda" or "cuda:N"
    dist: Dist
    region: Region
    chip: int
    threshold: float | None
    grid: ChipGrid
    chips: list[tuple[int, int]]
    values: ValueCheck | None = None

    @property
    def final(self) -> Path:
        return Path(self.config.out)

    @property
    def threads(self) -> int:
        return self.config.readers or (4 if self.device.startswith("cuda") else 1)

    def torch_model(self):
        """The PyTorch model (loaded from the checkpoint on first use)."""
        if self.model is None:
            from .model import load_model

            self.model, _ = load_model(str(self.checkpoint), device="cpu")
        return self.model


@dataclasses.dataclass
class Stats:
    """What the streaming pass counted: classes ``(256,)``, skipped chips, seconds reading and in the model."""

    counts: np.ndarray | None = None
    done: int = 0
    skipped: int = 0
    read_s: float = 0.0
    model_s: float = 0.0


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
        "batch_size", "device", "runtime", "threshold", "tta", "seconds",
        "megapixels_per_second", "read_seconds", "model_seconds", "world_size"}``.

    Raises:
        InputError: an output that is an input, exists (without ``overwrite``), is a
            folder or cannot be written; bad inputs (files, extent, AOI, chip size);
            raster values the model cannot read; damaged tiles; no valid pixel.
            Nothing is left at the output paths then.
        ModelError: unusable checkpoint, or out of GPU memory at batch size 1.
        Cancelled: the user cancelled; nothing is left at the output paths.
    """
    from rasterio.errors import NotGeoreferencedWarning

    progress = progress or NullProgress()
    t_start = time.perf_counter()
    kind = device_kind(config.device)
    dist = init_distributed(kind)
    try:
        if not dist.main:
            progress = NullProgress()  # one voice: rank 0 reports (the cancel flag still works)
        with warnings.catch_warnings():  # plain images (PNG) have no georeferencing by design
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return _predict(config, progress, model, card, dist, kind, t_start)
    finally:
        close_distributed(dist)


def _predict(config: PredictConfig, progress, model, card, dist: Dist, kind: str, t_start: float) -> dict:
    from .backend import make_runner
    from .reader import ChipReader

    outputs = OutputSet({"--out": config.out, "--vectors": config.vectors}, _inputs(config), config.overwrite)
    job = _plan(config, model, card, dist, kind, progress)
    # the first batches are read while the runtime starts
    reader = ChipReader(_read_plan(job), job.chips, config.batch_size, job.threads, prefetch=2 * job.threads)
    try:
        runner = make_runner(config.runtime, job, progress.log, calibration=lambda: _calibration(job))
        with outputs:
            stats = _render(job, runner, reader, outputs.temp("--out"), progress)
            if not dist.main:
                return {"raster": config.out, "rank": dist.rank, "world_size": dist.world, "chips": len(job.chips),
                        "seconds": round(time.perf_counter() - t_start, 3)}
            check_coverage(int(stats.counts[:NODATA].sum()), job.region, config, progress)
            if "--vectors" in outputs:
                _vectorize(job, outputs, progress)
            outputs.commit()
    finally:
        reader.close()
    return _result(job, runner, stats, t_start, progress)


def _inputs(config: PredictConfig) -> dict:
    """Every file the prediction reads: no output may be one of them."""
    from .model import checkpoint_files

    inputs = {"--before": config.before, "--after": config.after, "--aoi": config.aoi}
    if config.model:
        inputs.update(checkpoint_files(config.model))
    return inputs


def _plan(config: PredictConfig, model, card, dist: Dist, kind: str, progress) -> Job:
    """Read the card, settle chip, threshold, region, grid and this rank's chips; start the value check."""
    from ..checkpoint import read_card, resolve_checkpoint
    from ..errors import InputError
    from .model import chip_size, describe, mean_std, schema_of, threshold_of

    checkpoint = None
    if model is None:
        if not config.model:
            raise InputError("predict needs --model: a checkpoint folder or a training run folder")
        checkpoint = resolve_checkpoint(config.model)
        card = read_card(checkpoint)
    elif card is None:
        raise ValueError("predict(model=...) needs the model's card too")
    mean_std(card)
    schema = schema_of(card)
    region = plan_region(config, card)
    chip = chip_size(config, model, card, max(region.height, region.width))
    grid = chip_grid(region.height, region.width, chip, config.overlap, config.shift)
    rows = shard_rows(grid.n_rows, dist.world, dist.rank) if dist.world > 1 else range(grid.n_rows)
    device = f"cuda:{dist.local_rank}" if kind == "cuda" and dist.world > 1 else kind
    job = Job(config, model, card, schema, checkpoint, device, dist, region, chip, threshold_of(config, card), grid, list(grid.indices(rows)))
    job.values = ValueCheck(config, card, region, progress)  # refusals surface before the first chip is written
    progress.log(describe(config, card, schema))
    progress.log(f"predicting {region.width} x {region.height} px with {len(grid)} chips of {chip} px (overlap {config.overlap}) "
                 f"on {device}, " + (f"change threshold {job.threshold:g}" if job.threshold is not None else "the most probable class")
                 + (f", rank {dist.rank}/{dist.world}: {len(job.chips)} chips" if dist.world > 1 else ""))
    return job


def _read_plan(job: Job):
    from .model import mean_std
    from .reader import ReadPlan

    mean, std = mean_std(job.card)
    c = job.config
    return ReadPlan(c.before, c.after, int(job.card.in_bands), job.grid, job.region.origin, mean, std, job.region.aoi)


def _calibration(job: Job, n: int = 8) -> list:
    """Up to ``n`` chips with data, spread over this rank's chips, one per batch (int8)."""
    from .reader import ChipReader

    step = max(1, len(job.chips) // (2 * n))
    reader = ChipReader(_read_plan(job), job.chips[::step], 1, 1, prefetch=2)
    out = []
    try:
        for batch in reader:
            if batch.chips:
                out.append((batch.before, batch.after, batch.valid))
            if len(out) >= n:
                break
    finally:
        reader.close()
    return out


def _render(job: Job, runner, reader, tmp: Path, progress) -> Stats:
    """Predict this process's chips into the output (or its part file, then assemble)."""
    import rasterio

    from .distributed import assemble, parts_folder

    distributed = job.dist.world > 1
    target = tmp
    if distributed:
        parts = parts_folder(job.final)
        parts.mkdir(exist_ok=True)
        target = parts / f"rank{job.dist.rank}.tif"
    blender = StreamingBlender(job.grid, int(job.card.num_classes), chips=job.chips, threshold=job.threshold)
    try:
        with rasterio.Env(GDAL_CACHEMAX=job.config.cache_mb * 2**20):
            stats = _stream(job, runner, reader, blender, target, distributed, progress)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    if distributed:
        stats.counts = assemble(job, blender, job.dist, tmp, progress)
    return stats


def _stream(job: Job, runner, reader, blender: StreamingBlender, target: Path, sparse: bool, progress) -> Stats:
    """Run, blend and write every chip of this process, in order, as ``reader`` delivers them.

    The model runs in worker threads, one per *lane* of the runner (ONNX Runtime's streams;
    PyTorch has one), each lane a whole batch ahead: while the lanes compute batches
    k+1..k+lanes, the main thread blends and writes batch k, so no core waits for another
    (ONNX Runtime and PyTorch release the GIL). Lanes run whole batches side by side
    rather than halves of one batch: a lane slowed by the reading thread delays only its
    own batch, where a split batch would leave the other core idle until its slower half
    ends (bench/runtime_speed.py on 2 cores, EfficientNet-Lite0 on ONNX Runtime: the
    pipeline went from 0.78 to 0.82 of the bare runtime, with the reader's cheaper
    normalisation). Memory holds ``lanes + 1`` batches of probabilities.
    """
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    from .writer import RowWriter, open_output, raster_profile

    r, stats = job.region, Stats()
    profile = raster_profile(r.width, r.height, r.crs, r.transform, sparse=sparse)
    lanes = runner.streams
    forward = runner.run_one if lanes > 1 else (lambda b, a: runner(b, a, progress.log))
    busy: list[tuple[float, float]] = []

    def run(batch):
        t0 = time.perf_counter()
        probs = forward(batch.before, batch.after) if batch.chips else None
        busy.append((t0, time.perf_counter()))
        return probs

    with open_output(target, job.final, profile, job.schema, job.card, job.config.cache_mb) as dst, \
            ThreadPoolExecutor(lanes, thread_name_prefix="masktalk-model") as pool:
        writer = RowWriter(dst, r.height, r.width, job.final, sparse=sparse)
        writer.add(blender.pop_ready())
        in_flight: deque = deque()
        for batch in reader:
            progress.check()
            stats.read_s += batch.read_s
            in_flight.append((batch, pool.submit(run, batch)))
            if len(in_flight) > lanes:  # every lane has its next batch: blend the oldest
                _blend(job, blender, writer, *in_flight.popleft(), stats, progress)
        while in_flight:
            _blend(job, blender, writer, *in_flight.popleft(), stats, progress)
        writer.add(blender.pop_ready())
        if not blender.done or not writer.complete:
            raise RuntimeError(f"internal error: {writer.next_row} of {r.height} rows written")
        stats.counts = writer.counts
    stats.model_s = _covered(busy)
    return stats


def _covered(intervals: list[tuple[float, float]]) -> float:
    """Seconds covered by at least one of ``(start, end)`` intervals (the model's time, whatever its lanes)."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def _blend(job: Job, blender: StreamingBlender, writer, batch, future, stats: Stats, progress) -> None:
    """Blend one batch's probabilities (waiting for them) and write the rows it finishes."""
    probs = future.result()
    if stats.done == 0 or job.values.failed():
        job.values.result()  # the input values were refused: before anything is blended or written
    for i, j in batch.skipped:
        writer.add(blender.skip(i, j))
    for k, (i, j) in enumerate(batch.chips):
        writer.add(blender.add(i, j, probs[k], batch.valid[k]))
    stats.done += len(batch.chips) + len(batch.skipped)
    stats.skipped += len(batch.skipped)
    progress.report(0.95 * stats.done / max(len(job.chips), 1), f"chip {stats.done}/{len(job.chips)}")


def _vectorize(job: Job, outputs: OutputSet, progress) -> None:
    from ..vectorize import write_vectors

    progress.report(0.96, "vectorising changes")
    c = job.config
    write_vectors(outputs.temp("--out"), outputs.temp("--vectors"), job.schema, chip_size=int(job.card.chip_size),
                  min_area=c.min_area, min_pixels=c.min_pixels, seed=c.caption_seed,
                  progress=SubProgress(progress, 0.96, 0.995, prefix="vectorising"), final=outputs.final("--vectors"))


def _result(job: Job, runner, stats: Stats, t_start: float, progress) -> dict:
    counts, r, c = stats.counts, job.region, job.config
    elapsed = time.perf_counter() - t_start
    progress.report(1.0, "done")
    return {
        "raster": str(c.out),
        "vectors": str(c.vectors) if c.vectors else None,
        "classes": {cls.name: int(counts[cls.id]) for cls in job.schema.classes},
        "pixels_changed": int(counts[1:NODATA].sum()),
        "pixels_valid": int(counts[:NODATA].sum()),
        "width": r.width,
        "height": r.height,
        "chips": len(job.grid),
        "chips_skipped": stats.skipped,
        "chip": job.chip,
        "overlap": c.overlap,
        "batch_size": runner.batch_size,
        "device": job.device,
        "runtime": runner.describe(),
        "threshold": job.threshold,
        "tta": c.tta,
        "world_size": job.dist.world,
        "read_seconds": round(stats.read_s, 3),
        "model_seconds": round(stats.model_s, 3),
        "seconds": round(elapsed, 3),
        "megapixels_per_second": round(r.width * r.height / 1e6 / max(elapsed, 1e-9), 4),
    }
