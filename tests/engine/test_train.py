"""Training: learns a tiny change task, resumes exactly, cancels cleanly, runs under DDP, rejects bad input.

Every run here is a tiny EfficientNet-Lite0 change model on 64-px chips of a scene a few
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
                stride=32, val_fraction=0.25, batch_size=4, stage1_epochs=2, stage2_epochs=0, lr=1e-3, **scene)
    base.update(kw)
    return TrainConfig(**base)


def stray(run: Path) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in run.rglob(".*"))


def test_tiny_model_learns_the_change(tmp_path):
    scene = make_scene(tmp_path / "scene")
    events = []
    result = train(tiny(scene, tmp_path / "run", stage1_epochs=12), CallbackProgress(events.append))
    run = tmp_path / "run"
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == list(range(1, 13))
    # chance: predicting change everywhere gives F1 = 2p/(1+p) with p the change share (~0.08 -> ~0.15)
    assert history[0]["F1"] < 0.3
    assert result["best_metrics"]["F1"] > 0.6, history
    assert result["best_metrics"]["F1"] == max(h["F1"] for h in history)
    assert result["score"] == "F1"
    assert sum(e["event"] == "metrics" for e in events) == 12
    for name in ("best/model.safetensors", "best/card.json", "last/model.safetensors", "last/optimizer.pt", "metrics.png", "config.json"):
        assert (run / name).is_file(), name
    assert stray(run) == []
    # the best checkpoint loads as an inference model and detects the change on the scene
    import rasterio
    import torch

    from engine.checkpoint import load_checkpoint

    model, card = load_checkpoint(run)
    assert card.extra["epoch"] == result["best_epoch"] and card.num_classes == 2
    with rasterio.open(scene["before"]) as b, rasterio.open(scene["after"]) as a:
        xb, xa = b.read(window=((0, 64), (0, 64))).astype(np.float32), a.read(window=((0, 64), (0, 64))).astype(np.float32)
    mean, std = np.array(card.mean)[:, None, None], np.array(card.std)[:, None, None]
    with torch.no_grad():
        pred = model(torch.from_numpy((xb - mean) / std).float()[None], torch.from_numpy((xa - mean) / std).float()[None])["logits"].argmax(1)[0].numpy()
    truth = (xa != xb).any(0)
    assert (2 * (pred.astype(bool) & truth).sum() / (pred.sum() + truth.sum())) > 0.5


def _weights(folder: Path) -> dict:
    from safetensors.numpy import load_file

    return load_file(str(folder / "model.safetensors"))


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    scene = make_scene(tmp_path / "scene", size=128, seed=3)
    kw = dict(stage1_epochs=2, stage2_epochs=1, lr=1e-4)
    train(tiny(scene, tmp_path / "a", **kw))

    def cancel_after_first_epoch():
        return cancel_after_first_epoch.epochs >= 1

    cancel_after_first_epoch.epochs = 0

    def on_event(e):
        if e["event"] == "metrics":
            cancel_after_first_epoch.epochs = e["epoch"]

    with pytest.raises(Cancelled):
        train(tiny(scene, tmp_path / "b", **kw), CallbackProgress(on_event, cancel_callback=cancel_after_first_epoch))
    state = json.loads((tmp_path / "b" / "last" / "train_state.json").read_text())
    assert state["epoch"] == 1
    # resume with only the run folder: the saved config.json supplies the rest
    result = train(TrainConfig(out=str(tmp_path / "b"), resume=True))
    assert result["epochs"] == 3
    wa, wb = _weights(tmp_path / "a" / "last"), _weights(tmp_path / "b" / "last")
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
           "--stride", "32", "--stage1-epochs", "50", "--stage2-epochs", "0", "--out", str(run), "--progress", "jsonl"]
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
    assert state["epoch"] >= 1 and card.num_classes == 2
    assert stray(run) == []
    assert (run / "best" / "model.safetensors").is_file()


def test_cancel_before_the_first_epoch_still_leaves_a_last(tmp_path):
    scene = make_scene(tmp_path / "scene")
    with pytest.raises(Cancelled):
        train(tiny(scene, tmp_path / "run"), CallbackProgress(lambda e: None, cancel_callback=lambda: True))
    from engine.checkpoint import load_checkpoint

    load_checkpoint(tmp_path / "run" / "last")
    assert not (tmp_path / "run" / "best").exists()
    assert stray(tmp_path / "run") == []


def test_torchrun_two_gloo_processes_write_one_checkpoint(tmp_path):
    scene = make_scene(tmp_path / "scene", size=192)
    run = tmp_path / "run"
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "engine", "train", "--before", scene["before"],
           "--after", scene["after"], "--labels", scene["labels"], "--aoi", scene["aoi"], "--preset", "building",
           "--backbone", "efficientnet_lite0", "--chip", "64", "--stride", "32", "--stage1-epochs", "2",
           "--stage2-epochs", "0", "--batch-size", "2", "--val-fraction", "0.3", "--device", "cpu", "--out", str(run), "--progress", "none"]
    r = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2  # one writer
    assert sorted(p.name for p in run.iterdir()) == ["best", "config.json", "last", "metrics.jsonl", "metrics.png"]
    # validation pixels summed over both ranks = every labelled validation pixel
    from engine.data import load_scene
    from engine.schema import load_preset

    cs = load_scene(scene["before"], scene["after"], scene["labels"], load_preset("building"), aoi=scene["aoi"], chip=64,
                    stride=32, val_fraction=0.3, seed=0)
    assert len(cs.val) >= 2  # both ranks had a validation chip
    expected = int((cs.labels[cs.val] != 255).sum())
    assert json.loads(lines[-1])["pixels"] == expected


@pytest.mark.parametrize("case", ["no_overlap", "labels_outside", "empty_labels", "unknown_class", "unreadable", "folder_size"])
def test_bad_input_fails_before_writing_anything(tmp_path, case):
    scene = make_scene(tmp_path / "scene", size=128)
    kw = dict(scene)
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
        from .test_data import _png, make_folder

        make_folder(tmp_path / "ds", n=3, size=64)
        _png(tmp_path / "ds" / "B" / "t1.png", np.zeros((3, 32, 64), np.uint8))
        kw = {"dataset": str(tmp_path / "ds"), "label_map": "255:1"}
    run = tmp_path / "run"
    base = dict(out=str(run), preset="building", backbone="efficientnet_lite0", chip=64, stage1_epochs=1, stage2_epochs=0)
    with pytest.raises(InputError):
        train(TrainConfig(**base, **kw))
    assert not run.exists()


def test_cli_bad_input_exit_code_and_existing_run(tmp_path):
    scene = make_scene(tmp_path / "scene", size=64)
    args = [sys.executable, "-m", "engine", "train", "--before", scene["before"], "--after", str(tmp_path / "missing.tif"),
            "--labels", scene["labels"], "--preset", "building", "--out", str(tmp_path / "run"), "--progress", "jsonl"]
    r = subprocess.run(args, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    last = json.loads(r.stdout.strip().splitlines()[-1])
    assert last["event"] == "error" and last["kind"] == "InputError" and "missing.tif" in last["message"]
    assert not (tmp_path / "run").exists()
    (tmp_path / "run2").mkdir()
    (tmp_path / "run2" / "config.json").write_text("{}")
    with pytest.raises(InputError, match="already holds a run; use --resume"):
        train(TrainConfig(out=str(tmp_path / "run2"), **scene))


def test_train_demo_on_the_demo_scene(tmp_path):
    from engine.scene import make_demo_scene
    from engine.train import train_demo

    scene = make_demo_scene(tmp_path / "scene", size=128, seed=0)
    result = train_demo(scene, tmp_path / "run", stage1_epochs=1, stage2_epochs=0, chip=64)
    assert result["epochs"] == 1 and (tmp_path / "run" / "best" / "card.json").is_file()
    card = json.loads((tmp_path / "run" / "best" / "card.json").read_text())
    assert card["schema"]["name"] == "gaza" and card["num_classes"] == 7
    # a re-run of the demo replaces its run
    again = train_demo(scene, tmp_path / "run", stage1_epochs=1, stage2_epochs=0, chip=64)
    assert again["best_metrics"] == result["best_metrics"]  # same seed, same result


def test_tiny_dinov3_with_lora_trains_and_reloads(tmp_path):
    from engine.checkpoint import load_checkpoint

    scene = make_scene(tmp_path / "scene", size=128)
    tiny_vit = {"config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}}
    cfg = tiny(scene, tmp_path / "run", backbone="dinov3_vits16", weights="random", backbone_options=tiny_vit,
               lora_rank=2, stage1_epochs=1, stage2_epochs=1)
    result = train(cfg)
    assert result["epochs"] == 2
    model, card = load_checkpoint(tmp_path / "run" / "last")
    assert card.lora_rank == 2 and card.stage == 2 and card.backbone_config["config"]["hidden_size"] == 32
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["lora_rank"] == 2 and saved["backbone_options"] == tiny_vit
