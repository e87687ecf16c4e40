"""``metrics.png``: training loss and validation scores over the optimizer steps."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def plot_history(history: list[dict], path: Path, stage1_steps: int) -> None:
    """Draw the loss (left) and validation metrics (right) of ``history`` into ``path``."""
    from ..plotting import pyplot

    plt = pyplot()
    steps = [h["step"] for h in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.plot(steps, [h["loss"] for h in history], "o-", label="total")
    a1.plot(steps, [h["seg"] for h in history], ".-", label="segmentation")
    if any(h["stage"] == 2 and h.get("cot") for h in history):
        a1.plot(steps, [h["cot"] if h["stage"] == 2 else float("nan") for h in history], "s--", label="contrastive")
    a1.set_xlabel("optimizer step")
    a1.set_title("training loss (stage 2 total = seg + lambda * contrastive)")
    a1.legend()
    for key in ("SeK", "Fscd", "mIoU", "F1"):
        a2.plot(steps, [h.get(key) if h.get(key) is not None else float("nan") for h in history], "o-", label=key)
    a2.set_xlabel("optimizer step")
    a2.set_title("validation (moving-average weights)")
    a2.set_ylim(min(0.0, *[h.get("SeK") or 0 for h in history]), 1.0)
    a2.legend()
    if history and 0 < stage1_steps < steps[-1]:
        for ax in (a1, a2):
            ax.axvline(stage1_steps, color="grey", lw=0.8, ls=":")
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(prefix=".metrics.png.tmp-", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=80)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        Path(tmp).unlink(missing_ok=True)
