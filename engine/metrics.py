"""Change-detection metrics as Bi-SRNet defines them, from one confusion matrix (numpy only).

The matrix ``m`` is ``(K, K)`` pixel counts summed over every evaluated pixel,
**rows = prediction, columns = truth**, class 0 = *no change*; truth pixels equal to
255 are ignored. From it (Ding et al., Bi-SRNet, the reference the S2M paper follows):

- the 2x2 *change vs no change* matrix ``c2`` collapses classes 1..K-1 into *change*;
- ``IoU`` (of change) and the no-change IoU come from ``c2``; ``mIoU`` is their mean;
- ``SeK = kappa(m with m[0, 0] = 0) * exp(IoU) / e``;
- ``Fscd`` = harmonic mean of ``sum(diag(m)[1:]) / (pixels predicted as change)`` and
  ``sum(diag(m)[1:]) / (pixels truly changed)`` (a change pixel counts only with the right class);
- ``OA = trace(m) / m.sum()``;
- ``Precision``, ``Recall``, ``F1`` of change vs no change from ``c2``;
- per class: ``IoU``, ``F1``, ``Precision``, ``Recall``, ``support`` (truth pixels).

All values are fractions (0..1; kappa and so SeK may be negative for worse-than-chance maps).

Degenerate cases (a ratio whose denominator is 0):

- Precision, Recall, F1, IoU (overall and per class) and Fscd: 1.0 when prediction and truth
  both have *nothing* of that class (nothing to find, nothing claimed), else 0.0. So an empty
  prediction on a scene with change scores Precision = Recall = F1 = IoU = Fscd = 0, and on a
  scene without change scores 1.
- kappa follows Bi-SRNet: 0 when the matrix is empty or the expected agreement is 1. Hence
  SeK = 0 when nothing changed and nothing was predicted (``m`` zeroed at [0, 0] is empty).
- An empty matrix (no pixel evaluated) gives NaN everywhere (``None`` in JSON).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from .schema import NODATA_CLASS

KEYS = ("SeK", "Fscd", "mIoU", "OA", "Precision", "Recall", "F1", "IoU")


def _ratio(num: float, den: float, both_empty: bool) -> float:
    if den > 0:
        return float(num / den)
    return 1.0 if both_empty else 0.0


def kappa(m: np.ndarray) -> float:
    """Cohen's kappa of a confusion matrix; 0 when it is empty or chance agreement is 1 (Bi-SRNet)."""
    m = np.asarray(m, dtype=np.float64)
    total = m.sum()
    if total == 0:
        return 0.0
    po = np.trace(m) / total
    pe = float(m.sum(1) @ m.sum(0)) / total**2
    if pe == 1:
        return 0.0
    return float((po - pe) / (1 - pe))


def _prf(tp: float, fp: float, fn: float) -> dict[str, float]:
    empty = tp + fp + fn == 0
    return {
        "Precision": _ratio(tp, tp + fp, empty),
        "Recall": _ratio(tp, tp + fn, empty),
        "F1": _ratio(2 * tp, 2 * tp + fp + fn, empty),
        "IoU": _ratio(tp, tp + fp + fn, empty),
    }


