"""Losses against values computed by hand or by brute force on tiny inputs."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.captions import Quadruple, render
from engine.losses import InfoNCELoss, S2MLoss, SegmentationLoss, dice_loss, focal_loss, lovasz_softmax, same_quadruple_mask


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_focal_loss_by_hand():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    labels = torch.tensor([0, 0, 1])
    p = _softmax(logits.numpy())
    pt = np.array([p[0, 0], p[1, 0], p[2, 1]])
    expect = np.mean(-((1 - pt) ** 2) * np.log(pt))
    assert focal_loss(logits, labels, gamma=2.0).item() == pytest.approx(expect, rel=1e-6)
    assert focal_loss(logits, labels, gamma=0.0).item() == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-6)


def test_dice_loss_by_hand():
    logits = torch.tensor([[1.0, 0.0, -1.0], [0.0, 2.0, 0.0], [0.3, 0.1, 0.2], [0.0, 0.0, 3.0]])
    labels = torch.tensor([0, 1, 1, 0])  # class 2 absent from the target
    p = _softmax(logits.numpy())
    scores = []
    for c in (0, 1):
        y = (labels.numpy() == c).astype(float)
        scores.append(2 * (p[:, c] * y).sum() / (p[:, c].sum() + y.sum()))
    assert dice_loss(logits, labels).item() == pytest.approx(1 - np.mean(scores), rel=1e-5)


def _jaccard_set_loss(mispredicted: set[int], gt: set[int]) -> float:
    """Berman et al.'s Jaccard loss of a set of mispredicted pixels: |M| / |gt U M|."""
    union = gt | mispredicted
    return len(mispredicted) / len(union) if union else 0.0


def _lovasz_brute(probs: np.ndarray, labels: np.ndarray) -> float:
    """Lovász extension by its definition: sum over sorted errors of set-function increments."""
    losses = []
    for c in range(probs.shape[1]):
        gt = {i for i in range(len(labels)) if labels[i] == c}
        if not gt:
            continue
        errors = np.abs((labels == c).astype(float) - probs[:, c])
        order = sorted(range(len(errors)), key=lambda i: -errors[i])
        total, prev = 0.0, 0.0
        for k in range(1, len(order) + 1):
            cur = _jaccard_set_loss(set(order[:k]), gt)
            total += errors[order[k - 1]] * (cur - prev)
            prev = cur
        losses.append(total)
    return float(np.mean(losses))


def test_lovasz_softmax_matches_its_definition_on_random_pixels():
    rng = np.random.default_rng(0)
    for _ in range(5):
        logits = rng.normal(size=(9, 3)) * 2
        labels = rng.integers(0, 3, size=9)
        got = lovasz_softmax(torch.tensor(logits), torch.tensor(labels)).item()
        assert got == pytest.approx(_lovasz_brute(_softmax(logits), labels), rel=1e-6, abs=1e-9)


def test_lovasz_softmax_equals_exact_jaccard_loss_for_hard_predictions():
    labels = np.array([0, 0, 1, 1, 1, 2, 2, 0])
    pred = np.array([0, 1, 1, 1, 0, 2, 0, 0])
    logits = np.full((8, 3), -60.0)
    logits[np.arange(8), pred] = 60.0  # softmax is one-hot to float precision
    ious = []
    for c in range(3):
        inter = np.sum((pred == c) & (labels == c))
        union = np.sum((pred == c) | (labels == c))
        ious.append(inter / union)
    expect = 1 - np.mean(ious)
    got = lovasz_softmax(torch.tensor(logits), torch.tensor(labels)).item()
    assert got == pytest.approx(expect, abs=1e-9)


def test_segmentation_loss_is_the_weighted_sum_and_ignores_unlabelled_pixels():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 5)
    target = torch.randint(0, 3, (2, 4, 5))
    target[:, :, -1] = 255  # last column unlabelled
    loss = SegmentationLoss()
    parts = loss.parts(logits, target)
    assert parts["seg"].item() == pytest.approx(0.4 * parts["focal"].item() + 0.3 * parts["dice"].item() + 0.3 * parts["lovasz"].item(), rel=1e-6)
    cropped = loss.parts(logits[..., :-1], target[..., :-1])
    for key in parts:
        assert parts[key].item() == pytest.approx(cropped[key].item(), rel=1e-6)
    # changing the logits of ignored pixels changes nothing
    other = logits.clone()
    other[..., -1] = 100.0
    assert loss(other, target).item() == pytest.approx(parts["seg"].item(), rel=1e-6)
    custom = SegmentationLoss(alpha=1.0, beta=0.0, gamma=0.0, focal_gamma=0.0)
    assert custom(logits, target).item() == pytest.approx(F.cross_entropy(logits, target, ignore_index=255).item(), rel=1e-6)


def test_fully_ignored_batch_gives_a_zero_scalar_with_grad():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    target = torch.full((2, 4, 4), 255)
    out = S2MLoss()({"logits": logits, "visual": None, "text": None}, target)
    assert out["loss"].shape == () and out["loss"].item() == 0.0 and not torch.isnan(out["loss"])
    out["loss"].backward()
    assert logits.grad is not None and torch.all(logits.grad == 0)


