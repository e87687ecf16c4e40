"""predict never loses data: every refusal and failure leaves the inputs byte-identical and
nothing at the output paths (an existing output stays as it was), with one-line errors."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from engine.errors import Cancelled, InputError
from engine.predict import PredictConfig, predict
from engine.progress import CallbackProgress, NullProgress

from .test_outputs import unwritable_folder
from .test_predict import ROOT, TRANSFORM, ConstantModel, PixelModel, _cli, _engine_env, card_for, tiny_checkpoint, write_raster  # noqa: F401


@pytest.fixture
def scene(tmp_path):
    """before.tif / after.tif (3-band uint8, 96 x 80 px) in ``tmp_path/in``; outputs go to ``tmp_path/out``."""
    rng = np.random.default_rng(0)
    src = tmp_path / "in"
    src.mkdir()
    (tmp_path / "out").mkdir()
    b = write_raster(src / "before.tif", rng.integers(1, 255, (3, 80, 96), dtype=np.uint8))
    a = write_raster(src / "after.tif", rng.integers(1, 255, (3, 80, 96), dtype=np.uint8))
    return b, a, tmp_path / "out"


def digest(*paths: Path) -> list[str]:
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def run(before, after, out, model=None, progress=None, **kw):
    kw.setdefault("overlap", 8)
    kw.setdefault("chip", 32)
    config = PredictConfig(before=str(before), after=str(after), out=str(out), **kw)
    return predict(config, progress or NullProgress(), model=model or ConstantModel(), card=card_for())


def test_out_set_to_an_input_is_refused_before_any_work(scene):
    before, after, folder = scene
    sums = digest(before, after)
    link = folder / "link.tif"
    link.symlink_to(after)
    for out, which in ((before, "--before"), (after, "--after"), (link, "--after")):
        with pytest.raises(InputError, match=f"is the {which} input"):
            run(before, after, out, overwrite=True)
    assert digest(before, after) == sums
    assert listing(before.parent) == ["after.tif", "before.tif"] and listing(folder) == ["link.tif"]


def test_an_existing_output_is_refused_without_overwrite_and_replaced_with_it(scene):
    before, after, folder = scene
    out, gpkg = folder / "pred.tif", folder / "changes.gpkg"
    out.write_bytes(b"an earlier result")
    with pytest.raises(InputError, match=r"pred.tif already exists; pass --overwrite"):
        run(before, after, out)
    assert out.read_bytes() == b"an earlier result"
    gpkg.write_bytes(b"earlier polygons")
    with pytest.raises(InputError, match=r"changes.gpkg already exists"):
        run(before, after, folder / "new.tif", vectors=str(gpkg))
    assert listing(folder) == ["changes.gpkg", "pred.tif"]
    result = run(before, after, out, vectors=str(gpkg), overwrite=True)
    with rasterio.open(out) as src:
        assert src.count == 2 and result["pixels_valid"] == 80 * 96
    assert listing(folder) == ["changes.gpkg", "pred.tif"]


def test_vectors_into_a_missing_folder_is_refused_before_the_raster_is_written(scene):
    before, after, folder = scene
    out = folder / "pred.tif"
    out.write_bytes(b"an earlier result")
    with pytest.raises(InputError, match=r"folder .*nowhere does not exist; create it first"):
        run(before, after, out, vectors=str(folder / "nowhere" / "c.gpkg"), overwrite=True)
    assert out.read_bytes() == b"an earlier result" and listing(folder) == ["pred.tif"]


def test_a_failure_after_the_raster_was_written_commits_nothing(scene, monkeypatch):
    before, after, folder = scene
    sums = digest(before, after)
    out, gpkg = folder / "pred.tif", folder / "changes.gpkg"
    out.write_bytes(b"an earlier result")
    written = []

    def broken(raster, path, *a, **kw):
        written.append(Path(raster).stat().st_size)  # the new raster is complete here
        Path(path).write_bytes(b"half a geopackage")
        raise InputError("cannot write changes.gpkg: disk full")

    monkeypatch.setattr("engine.vectorize.write_vectors", broken)
    with pytest.raises(InputError, match="disk full"):
        run(before, after, out, vectors=str(gpkg), overwrite=True)
    assert written and written[0] > 0
    assert out.read_bytes() == b"an earlier result" and listing(folder) == ["pred.tif"]
    assert digest(before, after) == sums


def test_out_that_is_a_folder_and_an_unwritable_folder_are_one_line_errors(scene):
    before, after, folder = scene
    (folder / "pred.tif").mkdir()
    with pytest.raises(InputError, match="pred.tif is a folder"):
        run(before, after, folder / "pred.tif")
    assert listing(folder) == ["pred.tif"] and listing(folder / "pred.tif") == []
    locked = unwritable_folder()
    if locked is not None:
        with pytest.raises(InputError, match="cannot write in folder"):
            run(before, after, locked / "pred.tif")


def test_cancel_keeps_an_existing_output_and_leaves_no_temporary_file(scene):
    before, after, folder = scene
    out = folder / "pred.tif"
    out.write_bytes(b"an earlier result")
    calls = []
    progress = CallbackProgress(calls.append, cancel_callback=lambda: len(calls) > 3)
    with pytest.raises(Cancelled):
        run(before, after, out, model=PixelModel(), overwrite=True, batch_size=1, progress=progress)
    assert out.read_bytes() == b"an earlier result" and listing(folder) == ["pred.tif"]


def corrupt(path: Path) -> Path:
    """A tiled GeoTIFF whose tile data is overwritten in the middle of the file."""
    rng = np.random.default_rng(1)
    with rasterio.open(path, "w", driver="GTiff", width=256, height=256, count=3, dtype="uint8", crs="EPSG:32636",
                       transform=TRANSFORM, tiled=True, blockxsize=128, blockysize=128, compress="deflate") as dst:
        dst.write(rng.integers(1, 255, (3, 256, 256), dtype=np.uint8))
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 4000] = b"\x55" * 4000
    path.write_bytes(bytes(data))
    return path


def test_corrupt_tile_data_is_an_input_error_naming_the_file(tmp_path):
    bad = corrupt(tmp_path / "after.tif")
    good = write_raster(tmp_path / "before.tif", np.random.default_rng(2).integers(1, 255, (3, 256, 256), dtype=np.uint8))
    sums = digest(good, bad)
    with pytest.raises(InputError, match=r"cannot read .*after.tif at pixels .*damaged \(corrupt or truncated tile data\)"):
        run(good, bad, tmp_path / "pred.tif", chip=64, overlap=16)
    assert digest(good, bad) == sums and listing(tmp_path) == ["after.tif", "before.tif"]


def test_all_nodata_is_refused_and_little_data_warns(tmp_path):
    data = np.zeros((3, 64, 64), np.uint8)
    before = write_raster(tmp_path / "before.tif", data, nodata=0)
    after = write_raster(tmp_path / "after.tif", data + 7, nodata=0)
    with pytest.raises(InputError, match=r"no pixel has data in both before.tif and after.tif.*nothing was written"):
        run(before, after, tmp_path / "pred.tif")
    assert listing(tmp_path) == ["after.tif", "before.tif"]
    data[:, :4, :4] = 9
    write_raster(tmp_path / "before.tif", data, nodata=0)
    events = []
    run(before, after, tmp_path / "pred.tif", progress=CallbackProgress(events.append))
    warnings = [e["message"] for e in events if e["event"] == "log" and e["level"] == "warning"]
    assert any("only 0.39% of the 64 x 64 px region has data" in w for w in warnings), warnings


# ----------------------------------------------------------------------------- the command line


def test_cli_failures_exit_2_without_traceback_and_leave_nothing(scene, tiny_checkpoint):  # noqa: F811
    before, after, folder = scene
    bad = corrupt(before.parent / "bad.tif")
    common = ["--model", str(tiny_checkpoint), "--device", "cpu", "--runtime", "torch", "--chip", "64", "--overlap", "16"]
    pair = ["--before", str(before), "--after", str(after)]
    (folder.parent / "dir.tif").mkdir()
    cases = [
        ([*pair, "--out", str(before)], "is the --before input"),
        ([*pair, "--out", str(folder.parent / "dir.tif")], "is a folder"),
        ([*pair, "--out", str(folder / "p.tif"), "--vectors", str(folder / "no" / "c.gpkg")], "does not exist"),
        (["--before", str(bad), "--after", str(bad), "--out", str(folder / "p.tif")], "bad.tif at pixels"),
    ]
    locked = unwritable_folder()
    if locked is not None:
        cases.append(([*pair, "--out", str(locked / "p.tif")], "cannot write in folder"))
    sums = digest(before, after, bad)
    for args, message in cases:
        proc = _cli([*args, *common])
        assert proc.returncode == 2, proc.stderr
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and message in errors[0] and "Traceback" not in proc.stderr, proc.stderr
    assert digest(before, after, bad) == sums and listing(folder) == []


def test_plain_pngs_with_overwrite_on_a_new_file(tmp_path, tiny_checkpoint):  # noqa: F811
    """The measured interface: non-georeferenced PNGs, class 1 of band 1 as change."""
    from PIL import Image

    rng = np.random.default_rng(3)
    for name in ("A.png", "B.png"):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / name)
    out = tmp_path / "pred.tif"
    args = ["--before", str(tmp_path / "A.png"), "--after", str(tmp_path / "B.png"), "--model", str(tiny_checkpoint), "--out", str(out), "--device", "cpu"]
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**_engine_env(), "TMPDIR": str(temp)}
    proc = subprocess.run([sys.executable, "-m", "engine", "predict", *args, "--overwrite"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "ONNX Runtime" in proc.stdout  # auto, with --device cpu
    assert [p.name for p in temp.iterdir() if not p.name.startswith("torchinductor_")] == []  # no telemetry session file
    with rasterio.open(out) as src:
        assert src.read(1).shape == (64, 64) and src.crs is None
    assert _cli(args).returncode == 2  # the same command again: the output exists now
    assert _cli(args + ["--overwrite"]).returncode == 0
