"""Checkpoints: exact round trips, inference model from a stage-2 checkpoint, clear errors."""

from __future__ import annotations

import json

import pytest
import torch

from engine.checkpoint import ModelCard, check_card, load_checkpoint, make_card, read_card, resolve_checkpoint, save_checkpoint
from engine.errors import InputError, ModelError
from engine.models.change import S2MChangeModel
from engine.models.lora import apply_lora
from engine.models.registry import create_backbone
from engine.schema import load_preset

TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=2)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _perturb_bn(model):
    """Give BatchNorm non-default running statistics so the round trip covers buffers."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)


def _vit_model(in_bands=4, text_dim=None, classes=None):
    schema = load_preset("gaza")
    bb = create_backbone("dinov3_vits16", weights="random", in_bands=in_bands, config=TINY)
    model = S2MChangeModel(bb, classes or schema.num_classes, text_dim=text_dim)
    _perturb_bn(model)
    return model.eval(), schema


def _card(model, schema, **kw):
    n = model.backbone.in_bands
    return make_card(model, schema, [100.0 + i for i in range(n)], [40.0 + i for i in range(n)], 64, **kw)


def _logits(model, x):
    with torch.no_grad():
        return model(x, x.flip(-2))["logits"]


def test_round_trip_is_exact_with_lora_and_text(tmp_path):
    model, schema = _vit_model(text_dim=16)
    apply_lora(model, 4, alpha=8)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_()
    card = _card(model, schema, stage=2, text_encoder="minilm", extra={"best": {"SeK": 0.1}})
    path = save_checkpoint(tmp_path / "ck", model, card)
    assert sorted(p.name for p in path.iterdir()) == ["card.json", "model.safetensors"]
    loaded, card2 = load_checkpoint(path, with_text=True)
    assert card2 == card
    sd, sd2 = model.state_dict(), loaded.state_dict()
    assert sd.keys() == sd2.keys() and all(torch.equal(sd[k], sd2[k]) for k in sd)
    x = torch.randn(2, 4, 32, 48)
    text = torch.randn(2, 16)
    with torch.no_grad():
        assert torch.equal(model(x, x, text=text)["logits"], loaded(x, x, text=text)["logits"])
    assert card2.lora_rank == 4 and card2.model_config["lora_alpha"] == 8


def test_round_trip_efficientnet(tmp_path):
    schema = load_preset("building") if "building" in _presets() else load_preset("gaza")
    model = S2MChangeModel(create_backbone("efficientnet_lite0", weights="random"), schema.num_classes).eval()
    _perturb_bn(model)
    save_checkpoint(tmp_path / "ck", model, _card(model, schema))
    loaded, card = load_checkpoint(tmp_path / "ck")
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(_logits(model, x), _logits(loaded, x))
    assert card.size_multiple == 32 and card.mean == [100.0, 101.0, 102.0]


def _presets():
    from engine.schema import preset_names

    return preset_names()


def test_stage2_checkpoint_loads_into_inference_model_with_identical_logits(tmp_path):
    model, schema = _vit_model(text_dim=16)
    save_checkpoint(tmp_path / "ck", model, _card(model, schema, stage=2, text_encoder="minilm"))
    infer, card = load_checkpoint(tmp_path / "ck")  # with_text=False
    assert infer.text_dim is None and not hasattr(infer, "align") and card.text_dim == 16
    x = torch.randn(2, 4, 32, 32)
    assert torch.equal(_logits(model, x), _logits(infer, x))
    # stage 1 -> stage 2: a checkpoint without text modules gets new ones
    s1, _ = _vit_model(text_dim=None)
    save_checkpoint(tmp_path / "s1", s1, _card(s1, schema))
    with pytest.raises(ModelError, match="text_dim"):
        load_checkpoint(tmp_path / "s1", with_text=True)
    s2, _ = load_checkpoint(tmp_path / "s1", with_text=True, text_dim=8)
    assert s2.text_dim == 8 and torch.equal(_logits(s1, x), _logits(s2, x))


def test_rebuild_from_card_without_the_original_weights_folder(tmp_path):
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    DINOv3ViTModel(DINOv3ViTConfig(**TINY, num_register_tokens=4)).save_pretrained(tmp_path / "w")
    bb = create_backbone("dinov3_vits16", weights=tmp_path / "w", in_bands=5)
    schema = load_preset("gaza")
    model = S2MChangeModel(bb, schema.num_classes).eval()
    card = _card(model, schema)
    assert card.backbone_config["weights"] == str(tmp_path / "w")
    save_checkpoint(tmp_path / "ck", model, card)
    import shutil

    shutil.rmtree(tmp_path / "w")
    loaded, _ = load_checkpoint(tmp_path / "ck")
    x = torch.randn(1, 5, 32, 32)
    assert torch.equal(_logits(model, x), _logits(loaded, x))


def test_run_folder_resolves_to_best_and_save_replaces_atomically(tmp_path):
    model, schema = _vit_model()
    run = tmp_path / "run"
    save_checkpoint(run / "best", model, _card(model, schema, extra={"epoch": 1}))
    save_checkpoint(run / "best", model, _card(model, schema, extra={"epoch": 2}))
    assert resolve_checkpoint(run) == run / "best"
    assert resolve_checkpoint(run / "best" / "card.json") == run / "best"
    assert read_card(run).extra == {"epoch": 2}
    assert sorted(p.name for p in run.iterdir()) == ["best"]  # no temporary or old folders left
    _, card = load_checkpoint(run)
    assert card.extra == {"epoch": 2}
    with pytest.raises(InputError, match="does not exist"):
        resolve_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="neither a checkpoint"):
        resolve_checkpoint(tmp_path / "empty")


@pytest.fixture()
def saved(tmp_path):
    model, schema = _vit_model()
    return save_checkpoint(tmp_path / "ck", model, _card(model, schema))


def test_corrupted_weights_are_a_model_error(saved):
    (saved / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ModelError, match="safetensors.*damaged"):
        load_checkpoint(saved)


def test_a_pickle_is_never_unpickled(saved):
    import pickle

    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    (saved / "model.safetensors").write_bytes(pickle.dumps({"w": Boom()}))
    with pytest.raises(ModelError):
        load_checkpoint(saved)


def test_truncated_or_incomplete_card_is_a_model_error(saved):
    text = (saved / "card.json").read_text()
    (saved / "card.json").write_text(text[: len(text) // 2])
    with pytest.raises(ModelError, match="damaged"):
        load_checkpoint(saved)
    data = json.loads(text)
    del data["in_bands"]
    (saved / "card.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match="in_bands"):
        load_checkpoint(saved)
    data = json.loads(text)
    data["mean"] = [1.0]
    (saved / "card.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match="mean must list one number per band"):
        load_checkpoint(saved)
    (saved / "card.json").unlink()
    with pytest.raises(ModelError, match="card.json"):
        load_checkpoint(saved)


def test_weights_that_do_not_match_the_card_are_a_model_error(saved):
    data = json.loads((saved / "card.json").read_text())
    data["model_config"]["decoder_channels"] = [32, 32, 32, 32]
    (saved / "card.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match="shape"):
        load_checkpoint(saved)
    data["model_config"]["decoder_channels"] = [64, 96, 128, 160]
    data["backbone"] = "efficientnet_lite0"
    (saved / "card.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match="does not match its card"):
        load_checkpoint(saved)
    data["backbone"] = "mystery_net"
    (saved / "card.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match="mystery_net"):
        load_checkpoint(saved)


def test_card_must_describe_the_model(tmp_path):
    model, schema = _vit_model()
    card = _card(model, schema)
    other, _ = _vit_model(in_bands=3)
    with pytest.raises(ModelError, match="does not describe"):
        save_checkpoint(tmp_path / "x", other, card)
    assert not (tmp_path / "x").exists()


def test_check_card_messages():
    model, schema = _vit_model()
    card = _card(model, schema)
    check_card(card, in_bands=4, schema=schema, chip_size=64)
    with pytest.raises(InputError, match="after.tif has 3 bands; the model expects 4"):
        check_card(card, in_bands=3, source="after.tif")
    with pytest.raises(InputError, match="multiple of 16"):
        check_card(card, chip_size=40)
    other = [p for p in _presets() if p != "gaza"][0]
    with pytest.raises(InputError, match="differs from the one the model was trained with"):
        check_card(card, schema=load_preset(other))
    assert card.class_schema().to_dict() == schema.to_dict()
    assert ModelCard.from_dict(json.loads(card.to_json())) == card


# ----------------------------------------------------------------------------- normalization record


def _norm(n, **kw):
    from engine.normalization import Normalization

    fields = dict(mean=[100.0 + i for i in range(n)], std=[40.0 + i for i in range(n)], dtype="uint16", convention="measured",
                  value_range=(0.0, 4000.0), percentiles=[[10.0, 3900.0]] * n)
    fields.update(kw)
    return Normalization(**fields)


def test_normalization_round_trips_through_the_card(tmp_path):
    model, schema = _vit_model()
    norm = _norm(4)
    card = make_card(model, schema, None, None, 64, normalization=norm)
    assert card.mean == norm.mean and card.std == norm.std and card.normalization == norm.to_dict()
    save_checkpoint(tmp_path / "ck", model, card)
    _, loaded = load_checkpoint(tmp_path / "ck")
    assert loaded == card and loaded.input_normalization() == norm
    assert json.loads((tmp_path / "ck" / "card.json").read_text())["normalization"]["dtype"] == "uint16"
    with pytest.raises(ModelError, match="differ from the card's mean/std"):
        make_card(model, schema, [1.0] * 4, [2.0] * 4, 64, normalization=norm)
    data = card.to_dict()
    data["normalization"]["convention"] = "minmax"
    with pytest.raises(ModelError, match="normalization.*convention"):
        ModelCard.from_dict(data)


def test_an_old_card_without_normalization_still_loads(saved):
    data = json.loads((saved / "card.json").read_text())
    data.pop("normalization", None)
    (saved / "card.json").write_text(json.dumps(data))
    _, card = load_checkpoint(saved)
    assert card.normalization is None
    norm = card.input_normalization()
    assert (norm.convention, norm.dtype, norm.mean) == ("measured", "", card.mean)
    from engine.models.backbone import default_mean_std

    data["mean"], data["std"] = default_mean_std(4)
    (saved / "card.json").write_text(json.dumps(data))
    old8 = read_card(saved).input_normalization()
    assert (old8.convention, old8.dtype) == ("imagenet-8bit", "uint8")
