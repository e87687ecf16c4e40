"""Options declared once: ``python -m engine options --json`` from the argparse declarations, bounded types, rules enforced."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import options as O
from engine.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
ENV = {k: v for k, v in os.environ.items() if k not in ("PROJ_DATA", "PROJ_LIB")}
ENV.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONDONTWRITEBYTECODE="1")


def engine(*args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *map(str, args)], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def published() -> dict:
    done = engine("options", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def by_dest(published, command) -> dict:
    return {o["dest"]: o for o in published["commands"][command]["options"]}


# ---------------------------------------------------------------------------------- the JSON
def test_options_json_is_fast_and_imports_no_heavy_package():
    code = ("import json, sys, time; t = time.monotonic(); import engine.options as o; d = o.describe(); "
            "print(json.dumps({'s': time.monotonic() - t, 'heavy': sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'rasterio', 'fiona', 'shapely', 'scipy', 'transformers', 'PIL', 'matplotlib', 'qgis'))}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["heavy"] == []
    started = time.monotonic()
    assert engine("options", "--json").returncode == 0
    assert time.monotonic() - started < 4  # ~0.3 s alone; generous for a loaded CI machine


def test_every_command_publishes_what_its_parser_declares(published):
    """The JSON is read from the parsers the CLI uses: same dests, same defaults, same choices."""
    from engine.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert published["engine_version"] == __import__("engine").__version__
    assert set(published["commands"]) == set(sub.choices) - {"options"}
    for name, cmd_parser in sub.choices.items():
        if name == "options":
            continue
        declared = {a.dest: a for a in cmd_parser._actions if a.dest not in O.PLUMBING}
        options = by_dest(published, name)
        assert set(options) == set(declared), name
        for dest, action in declared.items():
            assert options[dest]["default"] == (list(action.default) if isinstance(action.default, tuple) else action.default), (name, dest)
            if action.choices is not None:
                assert options[dest]["choices"] == list(action.choices), (name, dest)
        assert published["commands"][name]["help"]


def test_train_defaults_types_ranges_and_help(published):
    train = by_dest(published, "train")
    lora = train["lora_rank"]
    assert (lora["flag"], lora["type"], lora["default"], lora["minimum"], lora["group"]) == ("--lora-rank", "int", 0, 0, "model")
    assert "0 = full fine-tuning" in lora["help"]
    assert train["text_encoder"]["choices"] == ["minilm", "clip-vit-b32", "clip-vit-b16", "clip-vit-l14"]
    assert "clip" not in train["text_encoder"]["choices"]  # what the dock offered and the engine refuses
    assert train["backbone"]["choices"] == list(O.BACKBONES) and train["backbone"]["default"] is None
    assert train["device"]["choices"] == ["auto", "cpu", "cuda"]
    assert (train["freeze_backbone"]["type"], train["freeze_backbone"]["default"]) == ("bool", False)
    assert train["weights"]["type"] == "path" and train["out"]["required"] and train["out"]["type"] == "path"
    assert (train["val_fraction"]["minimum"], train["val_fraction"]["maximum"]) == (0, 0.5)
    assert train["chip"]["default"] == 256 and train["chip"]["minimum"] == 16
    predict = by_dest(published, "predict")
    assert (predict["threshold"]["minimum"], predict["threshold"]["maximum"], predict["threshold"]["default"]) == (0, 1, None)
    assert predict["runtime"]["choices"] == ["auto", "torch", "onnx", "onnx-int8"]
    assert predict["min_area"]["help"].endswith("(default 0.0)")  # %(default)s expanded as --help prints it
    caption = by_dest(published, "caption")
    assert caption["label"]["flag"] is None and caption["label"]["required"]


def test_backbone_facts_and_rules_are_published(published):
    assert published["backbones"]["efficientnet_lite0"] == {"attention": False, "needs_weights": False, "size_multiple": 32, "default": True}
    assert published["backbones"]["dinov3_vits16"]["attention"] and published["backbones"]["dinov3_vits16"]["size_multiple"] == 16
    assert published["environment"] == {}  # facts of the environment only with --environment
    rules = published["commands"]["train"]["rules"]
    lora = [r for r in rules if r["option"] == "lora_rank"]
    assert lora == [{"option": "lora_rank", "effect": "default_only", "when": {"backbone": [None, "efficientnet_lite0"]},
                     "why": lora[0]["why"]}]
    assert lora[0]["why"].startswith("LoRA targets attention projections; backbone efficientnet_lite0 has none")
    weights = {r["when"]["backbone"][0] for r in rules if r["option"] == "weights"}
    assert weights == {"dinov3_vits16", "dinov3_vitb16", "dinov3_vitl16"}
    assert all(r["effect"] == "required" for r in rules if r["option"] == "weights")
    multiples = {(r["option"], tuple(r["when"]["backbone"]), r["multiple"]) for r in rules if r["effect"] == "multiple_of"}
    assert ("chip", (None, "efficientnet_lite0"), 32) in multiples and ("crop", ("dinov3_vitb16",), 16) in multiples


def test_environment_facts_apply_to_the_rules(tmp_path, monkeypatch):
    """DINOv3 weights found locally: that backbone is the default, needs no --weights, and LoRA is allowed on it."""
    folder = tmp_path / "weights" / "dinov3_vits16"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"hidden_size": 384, "patch_size": 16}))
    (folder / "model.safetensors").write_bytes(b"")
    monkeypatch.setenv("MASKTALK_WEIGHTS", str(tmp_path / "weights"))
    env = O.environment()
    assert env["default_backbone"] == "dinov3_vits16" and env["dinov3_weights"] == str(folder)
    assert env["weights_found"]["dinov3_vits16"] == str(folder) and isinstance(env["cuda"], bool)
    facts = O.Facts(env)
    rules = O.rules_of("train", facts)
    assert {r.when["backbone"] for r in rules if r.option == "weights"} == {("dinov3_vitb16",), ("dinov3_vitl16",)}
    assert [r.when["backbone"] for r in rules if r.option == "lora_rank"] == [("efficientnet_lite0",)]  # auto = DINOv3 here
    assert O.check("train", {"lora_rank": 8}, facts) == []
    assert O.check("train", {"backbone": "dinov3_vits16", "lora_rank": 8}, facts) == []


# ---------------------------------------------------------------------------------- bounded types
@pytest.mark.parametrize("args, message", [
    (["train", "--out", "x", "--lora-rank", "-1"], "--lora-rank must be between 0 and 256, got -1"),
    (["train", "--out", "x", "--val-fraction", "0"], "--val-fraction must be above 0 and at most 0.5, got 0"),
    (["train", "--out", "x", "--text-encoder", "clip"], "--text-encoder: unknown name 'clip'"),
    (["predict", "--before", "b", "--after", "a", "--model", "m", "--out", "o.tif", "--threshold", "1.5"],
     "--threshold must be between 0 and 1, got 1.5"),
    (["predict", "--before", "b", "--after", "a", "--model", "m", "--out", "o.tif", "--batch-size", "two"],
     "--batch-size must be a whole number, got 'two'"),
    (["evaluate", "--pred", "p", "--truth", "t", "--num-classes", "1"], "--num-classes must be at least 2, got 1"),
])
def test_out_of_range_values_are_one_line_user_errors(tmp_path, args, message):
    done = engine(*args, "--progress", "jsonl")
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {message}") and "usage:" not in done.stderr
    event = json.loads(done.stdout.strip().splitlines()[-1])
    assert event == {"event": "error", "message": event["message"], "kind": "InputError"} and event["message"].startswith(message)
    assert not (ROOT / "x").exists()


def test_bounded_accepts_its_range_and_says_it():
    b = O.bounded(float, 0, 1, open_max=True)
    assert b("0") == 0.0 and b("0.99") == 0.99
    for bad in ("1", "-0.1", "nan", "x"):
        with pytest.raises(Exception, match="must be"):
            b(bad)
    assert O.bounded(int, 1).describe() == "must be a positive number"
    assert O.bounded(int, 0)("0") == 0 and O.bounded(int, 0).describe() == "must be zero or more"
    assert O.Names(O.TEXT_ENCODERS, O.TEXT_ENCODER_PREFIXES)("clip:ViT-B-32:openai") == "clip:ViT-B-32:openai"


# ---------------------------------------------------------------------------------- rules
def test_rule_matching_defaults_blocked_and_multiples():
    opts = O.options_of(O.command_parser("train"))
    rules = O.rules_of("train", O.Facts())
    assert O.blocked(opts, rules, {}) == {"lora_rank": rules[[r.option for r in rules].index("lora_rank")].why}
    assert "lora_rank" not in O.blocked(opts, rules, {"backbone": "dinov3_vits16"})
    assert O.violations(opts, rules, {}) == []  # the defaults work together
    found = [m for _, m in O.violations(opts, rules, {"lora_rank": 8, "chip": 48, "backbone": ""})]
    assert found[0].startswith("LoRA targets attention projections") and found[1].startswith("--chip 48: backbone efficientnet_lite0")
    found = [m for _, m in O.violations(opts, rules, {"backbone": "dinov3_vitb16", "lora_rank": 8})]
    assert len(found) == 1 and found[0].startswith("backbone dinov3_vitb16 needs weights")
    assert O.violations(opts, rules, {"backbone": "dinov3_vitb16", "weights": "random", "lora_rank": 8, "chip": 48}) == []


def test_train_refuses_lora_on_the_default_backbone_before_any_work(tmp_path):
    """What a new user met: LoRA rank 8 on EfficientNet-Lite0, refused with the rule's one line, nothing written."""
    from engine.train import TrainConfig, train

    cfg = TrainConfig(out=str(tmp_path / "run"), before=str(tmp_path / "missing-b.tif"), after=str(tmp_path / "missing-a.tif"),
                      labels=str(tmp_path / "missing.gpkg"), lora_rank=8)
    with pytest.raises(InputError, match="^LoRA targets attention projections; backbone efficientnet_lite0 has none"):
        train(cfg)
    with pytest.raises(InputError, match="^--crop 48: backbone efficientnet_lite0 needs a crop side that is a multiple of 32"):
        train(TrainConfig(out=str(tmp_path / "run"), before="b.tif", after="a.tif", labels="l.gpkg", crop=48))
    with pytest.raises(InputError, match="^backbone dinov3_vits16 needs weights"):
        train(TrainConfig(out=str(tmp_path / "run"), before="b.tif", after="a.tif", labels="l.gpkg", backbone="dinov3_vits16"))
    assert not (tmp_path / "run").exists()


