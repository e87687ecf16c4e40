"""Augmentation of a training crop: geometry shared by both dates, photometry per date.

Geometric (the same for before, after and label): one of the 8 symmetries of the square
(90 degree rotations and flips), so labels stay exact.

Photometric (drawn independently for each date, on normalised values): brightness offset
and contrast gain, a per-band gain (colour balance), a gamma-like bend, and now and then
Gaussian noise or a slight blur. Two dates of the same place differ in exactly these ways
(sun, season, sensor, haze), so the model learns that they are *pseudo-changes*, not
changes. ``strength`` scales every amplitude (0 turns photometry off).
"""

from __future__ import annotations

import numpy as np


def geometric(arrays: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """The same random symmetry of the square applied to every ``(..., h, w)`` array."""
    k = int(rng.integers(4))
    flip = bool(rng.integers(2))
    out = []
    for x in arrays:
        x = np.rot90(x, k, axes=(-2, -1))
        if flip:
            x = x[..., ::-1]
        out.append(np.ascontiguousarray(x))
    return out


def _blur(x: np.ndarray) -> np.ndarray:
    pad = np.pad(x, ((0, 0), (1, 1), (1, 1)), mode="edge")
    acc = np.zeros_like(x)
    for dr in range(3):
        for dc in range(3):
            acc += pad[:, dr : dr + x.shape[1], dc : dc + x.shape[2]]
    return acc / 9.0


def photometric(x: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """One date's random radiometric change of a normalised ``(C, h, w)`` image."""
    if strength <= 0:
        return x
    s = float(strength)
    c = x.shape[0]
    gain = 1.0 + rng.uniform(-0.2, 0.2) * s
    band_gain = 1.0 + rng.uniform(-0.08, 0.08, size=(c, 1, 1)) * s
    offset = rng.uniform(-0.25, 0.25) * s + rng.uniform(-0.05, 0.05, size=(c, 1, 1)) * s
    y = x * (gain * band_gain) + offset
    bend = rng.uniform(-0.08, 0.08) * s  # gamma-like: brightens or darkens mid-tones
    y = y + bend * (1.0 - np.tanh(y) ** 2)
    if rng.random() < 0.2 * min(s, 1.0):
        y = _blur(y)
    if rng.random() < 0.3 * min(s, 1.0):
        y = y + rng.normal(0.0, 0.04 * s, size=y.shape)
    return y.astype(np.float32)
