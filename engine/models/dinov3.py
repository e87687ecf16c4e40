"""DINOv3 ViT backbones through ``transformers``' DINOv3 classes.

``DINOv3ViTModel`` is used directly (``AutoBackbone.from_pretrained`` fails on a local
folder). The forward pass runs the blocks itself and keeps the patch tokens after a few
blocks (3/6/9/12 for ViT-S/B, 6/12/18/24 for ViT-L), layer-normalised, dropping the CLS
and register tokens, reshaped to ``(B, C, H/16, W/16)``.

Pitfall: in train mode DINOv3's RoPE jitters its patch coordinates (``pos_embed_rescale``)
with a fresh random draw per forward call, so a siamese model must push *before* and
*after* through the encoder as one batch (see ``S2MChangeModel``).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..errors import ModelError
from .backbone import Backbone, adapt_rgb_weight

logger = logging.getLogger(__name__)

PATCH = 16

# Architectures of the released LVD-1689M checkpoints (the rest is DINOv3ViTConfig's default).
ARCHS: dict[str, dict[str, Any]] = {
    "dinov3_vits16": dict(hidden_size=384, intermediate_size=1536, num_hidden_layers=12, num_attention_heads=6),
    "dinov3_vitb16": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
    "dinov3_vitl16": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16),
}
COMMON = dict(patch_size=PATCH, num_register_tokens=4, rope_theta=100.0, layerscale_value=1.0, pos_embed_rescale=2.0, key_bias=False)

HUB_IDS = {
    "dinov3_vits16": "facebook/dinov3-vits16-pretrain-lvd1689m",
    "dinov3_vitb16": "facebook/dinov3-vitb16-pretrain-lvd1689m",
    "dinov3_vitl16": "facebook/dinov3-vitl16-pretrain-lvd1689m",
}


def default_out_indices(num_layers: int) -> list[int]:
    """Blocks (1-based) whose outputs are kept: the ends of the four quarters."""
    q = num_layers / 4
    return sorted({max(1, round(q * i)) for i in range(1, 5)})


def weights_dir() -> Path:
    """Folder searched for local weights: ``$MASKTALK_WEIGHTS`` or ``~/.cache/masktalk/weights``."""
    return Path(os.environ.get("MASKTALK_WEIGHTS") or Path.home() / ".cache" / "masktalk" / "weights")


def find_local_weights(name: str) -> Path | None:
    """A local ``save_pretrained`` folder for ``name``, or None.

    Looks in :func:`weights_dir` for a folder named after the registry name or the hub
    repository (``dinov3-vits16-pretrain-lvd1689m``), then in the Hugging Face cache.
    """
    hub_id = HUB_IDS.get(name)
    candidates = [weights_dir() / name]
    if hub_id:
        candidates.append(weights_dir() / hub_id.split("/")[-1])
    for folder in candidates:
        if (folder / "config.json").is_file() and any(folder.glob("*.safetensors")):
            return folder
    if hub_id:
        try:
            from huggingface_hub import try_to_load_from_cache

            cfg = try_to_load_from_cache(hub_id, "config.json")
            if isinstance(cfg, str):
                folder = Path(cfg).parent
                if any(folder.glob("*.safetensors")):
                    return folder
        except Exception:  # noqa: BLE001 - the cache is optional
            pass
    return None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False") or os.environ.get(
        "TRANSFORMERS_OFFLINE", "0"
    ) not in ("0", "", "false", "False")


def _missing_weights_error(name: str, detail: str = "") -> ModelError:
    hub_id = HUB_IDS.get(name, "facebook/dinov3-vits16-pretrain-lvd1689m")
    target = weights_dir() / name
    return ModelError(
        f"no weights found for backbone {name}{detail}. Download the Hugging Face repository {hub_id} "
        f"(accept its licence on huggingface.co, then `huggingface-cli download {hub_id} --local-dir {target}`) "
        f"and pass that folder as the weights, or put it at {target} (folder set by MASKTALK_WEIGHTS); "
        "or use the backbone efficientnet_lite0, whose weights ship with the engine"
    )


class DINOv3Backbone(Backbone):
    """DINOv3 ViT encoder returning multi-level patch features at stride 16.

    Args:
        name: registry name (``dinov3_vits16`` ...).
        config: a ``DINOv3ViTConfig`` (its ``num_channels`` is the number of input bands).
        out_indices: 1-based block indices whose outputs are returned.
    """

    has_attention = True
    lora_targets = ("q_proj", "k_proj", "v_proj", "o_proj")
    size_multiple = PATCH

    def __init__(self, name: str, config, out_indices: Sequence[int] | None = None, weights_source: str = "random"):
        super().__init__()
        from transformers import DINOv3ViTModel

        self.name = name
        self.vit = DINOv3ViTModel(config)
        self._finish(out_indices, weights_source)

    def _finish(self, out_indices, weights_source):
        cfg = self.vit.config
        self.in_bands = int(cfg.num_channels)
        n = int(cfg.num_hidden_layers)
        self.out_indices = list(out_indices) if out_indices else default_out_indices(n)
        if any(i < 1 or i > n for i in self.out_indices):
            raise ModelError(f"{self.name}: out_indices {self.out_indices} outside blocks 1..{n}")
        self.channels = [int(cfg.hidden_size)] * len(self.out_indices)
        self.strides = [PATCH] * len(self.out_indices)
        self.num_prefix = 1 + int(cfg.num_register_tokens)
        self.weights_source = weights_source

    @classmethod
    def from_vit(cls, name: str, vit, out_indices=None, weights_source: str = "random") -> "DINOv3Backbone":
        obj = cls.__new__(cls)
        Backbone.__init__(obj)
        obj.name = name
        obj.vit = vit
        obj._finish(out_indices, weights_source)
        return obj

    def spec(self) -> dict[str, Any]:
        cfg = {k: v for k, v in self.vit.config.to_dict().items() if k in _CONFIG_KEYS}
        return {"config": cfg, "out_indices": list(self.out_indices), "weights": self.weights_source}

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Args: x ``(B, C, H, W)`` normalised, H and W multiples of 16.

        Returns: one ``(B, hidden, H/16, W/16)`` map per entry of ``out_indices``.
        """
        b, _, h, w = x.shape
        vit = self.vit
        tokens = vit.embeddings(x)
        rope = vit.rope_embeddings(x)
        outs = []
        last = max(self.out_indices)
        wanted = set(self.out_indices)
        for i, layer in enumerate(vit.model.layer[:last], start=1):
            tokens = layer(tokens, position_embeddings=rope)
            if i in wanted:
                patch = vit.norm(tokens[:, self.num_prefix :, :])
                outs.append(patch.transpose(1, 2).reshape(b, -1, h // PATCH, w // PATCH))
        return outs


# Keys of DINOv3ViTConfig that define the architecture (kept in the model card).
_CONFIG_KEYS = {
    "patch_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "hidden_act",
    "attention_dropout", "initializer_range", "layer_norm_eps", "rope_theta", "image_size", "num_channels",
    "query_bias", "key_bias", "value_bias", "proj_bias", "mlp_bias", "layerscale_value", "drop_path_rate",
    "use_gated_mlp", "num_register_tokens", "pos_embed_shift", "pos_embed_jitter", "pos_embed_rescale",
}


def _make_config(cfg: dict[str, Any]):
    from transformers import DINOv3ViTConfig

    config = DINOv3ViTConfig(**{k: v for k, v in cfg.items() if k in _CONFIG_KEYS})
    config._attn_implementation = "sdpa"
    return config


def _adapt_bands(vit, in_bands: int) -> None:
    conv = vit.embeddings.patch_embeddings
    if conv.in_channels == in_bands:
        return
    if conv.in_channels != 3:
        raise ModelError(f"pretrained patch embedding has {conv.in_channels} bands; only RGB weights can be adapted")
    new = nn.Conv2d(in_bands, conv.out_channels, kernel_size=conv.kernel_size, stride=conv.stride, bias=conv.bias is not None)
    with torch.no_grad():
        new.weight.copy_(adapt_rgb_weight(conv.weight, in_bands))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    vit.embeddings.patch_embeddings = new
    vit.config.num_channels = in_bands


def create_dinov3(
    name: str,
    weights: str | os.PathLike | None = None,
    in_bands: int = 3,
    config: dict[str, Any] | None = None,
    out_indices: Sequence[int] | None = None,
) -> DINOv3Backbone:
    """Build a DINOv3 backbone.

    Args:
        name: ``dinov3_vits16``, ``dinov3_vitb16`` or ``dinov3_vitl16``.
        weights: ``"random"`` (random init), a local ``save_pretrained`` folder, a hub id
            (online only), or None to search :func:`find_local_weights` then the hub.
        in_bands: input bands; the RGB patch embedding is adapted (see ``backbone.py``).
        config: architecture overrides (tiny test models, or a model card's config).
        out_indices: 1-based blocks whose outputs are returned.

    Raises:
        ModelError: weights missing (offline) or unreadable.
    """
    arch = {**COMMON, **ARCHS[name], **(config or {})}
    if weights in ("random", "none"):
        arch["num_channels"] = in_bands
        bb = DINOv3Backbone(name, _make_config(arch), out_indices, "random")
        logger.info("backbone %s with random weights (%d bands)", name, in_bands)
        return bb
    from transformers import DINOv3ViTModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # stderr stays readable in the plugin's log

    source: str
    if weights is None:
        found = find_local_weights(name)
        if found is None and _offline():
            raise _missing_weights_error(name, " (offline)")
        source = str(found) if found else HUB_IDS[name]
    else:
        source = str(weights)
        if not Path(source).exists():
            looks_like_hub_id = source.count("/") == 1 and not source.startswith((".", "/", "~"))
            if _offline() or not looks_like_hub_id:
                raise _missing_weights_error(name, f": {source} does not exist")
        elif not (Path(source) / "config.json").is_file():
            raise ModelError(
                f"{source} is not a DINOv3 weights folder: config.json is missing. "
                "Give the folder written by save_pretrained / huggingface-cli download (config.json + model.safetensors)"
            )
    # A hub id may carry a pinned revision ("org/name@commit"); a local folder is read
    # as it is, never from the network. An unpinned hub id downloads the hub's current
    # "main" (the log says so): pin it for reproducible runs.
    local = Path(source).exists()
    revision = None
    if not local and "@" in source:
        source, revision = source.split("@", 1)
    if not local and revision is None:
        logger.warning("loading %s from the Hugging Face hub without a pinned revision (main); give %s@COMMIT to pin it", source, source)
    try:
        vit = DINOv3ViTModel.from_pretrained(source, attn_implementation="sdpa", revision=revision or "main", local_files_only=local)
    except pickle.UnpicklingError as exc:  # a .bin needing code; transformers reads with weights_only
        from .registry import pickled_code_error

        raise pickled_code_error(source, f"{name} weights") from exc
    except OSError as exc:
        raise _missing_weights_error(name, f": {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - translate any loader failure
        raise ModelError(f"could not load DINOv3 weights from {source}: {exc}") from exc
    if vit.config.patch_size != PATCH:
        raise ModelError(f"{source}: patch size {vit.config.patch_size}, expected {PATCH}")
    _adapt_bands(vit, in_bands)
    bb = DINOv3Backbone.from_vit(name, vit, out_indices, source)
    logger.info("backbone %s with weights from %s (%d bands)", name, source, in_bands)
    return bb


def read_folder_arch(folder: str | os.PathLike) -> str | None:
    """The registry name matching a weights folder's ``config.json`` (by hidden size), or None."""
    try:
        cfg = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    for name, arch in ARCHS.items():
        if cfg.get("hidden_size") == arch["hidden_size"]:
            return name
    return None
