"""Detection controls (threshold, AOI polygons) and the runtimes (PyTorch, ONNX fp32/int8)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch

from engine.errors import InputError
from engine.predict import PredictConfig, predict
from engine.progress import CallbackProgress, NullProgress
from engine.schema import load_preset

from .test_predict import TRANSFORM, ConstantModel, card_for, tiny_checkpoint, write_raster  # noqa: F401

BINARY = load_preset("building")  # two classes: no change, building change


class ProbModel(torch.nn.Module):
    """Constant class probabilities ``probs`` everywhere."""

    def __init__(self, probs):
        super().__init__()
        self.register_buffer("logits", torch.log(torch.tensor(probs, dtype=torch.float32)))

    def forward(self, before, after):
        b, _, h, w = before.shape
        return {"logits": self.logits.view(1, -1, 1, 1).expand(b, -1, h, w).clone()}


@pytest.fixture
def pair(tmp_path):
    rng = np.random.default_rng(0)
    b = write_raster(tmp_path / "before.tif", rng.integers(1, 255, (3, 64, 80), dtype=np.uint8))
    a = write_raster(tmp_path / "after.tif", rng.integers(1, 255, (3, 64, 80), dtype=np.uint8))
    return b, a


def classes(path):
    with rasterio.open(path) as src:
        return src.read(1), src


def run(pair, out, net=None, card=None, progress=None, **kw):
    kw.setdefault("overlap", 8)
    kw.setdefault("chip", 32)
    config = PredictConfig(before=str(pair[0]), after=str(pair[1]), out=str(out), **kw)
    return predict(config, progress or NullProgress(), model=net, card=card)


def binary_card(**extra):
    card = card_for()
    card.schema, card.num_classes, card.extra = BINARY.to_dict(), 2, extra
    return card


# ----------------------------------------------------------------------------- threshold


def test_binary_threshold_defaults_to_half_and_to_the_cards_value(pair, tmp_path):
    model = ProbModel([0.6, 0.4])  # P(change) = 0.4
    result = run(pair, tmp_path / "a.tif", model, binary_card())
    assert result["threshold"] == 0.5 and (classes(tmp_path / "a.tif")[0] == 0).all()
    run(pair, tmp_path / "b.tif", model, binary_card(), threshold=0.4)
    assert (classes(tmp_path / "b.tif")[0] == 1).all()
    result = run(pair, tmp_path / "c.tif", model, binary_card(threshold=0.35))
    assert result["threshold"] == 0.35 and (classes(tmp_path / "c.tif")[0] == 1).all()
    with pytest.raises(InputError, match="between 0 and 1"):
        PredictConfig(before="b.tif", after="a.tif", out="o.tif", threshold=1.5)


def test_multiclass_threshold_is_on_one_minus_no_change_then_the_best_change_class(pair, tmp_path):
    probs = [0.4, 0.1, 0.1, 0.25, 0.05, 0.05, 0.05]  # no change is the most probable class
    result = run(pair, tmp_path / "a.tif", ProbModel(probs), card_for())  # default: the most probable class
    assert result["threshold"] is None and (classes(tmp_path / "a.tif")[0] == 0).all()
    run(pair, tmp_path / "b.tif", ProbModel(probs), card_for(), threshold=0.5)  # P(change) = 0.6
    assert (classes(tmp_path / "b.tif")[0] == 3).all()
    run(pair, tmp_path / "c.tif", ProbModel(probs), card_for(), threshold=0.7)
    assert (classes(tmp_path / "c.tif")[0] == 0).all()
    card = card_for()
    card.extra = {"threshold": 0.55}
    assert run(pair, tmp_path / "d.tif", ProbModel(probs), card)["threshold"] == 0.55
    assert (classes(tmp_path / "d.tif")[0] == 3).all()


# ----------------------------------------------------------------------------- AOI polygons


def write_aoi(path, polygons, crs="EPSG:32636"):
    import fiona

    schema = {"geometry": "Polygon", "properties": {"id": "int"}}
    with fiona.open(path, "w", driver="GPKG", layer="aoi", schema=schema, crs=crs) as dst:
        for k, ring in enumerate(polygons):
            dst.write({"geometry": {"type": "Polygon", "coordinates": [ring]}, "properties": {"id": k}})
    return path


def test_aoi_polygons_mask_the_output_and_set_its_extent(pair, tmp_path):
    # a triangle over columns 10..50, rows 8..48 of the before grid
    corners = [TRANSFORM * (10, 8), TRANSFORM * (50, 48), TRANSFORM * (10, 48)]
    aoi = write_aoi(tmp_path / "aoi.gpkg", [corners + [corners[0]]])
    result = run(pair, tmp_path / "p.tif", ConstantModel(winner=2), card_for(), aoi=str(aoi))
    cls, src = classes(tmp_path / "p.tif")
    assert cls.shape == (40, 40) and src.transform == TRANSFORM * rasterio.Affine.translation(10, 8)
    assert cls[-1, 0] == 2 and cls[0, -1] == 255  # inside the triangle / outside it
    inside = (cls == 2).sum()
    assert abs(inside - 800) < 60 and set(np.unique(cls)) == {2, 255}
    assert result["pixels_valid"] == inside
    with pytest.raises(InputError, match="do not overlap"):
        x0, y0 = TRANSFORM * (60, 60)
        x1, y1 = TRANSFORM * (79, 50)
        run(pair, tmp_path / "q.tif", ConstantModel(), card_for(), aoi=str(aoi), extent=(x0, y0, x1, y1))
    assert not (tmp_path / "q.tif").exists()


def test_every_detection_control_is_in_the_help_with_its_default():
    from engine.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices["predict"]
    text = sub.format_help()
    for option, default in (("--threshold", "else 0.5 for two classes"), ("--min-area", "default 0.0"), ("--aoi", "default: none"),
                            ("--overlap", "default 32"), ("--batch-size", "default 4"), ("--runtime", "default auto"),
                            ("--overwrite", "default: refuse"), ("--tta", "default none")):
        assert option in text and default in " ".join(text.split()), option


# ----------------------------------------------------------------------------- runtimes


def log_lines(events, level=None):
    return [e["message"] for e in events if e["event"] == "log" and (level is None or e["level"] == level)]


def test_onnx_is_exported_once_cached_by_weights_hash_and_agrees_with_torch(pair, tmp_path, tiny_checkpoint):  # noqa: F811
    common = dict(model=str(tiny_checkpoint), device="cpu", chip=None, overlap=32)
    ref = run(pair, tmp_path / "torch.tif", None, None, runtime="torch", **common)
    assert ref["runtime"].startswith("PyTorch")
    events = []
    result = run(pair, tmp_path / "onnx.tif", None, None, progress=CallbackProgress(events.append), **common)
    assert result["runtime"].startswith("ONNX Runtime") and "fp32" in result["runtime"]
    assert any("auto: the fastest on the CPU" in m for m in log_lines(events))
    cached = sorted((tiny_checkpoint / "onnx-cache").glob("*-96px-fp32.onnx"))
    assert len(cached) == 1
    info = json.loads(cached[0].with_suffix(".json").read_text())
    assert info["agreement"] >= 0.995
    a, b = classes(tmp_path / "torch.tif")[0], classes(tmp_path / "onnx.tif")[0]
    assert (a == b).mean() >= 0.995
    events.clear()
    run(pair, tmp_path / "again.tif", None, None, runtime="onnx", progress=CallbackProgress(events.append), **common)
    assert not any("exporting" in m for m in log_lines(events))  # the cached export
    assert sorted(p.name for p in tmp_path.iterdir()) == ["after.tif", "again.tif", "before.tif", "onnx.tif", "torch.tif"]
    from engine.inference.runner import OnnxRunner

    x = np.random.default_rng(1).standard_normal((2, 4, 3, 96, 96)).astype(np.float32)
    one, two = OnnxRunner(cached[0], 4, threads=1), OnnxRunner(cached[0], 4, threads=2)  # 1 stream / 2 streams
    assert one.streams == 1 and two.streams == 2
    np.testing.assert_array_equal(one(x[0], x[1]), two(x[0], x[1]))
    two.close()


def test_onnx_lanes_run_whole_batches_side_by_side_with_the_same_result(pair, tmp_path, tiny_checkpoint, monkeypatch):  # noqa: F811
    # two ONNX Runtime streams run whole batches at once (no barrier at each batch's end):
    # the raster is bit for bit the one a single stream writes, chips in grid order
    from engine.inference.predict import _covered

    common = dict(model=str(tiny_checkpoint), device="cpu", runtime="onnx", batch_size=2)  # 12 chips of 32 px: 6 batches
    results = {}
    for lanes in (1, 2):
        monkeypatch.setenv("OMP_NUM_THREADS", str(lanes))
        results[lanes] = run(pair, tmp_path / f"lanes{lanes}.tif", **common)
    assert results[2]["chips"] == 12
    with rasterio.open(tmp_path / "lanes1.tif") as one, rasterio.open(tmp_path / "lanes2.tif") as two:
        np.testing.assert_array_equal(one.read(), two.read())
    assert 0 < results[2]["model_seconds"] <= results[2]["seconds"]
    for lanes in (1, 2):  # test-time augmentation runs each lane's batch flipped (FlipAveraged.run_one)
        monkeypatch.setenv("OMP_NUM_THREADS", str(lanes))
        run(pair, tmp_path / f"tta{lanes}.tif", tta="flips", **common)
    with rasterio.open(tmp_path / "tta1.tif") as one, rasterio.open(tmp_path / "tta2.tif") as two:
        np.testing.assert_array_equal(one.read(), two.read())
    assert _covered([(0.0, 1.0), (0.5, 2.0), (3.0, 4.0), (3.2, 3.5)]) == 3.0  # the model's time: overlaps counted once


class EdgeModel(torch.nn.Module):
    """Change in the right quarter of every chip (P = 0.998), none elsewhere (P = 0.12), whatever the input."""

    def forward(self, before, after):
        b, _, h, w = before.shape
        x = torch.full((1, 1, 1, w), -2.0)
        x[..., (3 * w) // 4 :] = 6.0
        return {"logits": torch.cat([torch.zeros(b, 1, h, w), x.expand(b, 1, h, w)], 1)}


def test_flip_tta_averages_the_model_over_flipped_chips(pair, tmp_path):
    from engine.inference.config import TTA_FLIPS
    from engine.inference.runner import FlipAveraged, TorchRunner

    x = np.random.default_rng(2).standard_normal((2, 2, 3, 32, 40)).astype(np.float32)
    plain = TorchRunner(EdgeModel(), torch.device("cpu"), 2)
    tta = FlipAveraged(plain, TTA_FLIPS["flips"])
    one, four = plain(x[0], x[1]), tta(x[0], x[1])
    # the chip, flipped left-right, up-down and both, flipped back and averaged (rounded to the nearest)
    want = (one.astype(np.int64) + one[..., ::-1] + one[:, :, ::-1] + one[:, :, ::-1, ::-1] + 2) // 4
    np.testing.assert_array_equal(four, want)
    np.testing.assert_array_equal(four, four[..., ::-1])  # a model biased to the right is no longer
    # through predict (one chip of 80 px over the 80 px wide pair): the right quarter is
    # change without TTA; with it P = (0.998 + 0.12) / 2 in both outer quarters
    card = binary_card()
    events = []
    base = run(pair, tmp_path / "plain.tif", EdgeModel(), card, chip=None, overlap=0)
    flips = run(pair, tmp_path / "tta.tif", EdgeModel(), card, chip=None, overlap=0, tta="flips", progress=CallbackProgress(events.append))
    assert base["chips"] == flips["chips"] == 1 and base["tta"] == "none" and flips["tta"] == "flips" and "4 flips averaged" in flips["runtime"]
    assert any("4 flips averaged" in m for m in log_lines(events))
    a, b = classes(tmp_path / "plain.tif")[0], classes(tmp_path / "tta.tif")[0]
    assert (a[:, 60:] == 1).all() and (a[:, :60] == 0).all()
    assert (b[:, 60:] == 1).all() and (b[:, :20] == 1).all() and (b[:, 20:60] == 0).all()


def test_int8_runs_or_falls_back_to_fp32_saying_why(pair, tmp_path, tiny_checkpoint):  # noqa: F811
    events = []
    result = run(pair, tmp_path / "q.tif", None, None, model=str(tiny_checkpoint), device="cpu", chip=None, overlap=32,
                 runtime="onnx-int8", progress=CallbackProgress(events.append))
    said = " ".join(log_lines(events))
    if "int8" in result["runtime"]:
        assert "class agreement with fp32 on the calibration chips" in said
    else:
        assert "running the fp32 ONNX model" in said
    assert classes(tmp_path / "q.tif")[0].shape == (64, 80)


def test_auto_is_pytorch_for_dinov3_without_a_checkpoint_or_onnxruntime_and_explicit_onnx_is_refused(pair, tmp_path, monkeypatch):
    events = []
    card = card_for()
    card.backbone = "dinov3_vits16"  # measured: ONNX Runtime is not faster than PyTorch for it
    result = run(pair, tmp_path / "v.tif", ConstantModel(), card, progress=CallbackProgress(events.append))
    assert result["runtime"].startswith("PyTorch") and any("not faster than PyTorch for dinov3_vits16" in m for m in log_lines(events))
    card.backbone = "efficientnet_lite0"
    events.clear()
    result = run(pair, tmp_path / "a.tif", ConstantModel(), card, progress=CallbackProgress(events.append))
    assert result["runtime"].startswith("PyTorch") and any("not a checkpoint" in m for m in log_lines(events))
    monkeypatch.setattr("engine.inference.backend.onnxruntime_available", lambda: False)
    events.clear()
    result = run(pair, tmp_path / "b.tif", ConstantModel(), card, progress=CallbackProgress(events.append))
    assert any("onnxruntime is not installed" in m for m in log_lines(events))
    with pytest.raises(InputError, match="needs the onnx and onnxruntime packages"):
        run(pair, tmp_path / "c.tif", ConstantModel(), card_for(), runtime="onnx")
    assert not (tmp_path / "c.tif").exists()


def test_weights_hash_changes_with_the_weights():
    from engine.inference.export import weights_hash

    m = ConstantModel()
    h = weights_hash(m)
    assert h == weights_hash(ConstantModel()) and len(h) == 64
    m.logits[0] += 1
    assert weights_hash(m) != h


def test_prepare_onnx_exports_what_the_first_prediction_uses(pair, tmp_path, tiny_checkpoint):  # noqa: F811
    from engine.inference.export import prepare_onnx

    large = prepare_onnx(tiny_checkpoint)  # a large scene: max(64, 512) + 32
    assert large is not None and large.name.endswith("-544px-fp32.onnx") and large.is_file()
    path = prepare_onnx(tiny_checkpoint, extent=80)  # this 80 x 64 px pair: one chip of 96 px
    assert path is not None and path.name.endswith("-96px-fp32.onnx") and path.is_file()
    events = []
    run(pair, tmp_path / "p.tif", model=str(tiny_checkpoint), device="cpu", chip=None, overlap=32, progress=CallbackProgress(events.append))
    assert not any("exporting" in m for m in log_lines(events))
