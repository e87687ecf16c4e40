"""``python -m engine`` as a user runs it: caption and demo commands, errors, light imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio")

from rasterio.transform import from_origin  # noqa: E402

from engine.captions import caption_raster_windows  # noqa: E402
from engine.schema import load_preset  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ENV = {k: v for k, v in os.environ.items() if k not in ("PROJ_DATA", "PROJ_LIB")}


def engine(*args, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "engine", *map(str, args)],
        cwd=cwd, env={**ENV, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def user_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """Assert a clean user error: exit 2, one message on stderr, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, (fragment, proc.stderr)
    return proc.stderr


def write_tif(path: Path, array: np.ndarray, **extra) -> Path:
    bands = array[None] if array.ndim == 2 else array
    with rasterio.open(
        path, "w", driver="GTiff", height=bands.shape[1], width=bands.shape[2], count=bands.shape[0],
        dtype=bands.dtype, crs="EPSG:32636", transform=from_origin(638000, 3486000, 0.5, 0.5), **extra,
    ) as dst:  # fmt: skip
        dst.write(bands)
    return path


def write_png(path: Path, array: np.ndarray, mode: str = "L") -> Path:
    """A greyscale (``L``) or palette (``P``) PNG whose pixel values are ``array``."""
    from PIL import Image

    img = Image.frombytes(mode, (array.shape[1], array.shape[0]), np.ascontiguousarray(array, np.uint8).tobytes())
    if mode == "P":
        img.putpalette([v for i in range(256) for v in (i, 255 - i, 0)])
    img.save(path)
    return path


@pytest.fixture
def gaza_label() -> np.ndarray:
    """200x300 class raster: classes 1 (north-west), 3 (east), 6 (south), some nodata."""
    label = np.zeros((200, 300), np.uint8)
    label[5:25, 10:40] = 1  # 600 px
    label[80:120, 250:290] = 3  # 1600 px
    label[170:195, 120:170] = 6  # 1250 px
    label[0:3, 0:300] = 255
    return label


# ----------------------------------------------------------------------------- light imports


def test_import_engine_loads_no_qgis_qt_or_heavy_package():
    code = """
import json, sys
import engine, engine.errors, engine.progress, engine.config, engine.schema, engine.captions, engine.cli
import engine.commands.caption, engine.commands.demo
light = sorted(m for m in sys.modules if m.split('.')[0] in
               ('torch', 'rasterio', 'fiona', 'shapely', 'scipy', 'transformers', 'PIL', 'matplotlib'))
from engine.cli import build_parser
build_parser()  # imports every command module
gui = sorted(m for m in sys.modules if m.split('.')[0] in
             ('qgis', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'sip', 'shiboken2', 'shiboken6'))
print(json.dumps({'heavy': light, 'gui': gui}))
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded["gui"] == [], "engine must never import QGIS or Qt"
    assert loaded["heavy"] == [], "light modules (captions, schema, cli, commands) must not import heavy packages"


# ----------------------------------------------------------------------------- caption


def test_caption_geotiff_json(tmp_path, gaza_label):
    path = write_tif(tmp_path / "labels.tif", gaza_label)
    proc = engine("caption", path, "--preset", "gaza", "--json", "--seed", 4)
    assert proc.returncode == 0, proc.stderr
    chips = json.loads(proc.stdout)
    expected = list(caption_raster_windows(gaza_label, load_preset("gaza"), rng=4))
    assert chips == expected
    (chip,) = chips
    assert chip["window"] == {"row_off": 0, "col_off": 0, "height": 200, "width": 300}
    quads = chip["quadruples"]
    assert [(q["class_id"], q["direction"], q["pixels"]) for q in quads] == [(1, "northwest", 600), (3, "east", 1600), (6, "south", 1250)]
    # eq. 3 in pixels whatever the chip: 600 < 800 is a single; 1600 and 1250 are a few
    assert [q["quantity"] for q in quads] == ["a single", "a few", "a few"]
    assert len(chip["sentences"]) == 3 and all(s.endswith(".") for s in chip["sentences"])


@pytest.mark.parametrize("mode", ["L", "P"])
def test_caption_png_matches_geotiff(tmp_path, gaza_label, mode):
    tif = engine("caption", write_tif(tmp_path / "l.tif", gaza_label), "--preset", "gaza", "--chip", 128, "--json")
    png = engine("caption", write_png(tmp_path / "l.png", gaza_label, mode), "--preset", "gaza", "--chip", 128, "--json")
    assert tif.returncode == png.returncode == 0, png.stderr
    assert "Traceback" not in png.stderr and "Warning" not in png.stderr
    assert json.loads(png.stdout) == json.loads(tif.stdout)
    windows = [(c["window"]["row_off"], c["window"]["col_off"]) for c in json.loads(png.stdout)]
    assert windows == sorted(windows)  # raster order
    assert windows == [(0, 0), (0, 128), (0, 256), (128, 0), (128, 128)]  # (128, 256) has no change


def test_caption_label_map_for_binary_masks(tmp_path):
    mask = np.zeros((256, 256), np.uint8)
    mask[200:250, 10:60] = 255  # LEVIR-CD style 0/255
    path = write_png(tmp_path / "levir.png", mask)
    plain = engine("caption", path, "--preset", "building", "--json")
    assert plain.returncode == 0 and json.loads(plain.stdout) == []  # 255 is "ignore"
    text = engine("caption", path, "--preset", "building")
    assert text.returncode == 0 and "--label-map 255:1" in text.stdout  # says why nothing was found
    mapped = engine("caption", path, "--preset", "building", "--label-map", "255:1", "--json")
    assert mapped.returncode == 0, mapped.stderr
    (chip,) = json.loads(mapped.stdout)
    assert chip["quadruples"] == [
        {"class_id": 1, "category": "buildings", "type": "changed", "direction": "southwest", "quantity": "a few", "pixels": 2500}
    ]  # fmt: skip  (2500 px: 800 <= N < 4000, eq. 3)
    assert chip["sentences"][0].startswith(("The scene", "Observing", "A few", "In the", "There are"))


def test_caption_schema_file_text_output_and_jsonl(tmp_path, gaza_label):
    schema = tmp_path / "mine.json"
    load_preset("gaza").to_json(schema)
    path = write_tif(tmp_path / "labels.tif", gaza_label)
    text = engine("caption", path, "--schema", schema)
    assert text.returncode == 0, text.stderr
    assert "chip row 0 col 0 (200x300):" in text.stdout and text.stdout.count("\n  ") == 3
    jsonl = engine("caption", path, "--schema", schema, "--progress", "jsonl")
    events = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert events[0]["event"] == "start" and events[-1]["event"] == "done"
    assert any(e["event"] == "progress" and e["fraction"] == 1.0 for e in events)
    result = events[-1]["result"]
    assert result["chips"] == 1 and result["label"] == str(path) and len(result["json"]) == 1


def test_caption_nodata_value_of_the_file_is_ignored(tmp_path):
    label = np.zeros((64, 64), np.uint8)
    label[:32] = 9  # outside the schema, but it is the file's nodata value
    label[40:50, 40:50] = 1
    proc = engine("caption", write_tif(tmp_path / "nd.tif", label, nodata=9), "--preset", "building", "--json")
    assert proc.returncode == 0, proc.stderr
    assert [q["pixels"] for q in json.loads(proc.stdout)[0]["quadruples"]] == [100]


@pytest.mark.parametrize(
    "case, fragments",
    [
        ("value", ["label value(s) 9", "bad-value.tif", "--label-map"]),
        ("text", ["cannot read label raster", "not-a-raster.tif", "GeoTIFF or PNG"]),
        ("missing", ["missing.tif does not exist"]),
        ("rgb", ["has 3 bands; expected one band"]),
        ("bad-json", ["is not valid JSON", "broken.json"]),
        ("dup-ids", ["duplicate id 1", "dup.json"]),
        ("no-schema", ["--preset NAME or --schema FILE"]),
        ("bad-map", ["bad --label-map entry 'x'"]),
        ("map-target", ["--label-map maps 255 to 4", "'building'"]),
        ("chip", ["--chip must be a positive number"]),
        ("preset", ["unknown preset 'nope'"]),
    ],
)
def test_caption_user_errors(tmp_path, case, fragments):
    good = write_tif(tmp_path / "good.tif", np.zeros((32, 32), np.uint8))
    args = {
        "value": [write_tif(tmp_path / "bad-value.tif", np.full((32, 32), 9, np.uint8)), "--preset", "building"],
        "text": [tmp_path / "not-a-raster.tif", "--preset", "building"],
        "missing": [tmp_path / "missing.tif", "--preset", "building"],
        "rgb": [write_tif(tmp_path / "rgb.tif", np.zeros((3, 32, 32), np.uint8)), "--preset", "building"],
        "bad-json": [good, "--schema", tmp_path / "broken.json"],
        "dup-ids": [good, "--schema", tmp_path / "dup.json"],
        "no-schema": [good],
        "bad-map": [good, "--preset", "building", "--label-map", "x"],
        "map-target": [good, "--preset", "building", "--label-map", "255:4"],
        "chip": [good, "--preset", "building", "--chip", "0"],
        "preset": [good, "--preset", "nope"],
    }[case]
    (tmp_path / "not-a-raster.tif").write_text("this is not a raster")
    (tmp_path / "broken.json").write_text('{"classes": [')
    cls = {"name": "a", "category": "as", "type": "t", "color": "#ffffff"}
    (tmp_path / "dup.json").write_text(json.dumps({"classes": [{"id": 1, **cls}, {"id": 1, **cls, "name": "b"}]}))
    user_error(engine("caption", *args, "--json"), *fragments)


# ----------------------------------------------------------------------------- demo


def test_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    proc = engine("demo", "--out", out, "--size", 192, "--seed", 3, "--skip", "train")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    for name in ("before.tif", "after.tif", "truth.tif", "labels.gpkg", "aoi.gpkg"):
        assert (out / "scene" / name).is_file(), name
        assert str(out / "scene" / name) in proc.stdout  # the summary names every file
    captions = json.loads((out / "captions.json").read_text())
    with rasterio.open(out / "scene" / "truth.tif") as src:
        truth = src.read(1)
    assert captions == list(caption_raster_windows(truth, load_preset("gaza"), chip=256, rng=3))
    assert {q["class_id"] for c in captions for q in c["quadruples"]} == set(range(1, 7))
    text = (out / "captions.txt").read_text()
    assert all(s in text for c in captions for s in c["sentences"])

    again = engine("demo", "--out", out, "--size", 160, "--progress", "jsonl", "--skip", "train")  # re-run into its own output
    assert again.returncode == 0, again.stderr
    done = json.loads(again.stdout.splitlines()[-1])
    assert done["event"] == "done" and done["result"]["size"] == 160
    assert done["result"]["captions_json"] == str(out / "captions.json")
    steps = [json.loads(line).get("step") for line in again.stdout.splitlines()]
    assert "scene" in steps and "captions" in steps
    assert not {"train", "predict", "evaluate", "preview"} & set(steps)  # skipped with what needs them
    with rasterio.open(out / "scene" / "before.tif") as src:
        assert src.width == 160


def test_demo_trains_predicts_scores_and_previews(tmp_path):
    """The whole demo at a small size and few steps: every output is there and consistent."""
    out = tmp_path / "demo"
    proc = engine("demo", "--out", out, "--size", 256, "--chip", 128, "--steps", 4,
                  "--progress", "jsonl")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    result = events[-1]["result"]
    assert events[-1]["event"] == "done"
    fractions = [e["fraction"] for e in events if e["event"] == "progress" and e.get("fraction") is not None]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0  # one bar for the whole demo
    assert [(e["step"], e["stage"]) for e in events if e["event"] == "metrics"] == [(3, 1), (4, 2)]  # end of each stage
    with rasterio.open(out / "scene" / "before.tif") as b, rasterio.open(result["prediction"]) as p:
        assert (p.crs, p.transform, p.width, p.height) == (b.crs, b.transform, b.width, b.height)
        assert p.count == 2 and p.dtypes[0] == "uint8"
    import fiona

    assert set(fiona.listlayers(result["changes"])) == {"changes", "captions"}
    scores = json.loads((out / "scores.json").read_text())
    assert set(scores) == {"scene", "validation"}
    for part in scores.values():
        assert 0.0 <= part["OA"] <= 1.0 and set(part) >= {"SeK", "Fscd", "mIoU", "F1", "per_class"}
    assert result["scene_scores"]["OA"] == round(scores["scene"]["OA"], 4)
    from PIL import Image

    with Image.open(result["preview"]) as img:
        assert img.width > 3 * img.height  # four panels side by side


def test_demo_refuses_a_folder_it_did_not_make(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.docx").write_text("precious")
    user_error(engine("demo", "--out", foreign, "--size", 128), "not empty", "--out DIR")
    assert sorted(p.name for p in foreign.iterdir()) == ["thesis.docx"]
    user_error(engine("demo", "--out", tmp_path / "small", "--size", 64), "--size must be at least 128")