def test_label_out_of_range_is_reported():
    with pytest.raises(ValueError, match="class 5"):
        SegmentationLoss()(torch.randn(1, 2, 2, 2), torch.full((1, 2, 2), 5))


def test_infonce_by_hand():
    v = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 2.0]])
    t = torch.tensor([[0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
    vn = v.numpy() / np.linalg.norm(v.numpy(), axis=1, keepdims=True)
    tn = t.numpy() / np.linalg.norm(t.numpy(), axis=1, keepdims=True)
    s = vn @ tn.T / 0.7
    v2t = -np.mean([s[i, i] - math.log(np.exp(s[i]).sum()) for i in range(3)])
    t2v = -np.mean([s[i, i] - math.log(np.exp(s[:, i]).sum()) for i in range(3)])
    assert InfoNCELoss()(v, t).item() == pytest.approx(0.5 * (v2t + t2v), rel=1e-6)


def test_infonce_is_symmetric_and_minimal_when_pairs_match():
    torch.manual_seed(0)
    v, t = torch.randn(4, 6), torch.randn(4, 6)
    loss = InfoNCELoss(tau=0.7)
    assert loss(v, t).item() == pytest.approx(loss(t, v).item(), rel=1e-6)
    feats = torch.eye(3, 5)  # three orthonormal features
    matched = loss(feats, feats).item()
    for perm in itertools.permutations(range(3)):
        if perm != (0, 1, 2):
            assert loss(feats, feats[list(perm)]).item() > matched
    assert matched < loss(feats, torch.randn(3, 5)).item()


def _q(class_id=1, direction="northeast", quantity="a few"):
    return Quadruple(class_id, "buildings", "destroyed", direction, quantity, 1000)


def test_same_quadruple_mask_compares_sets_of_keys():
    a, b = _q(1), _q(2, "south", "several")
    chips = [[a, b], [b, a], [_q(1, "north")], [], [], [a]]
    # two templates, same quadruples: the texts differ, the mask says positive
    assert render(a, 0) != render(a, 3)
    mask = same_quadruple_mask([[q.key() for q in chip] for chip in chips])
    assert mask.dtype == torch.bool and mask.shape == (6, 6)
    assert mask.tolist() == [
        [True, True, False, False, False, False],  # order within a chip is irrelevant
        [True, True, False, False, False, False],
        [False, False, True, False, False, False],  # another direction: negative
        [False, False, False, True, True, False],  # two no-change chips: positives
        [False, False, False, True, True, False],
        [False, False, False, False, False, True],  # a subset is not the same set
    ]
    assert torch.equal(mask, mask.T) and bool(mask.diagonal().all())
    # keys with the location dropped: the north chip now matches a one-quadruple chip
    dropped = same_quadruple_mask([[q.key("location") for q in chip] for chip in chips])
    assert dropped[2, 5] and not dropped[0, 2]
    assert same_quadruple_mask([]).shape == (0, 0)


def test_infonce_same_quadruple_positives_lower_the_loss():
    torch.manual_seed(0)
    chips = [[_q(1)], [_q(1)], [], [_q(2, "west")], [], [_q(1)]]  # duplicates: 0/1/5 and 2/4
    mask = same_quadruple_mask([[q.key() for q in chip] for chip in chips])
    ids = torch.tensor([0, 0, 1, 2, 1, 0])
    base = torch.randn(3, 8)  # one direction per distinct quadruple set, a little noise
    v = base[ids] + 0.05 * torch.randn(6, 8)
    t = base[ids] + 0.05 * torch.randn(6, 8)
    loss = InfoNCELoss()
    plain, with_mask = loss(v, t).item(), loss(v, t, positive_mask=mask).item()
    assert with_mask < plain - 0.1  # duplicates are no longer pushed apart
    # by brute force: each row's positives are the chips with the same set
    s = (F.normalize(v, dim=1) @ F.normalize(t, dim=1).T / 0.7).numpy()
    pos = mask.numpy()
    one_way = lambda m, p: np.mean([np.log(np.exp(m[i]).sum()) - np.log(np.exp(m[i][p[i]]).sum()) for i in range(6)])  # noqa: E731
    assert with_mask == pytest.approx(0.5 * (one_way(s, pos) + one_way(s.T, pos.T)), rel=1e-5)


def test_s2m_total_is_seg_plus_half_cot():
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 4, 4)
    target = torch.randint(0, 2, (2, 4, 4))
    v, t = torch.randn(2, 8), torch.randn(2, 8)
    out = S2MLoss()({"logits": logits, "visual": v, "text": t}, target)
    assert out["cot"].item() == pytest.approx(InfoNCELoss(0.7)(v, t).item(), rel=1e-6)
    assert out["loss"].item() == pytest.approx(out["seg"].item() + 0.5 * out["cot"].item(), rel=1e-6)
    stage1 = S2MLoss()({"logits": logits, "visual": None, "text": None}, target)
    assert stage1["cot"].item() == 0.0 and stage1["loss"].item() == pytest.approx(out["seg"].item(), rel=1e-6)
