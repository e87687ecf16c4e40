"""Compatibility entry point: training lives in :mod:`engine.training`."""

from __future__ import annotations

from .training import DEMO_SETTINGS, TrainConfig, train, train_demo

__all__ = ["TrainConfig", "train", "train_demo", "DEMO_SETTINGS"]
