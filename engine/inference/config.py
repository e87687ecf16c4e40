"""Settings of one prediction (``python -m engine predict``), declared once.

:class:`PredictConfig` is the one declaration of the defaults: ``commands/predict.py``
takes them from here (:func:`default_of`), so ``--help`` shows what the engine uses.
Light module (standard library only).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..config import JobConfig, check_choice, check_positive
from ..errors import InputError

DEVICES = ("auto", "cpu", "cuda")
#: ``auto`` picks the fastest runtime available for the device and says which in the log.
RUNTIMES = ("auto", "torch", "onnx", "onnx-int8")
#: Test-time augmentation (``--tta``): the flips whose predictions are averaged, as the
#: array axes flipped (``-1`` left-right, ``-2`` up-down; ``()`` the chip as it is).
#: ``flips``: as it is, left-right, up-down and both (4x the model time).
TTA_FLIPS = {"none": ((),), "flips": ((), (-1,), (-2,), (-2, -1))}
TTA_MODES = tuple(TTA_FLIPS)
#: Change threshold of a two-class model whose card carries none (``card.extra["threshold"]``).
DEFAULT_THRESHOLD = 0.5


@dataclasses.dataclass(frozen=True)
class PredictConfig(JobConfig):
    """Settings of one prediction.

    Attributes:
        before: path of the first-date raster (defines the output grid).
        after: path of the second-date raster (aligned onto *before*'s grid).
        model: checkpoint folder, or a training run folder (its ``best/``).
        out: output GeoTIFF path.
        vectors: optional output GeoPackage (layers ``changes`` and ``captions``).
        overwrite: replace existing outputs (otherwise an existing output is refused
            before any work). Outputs are replaced only once all of them are complete.
        chip: chip side in pixels; None = ``max(training chip, 512) + overlap``, rounded
            up to the backbone's size multiple, at most the region's longer side
            (:func:`engine.inference.model.default_chip`).
        overlap: pixels shared by neighbouring chips (blended), 0 .. chip/2.
        batch_size: chips per forward pass.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        runtime: ``auto`` (ONNX Runtime on the CPU when installed, else PyTorch),
            ``torch``, ``onnx`` (fp32) or ``onnx-int8`` (quantised; falls back to fp32
            when its class agreement with fp32 is below 99.5 %).
        threshold: probability of change from which a pixel is changed, 0..1; None = the
            model card's ``extra["threshold"]``, else 0.5 for two classes and the most
            probable class for more (see :func:`engine.inference.model.threshold_of`).
            Two classes: changed when P(change) >= threshold; more classes: when
            1 - P(no change) >= threshold, then the most probable change class.
        tta: test-time augmentation, one of :data:`TTA_MODES`.
        extent: ``(xmin, ymin, xmax, ymax)`` in *before*'s CRS, or None = all of *before*.
        aoi: optional polygon layer (any OGR source); pixels outside its polygons are
            nodata, and the output covers its extent (within ``extent`` when both are given).
        aoi_layer: layer of ``aoi`` (default: the only one, or ``aoi``).
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
    overwrite: bool = False
    chip: int | None = None
    overlap: int = 32
    batch_size: int = 4
    device: str = "auto"
    runtime: str = "auto"
    threshold: float | None = None
    tta: str = "none"
    extent: tuple[float, float, float, float] | None = None
    aoi: str | None = None
    aoi_layer: str | None = None
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
        check_choice("runtime", self.runtime, RUNTIMES)
        check_choice("tta", self.tta, TTA_MODES)
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise InputError(f"--threshold must be a probability between 0 and 1, got {self.threshold}")
        self._check_extent()
        if Path(self.out).suffix.lower() not in (".tif", ".tiff"):
            raise InputError(f"--out {self.out}: the prediction is a GeoTIFF; give a .tif path")
        if self.vectors and Path(self.vectors).suffix.lower() != ".gpkg":
            raise InputError(f"--vectors {self.vectors}: the change polygons are a GeoPackage; give a .gpkg path")

    def _check_extent(self) -> None:
        if self.extent is None:
            return
        if len(self.extent) != 4:
            raise InputError(f"extent must be xmin,ymin,xmax,ymax; got {self.extent}")
        xmin, ymin, xmax, ymax = self.extent
        if not (xmin < xmax and ymin < ymax):
            raise InputError(f"extent {self.extent}: need xmin < xmax and ymin < ymax")


def default_of(name: str):
    """The default of a :class:`PredictConfig` field (for ``--help``)."""
    return next(f.default for f in dataclasses.fields(PredictConfig) if f.name == name)


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
