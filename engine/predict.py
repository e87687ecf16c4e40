"""Scene inference: the public names of :mod:`engine.inference`, where the code lives.

``from engine.predict import PredictConfig, predict`` keeps working for callers such as
``engine demo`` and the benchmarks. Heavy functions import torch/rasterio when called.
"""

from __future__ import annotations

from .inference.config import DEFAULT_THRESHOLD, DEVICES, RUNTIMES, PredictConfig, parse_extent
from .inference.model import default_chip, load_model, resolve_device, size_multiple
from .inference.predict import predict
from .inference.writer import TILE

__all__ = ["PredictConfig", "predict", "parse_extent", "load_model", "resolve_device", "default_chip", "size_multiple",
           "DEVICES", "RUNTIMES", "DEFAULT_THRESHOLD", "TILE"]
