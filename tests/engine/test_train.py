"""Training: learns a tiny change task, resumes exactly, cancels cleanly, runs under DDP, refuses bad input before writing.

Every run here is a tiny EfficientNet-Lite0 change model on 32-px crops of a scene a few
hundred pixels wide, a few seconds each on one CPU thread.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.errors import Cancelled, InputError
from engine.progress import CallbackProgress
from engine.train import TrainConfig, train

from .test_raster import X0, Y0, write_polys, write_tif

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
ENV.pop("PROJ_DATA", None)
ENV.pop("PROJ_LIB", None)


def make_scene(root: Path, size: int = 128, seed: int = 0, value=1) -> dict:
    """Grey noisy *before*; *after* equal but for bright squares, which are the labelled changes."""
    rng = np.random.default_rng(seed)
    before = rng.normal(120, 20, (3, size, size)).clip(0, 255).astype(np.uint8)
    after = before.copy()
    polys = []
    for _ in range(max(4, size * size // 1600)):
        r, c = rng.integers(0, size - 12, 2)
        s = int(rng.integers(6, 12))
        after[:, r : r + s, c : c + s] = 250
        polys.append(((X0 + c, Y0 - r - s, X0 + c + s, Y0 - r), value))
    root.mkdir(parents=True, exist_ok=True)
    return {
        "before": str(write_tif(root / "before.tif", before)),
        "after": str(write_tif(root / "after.tif", after)),
        "labels": str(write_polys(root / "labels.gpkg", polys)),
        "aoi": str(write_polys(root / "aoi.gpkg", [((X0, Y0 - size, X0 + size, Y0), 1)], layer="aoi", field="id")),
    }


def tiny(scene: dict, out: Path, **kw) -> TrainConfig:
    base = dict(out=str(out), preset="building", backbone="efficientnet_lite0", decoder_channels=(16, 16, 16, 16), chip=64,
                crop=32, val_fraction=0.25, batch_size=4, steps=40, stage2_share=0.0, lr=1e-3, val_every=20, **scene)
    base.update(kw)
    return TrainConfig(**base)


def stray(run: Path) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in run.rglob(".*"))


def history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_tiny_model_learns_the_change(tmp_path):
    scene = make_scene(tmp_path / "scene", size=192)
    events = []
    result = train(tiny(scene, tmp_path / "run", steps=160), CallbackProgress(events.append))
    run = tmp_path / "run"
    hist = history(run)
    assert [h["step"] for h in hist] == [20, 40, 60, 80, 100, 120, 140, 160]
    f1 = [h["F1"] for h in hist]
    assert f1[-1] > 0.75 and f1[-1] > f1[0], f1
    assert result["score"] == "F1" and result["steps"] == 160
    assert sum(e["event"] == "metrics" for e in events) == 8
    for name in ("best/model.safetensors", "best/card.json", "last/model.safetensors", "last/optimizer.pt", "last/ema.safetensors",
                 "metrics.png", "config.json"):
        assert (run / name).is_file(), name
    assert stray(run) == []
    # the kept model loads as an inference model and detects the change on the scene
    import rasterio
    import torch

    from engine.checkpoint import load_checkpoint

    model, card = load_checkpoint(run)
    assert card.num_classes == 2 and card.extra["rule"] in ("best validation", "last (moving average)")
    assert card.extra["pixel_size"] == 1.0 and card.extra["crs"]  # the ground resolution trained at (the dock reads it)
    assert card.normalization["convention"] == "imagenet-8bit"
    # the change decision calibrated on the validation of the kept model, what predict applies
    from engine.training.calibrate import GRID

    cal = card.extra["calibration"]
    assert set(cal) >= {"threshold", "score", "default_score", "reason"} and result["calibration"] == cal
    assert cal["score"] >= cal["default_score"] and "calibration" in hist[-1]
    assert (cal["threshold"] is None and "threshold" not in card.extra) or (cal["threshold"] in GRID and card.extra["threshold"] == cal["threshold"])
    with rasterio.open(scene["before"]) as b, rasterio.open(scene["after"]) as a:
        xb, xa = b.read(window=((0, 128), (0, 128))).astype(np.float32), a.read(window=((0, 128), (0, 128))).astype(np.float32)
    mean, std = np.array(card.mean)[:, None, None], np.array(card.std)[:, None, None]
    with torch.no_grad():
        pred = model(torch.from_numpy((xb - mean) / std).float()[None], torch.from_numpy((xa - mean) / std).float()[None])["logits"].argmax(1)[0].numpy()
    truth = (xa != xb).any(0)
    assert (2 * (pred.astype(bool) & truth).sum() / (pred.sum() + truth.sum())) > 0.5


def test_default_schedule_adapts_to_the_labelled_area():
    from engine.training.schedule import MAX_STEPS, MIN_STEPS, Schedule, default_steps, lr_factor

    small, medium, huge = default_steps(7 * 256**2, 128), default_steps(4 * 1024**2, 128), default_steps(637 * 1024**2, 128)
    assert MIN_STEPS <= small < medium < huge == MAX_STEPS
    s = Schedule(100, 50, warmup=0.1)
    assert s.stage_of(99) == (1, 99, 100) and s.stage_of(100) == (2, 0, 50)
    assert lr_factor(0, 100, 0.1) == pytest.approx(0.1) and lr_factor(9, 100, 0.1) == 1.0
    assert lr_factor(99, 100, 0.1) == pytest.approx(0.1) and s.lr_factor(100) < 1  # stage 2 warms up again


def _weights(folder: Path) -> dict:
    from safetensors.numpy import load_file

    return load_file(str(folder / "model.safetensors"))


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    scene = make_scene(tmp_path / "scene", size=128, seed=3)
    kw = dict(steps=30, stage2_share=0.34, val_every=10, lr=1e-4)
    train(tiny(scene, tmp_path / "a", **kw))
    seen = []
    with pytest.raises(Cancelled):
        train(tiny(scene, tmp_path / "b", **kw), CallbackProgress(lambda e: seen.append(e["event"]), cancel_callback=lambda: "metrics" in seen))
    state = json.loads((tmp_path / "b" / "last" / "train_state.json").read_text())
    assert state["step"] == 10
    # resume with only the run folder: the saved config.json supplies the rest
    result = train(TrainConfig(out=str(tmp_path / "b"), resume=True))
    assert result["steps"] == 30
    for name in ("last", "best"):
        wa, wb = _weights(tmp_path / "a" / name), _weights(tmp_path / "b" / name)
        assert wa.keys() == wb.keys()
        for key in wa:
            np.testing.assert_array_equal(wa[key], wb[key], err_msg=key)
    ha = (tmp_path / "a" / "metrics.jsonl").read_text()
    assert ha == (tmp_path / "b" / "metrics.jsonl").read_text()
    assert json.loads(ha.splitlines()[-1])["stage"] == 2
    assert stray(tmp_path / "b") == []


def test_cli_cancel_keeps_a_loadable_last_and_no_stray_files(tmp_path):
    scene = make_scene(tmp_path / "scene", size=128)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "engine", "train", "--before", scene["before"], "--after", scene["after"], "--labels",
           scene["labels"], "--aoi", scene["aoi"], "--preset", "building", "--backbone", "efficientnet_lite0", "--chip", "64",
           "--crop", "32", "--steps", "2000", "--val-every", "5", "--stage2-share", "0", "--out", str(run), "--progress", "jsonl"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    events = []
    for line in proc.stdout:
        events.append(json.loads(line))
        if events[-1]["event"] == "metrics":
            proc.send_signal(signal.SIGTERM)
            break
    rest, err = proc.communicate(timeout=120)
    events += [json.loads(line) for line in rest.splitlines() if line.strip()]
    assert proc.returncode == 130, err
    assert events[-1]["event"] == "cancelled" and "last" in events[-1]["message"]
    from engine.checkpoint import load_checkpoint

    model, card = load_checkpoint(run / "last")
    state = json.loads((run / "last" / "train_state.json").read_text())
    assert state["step"] >= 5 and card.num_classes == 2
    assert stray(run) == []


def test_cancel_before_the_first_step_still_leaves_a_last(tmp_path):
    scene = make_scene(tmp_path / "scene")
    with pytest.raises(Cancelled):
        train(tiny(scene, tmp_path / "run"), CallbackProgress(lambda e: None, cancel_callback=lambda: True))
    from engine.checkpoint import load_checkpoint

    load_checkpoint(tmp_path / "run" / "last")
    assert not (tmp_path / "run" / "best").exists()
    assert stray(tmp_path / "run") == []


def test_torchrun_two_gloo_processes_write_one_checkpoint(tmp_path):
    scene = make_scene(tmp_path / "scene", size=256)
    run = tmp_path / "run"
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "engine", "train", "--before", scene["before"],
           "--after", scene["after"], "--labels", scene["labels"], "--aoi", scene["aoi"], "--preset", "building",
           "--backbone", "efficientnet_lite0", "--chip", "64", "--crop", "32", "--steps", "10", "--val-every", "5",
           "--stage2-share", "0", "--batch-size", "2", "--val-fraction", "0.3", "--device", "cpu", "--out", str(run), "--progress", "none"]
    r = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2  # one writer
    assert sorted(p.name for p in run.iterdir()) == ["best", "config.json", "last", "metrics.jsonl", "metrics.png"]
    # validation pixels summed over both ranks = every labelled validation pixel
    from engine.schema import load_preset
    from engine.training.sources import SceneSource
    from engine.training.split import split

    src = SceneSource(scene["before"], scene["after"], scene["labels"], load_preset("building"), aoi=scene["aoi"])
    parts = split(src.images, val_fraction=0.3, crop=32, chip=64, seed=0)
    assert len(parts.val) >= 2  # both ranks had a validation region
    expected = sum(int((src.read(i, r, c, h, w)[2] != 255).sum()) for i, r, c, h, w in parts.val)
    assert json.loads(lines[-1])["pixels"] == expected


@pytest.mark.parametrize("case", ["no_overlap", "labels_outside", "empty_labels", "unknown_class", "unreadable", "folder_size",
                                  "crop_multiple", "weights_missing"])
def test_bad_input_fails_before_writing_anything(tmp_path, case):
    scene = make_scene(tmp_path / "scene", size=128)
    kw = dict(scene)
    base = dict(out=str(tmp_path / "new" / "run"), preset="building", backbone="efficientnet_lite0", chip=64, steps=5)
    if case == "no_overlap":
        kw["after"] = str(write_tif(tmp_path / "far.tif", np.ones((3, 64, 64), np.uint8), transform=__import__("rasterio").transform.from_origin(X0 + 9000, Y0, 1, 1)))
    elif case == "labels_outside":
        kw["labels"] = str(write_polys(tmp_path / "out.gpkg", [((X0 + 5000, Y0 - 20, X0 + 5010, Y0 - 10), 1)]))
        kw["aoi"] = None
    elif case == "empty_labels":
        kw["labels"] = str(write_polys(tmp_path / "empty.gpkg", []))
    elif case == "unknown_class":
        kw["labels"] = str(write_polys(tmp_path / "bad.gpkg", [((X0 + 10, Y0 - 20, X0 + 20, Y0 - 10), "bulding change")]))
    elif case == "unreadable":
        (tmp_path / "junk.tif").write_text("not a raster")
        kw["after"] = str(tmp_path / "junk.tif")
    elif case == "folder_size":
        from .test_training_data import _png, make_folder

        make_folder(tmp_path / "ds", n=3, size=64)
        _png(tmp_path / "ds" / "B" / "t1.png", np.zeros((3, 32, 64), np.uint8))
        kw = {"dataset": str(tmp_path / "ds"), "label_map": "255:1"}
    elif case == "crop_multiple":
        base["crop"] = 48
    elif case == "weights_missing":
        base["weights"] = str(tmp_path / "nope.safetensors")
    with pytest.raises((InputError, __import__("engine.errors", fromlist=["ModelError"]).ModelError)):
        train(TrainConfig(**base, **kw))
    assert not (tmp_path / "new").exists()


def test_out_folder_is_checked_first(tmp_path):
    scene = make_scene(tmp_path / "scene", size=64)
    (tmp_path / "run2").mkdir()
    (tmp_path / "run2" / "config.json").write_text("{}")
    with pytest.raises(InputError, match="already holds files; use --resume"):
        train(TrainConfig(out=str(tmp_path / "run2"), **scene))
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        train(TrainConfig(out=str(tmp_path / "file"), **scene))
    with pytest.raises(InputError, match="not writable"):  # no file can be made there, even by root
        train(TrainConfig(out="/proc/masktalk-run", **scene))
    assert not Path("/proc/masktalk-run").exists()


def test_out_below_a_file_is_refused(tmp_path):
    scene = make_scene(tmp_path / "scene", size=64)
    with pytest.raises(InputError, match="is a file"):
        train(TrainConfig(out=str(tmp_path / "scene" / "before.tif" / "run"), **scene))


def test_failed_resume_leaves_the_run_as_it_was(tmp_path):
    scene = make_scene(tmp_path / "scene", size=128)
    run = tmp_path / "run"
    train(tiny(scene, run, steps=10, val_every=5))
    (run / "last" / "optimizer.pt").write_bytes(b"damaged")
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(InputError, match="cannot resume"):
        train(TrainConfig(out=str(run), resume=True))
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    with pytest.raises(InputError, match="cannot resume: .*config.json does not exist"):
        train(TrainConfig(out=str(tmp_path / "elsewhere"), resume=True))
    assert not (tmp_path / "elsewhere").exists()


def test_cli_bad_input_exit_code(tmp_path):
    scene = make_scene(tmp_path / "scene", size=64)
    args = [sys.executable, "-m", "engine", "train", "--before", scene["before"], "--after", str(tmp_path / "missing.tif"),
            "--labels", scene["labels"], "--preset", "building", "--out", str(tmp_path / "run"), "--progress", "jsonl"]
    r = subprocess.run(args, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    last = json.loads(r.stdout.strip().splitlines()[-1])
    assert last["event"] == "error" and last["kind"] == "InputError" and "missing.tif" in last["message"]
    assert not (tmp_path / "run").exists()


def test_no_calibrate_keeps_the_most_probable_class(tmp_path, monkeypatch):
    from engine.checkpoint import read_card

    scene = make_scene(tmp_path / "scene", size=96)
    result = train(tiny(scene, tmp_path / "run", steps=8, val_every=8, calibrate=False))
    card = read_card(tmp_path / "run" / "best")
    assert "threshold" not in card.extra and "calibration" not in card.extra and result["calibration"] is None
    assert all("calibration" not in h for h in history(tmp_path / "run"))
    # the command line's flag reaches the configuration (the dock and Processing pass it as a flag)
    import engine.training as training
    from engine.cli import build_parser
    from engine.commands import train as train_command

    captured = []
    monkeypatch.setattr(training, "train", lambda config, progress: captured.append(config) or {})
    for argv, want in ((["--no-calibrate"], False), ([], True)):
        train_command.run(build_parser().parse_args(["train", "--dataset", "d", "--out", "o", *argv]), None)
        assert captured[-1].calibrate is want


def test_help_documents_the_kept_model_rule():
    r = subprocess.run([sys.executable, "-m", "engine", "train", "--help"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    assert "moving average of the weights" in text and "best-scoring one over the validations" in text
    assert "--init-from" in text and "--text-mode" in text and "--drop-elements" in text
    assert "change threshold is calibrated on the validation area" in text and "--no-calibrate" in text
    from engine.training.calibrate import GRID, MARGIN, MIN_CHANGED  # the help states calibrate.py's own rules

    assert f"t in {GRID[0]:.2f}..{GRID[-1]:.2f}" in text and f"by {MARGIN:g} in F1" in text and f"{MIN_CHANGED}+ changed pixels" in text
    assert "trivial decision of every pixel changed" in text


def test_train_demo_on_the_demo_scene(tmp_path):
    from engine.scene import make_demo_scene
    from engine.train import train_demo

    scene = make_demo_scene(tmp_path / "scene", size=128, seed=0)
    result = train_demo(scene, tmp_path / "run", steps=4, stage2_share=0.0, chip=64, val_every=4)
    assert result["steps"] == 4 and (tmp_path / "run" / "best" / "card.json").is_file()
    card = json.loads((tmp_path / "run" / "best" / "card.json").read_text())
    assert card["schema"]["name"] == "gaza" and card["num_classes"] == 7
    # a re-run of the demo replaces its run
    again = train_demo(scene, tmp_path / "run", steps=4, stage2_share=0.0, chip=64, val_every=4)
    assert again["best_metrics"] == result["best_metrics"]  # same seed, same result


def test_tiny_dinov3_with_lora_trains_both_stages_and_reloads(tmp_path):
    from engine.checkpoint import load_checkpoint

    scene = make_scene(tmp_path / "scene", size=128)
    tiny_vit = {"config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}}
    cfg = tiny(scene, tmp_path / "run", backbone="dinov3_vits16", weights="random", backbone_options=tiny_vit,
               lora_rank=2, steps=6, stage2_share=0.5, val_every=3)
    result = train(cfg)
    assert result["steps"] == 6
    model, card = load_checkpoint(tmp_path / "run" / "last")
    assert card.lora_rank == 2 and card.stage == 2 and card.backbone_config["config"]["hidden_size"] == 32
    hist = history(tmp_path / "run")
    assert hist[-1]["stage"] == 2 and hist[-1]["cot"] > 0


def test_init_from_a_trained_model_with_an_added_class(tmp_path):
    from safetensors.numpy import load_file

    scene = make_scene(tmp_path / "scene", size=128)
    train(tiny(scene, tmp_path / "first", steps=10, val_every=5))
    schema = json.loads((ROOT / "engine" / "presets" / "building.json").read_text())
    schema["name"] = "building-and-roads"
    schema["classes"].append({"id": 2, "name": "road change", "category": "roads", "category_singular": "road", "type": "changed", "color": "#00ff00"})
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    cfg = tiny(scene, tmp_path / "second", steps=1, val_every=1, lr=1e-12, head_lr_scale=1.0, preset=None,
               schema=str(tmp_path / "schema.json"), init_from=str(tmp_path / "first"), ema=0.0)
    train(cfg)
    old, new = load_file(str(tmp_path / "first" / "best" / "model.safetensors")), load_file(str(tmp_path / "second" / "last" / "model.safetensors"))
    head = [k for k in old if k.startswith("head.") and k.endswith("weight")][0]
    assert new[head].shape[0] == 3
    np.testing.assert_allclose(new[head][:2], old[head], atol=1e-6)
    enc = [k for k in old if k.startswith("backbone.") and old[k].ndim == 4][0]
    np.testing.assert_allclose(new[enc], old[enc], atol=1e-6)


@pytest.mark.parametrize("dtype, scale", [("uint16", 16.0), ("float32", 1 / 255.0)])
def test_16_bit_and_float_imagery_train_and_predict(tmp_path, dtype, scale):
    """Real value ranges (uint16 0..4000, float reflectance 0..1): measured statistics, a model that learns, predict accepts it."""
    import rasterio

    from engine.checkpoint import read_card
    from engine.predict import PredictConfig, predict

    scene = make_scene(tmp_path / "scene", size=192)
    for key in ("before", "after"):
        with rasterio.open(scene[key]) as ds:
            arr, profile = ds.read().astype(np.float64) * scale, ds.profile
        profile.update(dtype=dtype)
        with rasterio.open(scene[key], "w", **profile) as ds:
            ds.write(arr.astype(dtype))
    result = train(tiny(scene, tmp_path / "run", steps=100))
    card = read_card(tmp_path / "run")
    norm = card.normalization
    assert norm["convention"] == "measured" and norm["dtype"] == dtype
    assert 100 * scale < card.mean[0] < 160 * scale  # the scene's own statistics, not ImageNet's 0-255 ones
    assert result["best_metrics"]["F1"] > 0.6
    out = tmp_path / "pred.tif"
    predict(PredictConfig(before=scene["before"], after=scene["after"], model=str(tmp_path / "run"), out=str(out), device="cpu"))
    with rasterio.open(out) as ds:
        pred = ds.read(1)
    with rasterio.open(scene["before"]) as b, rasterio.open(scene["after"]) as a:
        truth = (a.read() != b.read()).any(0)
    f1 = 2 * ((pred == 1) & truth).sum() / ((pred == 1).sum() + truth.sum())
    assert f1 > 0.6


def test_a_small_hand_labelled_area_trains_at_the_default_crop(tmp_path):
    """A 100 x 100 px labelled area holds no 128 px crop beside its validation strip: the
    automatic crop shrinks (and says so); a crop the user gave is refused instead."""
    from engine.training.setup import prepare

    scene = make_scene(tmp_path / "scene", size=100)
    scene.pop("aoi")
    cfg = TrainConfig(out=str(tmp_path / "run"), preset="building", **scene)  # a new user's defaults
    assert cfg.crop == 128 and cfg.crop_auto
    p = prepare(cfg)
    assert p.config.crop < 128 and p.config.crop % 32 == 0
    assert any(f"crops of {p.config.crop} px instead of 128 px" in n for n in p.notes)
    assert p.sampler.sample(0, 8)[0].size == p.config.crop
    with pytest.raises(InputError, match="smaller --crop"):
        prepare(TrainConfig(out=str(tmp_path / "run2"), preset="building", crop=128, **scene))
