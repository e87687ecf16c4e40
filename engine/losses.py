"""Losses of S2M training (paper §3.3, eq. 5-8).

- :class:`SegmentationLoss`: ``alpha * focal + beta * dice + gamma * lovasz`` (eq. 5) with
  the paper's weights 0.4 / 0.3 / 0.3 as defaults and an ignore index (255 = unlabelled).
- :class:`InfoNCELoss`: bidirectional vision-text InfoNCE (eq. 6-7), temperature 0.7, on
  cosine similarities (both features are L2-normalised first).
- :class:`S2MLoss`: ``seg + lam * cot`` (eq. 8), ``lam = 0.5``.
- :func:`same_quadruple_mask`: extra InfoNCE positives, chips with the same set of
  quadruples (whatever templates worded them).

Every loss is computed in float32 (safe under autocast). A batch whose pixels are all
ignored gives a scalar zero that still carries a gradient (never NaN or an empty tensor).
"""

from __future__ import annotations

from typing import Hashable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = 255


def _valid_pixels(logits: torch.Tensor, target: torch.Tensor, ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Flatten ``(B, K, H, W)`` logits and ``(B, H, W)`` targets to the valid pixels.

    Returns:
        ``(N, K)`` float32 logits and ``(N,)`` int64 labels of the pixels not ignored.
    """
    if logits.ndim != 4 or target.ndim != 3 or logits.shape[0] != target.shape[0] or logits.shape[2:] != target.shape[1:]:
        raise ValueError(f"logits (B, K, H, W) and target (B, H, W) do not match: {tuple(logits.shape)} vs {tuple(target.shape)}")
    k = logits.shape[1]
    flat = logits.float().permute(0, 2, 3, 1).reshape(-1, k)
    labels = target.reshape(-1).long()
    keep = labels != ignore_index
    return flat[keep], labels[keep]


def focal_loss(logits: torch.Tensor, labels: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Multi-class focal loss ``mean(-(1 - p_t)^gamma * log p_t)``.

    Args:
        logits: ``(N, K)``.
        labels: ``(N,)`` class ids in ``0..K-1``.
        gamma: focusing parameter (0 gives cross-entropy).
    """
    logp = F.log_softmax(logits, dim=1).gather(1, labels[:, None]).squeeze(1)
    pt = logp.exp()
    return (-((1 - pt) ** gamma) * logp).mean()


def dice_loss(logits: torch.Tensor, labels: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Soft multi-class Dice loss ``1 - mean_c (2 sum p_c y_c) / (sum p_c + sum y_c)``.

    The mean runs over the classes present in ``labels`` (a class absent from the batch has
    no Dice score; its false positives still lower the other classes' scores).

    Args:
        logits: ``(N, K)``.
        labels: ``(N,)``.
    """
    k = logits.shape[1]
    probs = logits.softmax(dim=1)
    onehot = F.one_hot(labels, k).to(probs.dtype)
    inter = (probs * onehot).sum(0)
    denom = probs.sum(0) + onehot.sum(0)
    present = onehot.sum(0) > 0
    dice = (2 * inter + eps) / (denom + eps)
    return 1 - dice[present].mean()


def lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovász extension of the Jaccard loss w.r.t. sorted errors.

    Args:
        gt_sorted: ``(N,)`` 0/1 ground truth of one class, sorted by decreasing error.

    Returns:
        ``(N,)`` weights ``Delta_J(pi_1..i) - Delta_J(pi_1..i-1)`` (Berman et al. 2018, alg. 1).
    """
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.cumsum(0)
    union = gts + (1 - gt_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    if gt_sorted.numel() > 1:
        jaccard[1:] = jaccard[1:] - jaccard[:-1].clone()
    return jaccard


def lovasz_softmax(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Lovász-softmax loss over all given pixels, averaged over the classes present.

    Args:
        logits: ``(N, K)``.
        labels: ``(N,)``.
    """
    probs = logits.softmax(dim=1)
    losses = []
    for c in range(probs.shape[1]):
        fg = (labels == c).to(probs.dtype)
        if fg.sum() == 0:
            continue
        errors = (fg - probs[:, c]).abs()
        errors_sorted, perm = torch.sort(errors, descending=True)
        losses.append(torch.dot(errors_sorted, lovasz_grad(fg[perm])))
    if not losses:
        return probs.sum() * 0.0
    return torch.stack(losses).mean()


class SegmentationLoss(nn.Module):
    """``alpha * focal + beta * dice + gamma * lovasz`` over the pixels not ignored (eq. 5).

    Args:
        alpha: weight of the focal loss (paper: 0.4).
        beta: weight of the Dice loss (0.3).
        gamma: weight of the Lovász-softmax loss (0.3).
        ignore_index: label value excluded from every term (255 = unlabelled).
        focal_gamma: focusing parameter of the focal loss (2.0).
    """

    def __init__(self, alpha: float = 0.4, beta: float = 0.3, gamma: float = 0.3, ignore_index: int = IGNORE_INDEX, focal_gamma: float = 2.0) -> None:
        super().__init__()
        self.alpha, self.beta, self.gamma = alpha, beta, gamma
        self.ignore_index = ignore_index
        self.focal_gamma = focal_gamma

    def parts(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """The three terms and their weighted sum.

        Args:
            logits: ``(B, K, H, W)``.
            target: ``(B, H, W)`` integer labels, ``ignore_index`` where unlabelled.

        Returns:
            ``{"seg", "focal", "dice", "lovasz"}`` scalars (zero with grad if all ignored).
        """
        flat, labels = _valid_pixels(logits, target, self.ignore_index)
        if labels.numel() == 0:
            zero = logits.float().sum() * 0.0
            return {"seg": zero, "focal": zero, "dice": zero, "lovasz": zero}
        k = flat.shape[1]
        if int(labels.max()) >= k or int(labels.min()) < 0:
            raise ValueError(f"target holds class {int(labels.max())} but the model predicts {k} classes (0..{k - 1}); ignore_index is {self.ignore_index}")
        focal = focal_loss(flat, labels, self.focal_gamma)
        dice = dice_loss(flat, labels)
        lov = lovasz_softmax(flat, labels)
        seg = self.alpha * focal + self.beta * dice + self.gamma * lov
        return {"seg": seg, "focal": focal, "dice": dice, "lovasz": lov}

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.parts(logits, target)["seg"]


def same_quadruple_mask(quad_sets: Sequence[Iterable[Hashable]]) -> torch.Tensor:
    """``(B, B)`` bool, True where two chips hold the same *set* of quadruple keys.

    A chip's texts are drawn from random templates, so two chips with the same quadruples
    (see :meth:`engine.captions.Quadruple.key`) mean the same thing however they are
    worded; passing this mask to :class:`InfoNCELoss` makes them positives instead of
    negatives. The order of a chip's quadruples does not matter; a chip without change
    has the empty set, so all no-change chips of a batch are positives of each other.

    Args:
        quad_sets: One iterable of hashable quadruple keys per chip, in batch order.
    """
    sets = [frozenset(keys) for keys in quad_sets]
    idx = {k: i for i, k in enumerate(dict.fromkeys(sets))}
    ids = torch.tensor([idx[k] for k in sets], dtype=torch.long)
    return ids[:, None] == ids[None, :]


class InfoNCELoss(nn.Module):
    """Bidirectional vision-text InfoNCE (eq. 6-7).

    ``S_ij = <v_i, t_j> / tau`` on L2-normalised features;
    ``L = (CE(S, diag) + CE(S^T, diag)) / 2``.

    Args:
        tau: temperature (paper: 0.7).
        normalize: L2-normalise both features first (cosine similarity).
    """

    def __init__(self, tau: float = 0.7, normalize: bool = True) -> None:
        super().__init__()
        if tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        self.tau = tau
        self.normalize = normalize

    def forward(self, visual: torch.Tensor, text: torch.Tensor, positive_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Args:
            visual: ``(B, D)`` global visual features.
            text: ``(B, D)`` text embeddings of the same samples, same order.
            positive_mask: optional ``(B, B)`` bool of extra positives (see
                :func:`same_quadruple_mask`); the diagonal is always positive.

        Returns:
            Scalar loss ``L_cot``.
        """
        if visual.shape != text.shape or visual.ndim != 2:
            raise ValueError(f"visual and text features must both be (B, D), got {tuple(visual.shape)} and {tuple(text.shape)}")
        v, t = visual.float(), text.float()
        if self.normalize:
            v, t = F.normalize(v, dim=1), F.normalize(t, dim=1)
        sim = v @ t.T / self.tau
        b = sim.shape[0]
        if positive_mask is None:
            target = torch.arange(b, device=sim.device)
            return 0.5 * (F.cross_entropy(sim, target) + F.cross_entropy(sim.T, target))
        pos = positive_mask.to(sim.device).bool() | torch.eye(b, dtype=torch.bool, device=sim.device)

        def one_way(s: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
            return (torch.logsumexp(s, dim=1) - torch.logsumexp(s.masked_fill(~p, float("-inf")), dim=1)).mean()

        return 0.5 * (one_way(sim, pos) + one_way(sim.T, pos.T))


class S2MLoss(nn.Module):
    """Total loss ``seg + lam * cot`` (eq. 8).

    Args:
        lam: weight of the contrastive term (paper: 0.5).
        alpha, beta, gamma, ignore_index, focal_gamma: see :class:`SegmentationLoss`.
        tau: InfoNCE temperature (0.7).
    """

    def __init__(self, lam: float = 0.5, alpha: float = 0.4, beta: float = 0.3, gamma: float = 0.3, ignore_index: int = IGNORE_INDEX, focal_gamma: float = 2.0, tau: float = 0.7) -> None:
        super().__init__()
        self.lam = lam
        self.seg = SegmentationLoss(alpha, beta, gamma, ignore_index, focal_gamma)
        self.cot = InfoNCELoss(tau)

    def forward(self, outputs: dict[str, torch.Tensor | None], target: torch.Tensor, positive_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Args:
            outputs: the change model's output dict (``logits``, ``visual``, ``text``).
            target: ``(B, H, W)`` labels.
            positive_mask: optional ``(B, B)`` extra InfoNCE positives.

        Returns:
            ``{"loss", "seg", "cot", "focal", "dice", "lovasz"}``; ``cot`` is zero when the
            outputs carry no text (stage 1).
        """
        parts = self.seg.parts(outputs["logits"], target)
        visual, text = outputs.get("visual"), outputs.get("text")
        if visual is not None and text is not None:
            cot = self.cot(visual, text, positive_mask)
        else:
            cot = parts["seg"].new_zeros(())
        return {"loss": parts["seg"] + self.lam * cot, "cot": cot, **parts}
