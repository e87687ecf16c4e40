"""--init-from: a trained checkpoint into a fresh model with another class schema."""

from __future__ import annotations

import pytest
import torch

from engine.checkpoint import make_card, save_checkpoint
from engine.errors import InputError
from engine.models.change import S2MChangeModel, is_text_key
from engine.models.lora import apply_lora
from engine.models.registry import create_backbone
from engine.models.transfer import init_from
from engine.schema import ClassSchema, load_preset

TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=2)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _vit(in_bands=3, config=TINY):
    return create_backbone("dinov3_vits16", weights="random", in_bands=in_bands, config=config)


def _trained(schema, in_bands=3, text_dim=None, lora=0):
    """A 'trained' model: random weights with non-default BN statistics."""
    model = S2MChangeModel(_vit(in_bands), schema.num_classes, text_dim=text_dim)
    if lora:
        apply_lora(model, lora, alpha=2 * lora)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:  # adapters that matter (peft starts B at 0)
                p.normal_(std=2.0)
            elif name.startswith("align"):
                p.normal_(std=0.1)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    return model.eval()


def _save(tmp_path, model, schema, stage=1):
    n = model.backbone.in_bands
    card = make_card(model, schema, [100.0] * n, [40.0] * n, 64, stage=stage, text_encoder="minilm" if model.has_text else None)
    return save_checkpoint(tmp_path / "ck", model, card)


def _extended(schema: ClassSchema, drop: str | None = None) -> ClassSchema:
    """The schema with one more class (and optionally one dropped, ids renumbered)."""
    classes = [c.to_dict() for c in schema.classes if c.name != drop]
    classes.insert(1, {"id": 0, "name": "Road damaged", "category": "roads", "type": "damaged", "color": "#777777"})
    for i, c in enumerate(classes):
        c["id"] = i
    return ClassSchema.from_dict({"name": "extended", "classes": classes})


def test_one_more_class_keeps_old_rows_and_other_weights(tmp_path):
    old_schema = load_preset("gaza")
    old = _trained(old_schema)
    path = _save(tmp_path, old, old_schema)
    new_schema = _extended(old_schema)
    model = S2MChangeModel(_vit(), new_schema.num_classes)
    fresh_head = model.head.weight.detach().clone(), model.head.bias.detach().clone()
    report = init_from(model, path, new_schema)

    assert report["classes_new"] == ["Road damaged"] and report["classes_dropped"] == []
    assert report["classes_kept"] == [c.name for c in old_schema.classes]
    sd_old, sd_new = old.state_dict(), model.state_dict()
    for key, value in sd_new.items():
        if not key.startswith("head."):
            assert torch.equal(value, sd_old[key]), key
    assert report["copied"] == len(sd_new) - 2
    # new id j -> old id: 0 -> 0, 1 is the new class, j >= 2 -> j - 1
    for j in range(new_schema.num_classes):
        if j == 1:
            assert torch.equal(model.head.weight[1], fresh_head[0][1]) and torch.equal(model.head.bias[1], fresh_head[1][1])
        else:
            i = 0 if j == 0 else j - 1
            assert torch.equal(model.head.weight[j], old.head.weight[i]) and torch.equal(model.head.bias[j], old.head.bias[i])
    # the kept classes score exactly as before
    x, y = torch.randn(1, 3, 32, 32), torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        a, b = old(x, y)["logits"], model.eval()(x, y)["logits"]
    torch.testing.assert_close(b[:, [0, *range(2, new_schema.num_classes)]], a)


def test_dropped_class_is_reported_and_text_modules_copied(tmp_path):
    old_schema = load_preset("gaza")
    old = _trained(old_schema, text_dim=12)
    path = _save(tmp_path, old, old_schema, stage=2)
    dropped = old_schema.classes[2].name
    new_schema = _extended(old_schema, drop=dropped)
    model = S2MChangeModel(_vit(), new_schema.num_classes, text_dim=12)
    report = init_from(model, path, new_schema)
    assert report["classes_dropped"] == [dropped] and report["text"] == "copied" and report["stage"] == 2
    sd_old = old.state_dict()
    text_keys = [k for k in model.state_dict() if is_text_key(k)]
    assert text_keys and all(torch.equal(model.state_dict()[k], sd_old[k]) for k in text_keys)

    other = S2MChangeModel(_vit(), new_schema.num_classes, text_dim=8)
    fresh = {k: v.clone() for k, v in other.state_dict().items() if is_text_key(k)}
    report = init_from(other, path, new_schema)
    assert report["text"].startswith("fresh") and all(torch.equal(other.state_dict()[k], v) for k, v in fresh.items())


def test_lora_checkpoint_is_folded_into_the_base_weights(tmp_path):
    schema = load_preset("gaza")
    old = _trained(schema, lora=4)
    path = _save(tmp_path, old, schema)
    x, y = torch.randn(1, 3, 32, 32), torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expect = old(x, y)["logits"]
    plain = S2MChangeModel(_vit(), schema.num_classes)
    assert init_from(plain, path, schema)["lora"] == "merged rank 4"
    with_lora = apply_lora(S2MChangeModel(_vit(), schema.num_classes), 2)
    init_from(with_lora, path, schema)
    with torch.no_grad():
        torch.testing.assert_close(plain.eval()(x, y)["logits"], expect, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(with_lora.eval()(x, y)["logits"], expect, atol=1e-5, rtol=1e-4)
        feats, ref = plain.backbone(x)[-1], old.backbone(x)[-1]
        torch.testing.assert_close(feats, ref, atol=1e-4, rtol=1e-3)  # float rounding of W + s B A
        base_only = S2MChangeModel(_vit(), schema.num_classes).eval()  # the base weights without the deltas
        base_only.backbone.load_state_dict({k.replace(".base_layer.", "."): v for k, v in old.backbone.state_dict().items() if ".lora_" not in k})
        assert (base_only.backbone(x)[-1] - ref).abs().max() > 1e-2


def test_incompatible_models_are_refused_in_one_line(tmp_path):
    schema = load_preset("gaza")
    path = _save(tmp_path, _trained(schema, in_bands=4), schema)
    eff = S2MChangeModel(create_backbone("efficientnet_lite0", weights="random"), schema.num_classes)
    with pytest.raises(InputError) as err:
        init_from(eff, path, schema)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg == (f"--init-from {path} has backbone dinov3_vits16 with 4 bands; this run builds efficientnet_lite0 with 3: "
                   "drop --backbone/--weights or pick a compatible model")
    with pytest.raises(InputError, match="with 4 bands; this run builds dinov3_vits16 with 3"):
        init_from(S2MChangeModel(_vit(3), schema.num_classes), path, schema)
    wider = S2MChangeModel(_vit(4, dict(TINY, hidden_size=64)), schema.num_classes)
    with pytest.raises(InputError, match="differs in hidden_size"):
        init_from(wider, path, schema)
    narrow = S2MChangeModel(_vit(4), schema.num_classes, decoder_channels=(16, 16, 16, 16))
    with pytest.raises(InputError, match="decoder widths"):
        init_from(narrow, path, schema)
