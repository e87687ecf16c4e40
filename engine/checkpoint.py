"""Checkpoints: weights as safetensors plus a JSON model card; nothing is ever unpickled.

A checkpoint is a folder::

    model.safetensors   the change model's state dict (LoRA adapters unmerged, if any)
    card.json           ModelCard: how to rebuild the model and what input it expects

The card holds everything needed to rebuild the architecture without the original
pretrained weights (backbone name + config, decoder config, LoRA rank), plus what the
input must look like (bands, per-band mean/std in raw raster units, chip size) and the
class schema. ``normalization`` (optional, :class:`engine.normalization.Normalization`
as a dict) adds how those statistics were chosen and the training value range, which
prediction checks scenes against; cards without it read as described in
:func:`engine.normalization.legacy_normalization` (ImageNet 0-255 mean/std -> 8-bit,
anything else -> measured, data type unknown). Loading checks the weights against the card and the card against the
input (:func:`check_card`); any mismatch is a :class:`~engine.errors.ModelError` or
:class:`~engine.errors.InputError` that says what differs.

Writes are atomic: files go to a temporary sibling folder renamed into place, so a crash
never leaves a half-written checkpoint under the final name.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from . import __version__
from .errors import InputError, ModelError

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "card.json"
CARD_VERSION = 1


@dataclasses.dataclass
class ModelCard:
    """What a checkpoint is and what input it expects.

    Attributes:
        backbone: registry name (``dinov3_vits16``, ``efficientnet_lite0`` ...).
        backbone_config: ``Backbone.spec()``: rebuilds the architecture (and names the
            pretrained weights it started from, for the logs).
        in_bands: number of input bands.
        mean: per-band mean, raw raster units (e.g. 0-255 for 8-bit imagery).
        std: per-band standard deviation, raw raster units.
        chip_size: training chip side in pixels.
        schema: class schema as ``ClassSchema.to_dict()``.
        num_classes: logits per pixel (schema classes, 0 = no change).
        text_encoder: text encoder used in stage 2 (None for stage 1).
        text_dim: its embedding size (None when the model has no text modules).
        stage: 1 (visual pre-training) or 2 (text-guided alignment).
        lora_rank: LoRA rank on the backbone (0 = none).
        model_config: decoder settings (``S2MChangeModel.config()``) and ``lora_alpha``.
        engine_version: MaskTalk engine version that wrote the checkpoint.
        created: ISO-8601 UTC time of writing.
        extra: free-form (training adds best metrics, epochs ...).
        card_version: format version of this card.
        normalization: ``Normalization.to_dict()`` (convention, training dtype, value
            range, percentiles; its mean/std equal ``mean``/``std``), or None on cards
            written before it existed (see :meth:`input_normalization`).
    """

    backbone: str
    backbone_config: dict[str, Any]
    in_bands: int
    mean: list[float]
    std: list[float]
    chip_size: int
    schema: dict[str, Any]
    num_classes: int
    text_encoder: str | None = None
    text_dim: int | None = None
    stage: int = 1
    lora_rank: int = 0
    model_config: dict[str, Any] = dataclasses.field(default_factory=dict)
    engine_version: str = __version__
    created: str = ""
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    card_version: int = CARD_VERSION
    normalization: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not self.created:
            self.created = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: Any, source: str = "card.json") -> "ModelCard":
        """Parse and validate a card; raise ModelError naming the bad field."""
        if not isinstance(data, dict):
            raise ModelError(f"{source}: a model card must be a JSON object")
        version = data.get("card_version", CARD_VERSION)
        if not isinstance(version, int) or version > CARD_VERSION:
            raise ModelError(f"{source}: card_version {version} was written by a newer MaskTalk; update the engine")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        required = [n for n, f in fields.items() if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [n for n in required if n not in data]
        if missing:
            raise ModelError(f"{source}: missing field(s) {', '.join(missing)}; this is not a MaskTalk model card or it is damaged")
        unknown = sorted(set(data) - set(fields))
        if unknown:
            logger.warning("%s: ignoring unknown card field(s) %s", source, ", ".join(unknown))
        card = cls(**{k: v for k, v in data.items() if k in fields})
        card.validate(source)
        return card

    def validate(self, source: str = "card") -> None:
        def bad(msg: str) -> ModelError:
            return ModelError(f"{source}: {msg}")

        if not isinstance(self.backbone, str) or not self.backbone:
            raise bad("backbone must be a backbone name")
        if not isinstance(self.backbone_config, dict):
            raise bad("backbone_config must be an object")
        if not isinstance(self.in_bands, int) or self.in_bands < 1:
            raise bad(f"in_bands must be a positive integer, got {self.in_bands!r}")
        for key in ("mean", "std"):
            values = getattr(self, key)
            if not isinstance(values, list) or len(values) != self.in_bands or not all(isinstance(v, (int, float)) for v in values):
                raise bad(f"{key} must list one number per band ({self.in_bands}), got {values!r}")
        if any(v <= 0 for v in self.std):
            raise bad(f"std must be > 0 for every band, got {self.std}")
        if not isinstance(self.chip_size, int) or self.chip_size <= 0:
            raise bad(f"chip_size must be a positive integer, got {self.chip_size!r}")
        if not isinstance(self.num_classes, int) or self.num_classes < 2:
            raise bad(f"num_classes must be an integer >= 2, got {self.num_classes!r}")
        if not isinstance(self.schema, dict) or len(self.schema.get("classes", [])) != self.num_classes:
            raise bad(f"schema must be a class schema with num_classes ({self.num_classes}) classes")
        if self.stage not in (1, 2):
            raise bad(f"stage must be 1 or 2, got {self.stage!r}")
        if not isinstance(self.lora_rank, int) or self.lora_rank < 0:
            raise bad(f"lora_rank must be an integer >= 0, got {self.lora_rank!r}")
        if self.text_dim is not None and (not isinstance(self.text_dim, int) or self.text_dim <= 0):
            raise bad(f"text_dim must be a positive integer or null, got {self.text_dim!r}")
        if self.normalization is not None:
            self._validate_normalization(source)

    def _validate_normalization(self, source: str) -> None:
        """The normalization record parses and agrees with ``mean``/``std``."""
        import math

        from .normalization import Normalization

        norm = Normalization.from_dict(self.normalization, source=f"{source}: normalization")
        close = all(math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9) for a, b in zip(norm.mean + norm.std, self.mean + self.std))
        if norm.bands != self.in_bands or not close:
            raise ModelError(f"{source}: normalization mean/std {norm.mean}/{norm.std} differ from the card's mean/std {self.mean}/{self.std}")

    def input_normalization(self):
        """The card's :class:`~engine.normalization.Normalization` (legacy reading when the field is absent)."""
        from .normalization import normalization_of

        return normalization_of(self)

    def class_schema(self):
        """The card's schema as a :class:`~engine.schema.ClassSchema`."""
        from .schema import ClassSchema

        return ClassSchema.from_dict(self.schema, source="model card")

    @property
    def size_multiple(self) -> int:
        """Chip sides must be a multiple of this (16 for DINOv3, 32 for EfficientNet)."""
        return 16 if self.backbone.startswith("dinov3_") else 32


