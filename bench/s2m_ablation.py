"""Does the S2M text stage help? The same data, schedule and seeds with and without text.

Run from the repository root in the engine environment::

    # a dataset folder: train on some pairs, score the unseen ones (as bench/fewshot.py)
    env -u PROJ_DATA -u PROJ_LIB .venv/bin/python bench/s2m_ablation.py folder DIR [--train N] [--seeds 0,1,2]
    # a labelled scene (or the demo scene): score the held-out validation area of each run
    env -u PROJ_DATA -u PROJ_LIB .venv/bin/python bench/s2m_ablation.py scene --before B --after A --labels L [--aoi AOI] [--preset P]
    env -u PROJ_DATA -u PROJ_LIB .venv/bin/python bench/s2m_ablation.py demo

Variants (any extra arguments go to every ``engine train``):

- ``text``: the default, stage 2 with S2M captions and the contrastive loss (``--text-mode s2m``);
- ``no-text``: the paper's ablation, stage 2 with the same schedule and segmentation only
  (``--text-mode none``);
- with ``--elements``: also one variant per quadruple element left out (Table 5).

Prints mean +- sd over the seeds of F1, mIoU and SeK on held-out data for each variant and
the text-minus-no-text difference per seed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fewshot  # noqa: E402  (bench helper beside this file)

KEYS = ("F1", "mIoU", "SeK")


def scene_run(args, extra: list[str], seed: int, work: Path) -> dict:
    run = work / "run"
    data = ["--before", args.before, "--after", args.after, "--labels", args.labels] + (["--aoi", args.aoi] if args.aoi else [])
    t = fewshot.engine("train", *data, "--preset", args.preset, "--device", "cpu", "--seed", str(seed), "--out", str(run), *extra)
    card = json.loads((run / "best" / "card.json").read_text())
    m = card["extra"]["metrics"]
    return {k: float(m[k]) for k in KEYS if m.get(k) is not None} | {"train_s": round(t, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=("folder", "scene", "demo"))
    ap.add_argument("dataset", nargs="?", type=Path)
    ap.add_argument("--train", type=int)
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--preset", default="building")
    ap.add_argument("--label-map", default="255:1")
    ap.add_argument("--num-classes", type=int, default=2)
    ap.add_argument("--before")
    ap.add_argument("--after")
    ap.add_argument("--labels")
    ap.add_argument("--aoi")
    ap.add_argument("--elements", action="store_true", help="also leave out each quadruple element in turn")
    args, extra = ap.parse_known_args()
    extra = [e for e in extra if e != "--"]
    variants = {"text": ["--text-mode", "s2m"], "no-text": ["--text-mode", "none"]}
    if args.elements:
        variants.update({f"no-{e}": ["--drop-elements", e] for e in ("quantity", "type", "category", "location")})
    seeds = [int(s) for s in args.seeds.split(",")]
    results: dict[str, list[dict]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="s2m-ablation-") as tmp:
        if args.kind == "demo":
            from engine.scene import make_demo_scene

            sc = make_demo_scene(Path(tmp) / "scene", seed=0)
            args.before, args.after, args.labels = str(sc.before), str(sc.after), str(sc.labels)
            args.aoi, args.preset = (str(sc.aoi) if sc.aoi else None), sc.schema
        if args.kind == "folder":
            names = fewshot.pairs(args.dataset)
            n_train = args.train or max(1, len(names) - max(1, len(names) // 3))
            order = np.random.default_rng([args.fold, 99]).permutation(len(names))
            tr, te = [names[i] for i in sorted(order[:n_train])], [names[i] for i in sorted(order[n_train:])]
        for seed in seeds:
            for name, flags in variants.items():
                work = Path(tempfile.mkdtemp(dir=tmp))
                if args.kind == "folder":
                    res = fewshot.run_one(args.dataset, tr, te, seed, args, [*extra, *flags], work)
                else:
                    res = scene_run(args, [*extra, *flags], seed, work)
                results[name].append(res)
                print(json.dumps({"variant": name, "seed": seed, **res}), flush=True)
    print(f"S2M ablation ({args.kind} {args.dataset or args.before or ''}), seeds {seeds}, extra {' '.join(extra) or 'none'}")
    for name, runs in results.items():
        line = "  ".join(f"{k} {np.mean([r[k] for r in runs]):.3f} +- {np.std([r[k] for r in runs], ddof=1) if len(runs) > 1 else 0:.3f}"
                         for k in KEYS if all(k in r for r in runs))
        print(f"  {name:12s} {line}")
    for k in KEYS:
        if all(k in r for r in results["text"] + results["no-text"]):
            d = np.array([a[k] - b[k] for a, b in zip(results["text"], results["no-text"])])
            print(f"  text - no-text {k}: {d.mean():+.3f} +- {d.std(ddof=1) if len(d) > 1 else 0:.3f} per seed {np.round(d, 3).tolist()}")


if __name__ == "__main__":
    main()
