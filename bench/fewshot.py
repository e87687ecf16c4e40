"""Few-shot accuracy on real labelled pairs: train on some pairs, score on the unseen others.

Run from the repository root in the engine environment::

    env -u PROJ_DATA -u PROJ_LIB .venv/bin/python bench/fewshot.py DATASET_DIR [--train N]
        [--folds K] [--seeds 0,1,2] [--label-map 255:1] [--preset building] [-- EXTRA TRAIN ARGS]

``DATASET_DIR`` holds ``A/ B/ label/`` (PNG or GeoTIFF). For every fold a seeded draw puts
``--train`` pairs in a temporary dataset folder (symbolic links), the engine is trained on
it with exactly ``python -m engine train --dataset DIR --preset P --label-map M --device cpu
--seed S --out RUN`` (plus any extra arguments), then ``python -m engine predict --before
A --after B --model RUN --out pred.tif --device cpu`` runs on every unseen pair, and change
F1 / precision / recall / IoU are computed from class 1 of band 1 (binary) or SeK / mIoU
over all classes (``--num-classes`` > 2). Two-class runs are also scored at ``--threshold 0.5`` (the
most probable class) beside the model card's calibrated threshold, which is recorded; with
``--tta`` also with ``predict --tta flips``. Prints one line per run and mean +- sd.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ENV = {k: v for k, v in os.environ.items() if k not in ("PROJ_DATA", "PROJ_LIB")}
ENV.update(HF_HUB_OFFLINE="1", PYTHONDONTWRITEBYTECODE="1")


def pairs(root: Path) -> list[str]:
    return sorted(p.stem for p in (root / "A").iterdir() if p.is_file())


def file_of(folder: Path, stem: str) -> Path:
    return next(p for p in folder.iterdir() if p.stem == stem)


def subset(root: Path, names: list[str], out: Path) -> Path:
    for d in ("A", "B", "label"):
        (out / d).mkdir(parents=True)
        for n in names:
            src = file_of(root / d, n)
            os.symlink(src.resolve(), out / d / src.name)
    return out


def engine(*args: str) -> float:
    t = time.time()
    r = subprocess.run([sys.executable, "-m", "engine", *args, "--progress", "none"], cwd=ROOT, env=ENV, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"engine {' '.join(args[:1])} failed ({r.returncode}): {r.stderr[-2000:]}")
    return time.time() - t


def read(path: Path) -> np.ndarray:
    import warnings

    import rasterio

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path) as ds:
            return ds.read(1)


def scores(preds: list[np.ndarray], truths: list[np.ndarray], k: int) -> dict[str, float]:
    from engine.metrics import scores_from_matrix

    m = np.zeros((k, k), np.int64)
    for p, t in zip(preds, truths):
        ok = (t != 255) & (p != 255)
        m += np.bincount(p[ok].astype(np.int64) * k + t[ok].astype(np.int64), minlength=k * k).reshape(k, k)
    s = scores_from_matrix(m)
    out = {key: float(s[key]) for key in ("F1", "Precision", "Recall", "IoU", "mIoU", "SeK")}
    out["class_IoU"] = {c: round(float(v["IoU"]), 4) for c, v in s["per_class"].items()}
    return out


def map_label(raw: np.ndarray, mapping: dict[int, int]) -> np.ndarray:
    out = raw.astype(np.int64).copy()
    for a, b in mapping.items():
        out[raw == a] = b
    return out


def run_one(root: Path, train_names: list[str], test_names: list[str], seed: int, args, extra: list[str], work: Path) -> dict:
    from engine.schema import parse_label_map

    ds = subset(root, train_names, work / "ds")
    run = work / "run"
    t_train = engine("train", "--dataset", str(ds), "--preset", args.preset, "--label-map", args.label_map, "--device", "cpu",
                     "--seed", str(seed), "--out", str(run), *extra)
    mapping = parse_label_map(args.label_map)
    truths = [map_label(read(file_of(root / "label", n)), mapping) for n in test_names]

    def predicted(tag: str, *options: str) -> list[np.ndarray]:
        """Class band 1 of ``predict`` on every unseen pair (the issue's command, plus ``options``)."""
        out = []
        for n in test_names:
            path = work / f"pred{tag}-{n}.tif"
            engine("predict", "--before", str(file_of(root / "A", n)), "--after", str(file_of(root / "B", n)), "--model", str(run),
                   "--out", str(path), "--device", "cpu", *options)
            out.append(read(path))
        return out

    preds = predicted("")
    res = scores(preds, truths, args.num_classes)
    if args.num_classes == 2:  # the same model at the most probable class (what the calibrated threshold replaces)
        res["at_0.5"] = {k: v for k, v in scores(predicted("05", "--threshold", "0.5"), truths, 2).items() if k in ("F1", "Precision", "Recall")}
    if args.tta:  # the same model with test-time augmentation (predict --tta flips)
        tta = scores(predicted("tta", "--tta", "flips"), truths, args.num_classes)
        res["tta_flips"] = {k: v for k, v in tta.items() if k in ("F1", "Precision", "Recall", "SeK", "mIoU")}
    res["train_s"] = round(t_train, 1)
    res["changed_share"] = float(np.mean([(p == 1).mean() for p in preds]))
    card = json.loads((run / "best" / "card.json").read_text())
    res["threshold"] = (card.get("extra") or {}).get("threshold")  # calibrated on validation; None = most probable class
    return res


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--train", type=int, help="pairs to train on (default: all but a third)")
    ap.add_argument("--folds", type=int, default=1, help="different draws of the training pairs (default 1)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--preset", default="building")
    ap.add_argument("--label-map", default="255:1")
    ap.add_argument("--num-classes", type=int, default=2)
    ap.add_argument("--json", type=Path, help="also write the runs as JSON here")
    ap.add_argument("--tta", action="store_true", help="also score the same models with predict --tta flips")
    args, extra = ap.parse_known_args(argv)
    extra = [e for e in extra if e != "--"]
    names = pairs(args.dataset)
    n_train = args.train or max(1, len(names) - max(1, len(names) // 3))
    runs = []
    for fold in range(args.folds):
        order = np.random.default_rng([fold, 99]).permutation(len(names))
        tr, te = [names[i] for i in sorted(order[:n_train])], [names[i] for i in sorted(order[n_train:])]
        for seed in [int(s) for s in args.seeds.split(",")]:
            with tempfile.TemporaryDirectory(prefix="fewshot-") as tmp:
                res = run_one(args.dataset, tr, te, seed, args, extra, Path(tmp))
            res.update(fold=fold, seed=seed, test=te)
            runs.append(res)
            print(json.dumps(res), flush=True)
    keys = ("F1", "Precision", "Recall", "IoU") if args.num_classes == 2 else ("SeK", "mIoU", "F1")
    print(f"{args.dataset.name}: {len(runs)} runs ({n_train} train / {len(names) - n_train} test pairs, extra {' '.join(extra) or 'none'})")
    for k in keys:
        v = np.array([r[k] for r in runs])
        print(f"  {k:9s} {v.mean():.3f} +- {v.std(ddof=1) if len(v) > 1 else 0:.3f}  (min {v.min():.3f}, max {v.max():.3f})")
    if all("at_0.5" in r for r in runs):
        v = np.array([r["at_0.5"]["F1"] for r in runs])
        print(f"  F1 at the most probable class (threshold 0.5, same models) {v.mean():.3f} +- {v.std(ddof=1) if len(v) > 1 else 0:.3f}; "
              f"thresholds {[r.get('threshold') for r in runs]}")
    if all("tta_flips" in r for r in runs):
        for k in keys:
            v = np.array([r["tta_flips"][k] for r in runs])
            print(f"  {k:9s} with --tta flips (same models) {v.mean():.3f} +- {v.std(ddof=1) if len(v) > 1 else 0:.3f}")
    print(f"  train time {np.mean([r['train_s'] for r in runs]):.0f} s per run")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