def make_card(model, schema, mean, std, chip_size: int, stage: int = 1, text_encoder: str | None = None, extra: dict | None = None,
              normalization=None) -> ModelCard:
    """Describe a change model for :func:`save_checkpoint`.

    Args:
        model: an ``S2MChangeModel``.
        schema: ``ClassSchema`` or its dict.
        mean, std: per-band statistics in raw raster units; None takes them from
            ``normalization``.
        chip_size: training chip side (px).
        stage: 1 or 2.
        text_encoder: name of the text encoder (stage 2).
        extra: free-form additions (metrics ...).
        normalization: a :class:`~engine.normalization.Normalization` (or its dict) from
            the training rasters; its mean/std must equal ``mean``/``std`` when both are given.
    """
    norm_dict = normalization.to_dict() if hasattr(normalization, "to_dict") else normalization
    if norm_dict is not None and mean is None and std is None:
        mean, std = norm_dict["mean"], norm_dict["std"]
    schema_dict = schema.to_dict() if hasattr(schema, "to_dict") else dict(schema)
    bb = model.backbone
    cfg = model.config()
    cfg["lora_alpha"] = getattr(bb, "lora_alpha", None)
    card = ModelCard(
        backbone=bb.name,
        backbone_config=bb.spec(),
        in_bands=int(bb.in_bands),
        mean=[float(v) for v in mean],
        std=[float(v) for v in std],
        chip_size=int(chip_size),
        schema=schema_dict,
        num_classes=int(model.num_classes),
        text_encoder=text_encoder,
        text_dim=model.text_dim,
        stage=int(stage),
        lora_rank=int(getattr(bb, "lora_rank", 0) or 0),
        model_config=cfg,
        extra=dict(extra or {}),
        normalization=None if norm_dict is None else dict(norm_dict),
    )
    card.validate("new model card")
    return card


