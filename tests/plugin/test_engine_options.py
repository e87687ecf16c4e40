"""The plugin's view of the engine's options: asked from the engine Python, cached, bundled fallback, jobs' command lines."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO


@pytest.fixture()
def eo(tmp_path, monkeypatch):
    """``masktalk.plugin.engine_options`` with its disk cache in ``tmp_path`` and an empty memory cache."""
    module = importlib.import_module("masktalk.plugin.engine_options")
    monkeypatch.setattr(module, "cache_dir", lambda: tmp_path / "cache")
    module.invalidate()
    yield module
    module.invalidate()


def wrapper(path: Path, target: Path | str, exit_code: int | None = None) -> Path:
    """An executable standing in for an engine Python (its own path and mtime: its own cache key)."""
    body = f"exit {exit_code}" if exit_code is not None else f'exec "{target}" "$@"'
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def test_asks_the_engine_python_once_and_caches_its_answer(eo, engine_python, tmp_path):
    opts = eo.load(engine_python)
    assert opts.source == "engine"
    assert isinstance(opts.environment["cuda"], bool) and "onnxruntime" in opts.environment  # facts of that environment
    assert opts.backbones["efficientnet_lite0"]["size_multiple"] == 32
    assert eo.load(engine_python) is opts  # memory
    files = list((tmp_path / "cache").glob("engine-options-*.json"))
    assert len(files) == 1
    eo._memory.clear()
    again = eo.load(engine_python)
    assert again.source == "cache" and again.to_dict() == opts.to_dict()
    assert eo.load(engine_python, refresh=True).source == "engine"
    eo.invalidate()
    assert list((tmp_path / "cache").glob("engine-options-*.json")) == [] and eo._memory == {}
    assert eo.load(engine_python, spawn=False).source == "bundled"  # nothing cached and no process allowed


def test_the_engine_answer_and_the_bundled_declarations_agree(eo, engine_python):
    """Same declarations both ways: the dock shows the engine's defaults before the engine is set up."""
    asked, bundled = eo.load(engine_python), eo.bundled()
    assert bundled.source == "bundled" and bundled.environment == {}
    assert asked.commands() == bundled.commands()
    for command in asked.commands():
        assert asked.options(command) == bundled.options(command), command


def test_another_engine_python_or_a_changed_one_is_asked_again(eo, engine_python, tmp_path):
    fake = wrapper(tmp_path / "python", engine_python)
    first = eo.load(fake)
    assert first.source == "engine"
    key = eo.cache_key(fake)
    os.utime(fake, (1, 1))  # an upgraded interpreter
    assert eo.cache_key(fake) != key and eo.load(fake, spawn=False).source == "bundled"
    assert eo.load(fake) is not first


def test_no_engine_python_or_a_broken_one_falls_back_to_the_bundled_engine(eo, tmp_path, caplog):
    missing = eo.load(tmp_path / "no-python")
    assert missing.source == "bundled" and missing.default("train", "lora_rank") == 0
    broken = eo.load(wrapper(tmp_path / "broken", "", exit_code=1))
    assert broken.source == "bundled"
    assert "could not read the engine's options" in caplog.text
    assert list((tmp_path / "cache").glob("engine-options-*.json")) == []  # a failure is not cached


