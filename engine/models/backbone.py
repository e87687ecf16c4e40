"""What every backbone gives the change model, and the first-layer band adaptation.

A backbone turns a normalised image batch ``(B, C, H, W)`` into a list of feature maps
``[(B, C_i, H / s_i, W / s_i)]``. It records how to rebuild itself without its original
weights (:meth:`Backbone.spec`), so a checkpoint's model card is enough to load a model.

Band adaptation rule (any number of input bands from RGB weights ``W`` of shape
``(O, 3, k, k)``): band ``c < 3`` takes ``W[:, c]``, every extra band ``c >= 3`` takes the
mean of the three RGB kernels, and all bands are then scaled by ``3 / C`` so that an image
whose bands are alike gives the first layer the same response magnitude as an RGB one.
A single-band model thus gets ``W[:, 0]`` (scaled by 3), two bands get R and G scaled by 1.5.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)

# ImageNet statistics in 0-255 units: what the pretrained backbones expect for 8-bit RGB.
IMAGENET_MEAN_255 = (123.675, 116.28, 103.53)
IMAGENET_STD_255 = (58.395, 57.12, 57.375)


def default_mean_std(in_bands: int) -> tuple[list[float], list[float]]:
    """Per-band mean/std (raw 0-255 units) matching the pretrained weights.

    Bands beyond the three RGB ones get the mean of the RGB statistics; training should
    replace these with statistics measured on the user's rasters when they are not 8-bit RGB.
    """
    extra_mean = sum(IMAGENET_MEAN_255) / 3
    extra_std = sum(IMAGENET_STD_255) / 3
    mean = [IMAGENET_MEAN_255[c] if c < 3 else extra_mean for c in range(in_bands)]
    std = [IMAGENET_STD_255[c] if c < 3 else extra_std for c in range(in_bands)]
    return mean, std


def adapt_rgb_weight(weight: torch.Tensor, in_bands: int) -> torch.Tensor:
    """Adapt a first-layer kernel trained on RGB to ``in_bands`` input bands.

    Args:
        weight: ``(O, 3, kh, kw)`` kernel of the pretrained first layer.
        in_bands: number of input bands ``C`` (>= 1).

    Returns:
        ``(O, C, kh, kw)`` kernel following the rule in the module docstring.
    """
    if weight.shape[1] != 3:
        raise ValueError(f"expected an RGB kernel (O, 3, kh, kw), got {tuple(weight.shape)}")
    if in_bands == 3:
        return weight.clone()
    mean_kernel = weight.mean(dim=1, keepdim=True)
    bands = [weight[:, c : c + 1] if c < 3 else mean_kernel for c in range(in_bands)]
    return torch.cat(bands, dim=1) * (3.0 / in_bands)


class Backbone(nn.Module):
    """Base class: attributes the change model and the checkpoint code rely on.

    Attributes:
        name: registry name (``"dinov3_vits16"``, ``"efficientnet_lite0"``).
        in_bands: number of input bands.
        channels: channels of each returned feature map.
        strides: stride (pixels of input per feature pixel) of each returned feature map.
        size_multiple: chip sides must be a multiple of this (patch size or total stride).
        weights_source: where the weights came from (a path, a hub id, ``"random"``).
        has_attention: True when the backbone has attention projections (LoRA targets).
        default_decoder_channels: decoder width per scale suited to this backbone.
    """

    name: str = ""
    in_bands: int = 3
    channels: list[int]
    strides: list[int]
    size_multiple: int = 16
    weights_source: str = "random"
    has_attention: bool = False
    lora_targets: tuple[str, ...] = ()
    # Decoder width per scale (finest first) that keeps the change model's cost close to
    # the backbone's own forward; S2MChangeModel uses it unless told otherwise.
    default_decoder_channels: tuple[int, ...] = (64, 96, 128, 160)

    def spec(self) -> dict[str, Any]:
        """JSON-able arguments that rebuild this architecture with ``weights="random"``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError
