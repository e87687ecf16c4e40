"""Metrics against confusion matrices computed by hand (Bi-SRNet definitions)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.metrics import ConfusionMatrix, kappa, scores_from_matrix

ROOT = Path(__file__).resolve().parents[2]


def test_binary_matrix_by_hand():
    # rows = prediction, columns = truth
    m = np.array([[50, 10], [5, 35]])
    s = scores_from_matrix(m)
    tp, fp, fn, tn = 35, 5, 10, 50
    assert s["Precision"] == pytest.approx(tp / (tp + fp))
    assert s["Recall"] == pytest.approx(tp / (tp + fn))
    assert s["F1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert s["IoU"] == pytest.approx(tp / (tp + fp + fn))
    iou_nc = tn / (tn + fp + fn)
    assert s["mIoU"] == pytest.approx((tp / (tp + fp + fn) + iou_nc) / 2)
    assert s["OA"] == pytest.approx(85 / 100)
    # SeK: kappa of [[0, 10], [5, 35]]: po = 35/50, pe = (10*5 + 40*45)/50^2
    po, pe = 35 / 50, (10 * 5 + 40 * 45) / 2500
    k0 = (po - pe) / (1 - pe)
    assert s["SeK"] == pytest.approx(k0 * math.exp(tp / (tp + fp + fn)) / math.e)
    # binary: Fscd equals the change F1
    assert s["Fscd"] == pytest.approx(s["F1"])


def test_multiclass_matrix_by_hand():
    m = np.array(
        [
            [100, 4, 6],
            [3, 20, 5],
            [2, 1, 9],
        ]
    )
    s = scores_from_matrix(m, ["no change", "a", "b"])
    # change vs no change: TP = 20+5+1+9 = 35, FP (pred change, truth 0) = 3+2, FN = 4+6
    tp, fp, fn, tn = 35, 5, 10, 100
    assert s["Precision"] == pytest.approx(tp / 40)
    assert s["Recall"] == pytest.approx(tp / 45)
    assert s["IoU"] == pytest.approx(tp / 50)
    assert s["mIoU"] == pytest.approx((35 / 50 + 100 / 115) / 2)
    assert s["OA"] == pytest.approx(129 / 150)
    # Fscd: semantic TP = 20 + 9 = 29, predicted change 40, true change 45
    p, r = 29 / 40, 29 / 45
    assert s["Fscd"] == pytest.approx(2 * p * r / (p + r))
    # SeK: kappa of m with m[0,0]=0, total 50
    rows = np.array([10, 28, 12])
    cols = np.array([5, 25, 20])
    po = 29 / 50
    pe = float(rows @ cols) / 2500
    assert s["SeK"] == pytest.approx((po - pe) / (1 - pe) * math.exp(35 / 50) / math.e)
    # per class: class 1 TP 20, FP 8, FN 5
    c1 = s["per_class"]["1"]
    assert c1["name"] == "a"
    assert c1["IoU"] == pytest.approx(20 / 33)
    assert c1["F1"] == pytest.approx(40 / 53)
    assert c1["support"] == 25
    assert s["per_class"]["2"]["IoU"] == pytest.approx(9 / (9 + 3 + 11))


def test_empty_prediction_on_scene_with_change():
    truth = np.zeros((8, 8), np.uint8)
    truth[:2, :2] = 1
    cm = ConfusionMatrix(2)
    cm.update(np.zeros_like(truth), truth)
    s = cm.scores()
    assert s["Precision"] == 0 and s["Recall"] == 0 and s["F1"] == 0 and s["IoU"] == 0
    assert s["Fscd"] == 0
    assert s["OA"] == pytest.approx(60 / 64)
    assert s["SeK"] == 0  # m with m[0,0]=0 has one non-diagonal cell: kappa 0
    assert s["mIoU"] == pytest.approx(60 / 64 / 2)


def test_empty_prediction_on_scene_without_change():
    cm = ConfusionMatrix(3)
    z = np.zeros((4, 4), np.uint8)
    cm.update(z, z)
    s = cm.scores()
    assert s["F1"] == 1 and s["IoU"] == 1 and s["Precision"] == 1 and s["Recall"] == 1
    assert s["OA"] == 1 and s["mIoU"] == 1
    assert s["SeK"] == 0  # Bi-SRNet: kappa of an empty matrix is 0
    assert s["per_class"]["2"]["IoU"] == 1


def test_empty_matrix_is_nan():
    s = ConfusionMatrix(2).scores()
    assert all(math.isnan(s[k]) for k in ("SeK", "F1", "OA"))


def test_update_ignores_255_and_accumulates():
    cm = ConfusionMatrix(3)
    pred = np.array([[0, 1], [2, 2]])
    truth = np.array([[0, 255], [2, 1]])
    cm.update(pred, truth)
    cm.update(pred, truth)
    expected = np.zeros((3, 3), int)
    expected[0, 0] = 2
    expected[2, 2] = 2
    expected[2, 1] = 2
    np.testing.assert_array_equal(cm.matrix, expected)


def test_update_rejects_values_outside_classes():
    cm = ConfusionMatrix(2)
    with pytest.raises(ValueError, match="outside 0..1"):
        cm.update(np.array([0, 3]), np.array([0, 1]))
    with pytest.raises(ValueError, match="pixels"):
        cm.update(np.array([0, 1]), np.array([0, 1, 1]))


def test_kappa_perfect_and_chance():
    assert kappa(np.array([[5, 0], [0, 5]])) == pytest.approx(1)
    assert kappa(np.array([[5, 5], [5, 5]])) == pytest.approx(0)


def _write(path, arr):
    import rasterio

    with rasterio.open(path, "w", driver="PNG", width=arr.shape[1], height=arr.shape[0], count=1, dtype="uint8") as ds:
        ds.write(arr, 1)


def _evaluate(*args):
    return subprocess.run([sys.executable, "-m", "engine", "evaluate", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_evaluate_cli_folders_with_label_map(tmp_path):
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    pred.mkdir()
    truth.mkdir()
    t = np.zeros((8, 8), np.uint8)
    t[:4, :4] = 255  # LEVIR-style change
    p = np.zeros((8, 8), np.uint8)
    p[:4, :2] = 1
    p[7, 7] = 1
    _write(truth / "x.png", t)
    _write(pred / "x.png", p)
    _write(truth / "y.png", np.zeros((8, 8), np.uint8))
    _write(pred / "y.png", np.zeros((8, 8), np.uint8))
    r = _evaluate("--pred", str(pred), "--truth", str(truth), "--label-map", "255:1", "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert set(s) >= {"SeK", "Fscd", "mIoU", "OA", "Precision", "Recall", "F1", "IoU", "per_class"}
    assert s["Precision"] == pytest.approx(8 / 9)
    assert s["Recall"] == pytest.approx(8 / 16)
    assert s["OA"] == pytest.approx((128 - 9) / 128)


def test_evaluate_cli_leaves_prediction_nodata_out(tmp_path):
    """predict writes 255 where the dates do not overlap; that is nodata, not a 256th class
    (it used to make K = 256 and count every such pixel as a predicted change)."""
    t = np.zeros((8, 8), np.uint8)
    t[:4, :4] = 1
    p = t.copy()
    p[:, 6:] = 255  # no prediction in the last two columns
    _write(tmp_path / "truth.png", t)
    _write(tmp_path / "pred.png", p)
    r = _evaluate("--pred", str(tmp_path / "pred.png"), "--truth", str(tmp_path / "truth.png"), "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert set(s["per_class"]) == {"0", "1"}
    assert s["OA"] == pytest.approx(1.0) and s["F1"] == pytest.approx(1.0)
    assert s["per_class"]["0"]["support"] == 48 - 16
    assert s["pixels_unpredicted"] == 16
    _write(tmp_path / "none.png", np.full((8, 8), 255, np.uint8))
    r = _evaluate("--pred", str(tmp_path / "none.png"), "--truth", str(tmp_path / "truth.png"), "--json")
    assert r.returncode == 2 and "nodata" in r.stderr


def test_evaluate_cli_bad_inputs(tmp_path):
    _write(tmp_path / "a.png", np.zeros((8, 8), np.uint8))
    _write(tmp_path / "b.png", np.zeros((4, 8), np.uint8))
    r = _evaluate("--pred", str(tmp_path / "a.png"), "--truth", str(tmp_path / "b.png"), "--json")
    assert r.returncode == 2 and "8x8" in r.stderr and "b.png" in r.stderr
    r = _evaluate("--pred", str(tmp_path / "a.png"), "--truth", str(tmp_path / "missing.png"), "--json")
    assert r.returncode == 2 and "missing.png" in r.stderr
    (tmp_path / "junk.tif").write_text("not a raster")
    r = _evaluate("--pred", str(tmp_path / "a.png"), "--truth", str(tmp_path / "junk.tif"), "--json")
    assert r.returncode == 2 and "junk.tif" in r.stderr
