"""Inference over whole scenes: tiled, streamed, blended, written window by window.

:func:`predict` runs a change model over a *before*/*after* pair and writes a GeoTIFF on
*before*'s grid (or the part of it given by ``extent`` / ``aoi``):

- band 1, ``class``: uint8 class id with the schema's colour table, 255 = nodata;
- band 2, ``confidence``: uint8, the blended probability of that class in percent
  (0-100), 255 = nodata.

The package, one idea per module:

- :mod:`.config`: :class:`PredictConfig`, the one declaration of the settings;
- :mod:`.predict`: :func:`predict`, the orchestration;
- :mod:`.region`: extent, AOI and the input checks (values, all-nodata);
- :mod:`.reader`: background threads that read and normalise chips (AOI mask,
  readable errors on damaged tiles);
- :mod:`.backend`, :mod:`.runner`, :mod:`.export`: PyTorch or ONNX Runtime (fp32/int8),
  the export cached beside the checkpoint;
- :mod:`.writer`: tiled, compressed GeoTIFF in whole tile rows;
- :mod:`.distributed`: ``torchrun``: a block of chip rows per rank, rank 0 assembles;
- :mod:`engine.outputs`: every output under a temporary name, committed together.

How it stays fast, seamless and memory-flat: chips come from
:func:`engine.tiling.chip_grid` (every pixel covered; by default the training chip plus
``overlap``); a background thread (several on CUDA) reads batches ahead of the model;
:class:`engine.tiling.StreamingBlender` cross-fades overlapping chips in integers and
hands back finished rows; memory holds a batch, the rows of the chips in flight and one
overlap band -- never the raster. Under ``torchrun`` the result is the single-process
result, byte for byte.
"""

from .config import DEFAULT_THRESHOLD, DEVICES, RUNTIMES, PredictConfig, parse_extent
from .predict import predict

__all__ = ["PredictConfig", "predict", "parse_extent", "DEVICES", "RUNTIMES", "DEFAULT_THRESHOLD"]
