"""The change threshold of the kept model, calibrated on the validation area.

A model trained on a few labelled images is under-confident on change: on held-out
LEVIR-CD pairs its precision is ~0.9 at a recall of ~0.55, so the fixed decision (the most
probable class, i.e. P(change) >= 0.5 for two classes) leaves changed pixels unmarked.
Every validation therefore also collects, per pixel, the *change score* ``1 - P(no
change)`` in :data:`BINS` bins, with the most probable change class and the true class
(:class:`ThresholdHistogram`); :func:`calibrate` then picks the decision that scores best
on the validation area -- the most probable class, or "changed when the change score >=
t, then the most probable change class" for ``t`` in :data:`GRID` -- by the score that
chooses the kept model (F1 of change for two classes, SeK for more).

Our choices (the paper uses the most probable class): the grid is coarse (steps of 0.05,
from 0.1 to 0.5) and never above 0.5: on few labels the model is under-confident on new
images (on every real sample measured, precision far above recall at the most probable
class), so a small validation area inside the training images may lower the decision but
is not trusted to raise it; a threshold must beat the most probable class by :data:`MARGIN` and,
on equal scores, the one nearest 0.5 wins, so that a small validation area does not pull
the decision around by noise; no calibration with fewer than :data:`MIN_CHANGED` changed
validation pixels. A threshold must also beat the *trivial* decision, every validation pixel
changed (:meth:`ThresholdHistogram.matrix_at` 0), by the same margin: where the model's
change classes agree with the truth no better than chance (few-shot xBD damage grades:
validation SeK < 0 at the most probable class, and about 0 for "all damaged"), a low
threshold otherwise wins by marking the whole unseen image as change (measured: 100 % of
an unseen xBD quadrant at thresholds 0.15 and 0.25). The threshold goes into the model
card (``extra["threshold"]``), where ``predict`` reads it (``predict --threshold``
overrides it); ``train --no-calibrate`` keeps the most probable class.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..metrics import scores_from_matrix
from ..schema import NODATA_CLASS

#: Bins of the change score ``1 - P(no change)`` (thresholds are exact at bin edges).
BINS = 100
#: Candidate thresholds: lower than the most probable class's only (see the module doc).
GRID = tuple(round(0.1 + 0.05 * k, 2) for k in range(9))
#: Gain over the most probable class a threshold needs (absolute, in the score's units).
MARGIN = 0.005
#: Changed validation pixels below which no threshold is calibrated.
MIN_CHANGED = 1000


class ThresholdHistogram:
    """Counts of validation pixels by change-score bin, predicted change class and truth.

    ``counts[b, c - 1, y]``: pixels whose change score falls in bin ``b``, whose most
    probable change class is ``c`` (1..K-1) and whose true class is ``y``.
    """

    def __init__(self, num_classes: int, bins: int = BINS) -> None:
        self.num_classes, self.bins = int(num_classes), int(bins)
        self.counts = np.zeros((self.bins, self.num_classes - 1, self.num_classes), np.int64)

    def update(self, probs: np.ndarray, truth: np.ndarray) -> None:
        """Add pixels.

        Args:
            probs: ``(B, K, H, W)`` (or ``(K, H, W)``) class probabilities.
            truth: ``(B, H, W)`` (or ``(H, W)``) true classes, :data:`NODATA_CLASS` skipped.
        """
        p = np.asarray(probs, np.float32)
        if p.ndim == 3:
            p = p[None]
        k = self.num_classes
        p = np.moveaxis(p, 1, -1).reshape(-1, k)
        t = np.asarray(truth).reshape(-1).astype(np.int64)
        keep = t != NODATA_CLASS
        p, t = p[keep], t[keep]
        score = 1.0 - p[:, 0]
        b = np.clip((score * self.bins).astype(np.int64), 0, self.bins - 1)
        c = p[:, 1:].argmax(1)
        idx = (b * (k - 1) + c) * k + t
        self.counts += np.bincount(idx, minlength=self.counts.size).reshape(self.counts.shape)

    def matrix_at(self, threshold: float) -> np.ndarray:
        """``(K, K)`` confusion matrix (rows prediction, columns truth) of "changed when the
        change score >= ``threshold``, then the most probable change class"."""
        edge = int(round(threshold * self.bins))
        k = self.num_classes
        m = np.zeros((k, k), np.int64)
        m[0] = self.counts[:edge].sum(axis=(0, 1))
        m[1:] = self.counts[edge:].sum(axis=0)
        return m

    @property
    def changed(self) -> int:
        """Truly changed pixels counted."""
        return int(self.counts[..., 1:].sum())


def calibrate(hist: ThresholdHistogram, argmax_matrix: np.ndarray, score_key: str) -> dict[str, Any]:
    """The decision that scores best on the validation area (see the module doc).

    Args:
        hist: the validation's histogram.
        argmax_matrix: the validation's confusion matrix of the most probable class.
        score_key: ``"F1"`` or ``"SeK"`` (any key of :func:`scores_from_matrix`).

    Returns:
        ``{"threshold": t or None (the most probable class), "score": its score,
        "default_score": the most probable class's, "trivial_score": that of every pixel
        changed (absent below :data:`MIN_CHANGED`), "reason": why}``.
    """
    default = float(scores_from_matrix(argmax_matrix)[score_key])
    out: dict[str, Any] = {"threshold": None, "score": default, "default_score": default}
    if hist.changed < MIN_CHANGED:
        out["reason"] = f"fewer than {MIN_CHANGED} changed validation pixels"
        return out
    trivial = float(scores_from_matrix(hist.matrix_at(0.0))[score_key])  # everything changed
    out["trivial_score"] = trivial
    best_t, best = None, max(default, trivial) + MARGIN
    for t in sorted(GRID, key=lambda t: (abs(t - 0.5), t)):  # on equal scores the nearest to 0.5 wins
        s = float(scores_from_matrix(hist.matrix_at(t))[score_key])
        if s > best + 1e-12:
            best_t, best = t, s
    if best_t is None:
        if trivial > default:
            out["reason"] = f"no threshold beats marking every pixel changed ({score_key} {trivial:.3f}) by {MARGIN}"
        else:
            out["reason"] = f"no threshold beats the most probable class by {MARGIN}"
        return out
    out.update(threshold=best_t, score=best, reason=f"{score_key} {best:.3f} vs {default:.3f} with the most probable class")
    return out
