"""Scene inference on tiny real GeoTIFFs: georeferencing, seams, sizes, nodata, cancel, torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from engine.errors import Cancelled, InputError
from engine.predict import PredictConfig, parse_extent, predict
from engine.tiling import classify
from engine.progress import CallbackProgress, NullProgress
from engine.schema import load_preset

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = load_preset("gaza")
TRANSFORM = from_origin(638000.0, 3486000.0, 0.5, 0.5)


def write_raster(path, data, nodata=None, crs="EPSG:32636", transform=TRANSFORM):
    c, h, w = data.shape
    profile = dict(driver="GTiff", width=w, height=h, count=c, dtype=data.dtype, crs=crs, transform=transform)
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


@pytest.fixture
def make_pair(tmp_path):
    """Factory: (before, after) GeoTIFF paths of random 3-band uint8 imagery."""

    def make(height, width, seed=0, before_nodata=None, after_nodata=None):
        rng = np.random.default_rng(seed)
        b = rng.integers(1, 255, (3, height, width), dtype=np.uint8)
        a = rng.integers(1, 255, (3, height, width), dtype=np.uint8)
        nb = na = None
        if before_nodata is not None:
            b[:, before_nodata] = 0
            nb = 0
        if after_nodata is not None:
            a[:, after_nodata] = 0
            na = 0
        return write_raster(tmp_path / "before.tif", b, nb), write_raster(tmp_path / "after.tif", a, na)

    return make


class ConstantModel(torch.nn.Module):
    """The same probabilities everywhere, whatever the input."""

    def __init__(self, num_classes=7, winner=3):
        super().__init__()
        logits = torch.zeros(num_classes)
        logits[winner] = 2.0
        logits[1] = 1.0
        self.register_buffer("logits", logits)

    def forward(self, before, after):
        b, _, h, w = before.shape
        return {"logits": self.logits.view(1, -1, 1, 1).expand(b, -1, h, w).clone()}


class PixelModel(torch.nn.Module):
    """Per-pixel logits (1x1 conv): its prediction cannot depend on where chips are cut."""

    def __init__(self, num_classes=7):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(6, num_classes, 1)

    def forward(self, before, after):
        return {"logits": self.conv(torch.cat([before, after], 1))}


def card_for(chip_size=32):
    return types.SimpleNamespace(
        in_bands=3, mean=[128.0] * 3, std=[64.0] * 3, chip_size=chip_size, schema=SCHEMA.to_dict(), num_classes=7, backbone="test"
    )


def run(before, after, out, model, progress=None, **kw):
    kw.setdefault("overlap", 8)
    kw.setdefault("batch_size", 3)
    config = PredictConfig(before=str(before), after=str(after), out=str(out), **kw)
    return predict(config, progress or NullProgress(), model=model, card=card_for())


def read_out(path):
    with rasterio.open(path) as src:
        return src.read(1), src.read(2), src.profile, src


def pixel_reference(model, before, after):
    with rasterio.open(before) as s:
        b = (s.read().astype(np.float32) - 128) / 64
    with rasterio.open(after) as s:
        a = (s.read().astype(np.float32) - 128) / 64
    with torch.no_grad():
        probs = torch.softmax(model(torch.from_numpy(b)[None], torch.from_numpy(a)[None])["logits"][0], 0).numpy()
    return classify(probs, None).astype(np.uint8)  # 7 classes: the most probable class by default


def test_output_has_the_inputs_georeferencing_colours_and_confidence(make_pair, tmp_path):
    before, after = make_pair(70, 90)
    out = tmp_path / "pred.tif"
    result = run(before, after, out, ConstantModel())
    cls, conf, profile, _ = read_out(out)
    with rasterio.open(before) as src:
        assert profile["crs"] == src.crs
        assert profile["transform"] == src.transform
        assert (profile["width"], profile["height"]) == (src.width, src.height)
    assert profile["count"] == 2 and profile["dtype"] == "uint8" and profile["nodata"] == 255
    assert profile["tiled"] and profile["compress"] == "deflate"
    with rasterio.open(out) as src:
        cmap = src.colormap(1)
        assert src.descriptions == ("class", "confidence (%)")
    for c in SCHEMA.classes:
        assert cmap[c.id][:3] == c.rgb()
    assert result["raster"] == str(out) and result["pixels_valid"] == 70 * 90
    assert result["classes"][SCHEMA[3].name] == 70 * 90
    assert not list(tmp_path.glob("*.incomplete"))


def test_constant_model_gives_no_seams(make_pair, tmp_path):
    before, after = make_pair(101, 77)
    out = tmp_path / "pred.tif"
    run(before, after, out, ConstantModel(winner=3), chip=32, overlap=8)
    cls, conf, _, _ = read_out(out)
    assert (cls == 3).all()
    p = torch.softmax(ConstantModel(winner=3).logits, 0)[3].item()
    assert (conf == round(100 * p)).all()


def test_pixel_model_blends_back_to_the_whole_raster_prediction(make_pair, tmp_path):
    """Odd sizes, several chips per axis: the blended output equals the full-raster forward."""
    before, after = make_pair(93, 131, seed=1)
    model = PixelModel()
    out = tmp_path / "pred.tif"
    run(before, after, out, model, chip=32, overlap=12)
    cls, _, _, _ = read_out(out)
    ref = pixel_reference(model, before, after)
    assert (cls == ref).mean() > 0.999
    assert len(np.unique(ref)) > 2  # the comparison means something


def test_raster_smaller_than_one_chip(make_pair, tmp_path):
    before, after = make_pair(19, 27, seed=2)
    model = PixelModel()
    out = tmp_path / "small.tif"
    result = run(before, after, out, model, chip=64, overlap=16)
    cls, _, profile, _ = read_out(out)
    assert (profile["width"], profile["height"]) == (27, 19)
    assert result["chips"] == 1
    assert (cls == pixel_reference(model, before, after)).mean() > 0.999


def test_nodata_in_either_input_is_nodata_in_the_output(make_pair, tmp_path):
    H, W = 80, 96
    nb = np.zeros((H, W), bool)
    nb[:20, :30] = True
    na = np.zeros((H, W), bool)
    na[50:, 60:] = True
    before, after = make_pair(H, W, before_nodata=nb, after_nodata=na)
    out = tmp_path / "pred.tif"
    run(before, after, out, ConstantModel(winner=2), chip=32, overlap=8)
    cls, conf, _, _ = read_out(out)
    invalid = nb | na
    assert (cls[invalid] == 255).all() and (conf[invalid] == 255).all()
    assert (cls[~invalid] == 2).all() and (conf[~invalid] <= 100).all()


def test_extent_gives_that_window_and_its_transform(make_pair, tmp_path):
    before, after = make_pair(80, 100)
    # columns 10..60, rows 20..50 of the before grid
    x0, y0 = TRANSFORM * (10, 50)
    x1, y1 = TRANSFORM * (60, 20)
    out = tmp_path / "part.tif"
    run(before, after, out, ConstantModel(), extent=(x0, y0, x1, y1))
    _, _, profile, _ = read_out(out)
    assert (profile["width"], profile["height"]) == (50, 30)
    assert profile["transform"] == TRANSFORM * rasterio.Affine.translation(10, 20)
    assert parse_extent(f"{x0},{y0},{x1},{y1}") == (x0, y0, x1, y1)
    with pytest.raises(InputError, match="xmin"):
        parse_extent("1,2,3")
    with pytest.raises(InputError, match="does not overlap"):
        run(before, after, tmp_path / "none.tif", ConstantModel(), extent=(0.0, 0.0, 10.0, 10.0))


def test_cancel_leaves_no_output_file(make_pair, tmp_path):
    before, after = make_pair(120, 120)
    out = tmp_path / "pred.tif"
    calls = []

    def cancel():
        return len(calls) > 2

    progress = CallbackProgress(calls.append, cancel_callback=cancel)
    with pytest.raises(Cancelled):
        run(before, after, out, PixelModel(), progress=progress, chip=32, overlap=8, batch_size=1)
    assert not out.exists()
    assert not list(tmp_path.glob("pred.tif*"))


def test_bad_settings_are_input_errors(make_pair, tmp_path):
    before, after = make_pair(40, 40)
    with pytest.raises(InputError, match="overlap"):
        run(before, after, tmp_path / "x.tif", ConstantModel(), chip=32, overlap=20)
    with pytest.raises(InputError, match=".tif"):
        PredictConfig(before="b.tif", after="a.tif", out="x.png")
    with pytest.raises(InputError, match="batch_size"):
        PredictConfig(before="b.tif", after="a.tif", out="x.tif", batch_size=0)
    with pytest.raises(InputError, match="multiple of 32"):

        class Strided(ConstantModel):
            backbone = types.SimpleNamespace(size_multiple=32)

        run(before, after, tmp_path / "x.tif", Strided(), chip=48)


# ----------------------------------------------------------------------------- checkpoint + CLI + torchrun


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from engine.checkpoint import make_card, save_checkpoint
    from engine.models.change import S2MChangeModel
    from engine.models.registry import create_backbone

    torch.manual_seed(0)
    model = S2MChangeModel(create_backbone("efficientnet_lite0", weights=None), SCHEMA.num_classes, decoder_channels=(8, 8, 8, 8))
    model.eval()
    card = make_card(model, SCHEMA, [128.0] * 3, [64.0] * 3, chip_size=64)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "best", model, card)


def _engine_env():
    env = dict(os.environ)
    env.pop("PROJ_DATA", None)
    env.pop("PROJ_LIB", None)
    env["PYTHONPATH"] = str(ROOT)
    env["OMP_NUM_THREADS"] = "1"
    env["HF_HUB_OFFLINE"] = "1"
    return env


def _cli(args, **kw):
    return subprocess.run([sys.executable, "-m", "engine", "predict", *args], cwd=ROOT, env=_engine_env(), capture_output=True, text=True, timeout=180, **kw)


def test_cli_and_torchrun_match_byte_for_byte(make_pair, tmp_path, tiny_checkpoint):
    """Two gloo processes under torchrun write the single-process class band exactly."""
    before, after = make_pair(150, 100, seed=3)
    common = ["--before", str(before), "--after", str(after), "--model", str(tiny_checkpoint), "--chip", "64", "--overlap", "16", "--batch-size", "2", "--device", "cpu"]
    single = tmp_path / "single.tif"
    proc = _cli([*common, "--out", str(single), "--vectors", str(tmp_path / "single.gpkg"), "--progress", "jsonl"])
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    done = [e for e in events if e["event"] == "done"]
    assert done and done[0]["result"]["raster"] == str(single)
    assert Path(done[0]["result"]["vectors"]).exists()

    sharded = tmp_path / "sharded.tif"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "-m", "engine", "predict", *common, "--out", str(sharded), "--progress", "none"]
    proc = subprocess.run(cmd, cwd=ROOT, env=_engine_env(), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with rasterio.open(single) as a, rasterio.open(sharded) as b:
        ca, cb = a.read(1), b.read(1)
        assert a.profile == b.profile
        assert ca.tobytes() == cb.tobytes()
        np.testing.assert_array_equal(a.read(2), b.read(2))
    assert len(np.unique(ca)) > 1  # a real prediction, not a constant
    assert not list(tmp_path.glob(".sharded.tif.parts*")) and not list(tmp_path.glob("*.incomplete"))


def test_cli_reports_bad_input_without_traceback(tmp_path, tiny_checkpoint):
    proc = _cli(["--before", str(tmp_path / "missing.tif"), "--after", str(tmp_path / "missing.tif"), "--model", str(tiny_checkpoint), "--out", str(tmp_path / "o.tif")])
    assert proc.returncode == 2
    assert "missing.tif" in proc.stderr and "Traceback" not in proc.stderr


def test_cuda_out_of_memory_halves_the_batch_and_retries():
    """The retry logic, without a GPU: a forward that fails above 1 chip per batch."""
    from engine.errors import ModelError
    from engine.inference.runner import TorchRunner

    runner = TorchRunner(ConstantModel(), torch.device("cpu"), batch_size=4)
    runner.cuda = True  # pretend: the out-of-memory path only runs on CUDA
    sizes = []

    def forward(before, after):
        sizes.append(len(before))
        if len(before) > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return np.full((len(before), 7, 4, 4), len(sizes), np.int32)

    runner._forward = forward
    logs = []
    x = np.zeros((4, 3, 4, 4), np.float32)
    out = runner(x, x, lambda msg, level="info": logs.append(msg))
    assert out.shape == (4, 7, 4, 4) and runner.batch_size == 1
    assert sizes == [4, 2, 1, 1, 1, 1]
    assert "retrying with 2" in logs[0]
    runner._forward = lambda b, a: (_ for _ in ()).throw(torch.cuda.OutOfMemoryError("CUDA out of memory"))
    with pytest.raises(ModelError, match="smaller --chip"):
        runner(x[:1], x[:1])


# ----------------------------------------------------------------------------- input values vs the training data


def card_8bit(chip_size=32):
    """A card whose model was trained on 8-bit imagery (ImageNet statistics)."""
    from engine.normalization import Normalization, imagenet_mean_std

    mean, std = imagenet_mean_std(3)
    norm = Normalization(mean, std, "uint8", "imagenet-8bit", (0.0, 255.0), [[5.0, 250.0]] * 3)
    return types.SimpleNamespace(in_bands=3, mean=mean, std=std, chip_size=chip_size, schema=SCHEMA.to_dict(), num_classes=7,
                                 backbone="test", normalization=norm.to_dict())


def test_8bit_model_on_a_uint16_scene_is_refused_before_writing(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 3001, (3, 300, 280)).astype(np.uint16)
    before = write_raster(tmp_path / "before.tif", data)
    after = write_raster(tmp_path / "after.tif", data[:, ::-1].copy())
    out = tmp_path / "pred.tif"
    config = PredictConfig(before=str(before), after=str(after), out=str(out), overlap=8)
    with pytest.raises(InputError, match=r"before.tif is uint16 with values up to 3000; the model was trained on 8-bit imagery"):
        predict(config, NullProgress(), model=ConstantModel(), card=card_8bit())
    assert not out.exists() and not list(tmp_path.glob("pred.tif*"))


def test_another_dtype_with_8bit_values_warns_and_predicts(tmp_path):
    rng = np.random.default_rng(1)
    before = write_raster(tmp_path / "before.tif", rng.integers(1, 255, (3, 40, 50)).astype(np.float32))
    after = write_raster(tmp_path / "after.tif", rng.integers(1, 255, (3, 40, 50)).astype(np.uint8))
    events = []
    config = PredictConfig(before=str(before), after=str(after), out=str(tmp_path / "pred.tif"), overlap=8)
    predict(config, CallbackProgress(events.append), model=ConstantModel(), card=card_8bit())
    warnings = [e["message"] for e in events if e["event"] == "log" and e["level"] == "warning"]
    assert len(warnings) == 1 and warnings[0].startswith("before.tif is float32, the model was trained on uint8")
    assert (tmp_path / "pred.tif").exists()


@pytest.fixture(scope="module")
def tiny_8bit_checkpoint(tmp_path_factory):
    from engine.checkpoint import make_card, save_checkpoint
    from engine.models.change import S2MChangeModel
    from engine.models.registry import create_backbone
    from engine.normalization import Normalization

    torch.manual_seed(0)
    model = S2MChangeModel(create_backbone("efficientnet_lite0", weights=None), SCHEMA.num_classes, decoder_channels=(8, 8, 8, 8))
    norm = Normalization.from_dict(card_8bit().normalization)
    card = make_card(model.eval(), SCHEMA, None, None, chip_size=64, normalization=norm)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt8") / "best", model, card)


def test_cli_refuses_a_uint16_scene_on_an_8bit_checkpoint_with_exit_code_2(tmp_path, tiny_8bit_checkpoint):
    data = np.random.default_rng(2).integers(0, 3001, (3, 64, 64)).astype(np.uint16)
    before = write_raster(tmp_path / "before.tif", data)
    out = tmp_path / "o.tif"
    proc = _cli(["--before", str(before), "--after", str(before), "--model", str(tiny_8bit_checkpoint), "--out", str(out), "--device", "cpu"])
    assert proc.returncode == 2, proc.stderr
    assert "uint16 with values up to 3000" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()
