"""Everything a run needs, built and checked before a single file is written.

:func:`prepare` resolves the settings (``--resume`` reads the run's ``config.json``),
checks the run folder, reads the class schema, indexes the labelled data, splits it,
builds the sampler, the model (and ``--init-from`` weights), the text encoder, the
normalisation and the schedule. Any problem raises :class:`~engine.errors.InputError`
or :class:`~engine.errors.ModelError` with nothing on disk changed.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from ..errors import InputError
from . import schedule as sched
from .config import TrainConfig
from .sampler import CropSampler
from .sources import Source, open_source
from .split import Split, split
from .state import check_out_folder, read_saved_config

log = logging.getLogger(__name__)

#: Windows read to measure the normalisation statistics of non-8-bit imagery.
STATS_WINDOWS = 48


@dataclasses.dataclass
class Prepared:
    """What :func:`prepare` built."""

    config: TrainConfig
    run: Path
    schema: Any
    source: Source
    split: Split
    sampler: CropSampler
    model: Any
    text_encoder: Any
    normalization: Any
    schedule: sched.Schedule
    train_px: float
    notes: list[str]


def resolve_config(config: TrainConfig) -> TrainConfig:
    """With ``resume``, the run's saved settings (only device and workers may change)."""
    if not config.resume:
        return config
    run = Path(config.out)
    check_out_folder(run, resume=True)
    saved = read_saved_config(run)
    saved.update(resume=True, device=config.device, workers=config.workers, out=str(run))
    return TrainConfig.from_dict(saved)


#: Automatic crop sides tried in turn when the labelled area is too small for the default
#: (multiples of 32, which both backbones take).
AUTO_CROPS = (128, 96, 64, 32)


def fit_crop(config: TrainConfig, source, lists) -> tuple[TrainConfig, Split, CropSampler, str]:
    """The split and the sampler; with the automatic crop, the largest crop that fits.

    A hand-drawn area of 100 x 100 px holds no 128 px crop beside its validation strip: an
    automatic ``--crop`` then shrinks (96, 64, 32 px) and the log says so, where a crop the
    user gave is refused with the sampler's message.

    Returns:
        ``(config with the crop used, split, sampler, note for the log or "")``.
    """
    sizes = [config.crop] + ([c for c in AUTO_CROPS if c < config.crop] if getattr(config, "crop_auto", False) else [])
    for k, crop in enumerate(sizes):
        parts = split(source.images, val_fraction=config.val_fraction, crop=crop, chip=config.chip, seed=config.seed, lists=lists)
        try:
            sampler = CropSampler(source.images, parts, crop, config.seed, focus=config.change_crops)
        except InputError:
            if k == len(sizes) - 1:
                raise
            continue
        if crop == config.crop:
            return config, parts, sampler, ""
        note = (f"training crops of {crop} px instead of {config.crop} px: the labelled area is too small for larger ones "
                "beside its validation area (label a larger area for more context)")
        return dataclasses.replace(config, crop=crop), parts, sampler, note
    raise AssertionError("unreachable")


def prepare(config: TrainConfig, world: int = 1) -> Prepared:
    """Build and check everything (see the module docstring)."""
    from ..options import enforce
    from ..schema import resolve_schema

    config = resolve_config(config)
    run = Path(config.out)
    check_out_folder(run, resume=config.resume)
    enforce("train", {f.name: getattr(config, f.name) for f in dataclasses.fields(config)})  # the option rules, before any work
    schema = resolve_schema(config.preset, config.schema, default="gaza")
    source = open_source(config, schema)
    lists = _list_indices(source)
    config, parts, sampler, crop_note = fit_crop(config, source, lists)
    train_px = sum(float(((im.labelled > 0) & t).sum()) for im, t in zip(source.images, parts.train_cells)) * 16 * 16
    model, text_encoder = build(config, schema, source.bands)
    normalization = _normalization(config, source, sampler)
    notes = [crop_note] if crop_note else []
    if not parts.trusted:
        notes.append(f"validation holds little data ({parts.describe()}): the kept model is the moving average of the "
                     "weights at the end of training, not the best validation score")
    return Prepared(config, run, schema, source, parts, sampler, model, text_encoder, normalization,
                    sched.make_schedule(config, train_px, world), train_px, notes)


def _list_indices(source: Source):
    lists = source.split_lists() if hasattr(source, "split_lists") else None
    if lists is None:
        return None
    index = {n: i for i, n in enumerate(source.names)}
    return [index[n] for n in lists[0]], [index[n] for n in lists[1]]


def build(config: TrainConfig, schema, bands: int):
    """The change model (with text modules when stage 2 uses text) and the text encoder."""
    import torch

    from ..models.change import S2MChangeModel
    from ..models.lora import configure_finetuning
    from ..models.registry import create_backbone, default_backbone

    name, weights = (config.backbone, config.weights) if config.backbone else default_backbone(config.weights)
    torch.manual_seed(config.seed)
    backbone = create_backbone(name, weights, in_bands=bands, **(config.backbone_options or {}))  # chip/crop multiples: engine.options
    text_encoder = None
    if config.uses_text:
        from ..models.text import create_text_encoder

        text_encoder = create_text_encoder(config.text_encoder, config.text_weights)
    model = S2MChangeModel(backbone, schema.num_classes, text_dim=text_encoder.dim if text_encoder else None,
                           decoder_channels=list(config.decoder_channels) if config.decoder_channels else None)
    if config.init_from:
        from ..models.transfer import init_from

        report = init_from(model, config.init_from, schema)
        log.info("initialised from %s: %s", config.init_from, report)
    configure_finetuning(model, config.lora_rank, config.freeze_backbone)
    return model, text_encoder


def _normalization(config: TrainConfig, source: Source, sampler: CropSampler):
    """Statistics from the data type (8-bit: the backbone's convention) or measured on training crops."""
    from ..normalization import Normalization, StatsAccumulator

    if config.init_from:
        from ..checkpoint import read_card

        card = read_card(config.init_from)
        if getattr(card, "normalization", None):
            old = Normalization.from_dict(card.normalization)
            if old.dtype == source.dtype:
                return old
    acc = StatsAccumulator(source.bands)
    for crop in sampler.sample(0, STATS_WINDOWS, stream=0):  # also for 8-bit: the card records the value range
        b, a, lab = source.read(crop.image, crop.row, crop.col, crop.size, crop.size)
        valid = lab != 255
        acc.update(b, valid)
        acc.update(a, valid)
    return acc.finish(source.dtype)


def describe(p: Prepared) -> str:
    counts = sum(x.numel() for x in p.model.parameters() if x.requires_grad)
    return (f"training on {p.source.description}: ~{int(p.train_px):,} labelled px for training, {p.split.describe()}; "
            f"{p.schedule.stage1} + {p.schedule.stage2} steps of {p.config.batch_size} x {p.config.crop} px crops; "
            f"{counts:,} trainable parameters")


def chips_summary(p: Prepared) -> dict[str, Any]:
    return {"train_px": int(p.train_px), "val_regions": len(p.split.val), "split": p.split.rule,
            "val_trusted": bool(p.split.trusted), "val_px": int(p.split.val_px)}