def save_checkpoint(directory: str | os.PathLike, model, card: ModelCard) -> Path:
    """Write ``model.safetensors`` + ``card.json`` into ``directory`` atomically.

    An existing checkpoint at ``directory`` is replaced only once the new one is complete.

    Returns:
        The checkpoint folder.

    Raises:
        ModelError: the card does not describe the model, or LoRA adapters were merged.
    """
    from safetensors.torch import save_file

    from .models.lora import has_merged_lora

    card.validate("model card")
    if card.num_classes != model.num_classes or card.in_bands != model.backbone.in_bands:
        raise ModelError(f"the card ({card.num_classes} classes, {card.in_bands} bands) does not describe the model ({model.num_classes} classes, {model.backbone.in_bands} bands)")
    if has_merged_lora(model):
        raise ModelError("LoRA adapters were merged into the backbone (inference mode); save the model before merge_lora()")
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt", "engine_version": __version__, "backbone": card.backbone})
        (tmp / CARD_FILE).write_text(card.to_json(), encoding="utf-8")
        old = None
        if target.exists():
            old = target.parent / f".{target.name}.old-{os.getpid()}"
            if old.exists():
                shutil.rmtree(old)
            target.rename(old)
        tmp.rename(target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("saved checkpoint %s (%s, %d classes, stage %d)", target, card.backbone, card.num_classes, card.stage)
    return target


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint folder for ``path``: itself, or a training run folder's ``best/``.

    Raises:
        InputError: ``path`` does not exist.
        ModelError: it is neither a checkpoint nor a run folder.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"checkpoint {p} does not exist; give a checkpoint folder (model.safetensors + card.json) or a training run folder")
    if p.is_file() and p.name in (WEIGHTS_FILE, CARD_FILE):
        p = p.parent
    if (p / CARD_FILE).exists() or (p / WEIGHTS_FILE).exists():
        return p
    if (p / "best" / CARD_FILE).exists():
        return p / "best"
    if (p / "last" / CARD_FILE).exists():
        raise ModelError(f"{p} is a training run without a best/ checkpoint; pass {p / 'last'} to use the last one")
    raise ModelError(f"{p} is neither a checkpoint folder ({WEIGHTS_FILE} + {CARD_FILE}) nor a training run folder (with best/)")


def read_card(path: str | os.PathLike) -> ModelCard:
    """Read ``card.json`` of a checkpoint (folder, run folder or the file itself)."""
    p = Path(path)
    card_path = p if p.name == CARD_FILE else resolve_checkpoint(p) / CARD_FILE
    if not card_path.is_file():
        raise ModelError(f"{card_path.parent}: {CARD_FILE} is missing; the checkpoint is incomplete")
    try:
        data = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelError(f"{card_path}: not a readable model card ({exc}); the checkpoint is damaged") from exc
    return ModelCard.from_dict(data, source=str(card_path))


