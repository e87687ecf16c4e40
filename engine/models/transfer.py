"""Fine-tune from a trained MaskTalk model (``--init-from MODEL``).

:func:`init_from` copies a checkpoint's weights into a freshly built
:class:`~engine.models.change.S2MChangeModel` whose class schema may differ:

- the visual model (backbone, fuse, resample, bridge, merge, upsample) is copied whole;
  its architecture must match (backbone name, band count, backbone shape, decoder widths),
  anything else is refused with one :class:`~engine.errors.InputError` line;
- head rows are matched by class: id 0 (no change) to id 0, the other classes by name
  (case-insensitive, as the schema compares names). Classes kept get their old rows,
  classes new in the schema keep their fresh initialisation, dropped ones are reported;
- the text modules (alignment, visual projection) are copied when both models have them
  with the same text dimension, else the new model keeps fresh ones;
- LoRA: adapters of the checkpoint are folded into the base weights
  (``W + alpha / r * B A``, as peft merges them); a new model with LoRA adapters gets those
  merged weights as its base and keeps its fresh adapters (peft starts ``B`` at zero, so
  the function is the checkpoint's either way).

Weights are read from ``model.safetensors`` only; nothing is unpickled.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputError, ModelError

# DINOv3 config keys that change tensor shapes or the meaning of the features.
_ARCH_KEYS = ("patch_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_register_tokens", "use_gated_mlp")
_HEAD_KEYS = ("head.weight", "head.bias")
_LORA_A = re.compile(r"^(.*)\.lora_A\.([^.]+)\.weight$")


def init_from(model: nn.Module, checkpoint_dir: str | os.PathLike, schema: Any) -> dict[str, Any]:
    """Initialise ``model`` from a trained checkpoint (in place).

    Args:
        model: a freshly built ``S2MChangeModel`` (LoRA adapters may already be applied).
        checkpoint_dir: checkpoint folder or training run folder (its ``best/``).
        schema: the new run's ``ClassSchema`` (or its dict); ``model.num_classes`` classes.

    Returns:
        Report: ``{"checkpoint", "backbone", "stage", "copied" (tensors copied whole;
        the head's rows are copied per class),
        "classes_kept", "classes_new", "classes_dropped" (names), "text" ("copied",
        "fresh: ..." or "none"), "lora" (None or "merged rank R")}``.

    Raises:
        InputError: the checkpoint's architecture differs from the model's.
        ModelError: the checkpoint is damaged.
    """
    from ..checkpoint import read_card, resolve_checkpoint

    folder = resolve_checkpoint(checkpoint_dir)
    card = read_card(folder)
    _check_compatible(card, model, str(checkpoint_dir))
    state = _fold_lora(_read_state(folder), card)
    new_schema = schema.to_dict() if hasattr(schema, "to_dict") else dict(schema)
    if len(new_schema.get("classes", [])) != model.num_classes:
        raise InputError(f"the schema has {len(new_schema.get('classes', []))} classes; the model was built with {model.num_classes}")
    text = _text_plan(card, model)
    target = model.state_dict()
    copied = 0
    with torch.no_grad():
        for key, dst in target.items():
            src = _source_tensor(key, state, text == "copied", str(checkpoint_dir))
            if src is None:
                continue
            if tuple(src.shape) != tuple(dst.shape):
                raise InputError(f"--init-from {checkpoint_dir}: tensor {_plain(key)} has shape {tuple(src.shape)}, this run builds {tuple(dst.shape)}: pick a compatible model")
            dst.copy_(src)
            copied += 1
        kept, new, dropped = _copy_head_rows(model, state, card.schema, new_schema)
    return {
        "checkpoint": str(folder),
        "backbone": card.backbone,
        "stage": card.stage,
        "copied": copied,
        "classes_kept": kept,
        "classes_new": new,
        "classes_dropped": dropped,
        "text": text,
        "lora": f"merged rank {card.lora_rank}" if card.lora_rank else None,
    }


def _check_compatible(card: Any, model: nn.Module, source: str) -> None:
    """Refuse a checkpoint whose visual architecture differs from ``model``'s (InputError)."""
    bb = model.backbone
    spec = bb.spec()
    old_cfg, new_cfg = card.backbone_config.get("config") or {}, spec.get("config") or {}
    arch_diff = [k for k in _ARCH_KEYS if k in old_cfg and k in new_cfg and old_cfg[k] != new_cfg[k]]
    if card.backbone_config.get("out_indices") != spec.get("out_indices"):
        arch_diff.append("out_indices")
    if card.backbone != bb.name or card.in_bands != bb.in_bands or arch_diff:
        detail = f" (differs in {', '.join(arch_diff)})" if arch_diff else ""
        raise InputError(
            f"--init-from {source} has backbone {card.backbone} with {card.in_bands} bands{detail}; "
            f"this run builds {bb.name} with {bb.in_bands}: drop --backbone/--weights or pick a compatible model"
        )
    old_dec = list(card.model_config.get("decoder_channels") or [])
    if old_dec != list(model.decoder_channels):
        raise InputError(f"--init-from {source} has decoder widths {old_dec}; this run builds {list(model.decoder_channels)}: pick a model trained with the same decoder")


def _read_state(folder: Path) -> dict[str, torch.Tensor]:
    """The checkpoint's ``model.safetensors`` (ModelError when unreadable)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from ..checkpoint import WEIGHTS_FILE

    path = folder / WEIGHTS_FILE
    if not path.is_file():
        raise ModelError(f"{folder}: {WEIGHTS_FILE} is missing; the checkpoint is incomplete")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelError(f"{path}: not a readable safetensors file ({exc}); the checkpoint is damaged") from exc


def _plain(key: str) -> str:
    """A state-dict key without peft's ``.base_layer`` wrapper."""
    return key.replace(".base_layer.", ".")


def _fold_lora(state: dict[str, torch.Tensor], card: Any) -> dict[str, torch.Tensor]:
    """Plain weights: LoRA deltas folded into ``x.weight``, adapter tensors dropped."""
    if not card.lora_rank:
        return state
    alpha = card.model_config.get("lora_alpha") or card.lora_rank
    scale = float(alpha) / card.lora_rank
    out = {_plain(k): v for k, v in state.items() if ".lora_" not in k}
    for key, a in state.items():
        m = _LORA_A.match(key)
        if not m:
            continue
        prefix, name = m.groups()
        b = state.get(f"{prefix}.lora_B.{name}.weight")
        if b is None or f"{prefix}.weight" not in out:
            raise ModelError(f"{card.backbone} LoRA checkpoint: adapter {prefix} is incomplete; the checkpoint is damaged")
        out[f"{prefix}.weight"] = out[f"{prefix}.weight"] + scale * (b.float() @ a.float()).to(out[f"{prefix}.weight"].dtype)
    return out


def _is_text(key: str) -> bool:
    from .change import is_text_key

    return is_text_key(key)


def _source_tensor(key: str, state: dict[str, torch.Tensor], copy_text: bool, source: str) -> torch.Tensor | None:
    """The checkpoint tensor for a target key, or None when the target keeps its init.

    Raises:
        InputError: a visual tensor the checkpoint lacks (architectures differ).
    """
    if ".lora_" in key or key in _HEAD_KEYS or (_is_text(key) and not copy_text):
        return None
    src = state.get(_plain(key))
    if src is None:
        raise InputError(f"--init-from {source} has no tensor {_plain(key)}, which this run builds: pick a compatible model")
    return src


def _text_plan(card: Any, model: nn.Module) -> str:
    """``"copied"`` when both models have text modules of one size, else why not."""
    if not model.has_text:
        return "none"
    if card.text_dim is None:
        return "fresh: the checkpoint has no text modules (stage 1)"
    if card.text_dim != model.text_dim:
        return f"fresh: the checkpoint's text dimension is {card.text_dim}, this run's {model.text_dim}"
    return "copied"


def _class_names(schema: dict[str, Any]) -> dict[int, str]:
    return {int(c["id"]): str(c["name"]) for c in schema.get("classes", [])}


def _copy_head_rows(model: nn.Module, state: dict[str, torch.Tensor], old_schema: dict, new_schema: dict) -> tuple[list[str], list[str], list[str]]:
    """Copy head rows by class (0 -> 0, others by name). Returns (kept, new, dropped) names."""
    old = _class_names(old_schema)
    old_by_name = {n.lower(): i for i, n in old.items() if i != 0}
    w, b = state["head.weight"], state["head.bias"]
    if w.shape[0] != len(old) or tuple(w.shape[1:]) != tuple(model.head.weight.shape[1:]):
        raise ModelError(f"the checkpoint's head {tuple(w.shape)} does not match its card's {len(old)} classes")
    kept, new, used = [], [], set()
    for j, name in _class_names(new_schema).items():
        i = 0 if j == 0 else old_by_name.get(name.lower())
        if i is None:
            new.append(name)
            continue
        model.head.weight[j].copy_(w[i])
        model.head.bias[j].copy_(b[i])
        kept.append(name)
        used.add(i)
    dropped = [n for i, n in old.items() if i not in used]
    return kept, new, dropped
