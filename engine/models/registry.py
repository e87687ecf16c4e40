"""Backbone registry: thin named entry points, weights discovery, the default backbone.

Default rule (:func:`default_backbone`): a DINOv3 backbone when DINOv3 weights are given
or found locally, else ``efficientnet_lite0`` with the ImageNet weights that ship with the
engine, so the demo and real data always get pretrained features.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable

from ..errors import InputError, ModelError
from .backbone import Backbone

logger = logging.getLogger(__name__)


def pickled_code_error(path: str | os.PathLike, what: str) -> ModelError:
    """The error for a weights file that needs arbitrary unpickling (refused, never run).

    Args:
        path: the file (or folder) that was read.
        what: what it should hold, for the message (``"EfficientNet-Lite0 weights"``).
    """
    return ModelError(
        f"{path} ({what}) holds pickled Python code besides tensors; the engine will not execute it. "
        "Convert it to safetensors where it was made (save its state dict with "
        "safetensors.torch.save_file(state_dict, 'model.safetensors')) or download the "
        "model's .safetensors release, and give that file instead"
    )


def read_weights_file(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """A third-party state dict: ``.safetensors``, or a torch file read with ``weights_only``.

    Args:
        path: ``.safetensors``, ``.pth``, ``.pt`` or ``.bin`` file.
        what: what it should hold, for messages.

    Returns:
        The state dict (``{name: tensor}``) on the CPU.

    Raises:
        ModelError: unreadable, or it holds pickled code (refused, see :func:`pickled_code_error`).
    """
    import pickle

    import torch

    try:
        if str(path).endswith(".safetensors"):
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise pickled_code_error(path, what) from exc
    except Exception as exc:  # noqa: BLE001 - any reader failure is an unusable file
        raise ModelError(f"cannot read {what} {path}: {exc}") from exc


def dinov3_vits16(weights=None, in_bands: int = 3, **kw) -> Backbone:
    """DINOv3 ViT-S/16 (384 wide, 12 blocks, 6 heads, 4 registers, RoPE)."""
    from .dinov3 import create_dinov3

    return create_dinov3("dinov3_vits16", weights, in_bands, **kw)


def dinov3_vitb16(weights=None, in_bands: int = 3, **kw) -> Backbone:
    """DINOv3 ViT-B/16 (768 wide, 12 blocks, 12 heads)."""
    from .dinov3 import create_dinov3

    return create_dinov3("dinov3_vitb16", weights, in_bands, **kw)


def dinov3_vitl16(weights=None, in_bands: int = 3, **kw) -> Backbone:
    """DINOv3 ViT-L/16 (1024 wide, 24 blocks, 16 heads)."""
    from .dinov3 import create_dinov3

    return create_dinov3("dinov3_vitl16", weights, in_bands, **kw)


def efficientnet_lite0(weights=None, in_bands: int = 3, **kw) -> Backbone:
    """EfficientNet-Lite0 with the packaged ImageNet weights (strides 4-32)."""
    from .efficientnet import create_efficientnet_lite0

    return create_efficientnet_lite0(weights, in_bands, **kw)


BACKBONES: dict[str, Callable[..., Backbone]] = {
    "dinov3_vits16": dinov3_vits16,
    "dinov3_vitb16": dinov3_vitb16,
    "dinov3_vitl16": dinov3_vitl16,
    "efficientnet_lite0": efficientnet_lite0,
}
DEFAULT_FALLBACK = "efficientnet_lite0"


def create_backbone(name: str, weights: str | os.PathLike | None = None, in_bands: int = 3, **kw: Any) -> Backbone:
    """Build a registered backbone.

    Args:
        name: a key of :data:`BACKBONES`.
        weights: ``"random"`` for random init; a local folder/file; a hub id (online,
            DINOv3); None for the default weights of that backbone (found locally for
            DINOv3, packaged for EfficientNet).
        in_bands: number of input bands (>= 1).
        **kw: backbone-specific options (``config``, ``out_indices`` for DINOv3).

    Raises:
        InputError: unknown name or bad band count.
        ModelError: weights missing or unusable.
    """
    if name not in BACKBONES:
        raise InputError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    if not isinstance(in_bands, int) or in_bands < 1:
        raise InputError(f"in_bands must be a positive integer, got {in_bands!r}")
    return BACKBONES[name](weights=weights, in_bands=in_bands, **kw)


def rebuild_backbone(name: str, in_bands: int, spec: dict[str, Any]) -> Backbone:
    """Rebuild a backbone's architecture from :meth:`Backbone.spec` with random weights
    (the checkpoint's weights are loaded afterwards)."""
    kw: dict[str, Any] = {}
    if name.startswith("dinov3_"):
        kw = {"config": spec.get("config") or {}, "out_indices": spec.get("out_indices")}
    return create_backbone(name, weights="random", in_bands=in_bands, **kw)


def default_backbone(weights: str | os.PathLike | None = None) -> tuple[str, str | None]:
    """Pick the backbone when the user names none.

    Args:
        weights: a DINOv3 weights folder given by the user, ``"random"`` (random init of
            the fallback backbone), or None.

    Returns:
        ``(name, weights)``: the DINOv3 variant matching the folder (or found locally),
        else ``("efficientnet_lite0", None)``.
    """
    from .dinov3 import ARCHS, find_local_weights, read_folder_arch

    if weights is not None:
        if str(weights) == "random":
            return DEFAULT_FALLBACK, "random"
        if Path(weights).is_file():
            raise InputError(
                f"{weights} is a weights file; name its architecture with --backbone "
                f"({', '.join(BACKBONES)}), or give a DINOv3 folder holding config.json and model.safetensors"
            )
        if not Path(weights).is_dir():
            raise InputError(f"DINOv3 weights folder {weights} does not exist; give the folder holding config.json and model.safetensors")
        name = read_folder_arch(weights)
        if name is None:
            raise ModelError(f"{weights}: config.json does not describe a DINOv3 ViT-S/B/L with patch 16")
        return name, str(weights)
    for name in ARCHS:
        found = find_local_weights(name)
        if found is not None:
            return name, str(found)
    return DEFAULT_FALLBACK, None


def available_weights() -> dict[str, Any]:
    """Which backbones and text encoders have weights on this machine (diagnostics).

    Returns:
        ``{"backbones": {name: {"available": bool, "source": str | None}},
        "text_encoders": {name: {...}}, "weights_dir": str, "default_backbone": name}``.
    """
    from .dinov3 import ARCHS, find_local_weights, weights_dir
    from .efficientnet import package_weights_path
    from .text import text_weights_status

    backbones: dict[str, Any] = {}
    for name in ARCHS:
        found = find_local_weights(name)
        backbones[name] = {"available": found is not None, "source": str(found) if found else None}
    eff = package_weights_path()
    backbones["efficientnet_lite0"] = {"available": bool(eff and Path(eff).is_file()), "source": eff}
    try:
        default = default_backbone()[0]
    except Exception:  # noqa: BLE001
        default = DEFAULT_FALLBACK
    return {
        "weights_dir": str(weights_dir()),
        "default_backbone": default,
        "backbones": backbones,
        "text_encoders": text_weights_status(),
    }
