"""The model side of a prediction: loading, chip size, threshold, device."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import InputError, ModelError
from ..schema import ClassSchema
from .config import DEFAULT_THRESHOLD


def load_model(path: str, device: str = "cpu"):
    """(model, card) from a checkpoint or training run folder."""
    from ..checkpoint import load_checkpoint

    return load_checkpoint(path, device=device)


def checkpoint_files(path: str) -> dict[str, Path]:
    """The files of the checkpoint ``path`` names (an output may be none of them).

    Raises:
        InputError: ``path`` does not exist.
        ModelError: it is neither a checkpoint nor a run folder.
    """
    from ..checkpoint import CARD_FILE, WEIGHTS_FILE, resolve_checkpoint

    folder = resolve_checkpoint(path)
    return {"--model": folder / WEIGHTS_FILE, "--model card": folder / CARD_FILE}


def resolve_device(name: str):
    """``auto``/``cpu``/``cuda`` -> ``torch.device``; InputError for CUDA without a GPU."""
    import torch

    from ..runtime import device_kind

    return torch.device(device_kind(name))


def schema_of(card) -> ClassSchema:
    schema = card.schema
    return schema if isinstance(schema, ClassSchema) else ClassSchema.from_dict(schema, source="model card")


def size_multiple(model) -> int:
    """Chip sides must be a multiple of this (the backbone's patch size or total stride)."""
    backbone = getattr(model, "backbone", None)
    return int(getattr(backbone, "size_multiple", 1) or 1)


#: Smallest default chip side of a prediction (before the overlap), px. Both backbones are
#: fully convolutional / position-interpolating, so a model trained on 256 px chips runs on
#: larger ones; with 32 px of overlap a 288 px chip spends 21 % of its pixels twice, a 544 px
#: one 11 % (measured on the demo model: same classes, fewer seams, +12 % scene throughput).
MIN_DEFAULT_CHIP = 512


def default_chip(card, overlap: int, multiple: int, extent: int | None = None) -> int:
    """The default chip side: ``max(training chip, MIN_DEFAULT_CHIP) + overlap``, rounded up
    to ``multiple``; never more than ``extent`` (the raster's longer side, rounded up), so a
    small raster is one chip without padding.
    """
    side = max(int(card.chip_size), MIN_DEFAULT_CHIP) + int(overlap)
    if extent is not None:
        side = min(side, int(extent))
    return int(math.ceil(side / multiple) * multiple)


def chip_size(config, model, card, extent: int | None = None) -> int:
    """``config.chip`` or the default chip, checked against the backbone's size multiple.

    Args:
        config: the settings.
        model: the model, or None (the card's ``size_multiple`` then).
        card: its card.
        extent: the longer side of the predicted region, px (caps the default chip).

    Raises:
        InputError: a chip the backbone cannot take (the message gives the nearest one).
    """
    mult = size_multiple(model) if model is not None else int(card.size_multiple)
    chip = config.chip or default_chip(card, config.overlap, mult, extent)
    if chip % mult:
        raise InputError(f"--chip {chip}: the {getattr(card, 'backbone', 'model')} backbone needs a multiple of {mult} px; "
                         f"try {int(math.ceil(chip / mult) * mult)}")
    return chip


def threshold_of(config, card) -> float | None:
    """The change threshold: ``--threshold``, else the card's ``extra["threshold"]``, else
    :data:`DEFAULT_THRESHOLD` for two classes and None (the most probable class) for more.

    With more than two classes a fixed 0.5 on ``1 - P(no change)`` is not the most
    probable class: on the demo model it lowered SeK from 0.879 to 0.852, so without a
    threshold chosen for the model (by the user or the card) the class map stays the
    most probable class, which for two classes is the 0.5 threshold.
    """
    if config.threshold is not None:
        return float(config.threshold)
    extra = getattr(card, "extra", None) or {}
    value = extra.get("threshold") if isinstance(extra, dict) else None
    if isinstance(value, (int, float)) and 0.0 <= value <= 1.0:
        return float(value)
    return DEFAULT_THRESHOLD if int(card.num_classes) == 2 else None


def mean_std(card) -> tuple[np.ndarray, np.ndarray]:
    """The card's normalisation as float32 arrays.

    Raises:
        ModelError: a non-positive std (a damaged card).
    """
    mean = np.asarray(card.mean, np.float32)
    std = np.asarray(card.std, np.float32)
    if np.any(std <= 0):
        raise ModelError(f"model card has a non-positive std {list(std)}; the checkpoint is damaged")
    return mean, std


def describe(config, card, schema: ClassSchema) -> str:
    spec = getattr(card, "backbone_config", None) or {}
    return (f"model {config.model or '(in memory)'}: backbone {getattr(card, 'backbone', 'unknown')} "
            f"(initialised from {spec.get('weights', 'unknown weights')}), stage {getattr(card, 'stage', '?')}, "
            f"{schema.num_classes} classes")
