"""LoRA fine-tuning of the backbone, frozen-backbone training, parameter counts.

LoRA adapters go on the backbone's attention projections (``q_proj``, ``k_proj``,
``v_proj``, ``o_proj`` of DINOv3) through ``peft.inject_adapter_in_model``, which edits the
module in place (no ``PeftModel`` wrapper), so the change model keeps its structure and its
state dict simply gains ``...base_layer.weight`` and ``...lora_A/B.default.weight`` keys.

Saving and loading: the checkpoint holds the whole state dict (base weights + adapters,
unmerged); the card records ``lora_rank`` and ``lora_alpha``. Loading rebuilds the
backbone, injects adapters of the same rank, then loads the state dict strictly, which
round-trips exactly. :func:`merge_lora` folds the adapters into the base weights for
faster inference (such a model must not be saved again).
"""

from __future__ import annotations

import logging

from torch import nn

from ..errors import InputError, ModelError

logger = logging.getLogger(__name__)


def _backbone(model: nn.Module) -> nn.Module:
    return getattr(model, "backbone", model)


def apply_lora(model: nn.Module, rank: int = 8, alpha: float | None = None, dropout: float = 0.0) -> nn.Module:
    """Inject LoRA adapters into the backbone's attention projections (in place).

    Afterwards only the adapters are trainable inside the backbone; the rest of the change
    model (fusion, bridge, decoder, head, text modules) keeps its ``requires_grad``.

    Args:
        model: an ``S2MChangeModel`` (or a bare backbone).
        rank: LoRA rank ``r`` (> 0).
        alpha: LoRA scaling numerator (default ``r``: scale 1).
        dropout: dropout on the adapter input.

    Returns:
        ``model`` itself.

    Raises:
        InputError: bad rank, or a backbone without attention projections.
    """
    from peft import LoraConfig, inject_adapter_in_model

    if not isinstance(rank, int) or rank <= 0:
        raise InputError(f"LoRA rank must be a positive integer, got {rank!r}")
    bb = _backbone(model)
    if not getattr(bb, "has_attention", False):
        raise InputError(f"LoRA targets attention projections; backbone {getattr(bb, 'name', type(bb).__name__)} has none (use a dinov3_* backbone, or train without --lora-rank)")
    if getattr(bb, "lora_rank", 0):
        raise ModelError(f"LoRA adapters are already on this backbone (rank {bb.lora_rank})")
    alpha = float(alpha if alpha is not None else rank)
    cfg = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(bb.lora_targets), bias="none")
    inject_adapter_in_model(cfg, bb)
    for name, p in bb.named_parameters():
        p.requires_grad_("lora_" in name)
    bb.lora_rank = rank
    bb.lora_alpha = alpha
    logger.info("LoRA rank %d (alpha %g) on %s attention projections", rank, alpha, bb.name)
    return model


def freeze_backbone(model: nn.Module, frozen: bool = True) -> nn.Module:
    """Freeze (or unfreeze) the backbone's own weights; LoRA adapters stay trainable.

    A frozen backbone also stays in eval mode while the model trains (BatchNorm
    statistics and DINOv3's RoPE jitter off), see ``S2MChangeModel.train``.
    """
    bb = _backbone(model)
    for name, p in bb.named_parameters():
        p.requires_grad_(("lora_" in name) or not frozen)
    if hasattr(model, "backbone_frozen"):
        model.backbone_frozen = frozen
        model.train(model.training)
    return model


def configure_finetuning(model: nn.Module, lora_rank: int = 0, freeze: bool = False, lora_alpha: float | None = None) -> dict[str, int]:
    """One call for the trainer: LoRA if ``lora_rank > 0``, frozen backbone if ``freeze``.

    Returns:
        :func:`count_parameters` of the configured model.
    """
    if lora_rank:
        apply_lora(model, lora_rank, lora_alpha)
    if freeze:
        freeze_backbone(model, True)
    counts = count_parameters(model)
    logger.info("parameters: %d total, %d trainable", counts["total"], counts["trainable"])
    return counts


def count_parameters(model: nn.Module) -> dict[str, int]:
    """``{"total": N, "trainable": M, "backbone": ..., "backbone_trainable": ...}`` (numbers of scalars)."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    bb = _backbone(model)
    out = {"total": total, "trainable": trainable}
    if bb is not model:
        out["backbone"] = sum(p.numel() for p in bb.parameters())
        out["backbone_trainable"] = sum(p.numel() for p in bb.parameters() if p.requires_grad)
    return out


def lora_layers(model: nn.Module) -> list[nn.Module]:
    """The peft LoRA layers inside ``model``."""
    from peft.tuners.lora import LoraLayer

    return [m for m in model.modules() if isinstance(m, LoraLayer)]


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold the adapters into the base weights (inference speed). Do not save afterwards."""
    for layer in lora_layers(model):
        if not layer.merged:
            layer.merge()
    return model


def has_merged_lora(model: nn.Module) -> bool:
    return any(layer.merged for layer in lora_layers(model))
