"""Settings of engine jobs as frozen dataclasses that serialise to versioned JSON.

Each job module owns its settings dataclass (``TrainConfig`` in ``train.py``,
``PredictConfig`` in ``predict.py`` ...) and derives it from :class:`JobConfig`, so the
module that uses a setting is the one that documents and validates it. This module
holds the shared machinery only: JSON round trip with a version, and small validators
that raise :class:`~engine.errors.InputError` with the offending field's name.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, TypeVar

from .errors import InputError

CONFIG_VERSION = 1
T = TypeVar("T", bound="JobConfig")


@dataclasses.dataclass(frozen=True)
class JobConfig:
    """Base of every job's settings."""

    def to_dict(self) -> dict[str, Any]:
        out = {"config_version": CONFIG_VERSION, "kind": type(self).__name__}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        version = data.get("config_version", CONFIG_VERSION)
        if version > CONFIG_VERSION:
            raise InputError(f"{cls.__name__}: settings written by a newer MaskTalk (config_version {version})")
        names = {f.name: f for f in dataclasses.fields(cls)}
        kwargs = {}
        for key, value in data.items():
            if key in names:
                if isinstance(value, list):
                    value = tuple(value)
                kwargs[key] = value
        return cls(**kwargs)


def check_positive(name: str, value: float, allow_zero: bool = False) -> None:
    """Raise InputError unless ``value`` > 0 (or >= 0 with ``allow_zero``)."""
    ok = value >= 0 if allow_zero else value > 0
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise InputError(f"{name} must be {bound}, got {value}")


def check_multiple(name: str, value: int, multiple: int) -> None:
    """Raise InputError unless ``value`` is a positive multiple of ``multiple``."""
    if value <= 0 or value % multiple:
        raise InputError(f"{name} must be a positive multiple of {multiple}, got {value}")


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InputError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