def test_bundled_fallback_runs_in_qgis_python_without_heavy_packages():
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from masktalk.plugin import engine_options as e; o = e.bundled(); "
            "assert o.default('train', 'lora_rank') == 0; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'rasterio', 'fiona', 'scipy', 'transformers')))")
    from .conftest import PLUGINS_DIR

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    done = subprocess.run([sys.executable, "-c", code, str(PLUGINS_DIR)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# -- what the dock and Processing use -------------------------------------------------------------
def test_defaults_choices_and_help_are_the_engines(eo):
    opts = eo.bundled()
    lora = opts.option("train", "lora_rank")
    assert (lora.default, lora.type, lora.minimum, lora.flag) == (0, "int", 0, "--lora-rank")
    assert "0 = full fine-tuning" in lora.help  # the dock said "0 = train the decoder only"
    assert opts.option("train", "text_encoder").choices == ("minilm", "clip-vit-b32", "clip-vit-b16", "clip-vit-l14")
    assert opts.default("predict", "threshold") is None and opts.option("predict", "threshold").maximum == 1
    with pytest.raises(KeyError):
        opts.option("train", "epochs")
    with pytest.raises(KeyError):
        opts.options("nope")


def test_blocked_and_problems_follow_the_engine_rules(eo):
    opts = eo.bundled()
    blocked = opts.blocked("train", {})
    assert list(blocked) == ["lora_rank"] and blocked["lora_rank"].startswith("LoRA targets attention projections")
    assert opts.blocked("train", {"backbone": "dinov3_vits16", "weights": "random"}) == {}
    assert opts.problems("train", {}) == []  # the defaults work together
    problems = opts.problems("train", {"lora_rank": 8})
    assert problems == [blocked["lora_rank"]]
    assert opts.problems("train", {"backbone": "dinov3_vitb16"})[0].startswith("backbone dinov3_vitb16 needs weights")
    assert opts.problems("train", {"chip": 100})[0].startswith("--chip 100: backbone efficientnet_lite0 needs a chip side")
    assert opts.problems("predict", {"threshold": 1.5}) == ["--threshold 1.5: outside the range 0..1"]
    assert opts.problems("train", {"epochs": 3}) == ["epochs: the engine's train has no such option"]


def test_args_writes_only_what_differs_from_the_default(eo):
    opts = eo.bundled()
    values = {"lr": 1e-5, "lora_rank": 0, "freeze_backbone": True, "no_amp": False, "weights": "", "steps": None,
              "backbone": "dinov3_vits16", "out": "/runs/a"}
    assert opts.args("train", values) == ["--backbone", "dinov3_vits16", "--freeze-backbone", "--lr", "1e-05", "--out", "/runs/a"]
    assert opts.args("caption", {"label": "l.tif", "chip": 128, "seed": 0}) == ["l.tif", "--chip", "128"]
    assert opts.args("demo", {"skip": ["train", "preview"]}) == ["--skip", "train", "--skip", "preview"]
    with pytest.raises(ValueError, match="no option 'epochs'"):
        opts.args("train", {"epochs": 3})


def test_jobs_carry_engine_options_in_one_dict(mt, eo):
    settings = mt.settings
    for name in ("BACKBONES", "DEVICES", "PRESETS"):
        assert not hasattr(settings, name)  # no retyped copy of the engine's lists
    train = settings.TrainJob(before=None, after=None, labels=None, out_dir="/runs/r1")
    assert train.options == {} and train.aoi_selected_only is False
    assert train.engine_args("b.tif", "a.tif", "l.gpkg") == ["--before", "b.tif", "--after", "a.tif", "--labels", "l.gpkg",
                                                             "--preset", "gaza", "--out", "/runs/r1"]
    train = settings.TrainJob(before=None, after=None, labels=None, out_dir="/runs/r1", class_field="kind", schema_path="s.json",
                              options={"backbone": "dinov3_vits16", "lora_rank": 8, "device": "cpu"})
    args = train.engine_args("b.tif", "a.tif", "l.gpkg", "aoi.gpkg")
    assert args[args.index("--aoi") + 1] == "aoi.gpkg" and args[args.index("--class-field") + 1] == "kind"
    assert args[args.index("--schema") + 1] == "s.json" and "--preset" not in args
    assert args[args.index("--lora-rank") + 1] == "8" and args[args.index("--device") + 1] == "cpu"
    detect = settings.DetectJob(before=None, after=None, model="/runs/r1", out_raster="c.tif", out_vectors="c.gpkg", overwrite=True,
                                options={"threshold": 0.35, "min_area": 20.0})
    args = detect.engine_args("b.tif", "a.tif", (1, 2, 3, 4), "aoi.gpkg")
    assert args[:8] == ["--before", "b.tif", "--after", "a.tif", "--model", "/runs/r1", "--out", "c.tif"]
    assert {"--overwrite", "--vectors", "--threshold", "--min-area", "--extent", "--aoi"} <= set(args)
    assert args[args.index("--threshold") + 1] == "0.35" and args[args.index("--extent") + 1] == "1.0,2.0,3.0,4.0"
    assert "--overwrite" not in settings.DetectJob(before=None, after=None, model="m", out_raster="c.tif").engine_args("b", "a")
    caption = settings.CaptionJob(labels=None, label_map="255:1", options={"chip": 128})
    assert caption.engine_args("l.tif") == ["l.tif", "--preset", "gaza", "--chip", "128", "--label-map", "255:1", "--json"]
    with pytest.raises(ValueError, match="no option 'stage1_epoch'"):
        settings.TrainJob(before=None, after=None, labels=None, out_dir="r", options={"stage1_epoch": 3}).engine_args("b", "a", "l")


def test_the_engine_accepts_the_command_line_of_a_default_train_job(mt, eo, engine_python, tmp_path):
    """The new user's Train: the engine parses it and its rules pass (it fails later, on the missing files)."""
    job = mt.settings.TrainJob(before=None, after=None, labels=None, out_dir=str(tmp_path / "run"))
    args = job.engine_args(str(tmp_path / "b.tif"), str(tmp_path / "a.tif"), str(tmp_path / "l.gpkg"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PROJ_DATA", "PROJ_LIB")}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    done = subprocess.run([str(engine_python), "-m", "engine", "train", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2, done.stderr
    assert "b.tif" in done.stderr and "LoRA" not in done.stderr and "invalid" not in done.stderr
