"""Input normalisation: how a model's training rasters were scaled, and whether a scene fits.

Light module: numpy and the standard library only (no torch at import time).

Rule (:meth:`StatsAccumulator.finish`, chosen by the training rasters' data type):

- ``uint8`` -> convention ``"imagenet-8bit"``: the pretrained backbones' ImageNet
  mean/std on the 0-255 scale for the first three bands, the mean of those for any
  extra band (the same values as ``engine.models.backbone.default_mean_std``).
- any other type (``uint16``, ``int16``, ``float32`` ...) -> convention ``"measured"``:
  per-band mean/std of the valid training pixels, std floored at
  ``max(1e-6, 1e-3 x (max - min))`` of the valid pixels so a flat band cannot blow up.

Both record ``value_range`` (overall min/max of the valid training pixels) and per-band
``percentiles`` (1st and 99th), measured from a bounded random reservoir of pixels.

:func:`check_input` compares a scene with that record before prediction. It refuses
(:class:`~engine.errors.InputError`) when the result would be meaningless:

- 8-bit model, values outside 0..255 (a uint16 or scaled-reflectance scene);
- 8-bit model, a float scene with every value in -1..1 (reflectance: a constant on 0-255);
- measured model, values on a scale :data:`SCALE_LIMIT` times larger or smaller than
  the training values (largest magnitude compared with the training ``value_range``).

It warns when the scene's data type differs from the training one but the values fit,
when a band's median lies far outside the training 1st..99th percentiles (beyond a
margin of :data:`SHIFT_MARGIN` x their spread), and when the sample has no valid pixel.

Cards written before this record existed carry only mean/std: :func:`legacy_normalization`
reads them as ``imagenet-8bit`` (dtype ``uint8``) when the mean/std are the ImageNet
0-255 values, else as ``measured`` with an unknown dtype (``""``), no range and no
percentiles, so only the checks that need nothing more apply.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from .errors import InputError, ModelError

__all__ = [
    "CONVENTIONS",
    "Normalization",
    "StatsAccumulator",
    "check_input",
    "imagenet_mean_std",
    "legacy_normalization",
    "normalization_of",
    "sample_windows",
]

# ImageNet statistics in 0-255 units (copied from engine.models.backbone, which imports torch).
IMAGENET_MEAN_255 = (123.675, 116.28, 103.53)
IMAGENET_STD_255 = (58.395, 57.12, 57.375)
CONVENTIONS = ("imagenet-8bit", "measured")
#: Values this many times larger or smaller than the training values are refused.
SCALE_LIMIT = 100.0
#: A band median beyond p1 - m or p99 + m, m = SHIFT_MARGIN x (p99 - p1), is a warning.
SHIFT_MARGIN = 0.25


def imagenet_mean_std(bands: int) -> tuple[list[float], list[float]]:
    """Per-band ImageNet mean/std (0-255 units); bands beyond RGB get the RGB mean."""
    extra_mean = sum(IMAGENET_MEAN_255) / 3
    extra_std = sum(IMAGENET_STD_255) / 3
    mean = [IMAGENET_MEAN_255[c] if c < 3 else extra_mean for c in range(bands)]
    std = [IMAGENET_STD_255[c] if c < 3 else extra_std for c in range(bands)]
    return mean, std


def _dtype_name(dtype: Any) -> str:
    """``np.dtype`` name of ``dtype`` (``"uint16"``); ``""`` stays ``""`` (unknown)."""
    if dtype is None or (isinstance(dtype, str) and not dtype):
        return ""
    return np.dtype(dtype).name


def _is_float(dtype: str) -> bool:
    return bool(dtype) and np.issubdtype(np.dtype(dtype), np.floating)


@dataclasses.dataclass(frozen=True)
class Normalization:
    """How a model's input was normalised: ``(x - mean) / std`` per band, raw raster units.

    Attributes:
        mean: per-band mean, raw raster units.
        std: per-band standard deviation (> 0), raw raster units.
        dtype: numpy name of the training rasters' data type; ``""`` = unknown (old card).
        convention: ``"imagenet-8bit"`` or ``"measured"`` (see the module docstring).
        value_range: ``(min, max)`` of the valid training pixels, or None when unknown.
        percentiles: per band ``[p1, p99]`` of the valid training pixels, or None.
    """

    mean: list[float]
    std: list[float]
    dtype: str
    convention: str
    value_range: tuple[float, float] | None = None
    percentiles: list[list[float]] | None = None

    def __post_init__(self) -> None:
        problem = _problem(self)
        if problem:
            raise ValueError(problem)

    @property
    def bands(self) -> int:
        return len(self.mean)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (``value_range`` as a list)."""
        return {
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "dtype": self.dtype,
            "convention": self.convention,
            "value_range": None if self.value_range is None else [float(v) for v in self.value_range],
            "percentiles": None if self.percentiles is None else [[float(v) for v in p] for p in self.percentiles],
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "normalization") -> "Normalization":
        """Parse :meth:`to_dict` output; ModelError naming ``source`` when it is malformed."""
        if not isinstance(data, dict):
            raise ModelError(f"{source}: must be an object, got {type(data).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in ("mean", "std", "dtype", "convention") if n not in data]
        if missing:
            raise ModelError(f"{source}: missing field(s) {', '.join(missing)}")
        kwargs = {k: data[k] for k in names if k in data}
        if kwargs.get("value_range") is not None:
            kwargs["value_range"] = tuple(kwargs["value_range"])
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{source}: {exc}") from None

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Normalise ``x`` of shape ``(C, ...)`` (raw units) to ``float32`` ``(x - mean) / std``."""
        if x.shape[0] != self.bands:
            raise ValueError(f"expected {self.bands} bands first, got shape {x.shape}")
        shape = (self.bands,) + (1,) * (x.ndim - 1)
        mean = np.asarray(self.mean, np.float32).reshape(shape)
        std = np.asarray(self.std, np.float32).reshape(shape)
        return ((np.asarray(x, np.float32) - mean) / std).astype(np.float32, copy=False)


def _numbers(values: Any, n: int | None = None) -> bool:
    ok = isinstance(values, (list, tuple)) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    return ok and (n is None or len(values) == n)


def _problem(norm: Normalization) -> str:
    """What is wrong with ``norm`` (``""`` when nothing)."""
    n = len(norm.mean) if isinstance(norm.mean, (list, tuple)) else 0
    if n < 1 or not _numbers(norm.mean) or not _numbers(norm.std, n):
        return f"mean and std must list one number per band, got {norm.mean!r} and {norm.std!r}"
    if any(not np.isfinite(v) for v in list(norm.mean) + list(norm.std)) or any(v <= 0 for v in norm.std):
        return f"mean must be finite and std > 0 for every band, got {norm.mean} and {norm.std}"
    if norm.convention not in CONVENTIONS:
        return f"convention must be one of {', '.join(CONVENTIONS)}, got {norm.convention!r}"
    try:
        if not isinstance(norm.dtype, str) or _dtype_name(norm.dtype) != norm.dtype:
            return f"dtype must be a numpy type name such as 'uint8', or '' when unknown, got {norm.dtype!r}"
    except TypeError:
        return f"dtype {norm.dtype!r} is not a numpy type name"
    vr = norm.value_range
    if vr is not None and (not _numbers(vr, 2) or vr[0] > vr[1]):
        return f"value_range must be [min, max] with min <= max, got {vr!r}"
    pc = norm.percentiles
    if pc is not None and (not isinstance(pc, (list, tuple)) or len(pc) != n or not all(_numbers(p, 2) and p[0] <= p[1] for p in pc)):
        return f"percentiles must list [p1, p99] for each of the {n} bands, got {pc!r}"
    return ""


def legacy_normalization(mean: Sequence[float], std: Sequence[float]) -> Normalization:
    """The record of a card written before ``normalization`` existed (rule in the module docstring)."""
    mean, std = [float(v) for v in mean], [float(v) for v in std]
    ref_mean, ref_std = imagenet_mean_std(len(mean))
    if np.allclose(mean, ref_mean, atol=1e-3) and np.allclose(std, ref_std, atol=1e-3):
        return Normalization(mean, std, "uint8", "imagenet-8bit")
    return Normalization(mean, std, "", "measured")


def normalization_of(card: Any) -> Normalization:
    """A card's :class:`Normalization`: its ``normalization`` field, or the legacy reading of mean/std.

    Args:
        card: a ``ModelCard`` or anything with ``mean``, ``std`` and optionally ``normalization``.
    """
    data = getattr(card, "normalization", None)
    if isinstance(data, Normalization):
        return data
    if data is not None:
        return Normalization.from_dict(data, source="model card normalization")
    return legacy_normalization(card.mean, card.std)


class StatsAccumulator:
    """Streaming per-band statistics of training pixels, in memory independent of the data fed.

    Keeps per band: count, mean and sum of squared deviations (float64, merged batch by
    batch with Chan's formula), min and max, and a uniform random reservoir of at most
    ``reservoir`` pixels (all bands of a pixel together) for the 1st/99th percentiles.

    Args:
        bands: number of bands ``C``.
        reservoir: pixels kept for the percentiles.
        seed: seed of the reservoir's random draw.
    """

    def __init__(self, bands: int, reservoir: int = 65536, seed: int = 0) -> None:
        if bands < 1 or reservoir < 1:
            raise ValueError(f"bands and reservoir must be >= 1, got {bands} and {reservoir}")
        self.bands = int(bands)
        self._n = 0
        self._mean = np.zeros(self.bands, np.float64)
        self._m2 = np.zeros(self.bands, np.float64)
        self._min = np.full(self.bands, np.inf)
        self._max = np.full(self.bands, -np.inf)
        self._res = np.zeros((int(reservoir), self.bands), np.float32)
        self._rng = np.random.default_rng(seed)

    @property
    def count(self) -> int:
        """Valid pixels seen so far."""
        return self._n

    @property
    def reservoir(self) -> np.ndarray:
        """``(k, C)`` float32 buffer of sampled pixels (its first ``min(count, k)`` rows are filled)."""
        return self._res

    def update(self, x: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Add one array.

        Args:
            x: ``(C, h, w)`` raw raster values (any numeric type).
            valid: ``(h, w)`` bool, True where the pixel counts; None = all. Pixels with a
                non-finite value in any band are skipped too.
        """
        if x.ndim < 2 or x.shape[0] != self.bands:
            raise ValueError(f"expected ({self.bands}, h, w), got shape {x.shape}")
        flat = x.reshape(self.bands, -1)
        keep = np.isfinite(flat).all(0)
        if valid is not None:
            keep &= np.asarray(valid, bool).reshape(-1)
        values = flat[:, keep].astype(np.float64)
        if values.shape[1]:
            self._merge(values)
            self._sample(values.T.astype(np.float32))

    def _merge(self, values: np.ndarray) -> None:
        """Chan's parallel update of count/mean/M2 with a ``(C, m)`` float64 batch."""
        m = values.shape[1]
        mean_b = values.mean(1)
        m2_b = ((values - mean_b[:, None]) ** 2).sum(1)
        n = self._n + m
        delta = mean_b - self._mean
        self._mean += delta * (m / n)
        self._m2 += m2_b + delta**2 * (self._n * m / n)
        self._n = n
        self._min = np.minimum(self._min, values.min(1))
        self._max = np.maximum(self._max, values.max(1))

    def _sample(self, items: np.ndarray) -> None:
        """Reservoir sampling (Algorithm R, vectorised) of ``(m, C)`` pixels; ``self._n`` already counts them."""
        k, m = len(self._res), len(items)
        seen = self._n - m
        fill = max(0, min(k - seen, m))
        if fill:
            self._res[seen : seen + fill] = items[:fill]
        if fill < m:
            index = np.arange(seen + fill, seen + m)
            slot = self._rng.integers(0, index + 1)
            hit = slot < k
            self._res[slot[hit]] = items[fill:][hit]

    def finish(self, dtype: str) -> Normalization:
        """The :class:`Normalization` of everything fed, by the rule in the module docstring.

        Args:
            dtype: data type of the training rasters (``"uint8"``, ``"uint16"``, ``"float32"`` ...).

        Raises:
            InputError: no valid pixel was fed.
        """
        if self._n == 0:
            raise InputError("no valid pixel to measure normalisation statistics from: the training rasters are nodata everywhere they were read")
        name = _dtype_name(dtype)
        lo, hi = float(self._min.min()), float(self._max.max())
        pct = np.percentile(self._res[: min(self._n, len(self._res))].astype(np.float64), [1, 99], axis=0)
        percentiles = [[float(pct[0, c]), float(pct[1, c])] for c in range(self.bands)]
        if name == "uint8":
            mean, std = imagenet_mean_std(self.bands)
            return Normalization(mean, std, name, "imagenet-8bit", (lo, hi), percentiles)
        floor = max(1e-6, 1e-3 * (hi - lo))
        std = np.maximum(np.sqrt(self._m2 / self._n), floor)
        return Normalization([float(v) for v in self._mean], [float(v) for v in std], name, "measured", (lo, hi), percentiles)


def sample_windows(width: int, height: int, size: int = 256, per_axis: int = 3,
                   blocks: tuple[int, int, int, int] | None = None) -> list[tuple[int, int, int, int]]:
    """Up to ``per_axis**2`` windows of ``size`` px spread evenly over a ``width x height`` area.

    Args:
        blocks: ``(block_width, block_height, col_origin, row_origin)``: the raster's
            block (tile) size and where the area starts on the raster. Each window start
            is then moved back to a block border where it stays inside the area, so a
            window of one block decodes one tile instead of up to four (the check before a
            prediction read 4x the tiles it needed on 256 px tiled GeoTIFFs). An axis whose
            block spans the area (strips) is left as it is.

    Returns:
        ``(col_off, row_off, w, h)`` tuples in pixels, clipped to the area, without repeats.
    """

    def starts(extent: int, block: int, origin: int) -> list[int]:
        span = max(extent - size, 0)
        out = {round(span * k / max(per_axis - 1, 1)) for k in range(per_axis)}
        if 1 < block < extent:  # strips span the whole width: any column costs the same
            out = {max(((origin + s) // block) * block - origin, 0) if (origin + s) % block else s for s in out}
        return sorted(out)

    bw, bh, c0, r0 = blocks or (1, 1, 0, 0)
    w, h = min(size, width), min(size, height)
    return [(c, r, w, h) for r in starts(height, bh, r0) for c in starts(width, bw, c0)]


def _valid_values(sample: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """``(C, n)`` float64 values of the valid, finite pixels of a ``(C, ...)`` sample."""
    flat = np.asarray(sample).reshape(sample.shape[0], -1)
    keep = np.isfinite(flat).all(0)
    if valid is not None:
        keep &= np.asarray(valid, bool).reshape(-1)
    return flat[:, keep].astype(np.float64)


def check_input(norm: Normalization, dtype: str, sample: np.ndarray, valid: np.ndarray | None, where: str) -> list[str]:
    """Check a scene's values against a model's training data (rules in the module docstring).

    Args:
        norm: the model's normalisation record.
        dtype: the scene raster's data type (``"uint16"``).
        sample: ``(C, ...)`` raw values read from the scene (a few windows).
        valid: bool mask of ``sample``'s trailing shape, True where a pixel counts; None = all.
        where: the raster's name for the messages (``"before.tif"``).

    Returns:
        Warnings for the user's log (empty when the scene fits).

    Raises:
        InputError: the prediction would be meaningless (wrong scale or bit depth).
    """
    if sample.shape[0] != norm.bands:
        raise InputError(f"{where} has {sample.shape[0]} band(s); the model expects {norm.bands}")
    values = _valid_values(sample, valid)
    if values.shape[1] == 0:
        return [f"{where}: no valid pixel in the sample; its values could not be checked against the model's training data"]
    name = _dtype_name(dtype)
    if norm.convention == "imagenet-8bit":
        warnings = _check_8bit(name, values, where)
    else:
        warnings = _check_measured(norm, name, values, where)
    return warnings + _check_shift(norm, values, where)


def _check_8bit(dtype: str, values: np.ndarray, where: str) -> list[str]:
    """Refuse values an 8-bit model cannot read; warn on another type with 8-bit values."""
    lo, hi = float(values.min()), float(values.max())
    if hi > 255.5 or lo < -0.5:
        extreme = f"values up to {hi:g}" if hi > 255.5 else f"values down to {lo:g}"
        raise InputError(f"{where} is {dtype} with {extreme}; the model was trained on 8-bit imagery (0–255): rescale to 8 bit or train on this imagery")
    if _is_float(dtype) and max(abs(lo), abs(hi)) <= 1.0 + 1e-6:
        raise InputError(
            f"{where} is {dtype} with values in {lo:g}..{hi:g} (reflectance?); the model was trained on 8-bit imagery (0–255), "
            "on which these values are a constant: scale them to 0–255 or train on this imagery"
        )
    if dtype != "uint8":
        return [f"{where} is {dtype}, the model was trained on uint8 imagery; its values ({lo:g}..{hi:g}) fit the 8-bit range and are used as they are"]
    return []


def _check_measured(norm: Normalization, dtype: str, values: np.ndarray, where: str) -> list[str]:
    """Refuse values on another scale than the training values; warn on another data type."""
    lo, hi = float(values.min()), float(values.max())
    if norm.value_range is not None:
        _check_scale(norm, dtype, float(np.abs(values).max()), where)
    if norm.dtype and dtype != norm.dtype:
        trained = f" ({norm.value_range[0]:g}..{norm.value_range[1]:g})" if norm.value_range else ""
        return [f"{where} is {dtype}, the model was trained on {norm.dtype} imagery{trained}; its values ({lo:g}..{hi:g}) are used as they are"]
    return []


def _check_scale(norm: Normalization, dtype: str, peak: float, where: str) -> None:
    """InputError when ``peak`` (largest |value|) is SCALE_LIMIT times off the training values."""
    t_lo, t_hi = norm.value_range  # type: ignore[misc]
    trained_peak = max(abs(t_lo), abs(t_hi))
    trained = f"{norm.dtype + ' ' if norm.dtype else ''}imagery with values in {t_lo:g}..{t_hi:g}"
    fix = "rescale it to the training range or train on this imagery"
    if trained_peak > 0 and peak > SCALE_LIMIT * trained_peak:
        raise InputError(f"{where} is {dtype} with values up to {peak:g}; the model was trained on {trained} ({peak / trained_peak:.0f} times smaller): {fix}")
    if 0 < peak and peak * SCALE_LIMIT < trained_peak:
        raise InputError(f"{where} is {dtype} with values only up to {peak:g}; the model was trained on {trained} ({trained_peak / peak:.0f} times larger): {fix}")


def _check_shift(norm: Normalization, values: np.ndarray, where: str) -> list[str]:
    """A warning naming the bands whose median lies far outside the training p1..p99."""
    if norm.percentiles is None:
        return []
    median = np.median(values, axis=1)
    off = []
    for c, (p1, p99) in enumerate(norm.percentiles):
        margin = SHIFT_MARGIN * (p99 - p1) + 1e-9
        if median[c] < p1 - margin or median[c] > p99 + margin:
            off.append(f"band {c + 1} median {median[c]:g} vs {p1:g}..{p99:g}")
    if not off:
        return []
    return [
        f"{where}: {'; '.join(off)} (training 1st..99th percentile): the scene looks unlike the training imagery "
        "(another sensor, processing or season?); expect weaker results"
    ]