def build_model(card: ModelCard, with_text: bool = False, text_dim: int | None = None):
    """Rebuild the architecture a card describes, with random weights.

    Args:
        card: the model card.
        with_text: build the text modules (training); False gives the inference model.
        text_dim: text size when ``with_text`` and the card has none (stage 1 -> stage 2).
    """
    from .models.change import S2MChangeModel
    from .models.lora import apply_lora
    from .models.registry import BACKBONES, rebuild_backbone

    if card.backbone not in BACKBONES:
        raise ModelError(f"the checkpoint uses backbone {card.backbone!r}, unknown to this engine ({', '.join(BACKBONES)}); update MaskTalk")
    dim = None
    if with_text:
        dim = card.text_dim or text_dim
        if dim is None:
            raise ModelError("this checkpoint has no text modules (stage 1); give text_dim to add them for stage 2")
    try:
        backbone = rebuild_backbone(card.backbone, card.in_bands, card.backbone_config)
        cfg = card.model_config
        model = S2MChangeModel(backbone, card.num_classes, text_dim=dim, decoder_channels=cfg.get("decoder_channels"), attn_heads=cfg.get("attn_heads", 4))
    except (TypeError, ValueError, KeyError) as exc:
        raise ModelError(f"cannot rebuild the model from its card: {exc}") from exc
    if card.lora_rank:
        apply_lora(model, card.lora_rank, card.model_config.get("lora_alpha"))
    return model


def load_checkpoint(path: str | os.PathLike, device: str = "cpu", with_text: bool = False, text_dim: int | None = None, merge_lora: bool = False):
    """Load a checkpoint written by :func:`save_checkpoint`.

    Args:
        path: checkpoint folder, or a training run folder (its ``best/``).
        device: torch device for the model.
        with_text: keep the text modules (stage-2 training); False gives the inference
            model, which ignores the text weights and is strict on everything else.
        text_dim: with ``with_text``, size of new text modules for a stage-1 checkpoint.
        merge_lora: fold LoRA adapters into the backbone (inference speed).

    Returns:
        ``(model, card)``; the model is in eval mode on ``device``.

    Raises:
        InputError: the path does not exist.
        ModelError: damaged files, or weights that do not match the card.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .models.change import is_text_key
    from .models.lora import merge_lora as _merge

    folder = resolve_checkpoint(path)
    card = read_card(folder / CARD_FILE)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelError(f"{folder}: {WEIGHTS_FILE} is missing; the checkpoint is incomplete")
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelError(f"{weights}: not a readable safetensors file ({exc}); the checkpoint is damaged, re-copy or retrain it") from exc
    model = build_model(card, with_text=with_text, text_dim=text_dim)
    expected = model.state_dict()
    if not with_text:
        state = {k: v for k, v in state.items() if not is_text_key(k)}
    new_text = with_text and card.text_dim is None
    missing = [k for k in expected if k not in state and not (new_text and is_text_key(k))]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise ModelError(
            f"{weights} does not match its card ({card.backbone}, {card.num_classes} classes): "
            f"{len(missing)} missing tensor(s) {missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}"
        )
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise ModelError(f"{weights}: tensor {key} has shape {tuple(value.shape)}, the card's model expects {tuple(expected[key].shape)}")
    model.load_state_dict(state, strict=not new_text)
    model.to(device).eval()
    if merge_lora and card.lora_rank:
        _merge(model)
    source = card.backbone_config.get("weights", "?")
    logger.info("loaded checkpoint %s: backbone %s (started from %s), stage %d, %d classes, %d bands", folder, card.backbone, source, card.stage, card.num_classes, card.in_bands)
    return model, card


def check_card(card: ModelCard, *, in_bands: int | None = None, source: str = "the input", schema=None, chip_size: int | None = None) -> None:
    """Check that an input fits a model; raise InputError saying what differs.

    Args:
        card: the model's card.
        in_bands: band count of the input raster named ``source``.
        source: file name for messages (``"after.tif"``).
        schema: a ``ClassSchema`` (or dict) the caller wants to use with the model.
        chip_size: a chip side the caller wants to use.
    """
    if in_bands is not None and in_bands != card.in_bands:
        raise InputError(f"{source} has {in_bands} band{'s' if in_bands != 1 else ''}; the model expects {card.in_bands}")
    if schema is not None:
        d = schema.to_dict() if hasattr(schema, "to_dict") else schema
        names = [c.get("name") for c in d.get("classes", [])]
        trained = [c.get("name") for c in card.schema.get("classes", [])]
        if names != trained:
            raise InputError(f"class schema {d.get('name')!r} ({', '.join(map(str, names))}) differs from the one the model was trained with ({', '.join(map(str, trained))})")
    if chip_size is not None and (chip_size <= 0 or chip_size % card.size_multiple):
        raise InputError(f"chip size {chip_size} px is not a positive multiple of {card.size_multiple}, required by backbone {card.backbone}")
