"""Training: labelled data by reference, random crops, a step schedule, two S2M stages.

Modules, in the order a run uses them:

- :mod:`.config` -- :class:`TrainConfig`, the settings.
- :mod:`.sources` -- labelled images as references, read lazily (folder or scene).
- :mod:`.split` -- the spatial train/validation split (images, blocks or strips).
- :mod:`.sampler` -- random crop positions inside the training area, every step.
- :mod:`.augment`, :mod:`.dataset` -- reading, normalising, augmenting, captioning.
- :mod:`.schedule` -- steps per stage, warm-up and cosine learning rate.
- :mod:`.setup` -- builds and checks everything before anything is written.
- :mod:`.loop` -- the two stages, validation, the kept model (:mod:`.ema`).
- :mod:`.state` -- the run folder: checks, atomic checkpoints, resume.
"""

from __future__ import annotations

from .config import TrainConfig
from .demo import DEMO_SETTINGS, train_demo
from .loop import train

__all__ = ["TrainConfig", "train", "train_demo", "DEMO_SETTINGS"]
