"""The schedule, counted in optimizer steps: how many, which stage, which learning rate.

Default length (:func:`default_steps`): small labelled areas need many passes over the
same pixels, large ones fewer; the total grows with the square root of the training area
measured in crops, between :data:`MIN_STEPS` and :data:`MAX_STEPS`::

    steps = clip(STEPS_PER_SQRT_CROP * sqrt(training pixels / crop²), MIN_STEPS, MAX_STEPS)

which is about 5 minutes on 2 CPU cores (EfficientNet-Lite0, batch 8, 128 px crops) for a
hand-labelled area or a handful of 256 px image pairs. ``stage2_share`` of the steps go
to stage 2. ``--stage1-epochs/--stage2-epochs`` give the length in passes over the
training area instead (one pass = training pixels / (crop² x batch x processes) steps).

Learning rate (:func:`lr_factor`), per stage: a linear warm-up over ``warmup`` of the
stage's steps, then a cosine decay to 10 % (AdamW, paper §4: lr 1e-4, wd 0.05).
"""

from __future__ import annotations

import dataclasses
import math

MIN_STEPS = 300
MAX_STEPS = 3000
STEPS_PER_SQRT_CROP = 60
FLOOR = 0.1


@dataclasses.dataclass(frozen=True)
class Schedule:
    """``stage1`` and ``stage2`` optimizer steps and the warm-up share."""

    stage1: int
    stage2: int
    warmup: float = 0.05

    @property
    def total(self) -> int:
        return self.stage1 + self.stage2

    def stage_of(self, step: int) -> tuple[int, int, int]:
        """``(stage, step within the stage, steps of the stage)`` of global ``step``."""
        if step < self.stage1:
            return 1, step, self.stage1
        return 2, step - self.stage1, self.stage2

    def lr_factor(self, step: int) -> float:
        """Multiplier of the base learning rate at global ``step``."""
        _, i, n = self.stage_of(step)
        return lr_factor(i, n, self.warmup)


def lr_factor(i: int, n: int, warmup: float) -> float:
    """Linear warm-up over ``warmup * n`` steps, then cosine from 1 to :data:`FLOOR`."""
    w = int(round(warmup * n))
    if w and i < w:
        return (i + 1) / w
    if n - w <= 1:
        return 1.0
    t = (i - w) / (n - w - 1)
    return FLOOR + (1 - FLOOR) * 0.5 * (1 + math.cos(math.pi * t))


def default_steps(train_px: float, crop: int) -> int:
    """Total steps for ``train_px`` training pixels (see the module docstring)."""
    crops = max(train_px / float(crop * crop), 1.0)
    return int(min(max(round(STEPS_PER_SQRT_CROP * math.sqrt(crops)), MIN_STEPS), MAX_STEPS))


def make_schedule(config, train_px: float, world: int = 1) -> Schedule:
    """The :class:`Schedule` of a :class:`~engine.training.config.TrainConfig`."""
    if config.stage1_epochs is not None or config.stage2_epochs is not None:
        per_epoch = max(1, math.ceil(train_px / (config.crop**2 * config.batch_size * world)))
        s1 = (config.stage1_epochs or 0) * per_epoch
        s2 = (config.stage2_epochs or 0) * per_epoch if config.stage2_share > 0 else 0
        return Schedule(s1, s2, config.warmup)
    total = config.steps or default_steps(train_px, config.crop)
    s2 = int(round(total * config.stage2_share))
    return Schedule(total - s2, s2, config.warmup)
