"""Training memory against dataset size: peak RSS for 40 and for 400 generated pairs of 512².

Run from the repository root in the engine environment::

    env -u PROJ_DATA -u PROJ_LIB .venv/bin/python bench/train_memory.py [--small 40] [--large 400] [--steps 20]

Each run is a child process (``python -m engine train --dataset ...`` with a fixed, short
schedule) whose peak resident memory is read from ``getrusage``. Datasets hold window
references and read pixels lazily, so the larger run should stay within 1.2x of the
smaller (target).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make_dataset(root: Path, n: int, size: int = 512, seed: int = 0) -> Path:
    import rasterio

    rng = np.random.default_rng(seed)
    for d in ("A", "B", "label"):
        (root / d).mkdir(parents=True)
    for i in range(n):
        a = rng.integers(0, 255, (3, size, size), dtype=np.uint8)
        b = a.copy()
        lab = np.zeros((size, size), np.uint8)
        for _ in range(6):
            r, c = rng.integers(0, size - 40, 2)
            lab[r : r + 30, c : c + 30] = 255
        b[:, lab > 0] = 240
        for d, arr in (("A", a), ("B", b), ("label", lab[None])):
            with rasterio.open(root / d / f"p{i:04d}.png", "w", driver="PNG", width=size, height=size, count=arr.shape[0], dtype="uint8") as ds:
                ds.write(arr)
    return root


def peak_rss_mb(dataset: Path, out: Path, steps: int) -> tuple[float, float]:
    env = {k: v for k, v in os.environ.items() if k not in ("PROJ_DATA", "PROJ_LIB")}
    cmd = [sys.executable, "-c", "import resource, runpy, sys; sys.argv = ['engine'] + sys.argv[1:]; "
           "exec('try:\\n runpy.run_module(\"engine\", run_name=\"__main__\")\\nexcept SystemExit: pass'); "
           "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)",
           "train", "--dataset", str(dataset), "--preset", "building", "--label-map", "255:1", "--device", "cpu",
           "--steps", str(steps), "--val-every", str(steps), "--stage2-share", "0.5", "--out", str(out), "--progress", "none"]
    t = time.time()
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    peak = [line for line in r.stdout.splitlines() if line.startswith("PEAK")]
    if r.returncode or not peak:
        raise SystemExit(f"training failed: {r.stderr[-2000:]}")
    return int(peak[-1].split()[1]) / 1024.0, time.time() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=40)
    ap.add_argument("--large", type=int, default=400)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="train-memory-") as tmp:
        figures = {}
        for n in (args.small, args.large):
            ds = make_dataset(Path(tmp) / f"ds{n}", n)
            figures[n] = peak_rss_mb(ds, Path(tmp) / f"run{n}", args.steps)
            print(f"{n:4d} images of 512²: peak RSS {figures[n][0]:.0f} MB ({figures[n][1]:.0f} s)", flush=True)
    ratio = figures[args.large][0] / figures[args.small][0]
    print(f"peak RSS {args.large} / {args.small} images: {ratio:.2f} (target <= 1.2)")


if __name__ == "__main__":
    main()
