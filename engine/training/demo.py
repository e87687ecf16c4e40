"""Training on the demo scene (``python -m engine demo``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from ..progress import BaseProgress
from .config import TrainConfig

#: The demo trains at the engine's defaults: what a new user gets.
DEMO_SETTINGS: dict[str, Any] = {}


def train_demo(scene: Any, out: str | os.PathLike, progress: BaseProgress | None = None, seed: int = 0, **overrides: Any) -> dict[str, Any]:
    """Train on the demo scene (:func:`engine.scene.make_demo_scene`) into ``out``.

    A previous demo run in ``out`` is replaced (the demo folder is the demo's own).

    Args:
        scene: a ``DemoScene`` (``before``, ``after``, ``labels``, ``aoi``, ``schema``).
        out: run folder.
        progress: reporter.
        seed: seed of the split and training.
        **overrides: any :class:`TrainConfig` field; None values are ignored.

    Returns:
        :func:`engine.training.train`'s result.
    """
    from .loop import train

    out = Path(out)
    if out.exists() and (out / "config.json").is_file():
        shutil.rmtree(out)
    settings = {**DEMO_SETTINGS, **{k: v for k, v in overrides.items() if v is not None}}
    config = TrainConfig(out=str(out), before=str(scene.before), after=str(scene.after), labels=str(scene.labels),
                         aoi=str(scene.aoi) if getattr(scene, "aoi", None) else None, preset=scene.schema, seed=seed, **settings)
    return train(config, progress)
