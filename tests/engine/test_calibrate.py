"""The change threshold calibrated on the validation area (engine/training/calibrate.py)."""

import numpy as np

from engine.metrics import ConfusionMatrix, scores_from_matrix
from engine.training.calibrate import GRID, MIN_CHANGED, ThresholdHistogram, calibrate


def _probs(pc: np.ndarray) -> np.ndarray:
    return np.stack([1 - pc, pc], 1)


def _histogram_and_matrix(probs: np.ndarray, y: np.ndarray):
    """The validation's histogram and most-probable-class confusion matrix for ``(B, K, H, W)`` probabilities."""
    hist = ThresholdHistogram(probs.shape[1])
    hist.update(probs, y)
    cm = ConfusionMatrix(probs.shape[1])
    cm.update(probs.argmax(1), y)
    return hist, cm.matrix


def _case(pc: np.ndarray, y: np.ndarray):
    return _histogram_and_matrix(_probs(pc), y)


def test_the_histogram_reproduces_the_decisions_it_stands_for():
    rng = np.random.default_rng(1)
    k = 4
    logits = rng.normal(size=(3, k, 20, 20))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = rng.integers(0, k, (3, 20, 20))
    y[0, :2] = 255  # unlabelled pixels are not counted
    hist = ThresholdHistogram(k)
    hist.update(probs, y)
    keep = y != 255
    for t in (0.1, 0.35, 0.5, 0.9):
        changed = 1 - probs[:, 0] >= t
        pred = np.where(changed, probs[:, 1:].argmax(1) + 1, 0)
        cm = ConfusionMatrix(k)
        cm.update(pred[keep], y[keep])
        np.testing.assert_array_equal(hist.matrix_at(t), cm.matrix)
    assert hist.counts.sum() == keep.sum() and hist.changed == int((y[keep] > 0).sum())


def test_an_under_confident_model_gets_a_lower_threshold_that_scores_better():
    rng = np.random.default_rng(0)
    y = (rng.random((4, 64, 64)) < 0.2).astype(int)
    pc = 0.35 * y + 0.3 * rng.random(y.shape) + 0.05  # changed pixels 0.40..0.70, unchanged 0.05..0.35
    hist, matrix = _case(pc, y)
    out = calibrate(hist, matrix, "F1")
    assert out["threshold"] in GRID and out["threshold"] < 0.5
    assert out["score"] > out["default_score"] + 0.1
    assert out["score"] == scores_from_matrix(hist.matrix_at(out["threshold"]))["F1"]


def test_a_well_separated_model_keeps_the_most_probable_class():
    rng = np.random.default_rng(0)
    y = (rng.random((4, 64, 64)) < 0.2).astype(int)
    pc = np.where(y == 1, 0.9, 0.1) + 0.05 * rng.random(y.shape)
    hist, matrix = _case(pc, y)
    out = calibrate(hist, matrix, "F1")
    assert out["threshold"] is None and out["score"] == out["default_score"] == 1.0
    assert "beats" in out["reason"]


def test_too_few_changed_validation_pixels_calibrate_nothing():
    y = np.zeros((1, 64, 64), int)
    y[0, :10, :10] = 1  # 100 changed pixels
    assert 100 < MIN_CHANGED
    pc = np.where(y == 1, 0.4, 0.1)
    hist, matrix = _case(pc, y)
    out = calibrate(hist, matrix, "F1")
    assert out["threshold"] is None and str(MIN_CHANGED) in out["reason"]


def test_multiclass_calibration_scores_sek():
    rng = np.random.default_rng(2)
    y = rng.choice([0, 1, 2], size=(4, 64, 64), p=[0.7, 0.15, 0.15])
    p = np.zeros((4, 3, 64, 64))
    p[:, 0] = np.where(y > 0, 0.55, 0.9)  # changed pixels still look unchanged to the argmax
    p[:, 1] = np.where(y == 1, 0.3, 0.05)
    p[:, 2] = 1 - p[:, 0] - p[:, 1]
    hist, matrix = _histogram_and_matrix(p, y)
    out = calibrate(hist, matrix, "SeK")
    assert out["threshold"] is not None and out["threshold"] <= 0.45
    assert out["score"] > out["default_score"]


def test_a_model_no_better_than_chance_is_not_calibrated_into_calling_everything_changed():
    # few-shot xBD: damage grades swapped against the truth, validation SeK < 0 at the most
    # probable class; lower thresholds creep towards "every pixel damaged", whose SeK is ~0
    rng = np.random.default_rng(3)
    y = rng.choice([0, 1, 2], size=(4, 64, 64), p=[0.8, 0.1, 0.1])
    p = np.zeros((4, 3, 64, 64))
    p[:, 0] = np.where(y > 0, 0.3 + 0.4 * rng.random(y.shape), 0.45 + 0.55 * rng.random(y.shape))  # unsure on change
    wrong = np.where(y == 1, 2, 1)  # the change class it leans to is the other grade
    for c in (1, 2):
        p[:, c] = np.where(wrong == c, 0.8, 0.2) * (1 - p[:, 0])
    hist, matrix = _histogram_and_matrix(p, y)
    default = scores_from_matrix(matrix)["SeK"]
    trivial = scores_from_matrix(hist.matrix_at(0.0))["SeK"]
    # the degenerate win the guard is for: a grid threshold beats the most probable class...
    assert default < 0 and max(scores_from_matrix(hist.matrix_at(t))["SeK"] for t in GRID) > default + 0.01
    out = calibrate(hist, matrix, "SeK")
    # ...but none beats "all changed", so the most probable class is kept and the log says why
    assert out["threshold"] is None and out["score"] == default
    assert out["trivial_score"] == trivial and "every pixel changed" in out["reason"]
