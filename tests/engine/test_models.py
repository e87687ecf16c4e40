"""Backbones and the S2M change model on tiny random configurations (CPU, seconds)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engine.errors import InputError, ModelError
from engine.models.backbone import adapt_rgb_weight
from engine.models.change import S2MChangeModel, is_text_key
from engine.models.lora import apply_lora, configure_finetuning, count_parameters, freeze_backbone
from engine.models.registry import available_weights, create_backbone, default_backbone

TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=2)


def tiny_vit(in_bands: int = 3):
    return create_backbone("dinov3_vits16", weights="random", in_bands=in_bands, config=TINY)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# -- backbones ---------------------------------------------------------------------------
@pytest.mark.parametrize("in_bands,h,w", [(3, 32, 32), (1, 48, 80), (5, 64, 16)])
def test_dinov3_features_are_patch_tokens_after_chosen_blocks(in_bands, h, w):
    bb = tiny_vit(in_bands).eval()
    assert bb.out_indices == [1, 2, 3, 4] and bb.strides == [16] * 4
    x = torch.randn(2, in_bands, h, w)
    with torch.no_grad():
        feats = bb(x)
        # Reference: transformers' own forward; hidden_states[i] is the output of block i.
        ref = bb.vit(pixel_values=x, output_hidden_states=True)
    assert [tuple(f.shape) for f in feats] == [(2, 32, h // 16, w // 16)] * 4
    prefix = 1 + 4  # CLS + 4 registers
    for f, i in zip(feats, bb.out_indices):
        tokens = bb.vit.norm(ref.hidden_states[i])[:, prefix:]
        expect = tokens.reshape(2, h // 16, w // 16, 32).permute(0, 3, 1, 2)
        torch.testing.assert_close(f, expect)


def test_vits16_entry_point_has_the_real_architecture():
    from engine.models.dinov3 import ARCHS, COMMON

    cfg = {**COMMON, **ARCHS["dinov3_vits16"]}
    assert (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["num_register_tokens"]) == (384, 12, 6, 4)
    from engine.models.dinov3 import default_out_indices

    assert default_out_indices(12) == [3, 6, 9, 12]
    assert default_out_indices(24) == [6, 12, 18, 24]


def test_band_adaptation_rule():
    w = torch.randn(8, 3, 2, 2)
    four = adapt_rgb_weight(w, 4)
    torch.testing.assert_close(four[:, :3], w * 0.75)
    torch.testing.assert_close(four[:, 3], w.mean(1) * 0.75)
    torch.testing.assert_close(adapt_rgb_weight(w, 1)[:, 0], w[:, 0] * 3)
    torch.testing.assert_close(adapt_rgb_weight(w, 3), w)
    # a grey image (all bands equal) gives the same first-layer response for any band count
    grey3 = torch.full((1, 3, 2, 2), 0.7)
    grey6 = torch.full((1, 6, 2, 2), 0.7)
    r3 = torch.nn.functional.conv2d(grey3, w)
    r6 = torch.nn.functional.conv2d(grey6, adapt_rgb_weight(w, 6))
    torch.testing.assert_close(r3, r6)


def test_dinov3_from_local_folder_and_band_adaptation(tmp_path):
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    cfg = DINOv3ViTConfig(**TINY, num_register_tokens=4, key_bias=False)
    ref = DINOv3ViTModel(cfg).eval()
    ref.save_pretrained(tmp_path / "w")
    bb = create_backbone("dinov3_vits16", weights=tmp_path / "w").eval()
    assert bb.weights_source == str(tmp_path / "w")
    torch.testing.assert_close(bb.vit.embeddings.patch_embeddings.weight, ref.embeddings.patch_embeddings.weight)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(bb(x)[-1], bb.vit.norm(ref(pixel_values=x, output_hidden_states=True).hidden_states[4])[:, 5:].transpose(1, 2).reshape(1, 32, 2, 2))
    bb4 = create_backbone("dinov3_vits16", weights=tmp_path / "w", in_bands=4)
    assert bb4.in_bands == 4 and bb4.spec()["config"]["num_channels"] == 4
    torch.testing.assert_close(bb4.vit.embeddings.patch_embeddings.weight, adapt_rgb_weight(ref.embeddings.patch_embeddings.weight, 4))


def test_dinov3_missing_weights_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MASKTALK_WEIGHTS", str(tmp_path / "none"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(ModelError) as err:
        create_backbone("dinov3_vits16")
    msg = str(err.value)
    assert "facebook/dinov3-vits16-pretrain-lvd1689m" in msg and str(tmp_path / "none" / "dinov3_vits16") in msg
    with pytest.raises(ModelError, match="does not exist"):
        create_backbone("dinov3_vitb16", weights=tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="config.json"):
        create_backbone("dinov3_vits16", weights=tmp_path / "empty")


def test_default_backbone_rule(tmp_path, monkeypatch):
    monkeypatch.setenv("MASKTALK_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    assert default_backbone() == ("efficientnet_lite0", None)
    report = available_weights()
    assert report["backbones"]["efficientnet_lite0"]["available"] is True
    assert report["backbones"]["dinov3_vits16"]["available"] is False
    assert report["text_encoders"]["minilm"]["available"] is True
    folder = tmp_path / "dinov3-vitb16-pretrain-lvd1689m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "dinov3_vit", "hidden_size": 768}))
    (folder / "model.safetensors").write_bytes(b"")
    assert default_backbone() == ("dinov3_vitb16", str(folder))
    assert available_weights()["backbones"]["dinov3_vitb16"]["available"] is True
    assert default_backbone(folder) == ("dinov3_vitb16", str(folder))
    with pytest.raises(InputError):
        default_backbone(tmp_path / "nope")


def test_default_backbone_with_random_weights_or_a_file(tmp_path, monkeypatch):
    """`train --weights random` without --backbone (the help offers 'random') gets the
    fallback backbone with random init, not "DINOv3 weights folder random does not exist"."""
    monkeypatch.setenv("MASKTALK_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    assert default_backbone("random") == ("efficientnet_lite0", "random")
    f = tmp_path / "w.safetensors"
    f.write_bytes(b"")
    with pytest.raises(InputError, match="--backbone"):
        default_backbone(f)


def test_unknown_backbone_is_an_input_error():
    with pytest.raises(InputError, match="efficientnet_lite0"):
        create_backbone("resnet9000")


def test_efficientnet_package_weights_classify_chelsea_as_a_cat():
    from skimage.data import chelsea

    from engine.models.efficientnet import load_package_classifier

    model = load_package_classifier()
    img = torch.from_numpy(chelsea()).permute(2, 0, 1).float()[None]
    img = torch.nn.functional.interpolate(img, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None] * 255
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None] * 255
    with torch.no_grad():
        top1 = int(model((img - mean) / std).argmax())
    assert 281 <= top1 <= 285  # ImageNet cat classes


def test_efficientnet_backbone_loads_package_weights_with_adapted_stem():
    from engine.models.efficientnet import load_package_classifier

    ref = load_package_classifier()
    bb = create_backbone("efficientnet_lite0", in_bands=4)
    assert bb.weights_source.endswith(".pth") and bb.strides == [4, 8, 16, 32]
    torch.testing.assert_close(bb.body.conv_stem.weight, adapt_rgb_weight(ref.conv_stem.weight, 4))
    torch.testing.assert_close(bb.body.blocks[5][0].conv_pw.weight, ref.blocks[5][0].conv_pw.weight)


# -- change model ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "backbone,in_bands,size,classes",
    [("vit", 3, (32, 32), 2), ("vit", 4, (48, 64), 5), ("eff", 3, (64, 64), 7), ("eff", 1, (32, 96), 2)],
)
def test_change_model_output_shapes(backbone, in_bands, size, classes):
    bb = tiny_vit(in_bands) if backbone == "vit" else create_backbone("efficientnet_lite0", weights="random", in_bands=in_bands)
    model = S2MChangeModel(bb, classes, text_dim=12).eval()
    x = torch.randn(2, in_bands, *size)
    with torch.no_grad():
        out = model(x, x.flip(-1))
        assert out["logits"].shape == (2, classes, *size) and out["visual"] is None and out["text"] is None
        out = model(x, x.flip(-1), text=torch.randn(2, 12))
    assert out["logits"].shape == (2, classes, *size)
    assert out["visual"].shape == (2, 12) and out["text"].shape == (2, 12)


def test_bad_inputs_are_input_errors():
    model = S2MChangeModel(tiny_vit(3), 2).eval()
    with pytest.raises(InputError, match="multiple of 16"):
        model(torch.randn(1, 3, 40, 32), torch.randn(1, 3, 40, 32))
    with pytest.raises(InputError, match="4 bands; the model expects 3"):
        model(torch.randn(1, 4, 32, 32), torch.randn(1, 4, 32, 32))
    with pytest.raises(InputError, match="without text"):
        model(torch.randn(1, 3, 32, 32), torch.randn(1, 3, 32, 32), text=torch.randn(1, 8))
    with pytest.raises(InputError):
        S2MChangeModel(tiny_vit(3), 1)


def test_before_and_after_share_one_encoder_pass_in_train_mode():
    """With RoPE jitter on (train mode), identical dates must give identical features."""
    bb = tiny_vit(3)
    assert bb.vit.config.pos_embed_rescale == 2.0
    model = S2MChangeModel(bb, 2).train()
    seen = []
    bb.register_forward_hook(lambda mod, inp, out: seen.append(out))
    x = torch.randn(2, 3, 32, 32)
    model(x, x.clone())
    assert len(seen) == 1
    for f in seen[0]:
        assert torch.equal(f[:2], f[2:])
    # two separate train-mode calls do differ: the pitfall the single batch avoids
    assert not torch.equal(bb(x)[0], bb(x)[0])


def test_text_changes_the_output_and_inference_model_equals_full_model_without_text():
    full = S2MChangeModel(tiny_vit(3), 3, text_dim=8).eval()
    infer = S2MChangeModel(tiny_vit(3), 3).eval()
    state = {k: v for k, v in full.state_dict().items() if not is_text_key(k)}
    infer.load_state_dict(state, strict=True)
    assert not any(is_text_key(k) for k in infer.state_dict())
    x, y = torch.randn(2, 3, 32, 48), torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        a = full(x, y)["logits"]
        b = infer(x, y)["logits"]
        text = torch.randn(2, 8)
        c = full(x, y, text=text)["logits"]
        assert torch.allclose(a, c, atol=1e-6)  # zero-initialised alignment: stage 2 starts at the stage-1 function
        for align in full.align:  # as after some stage-2 training
            torch.nn.init.normal_(align.attn.out_proj.weight, std=0.5)
        d = full(x, y, text=text)["logits"]
    assert torch.equal(a, b)
    assert not torch.allclose(a, d, atol=1e-3)


def _step(model, x, text=None, mask=None):
    model.zero_grad()
    out = model(x, x.roll(3, -1), text=text, text_mask=mask)
    (out["logits"].square().mean() + (out["visual"].sum() if out["visual"] is not None else 0)).backward()


def test_gradients_reach_backbone_decoder_and_text_modules():
    model = S2MChangeModel(tiny_vit(3), 2, text_dim=8).train()
    x, text = torch.randn(2, 3, 32, 32), torch.randn(2, 8)
    _step(model, x, text=text)
    for align in model.align:  # zero-initialised output: only it learns at the first step
        assert align.attn.out_proj.weight.grad.abs().sum() > 0
        assert align.attn.q_proj_weight.grad is None or align.attn.q_proj_weight.grad.abs().sum() == 0
        torch.nn.init.normal_(align.attn.out_proj.weight, std=0.5)  # as after a few steps
    _step(model, x, text=text)
    for name, p in model.named_parameters():
        if "mask_token" in name:  # used only for masked pre-training
            continue
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_frozen_backbone_trains_only_the_rest():
    model = S2MChangeModel(create_backbone("efficientnet_lite0", weights="random"), 2)
    freeze_backbone(model)
    model.train()
    assert not model.backbone.training and model.head.training  # BN statistics of the backbone kept
    _step(model, torch.randn(2, 3, 32, 32))
    assert all(p.grad is None for p in model.backbone.parameters())
    assert model.head.weight.grad.abs().sum() > 0
    counts = count_parameters(model)
    assert counts["backbone_trainable"] == 0 and counts["trainable"] == counts["total"] - counts["backbone"]


def test_lora_trains_only_adapters_inside_the_backbone():
    model = S2MChangeModel(tiny_vit(3), 2)
    before = count_parameters(model)
    counts = configure_finetuning(model, lora_rank=4)
    # 4 blocks x 4 projections x (A: 4x32 + B: 32x4)
    assert counts["backbone_trainable"] == 4 * 4 * (4 * 32 + 32 * 4)
    assert counts["total"] == before["total"] + counts["backbone_trainable"]
    with torch.no_grad():  # peft starts B at zero; make the adapters matter
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_()
    model.train()
    _step(model, torch.randn(2, 3, 32, 32))
    for name, p in model.backbone.named_parameters():
        if "lora_" in name:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name
    assert model.head.weight.grad is not None


def test_lora_needs_attention():
    model = S2MChangeModel(create_backbone("efficientnet_lite0", weights="random"), 2)
    with pytest.raises(InputError, match="attention"):
        apply_lora(model, 4)
    with pytest.raises(InputError):
        apply_lora(S2MChangeModel(tiny_vit(3), 2), 0)



# -- token-level text alignment ----------------------------------------------------------
def _text_model(text_dim=12):
    # text_dim != decoder widths: nn.MultiheadAttention keeps separate q/k/v projections
    return S2MChangeModel(tiny_vit(3), 3, text_dim=text_dim)


def _tokens(b=2, t=5, d=12, pad_from=(3, 5)):
    tokens = torch.randn(b, t, d)
    mask = torch.zeros(b, t, dtype=torch.bool)
    for i, start in enumerate(pad_from):
        mask[i, start:] = True
    return tokens, mask


def _qk_grad(align):
    return align.attn.q_proj_weight.grad.abs().sum() + align.attn.k_proj_weight.grad.abs().sum()


def test_token_attention_trains_query_and_key_after_the_first_step():
    """Several keys per chip: the softmax depends on the visual query, so once the
    zero-initialised out_proj has taken one step, q_proj/k_proj get gradients and the
    text term differs between pixels of one chip (with one key it is a per-chip offset)."""
    model = _text_model().train()
    x = torch.randn(2, 3, 32, 32)
    tokens, mask = _tokens()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    _step(model, x, text=tokens, mask=mask)
    for align in model.align:  # step 0: out_proj = 0 blocks every gradient behind it
        assert align.attn.out_proj.weight.grad.abs().sum() > 0 and float(_qk_grad(align)) == 0.0
    opt.step()
    _step(model, x, text=tokens, mask=mask)
    for align in model.align:
        assert align.attn.out_proj.weight.abs().sum() > 0
        assert _qk_grad(align) > 1e-6
    with torch.no_grad():
        r = model.encode(x, x.roll(3, -1))[0]
        many = model.align[0](r, tokens, mask)  # (B, C, h, w)
        one = model.align[0](r, tokens[:, :1])
    assert many[0].flatten(1).std(dim=1).max() > 1e-4  # varies over the pixels of chip 0
    assert one[0].flatten(1).std(dim=1).max() < 1e-6  # one key: the same vector everywhere


def test_single_key_gives_no_query_gradient():
    model = _text_model().train()
    for align in model.align:
        torch.nn.init.normal_(align.attn.out_proj.weight, std=0.5)
    _step(model, torch.randn(2, 3, 32, 32), text=torch.randn(2, 12))
    for align in model.align:
        assert align.attn.q_proj_weight.grad.abs().max() < 1e-6 * max(1.0, float(align.attn.v_proj_weight.grad.abs().max()))


def test_chip_with_all_tokens_padded_gets_no_text_term():
    model = _text_model()
    for align in model.align:
        torch.nn.init.normal_(align.attn.out_proj.weight, std=0.5)
    tokens, mask = _tokens(pad_from=(0, 2))  # chip 0: caption dropped
    x, y = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        out = model(x, y, text=tokens, text_mask=mask, plain=True)
        r = model.encode(x, y)[1]
        a = model.align[1](r, tokens, mask)
    assert torch.isfinite(out["logits"]).all() and torch.isfinite(out["text"]).all()
    assert torch.equal(a[0], torch.zeros_like(a[0])) and a[1].abs().sum() > 0
    torch.testing.assert_close(out["logits"][0], out["plain_logits"][0])
    assert not torch.allclose(out["logits"][1], out["plain_logits"][1], atol=1e-4)
    assert torch.equal(out["text"][0], torch.zeros(12))
    model.train()
    model.zero_grad()
    out = model(x, y, text=tokens, text_mask=mask)
    (out["logits"].square().mean() + out["visual"].sum()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def _bn_buffers(model):
    return {k: v.clone() for k, v in model.state_dict().items() if "running_" in k or "num_batches_tracked" in k}


def test_only_the_text_free_pass_updates_batchnorm_statistics():
    import copy

    model = _text_model()
    for align in model.align:
        torch.nn.init.normal_(align.attn.out_proj.weight, std=0.5)
    twin = copy.deepcopy(model)
    start = _bn_buffers(model)
    tokens, mask = _tokens()
    x, y = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    model.train(), twin.train()
    torch.manual_seed(1)  # same RoPE jitter draw in both
    out = model(x, y, text=tokens, text_mask=mask, plain=True)
    torch.manual_seed(1)
    ref = twin(x, y)
    after, expect = _bn_buffers(model), _bn_buffers(twin)
    assert after.keys() == expect.keys() and all(torch.equal(after[k], expect[k]) for k in after)
    assert any(not torch.equal(after[k], start[k]) for k in after if "running_mean" in k and k.startswith("merge"))
    torch.testing.assert_close(out["plain_logits"], ref["logits"])
    assert not torch.allclose(out["logits"], out["plain_logits"], atol=1e-4)
    assert set(out) == {"logits", "plain_logits", "visual", "text"}
    assert all(m.track_running_stats for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    # a text pass alone (plain=False) leaves the decoder's statistics untouched as well
    dec = {k: v for k, v in _bn_buffers(model).items() if k.startswith(("merge", "upsample"))}
    model(x, y, text=tokens, text_mask=mask)
    assert all(torch.equal(_bn_buffers(model)[k], v) for k, v in dec.items())


def test_text_pass_in_eval_mode_uses_running_statistics():
    model = _text_model().eval()
    for align in model.align:
        torch.nn.init.normal_(align.attn.out_proj.weight, std=0.5)
    tokens, mask = _tokens()
    x, y = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        both = model(x, y, text=tokens, text_mask=mask)["logits"]
        first = model(x[:1], y[:1], text=tokens[:1], text_mask=mask[:1])["logits"]
    torch.testing.assert_close(both[:1], first, atol=1e-5, rtol=1e-4)  # no batch statistics


def test_visual_feature_is_pooled_over_the_changed_pixels():
    model = _text_model()
    r = [torch.randn(2, 4, 8, 8), torch.randn(2, 6, 2, 2)]
    pool = torch.zeros(2, 32, 32, dtype=torch.bool)
    pool[0, :16, :16] = True  # chip 0: changes in the north-west quarter; chip 1: none
    got = model.pool_visual(r, pool)
    expect0 = torch.cat([r[0][0, :, :4, :4].mean((1, 2)), r[1][0, :, 0, 0]])
    expect1 = torch.cat([r[0][1].mean((1, 2)), r[1][1].mean((1, 2))])
    torch.testing.assert_close(got[0], expect0)
    torch.testing.assert_close(got[1], expect1)
    torch.testing.assert_close(model.pool_visual(r), torch.stack([torch.cat([t[i].mean((1, 2)) for t in r]) for i in range(2)]))
    x = torch.randn(2, 3, 32, 32)
    tokens, mask = _tokens()
    glob = torch.randn(2, 12)
    with torch.no_grad():
        out = model.eval()(x, x.flip(-1), text=tokens, text_mask=mask, text_global=glob, pool_mask=pool)
        plain_pool = model(x, x.flip(-1), text=tokens, text_mask=mask)["visual"]
    assert out["visual"].shape == (2, 12) and torch.equal(out["text"], glob)
    assert not torch.allclose(out["visual"][0], plain_pool[0]) and torch.allclose(out["visual"][1], plain_pool[1], atol=1e-6)
    keep = (~mask).float().unsqueeze(-1)
    torch.testing.assert_close(model(x, x, text=tokens, text_mask=mask)["text"], (tokens * keep).sum(1) / keep.sum(1))
    with pytest.raises(InputError, match="text_mask"):
        model(x, x, text=tokens, text_mask=mask[:, :2])
    with pytest.raises(InputError, match="pool_mask"):
        model(x, x, text=tokens, pool_mask=pool[0])


# -- weights files holding pickled code --------------------------------------------------
PWNED = []


def _pwn():  # would run on unpickling; weights_only refuses to import it
    PWNED.append(True)


class _Payload:
    def __reduce__(self):
        return (_pwn, ())


def test_efficientnet_weights_with_pickled_code_are_refused(tmp_path):
    path = tmp_path / "lite0.pth"
    torch.save({"_conv_stem.weight": torch.zeros(32, 3, 3, 3), "payload": _Payload()}, path)
    with pytest.raises(ModelError) as err:
        create_backbone("efficientnet_lite0", weights=path)
    msg = str(err.value)
    assert "pickled Python code" in msg and "will not execute" in msg and "safetensors" in msg
    assert "weights_only" not in msg and "trust" not in msg
    assert not PWNED


def test_efficientnet_weights_from_safetensors(tmp_path):
    from safetensors.torch import save_file

    from engine.models.efficientnet import package_weights_path

    sd = torch.load(package_weights_path(), map_location="cpu", weights_only=True)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "lite0.safetensors"))
    a = create_backbone("efficientnet_lite0", weights=tmp_path / "lite0.safetensors")
    b = create_backbone("efficientnet_lite0")
    torch.testing.assert_close(a.body.blocks[3][0].conv_pw.weight, b.body.blocks[3][0].conv_pw.weight)


def test_dinov3_folder_with_pickled_code_is_refused(tmp_path):
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    cfg = DINOv3ViTConfig(**TINY, num_register_tokens=4, key_bias=False)
    DINOv3ViTModel(cfg).save_pretrained(tmp_path / "w")
    from safetensors.torch import load_file

    sd = load_file(str(tmp_path / "w" / "model.safetensors"))
    (tmp_path / "w" / "model.safetensors").unlink()
    torch.save({**sd, "payload": _Payload()}, tmp_path / "w" / "pytorch_model.bin")
    with pytest.raises(ModelError, match="pickled Python code") as err:
        create_backbone("dinov3_vits16", weights=tmp_path / "w")
    assert "weights_only" not in str(err.value) and not PWNED