def test_cli_train_rule_error_is_a_jsonl_error_event(tmp_path):
    done = engine("train", "--before", "b.tif", "--after", "a.tif", "--labels", "l.gpkg", "--out", tmp_path / "run",
                  "--lora-rank", "8", "--progress", "jsonl")
    assert done.returncode == 2, done.stderr
    event = json.loads(done.stdout.strip().splitlines()[-1])
    assert event["event"] == "error" and event["kind"] == "InputError" and event["message"].startswith("LoRA targets attention")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------- the light mirror of the models
def test_backbone_facts_match_the_built_backbones():
    from engine.models import registry

    assert list(O.BACKBONES) == list(registry.BACKBONES) and O.FALLBACK_BACKBONE == registry.DEFAULT_FALLBACK
    tiny = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
    for name, facts in O.BACKBONES.items():
        kw = {"config": tiny} if name.startswith("dinov3_") else {}
        bb = registry.create_backbone(name, weights="random", **kw)
        assert (bool(bb.has_attention), int(bb.size_multiple)) == (facts.attention, facts.size_multiple), name
        assert facts.needs_weights == (name != registry.DEFAULT_FALLBACK)


def test_text_encoder_names_match_the_engine():
    from engine.models import text

    assert O.TEXT_ENCODERS == text.TEXT_ENCODERS
    with pytest.raises(InputError, match="unknown text encoder 'clip'"):
        text._clip_parts("clip")
    assert text._clip_parts("clip:ViT-B-32:openai")[0] == "ViT-B-32"  # the prefix the CLI type accepts