def scores_from_matrix(m: np.ndarray, class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """All scores of a ``(K, K)`` matrix (rows = prediction, columns = truth).

    Args:
        m: pixel counts, K >= 2, class 0 = no change.
        class_names: optional names for ``per_class`` entries.

    Returns:
        ``{"SeK", "Fscd", "mIoU", "OA", "Precision", "Recall", "F1", "IoU", "per_class"}``;
        ``per_class`` maps the class id (as a string) to ``{"name"?, "IoU", "F1",
        "Precision", "Recall", "support"}``.
    """
    m = np.asarray(m, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 2:
        raise ValueError(f"expected a square (K, K) matrix with K >= 2, got shape {m.shape}")
    k = m.shape[0]
    total = m.sum()
    per_class: dict[str, Any] = {}
    for c in range(k):
        tp = m[c, c]
        fp = m[c].sum() - tp
        fn = m[:, c].sum() - tp
        entry: dict[str, Any] = {}
        if class_names is not None and c < len(class_names):
            entry["name"] = class_names[c]
        entry.update(_prf(tp, fp, fn) if total else {key: math.nan for key in ("Precision", "Recall", "F1", "IoU")})
        entry["support"] = int(m[:, c].sum())
        per_class[str(c)] = entry
    if total == 0:
        out: dict[str, Any] = {key: math.nan for key in KEYS}
        out["per_class"] = per_class
        return out
    c2 = np.array([[m[0, 0], m[0, 1:].sum()], [m[1:, 0].sum(), m[1:, 1:].sum()]])
    change = _prf(c2[1, 1], c2[1, 0], c2[0, 1])
    no_change = _prf(c2[0, 0], c2[0, 1], c2[1, 0])
    m0 = m.copy()
    m0[0, 0] = 0
    sek = kappa(m0) * math.exp(change["IoU"]) / math.e
    sc_tp = np.trace(m[1:, 1:])
    pred_change = m[1:].sum()
    true_change = m[:, 1:].sum()
    nothing = pred_change == 0 and true_change == 0
    sc_p = _ratio(sc_tp, pred_change, nothing)
    sc_r = _ratio(sc_tp, true_change, nothing)
    fscd = 2 * sc_p * sc_r / (sc_p + sc_r) if sc_p + sc_r > 0 else 0.0
    return {
        "SeK": float(sek),
        "Fscd": float(fscd),
        "mIoU": float((change["IoU"] + no_change["IoU"]) / 2),
        "OA": float(np.trace(m) / total),
        "Precision": change["Precision"],
        "Recall": change["Recall"],
        "F1": change["F1"],
        "IoU": change["IoU"],
        "per_class": per_class,
    }


class ConfusionMatrix:
    """Accumulates a ``(K, K)`` int64 matrix, rows = prediction, columns = truth.

    Example:
        >>> cm = ConfusionMatrix(3)
        >>> cm.update(pred, truth)      # (H, W) or (B, H, W) integer arrays / tensors
        >>> cm.scores()["SeK"]
    """

    def __init__(self, num_classes: int) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.num_classes = int(num_classes)
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred: Any, truth: Any, ignore: int = NODATA_CLASS) -> None:
        """Add pixels; truth == ``ignore`` is skipped.

        Args:
            pred: predicted class ids, any shape (numpy array or torch tensor).
            truth: true class ids, same shape.
            ignore: truth value to skip.

        Raises:
            ValueError: shapes differ, or a value is outside 0..K-1 (other than ``ignore`` in truth).
        """
        p = _np(pred).reshape(-1).astype(np.int64)
        t = _np(truth).reshape(-1).astype(np.int64)
        if p.shape != t.shape:
            raise ValueError(f"prediction has {p.size} pixels but truth has {t.size}")
        keep = t != ignore
        p, t = p[keep], t[keep]
        k = self.num_classes
        bad_p = (p < 0) | (p >= k)
        bad_t = (t < 0) | (t >= k)
        if bad_p.any() or bad_t.any():
            vals = sorted(set(np.unique(p[bad_p]).tolist()) | set(np.unique(t[bad_t]).tolist()))
            raise ValueError(f"class values {vals[:10]} are outside 0..{k - 1}; set the number of classes or a label map")
        self.matrix += np.bincount(k * p + t, minlength=k * k).reshape(k, k)

    def merge(self, other: "ConfusionMatrix | np.ndarray") -> None:
        self.matrix += other.matrix if isinstance(other, ConfusionMatrix) else np.asarray(other, dtype=np.int64)

    def reset(self) -> None:
        self.matrix[:] = 0

    def scores(self, class_names: Sequence[str] | None = None) -> dict[str, Any]:
        return scores_from_matrix(self.matrix, class_names)


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return np.asarray(x)
