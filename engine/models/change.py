"""The S2M change model (paper §3.2; MC-DiSNet-style siamese detector).

Pipeline for a pair ``(before, after)`` of normalised chips ``(B, C, H, W)``:

1. **Shared siamese encoder**: both dates go through the backbone as ONE batch of
   ``2B`` images (DINOv3's train-mode RoPE jitter draws new random coordinates per call,
   so two calls would see the dates under different position encodings).
2. **Per-scale fusion**: at each feature level, ``[f_before, f_after, |f_before - f_after|]``
   -> 1x1 conv + BN + ReLU -> ``D_l`` channels. ViT levels (all at stride 16) are then
   resampled to strides 4, 8, 16, 32 (transposed conv up, strided conv down); CNN levels
   keep their own strides. The result is ``R_I`` (one map per scale).
3. **Feature bridge** ``W_b`` (gated, per scale) and, only when text is given, the
   **text-guided alignment**: ``R_m = Attention(R_I, R_T, R_T) + W_b R_I`` (eq. 4);
   without text ``R_m = W_b R_I``.
4. **Decoder**: top-down from the coarsest scale, each step upsampling and merging the next
   finer ``R_m`` (3x3 conv + BN + ReLU), then a learned x2 step from stride 4 to stride 2.
5. **Head**: 1x1 conv, one logit per schema class (0 = no change; binary change detection
   is the two-class case), upsampled bilinearly to the full resolution.

The global visual feature for InfoNCE is a projection of ``R_I`` (all scales, concatenated)
pooled over the chip's changed pixels (what its caption describes; all pixels for a chip
without change) into the text embedding dimension.

Stage 2 with ``plain=True`` decodes the same encoder features twice: with text (``logits``)
and without (``plain_logits``, what inference computes). Only the text-free decode updates
the decoder's BatchNorm running statistics (see :func:`frozen_bn_stats`).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .alignment import FeatureBridge, TextGuidedAlignment
from .backbone import Backbone

logger = logging.getLogger(__name__)

DEFAULT_DECODER_CHANNELS = (64, 96, 128, 160)


def conv_bn_relu(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _resampler(channels: int, src_stride: int, dst_stride: int) -> nn.Module:
    if dst_stride == src_stride:
        return nn.Identity()
    if dst_stride < src_stride:
        f = src_stride // dst_stride
        return nn.Sequential(nn.ConvTranspose2d(channels, channels, f, stride=f), nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
    return conv_bn_relu(channels, channels, 3, stride=dst_stride // src_stride)


class S2MChangeModel(nn.Module):
    """Siamese change detector with the S2M feature bridge and optional text alignment.

    Args:
        backbone: a :class:`~engine.models.backbone.Backbone` (shared by both dates).
        num_classes: ``K`` logits per pixel (schema classes incl. 0 = no change), >= 2.
        text_dim: text embedding size ``D_t``; None builds the inference model without
            the text modules (alignment and visual projection).
        decoder_channels: ``D_l`` per scale, finest first (as many as backbone levels);
            default: the backbone's ``default_decoder_channels``.
        attn_heads: heads of the text-guided cross-attention.
    """

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        text_dim: int | None = None,
        decoder_channels: Sequence[int] | None = None,
        attn_heads: int = 4,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise InputError(f"num_classes must be >= 2 (class 0 = no change), got {num_classes}")
        self.backbone = backbone
        self.num_classes = int(num_classes)
        self.text_dim = int(text_dim) if text_dim else None
        self.attn_heads = int(attn_heads)
        levels = len(backbone.channels)
        default = getattr(backbone, "default_decoder_channels", DEFAULT_DECODER_CHANNELS)
        chans = list(decoder_channels) if decoder_channels else list(default[:levels])
        while len(chans) < levels:
            chans.append(chans[-1])
        self.decoder_channels = chans[:levels]
        if len(set(backbone.strides)) == 1:  # plain ViT: build a pyramid
            self.target_strides = [4 * 2**i for i in range(levels)]
        else:
            self.target_strides = list(backbone.strides)
        self.output_stride = min(self.target_strides)

        self.fuse = nn.ModuleList(conv_bn_relu(3 * c, d, k=1) for c, d in zip(backbone.channels, self.decoder_channels))
        self.resample = nn.ModuleList(
            _resampler(d, s, t) for d, s, t in zip(self.decoder_channels, backbone.strides, self.target_strides)
        )
        self.bridge = nn.ModuleList(FeatureBridge(d) for d in self.decoder_channels)
        self.merge = nn.ModuleList(
            conv_bn_relu(self.decoder_channels[i + 1] + self.decoder_channels[i], self.decoder_channels[i]) for i in range(levels - 1)
        )
        # From the finest pyramid stride up to stride 2, one learned x2 step at a time; the
        # head's logits are then upsampled bilinearly to full resolution (a 3x3 conv at
        # full resolution cost ~12 % of an EfficientNet forward on CPU for no measured gain
        # in a speed-bound, CPU-first tool).
        ups = []
        c = self.decoder_channels[0]
        s = self.output_stride
        while s > 2:
            nc = max(16, c // 2)
            ups.append(conv_bn_relu(c, nc))
            c, s = nc, s // 2
        self.upsample = nn.ModuleList(ups)
        self.head = nn.Conv2d(c, self.num_classes, 1)

        if self.text_dim:
            self.align = nn.ModuleList(TextGuidedAlignment(d, self.text_dim, attn_heads) for d in self.decoder_channels)
            total = sum(self.decoder_channels)
            self.visual_proj = nn.Sequential(nn.Linear(total, total), nn.GELU(), nn.Linear(total, self.text_dim))
        self.backbone_frozen = False

    # -- description -------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """JSON-able constructor arguments besides the backbone (kept in the model card)."""
        return {"num_classes": self.num_classes, "text_dim": self.text_dim, "decoder_channels": list(self.decoder_channels), "attn_heads": self.attn_heads}

    @property
    def has_text(self) -> bool:
        return self.text_dim is not None

    def train(self, mode: bool = True) -> "S2MChangeModel":
        """Like ``nn.Module.train``, but a frozen backbone stays in eval mode (BN statistics kept)."""
        super().train(mode)
        if self.backbone_frozen:
            self.backbone.eval()
        return self

    # -- forward -----------------------------------------------------------------------
    def _check(self, before: torch.Tensor, after: torch.Tensor) -> None:
        if before.ndim != 4 or before.shape != after.shape:
            raise InputError(f"before and after must be (B, C, H, W) batches of the same shape, got {tuple(before.shape)} and {tuple(after.shape)}")
        _, c, h, w = before.shape
        if c != self.backbone.in_bands:
            raise InputError(f"the chips have {c} bands; the model expects {self.backbone.in_bands}")
        m = self.backbone.size_multiple
        if h % m or w % m:
            raise InputError(f"chip size {h}x{w} px is not a multiple of {m} (required by {self.backbone.name}); pad or choose another chip size")

    def encode(self, before: torch.Tensor, after: torch.Tensor) -> list[torch.Tensor]:
        """Siamese encoding and per-scale fusion: ``R_I``, one ``(B, D_l, H/t_l, W/t_l)`` per scale."""
        b = before.shape[0]
        feats = self.backbone(torch.cat([before, after], dim=0))  # one batch: same RoPE draw
        out = []
        for f, fuse, res in zip(feats, self.fuse, self.resample):
            fb, fa = f[:b], f[b:]
            out.append(res(fuse(torch.cat([fb, fa, (fb - fa).abs()], dim=1))))
        return out

    def decode(self, r_m: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Decoder + head: ``R_m`` -> logits ``(B, K, H, W)``."""
        x = r_m[-1]
        for i in range(len(r_m) - 2, -1, -1):
            skip = r_m[i]
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = self.merge[i](torch.cat([x, skip], dim=1))
        for up in self.upsample:
            x = up(F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False))
        logits = self.head(x)
        if tuple(logits.shape[-2:]) != tuple(size):
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return logits

    def forward(
        self,
        before: torch.Tensor,
        after: torch.Tensor,
        text: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
        text_global: torch.Tensor | None = None,
        pool_mask: torch.Tensor | None = None,
        plain: bool = False,
    ) -> dict[str, torch.Tensor | None]:
        """Predict change logits.

        Args:
            before: ``(B, C, H, W)`` normalised chip of the first date.
            after: ``(B, C, H, W)`` normalised chip of the second date.
            text: optional text for stage 2: ``(B, T, D_t)`` token states (a chip's
                tokens = those of all its S2M sentences, concatenated and padded) or, for
                backward compatibility, ``(B, D_t)`` sentence embeddings (one key).
            text_mask: optional ``(B, T)`` bool, True at padding tokens; a chip with all
                tokens padded (caption dropout) gets no text term.
            text_global: optional ``(B, D_t)`` caption embedding returned as ``"text"``
                (InfoNCE target); default: the masked mean of the tokens.
            pool_mask: optional ``(B, H, W)`` bool, the chip's changed pixels: the global
                visual feature is pooled there (the captions describe those pixels); a
                chip without any changed pixel is pooled over all pixels.
            plain: with text, also decode the text-free ``R_m = W_b R_I`` of the same
                encoder features (``"plain_logits"``).

        Returns:
            ``{"logits": (B, K, H, W), "visual": (B, D_t) | None, "text": (B, D_t) | None}``
            plus ``"plain_logits": (B, K, H, W)`` when ``plain`` and text are given.
            ``logits`` use the text when it is given. ``visual`` (global visual feature,
            not normalised) and ``text`` are None without text.

        BatchNorm: the decoder's running statistics are what inference uses, and
        inference has no text, so only text-free decodes update them; the text-modulated
        decode normalises with batch statistics (train mode) but leaves them untouched.
        Train with ``plain=True`` so the statistics follow the stage-2 features.
        """
        self._check(before, after)
        size = before.shape[-2:]
        r_i = self.encode(before, after)
        base = [bridge(r) for bridge, r in zip(self.bridge, r_i)]
        if text is None:
            return {"logits": self.decode(base, size), "visual": None, "text": None}
        tokens, mask = self._text_tokens(text, text_mask, before.shape[0])
        out: dict[str, torch.Tensor | None] = {}
        if plain:
            out["plain_logits"] = self.decode(base, size)
        r_m = [m + align(r, tokens, mask) for m, align, r in zip(base, self.align, r_i)]
        with frozen_bn_stats(self.decoder_modules()):
            out["logits"] = self.decode(r_m, size)
        out["visual"] = self.visual_proj(self.pool_visual(r_i, pool_mask))
        out["text"] = self._text_global(tokens, mask, text_global)
        return out

    def decoder_modules(self) -> list[nn.Module]:
        """The modules that see ``R_m`` (text-modulated in stage 2): merge, upsample, head."""
        return [self.merge, self.upsample, self.head]

    def _text_tokens(self, text: torch.Tensor, mask: torch.Tensor | None, b: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Validate ``text`` and return ``(tokens (B, T, D_t), mask (B, T) | None)``."""
        if not self.has_text:
            raise InputError("this model was built without text modules (inference model); build it with text_dim to train with captions")
        tokens = text.unsqueeze(1) if text.ndim == 2 else text
        if tokens.ndim != 3 or tokens.shape[0] != b or tokens.shape[-1] != self.text_dim:
            raise InputError(f"text embeddings must be (B, {self.text_dim}) or (B, T, {self.text_dim}) with B = {b}, got {tuple(text.shape)}")
        if mask is not None and tuple(mask.shape) != tuple(tokens.shape[:2]):
            raise InputError(f"text_mask must be (B, T) = {tuple(tokens.shape[:2])}, got {tuple(mask.shape)}")
        return tokens, (mask.to(device=tokens.device, dtype=torch.bool) if mask is not None else None)

    def _text_global(self, tokens: torch.Tensor, mask: torch.Tensor | None, text_global: torch.Tensor | None) -> torch.Tensor:
        """``(B, D_t)``: ``text_global`` if given, else the masked mean of the tokens (0 if all padded)."""
        if text_global is not None:
            if tuple(text_global.shape) != (tokens.shape[0], self.text_dim):
                raise InputError(f"text_global must be (B, {self.text_dim}) with B = {tokens.shape[0]}, got {tuple(text_global.shape)}")
            return text_global
        if mask is None:
            return tokens.mean(1)
        keep = (~mask).unsqueeze(-1).to(tokens.dtype)
        return (tokens * keep).sum(1) / keep.sum(1).clamp_min(1)

    def pool_visual(self, r_i: list[torch.Tensor], pool_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Global visual feature before projection: ``R_I`` of every scale pooled, concatenated.

        The S2M captions describe the changed pixels (their location, extent and class),
        so the feature the contrastive loss aligns with a caption is pooled where the
        caption looks: a weighted mean with weights = the fraction of changed pixels in
        each feature cell (area pooling of the mask to the scale). A chip without any
        changed pixel (or ``pool_mask`` None) is averaged over all pixels.

        Args:
            r_i: one ``(B, D_l, h_l, w_l)`` map per scale.
            pool_mask: optional ``(B, H, W)`` bool, True at changed pixels.

        Returns:
            ``(B, sum D_l)``.
        """
        if pool_mask is None:
            return torch.cat([r.mean(dim=(2, 3)) for r in r_i], dim=1)
        if pool_mask.ndim != 3 or pool_mask.shape[0] != r_i[0].shape[0]:
            raise InputError(f"pool_mask must be (B, H, W) with B = {r_i[0].shape[0]}, got {tuple(pool_mask.shape)}")
        m = pool_mask.to(device=r_i[0].device, dtype=r_i[0].dtype).unsqueeze(1)  # (B, 1, H, W)
        any_changed = (m.flatten(1).sum(1) > 0).to(m.dtype)[:, None, None, None]
        pooled = []
        for r in r_i:
            w = F.adaptive_avg_pool2d(m, r.shape[-2:])
            w = any_changed * w + (1 - any_changed)  # no changed pixel: all pixels
            pooled.append((r * w).sum(dim=(2, 3)) / w.sum(dim=(2, 3)).clamp_min(1e-6))
        return torch.cat(pooled, dim=1)


@contextlib.contextmanager
def frozen_bn_stats(modules: Sequence[nn.Module]) -> Iterator[None]:
    """Run BatchNorm layers inside ``modules`` without updating their running statistics.

    ``track_running_stats`` is switched off for the duration: in train mode BN still
    normalises with the batch statistics (the same as an updating pass) but neither
    ``running_mean``/``running_var`` nor ``num_batches_tracked`` change; in eval mode BN
    uses its running statistics as usual. Restored on exit, also on an exception.
    """
    bns = [m for mod in modules for m in mod.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    for bn in bns:
        bn.track_running_stats = False
    try:
        yield
    finally:
        for bn in bns:
            bn.track_running_stats = True


TEXT_PREFIXES = ("align.", "visual_proj.")


def is_text_key(key: str) -> bool:
    """True for state-dict keys of the text modules (absent from inference models)."""
    return key.startswith(TEXT_PREFIXES)
