"""``python -m engine demo``: the main job on the embedded demo scene.

The job is a list of named steps (:data:`STEPS`) that share a :class:`DemoContext`; each
step returns the paths it wrote, which end up in the result. Steps today:

1. ``scene``: generate the seeded demo scene into ``OUT/scene/`` (:mod:`engine.scene`);
2. ``captions``: caption its truth raster in 256-pixel chips into ``OUT/captions.json``
   (the same list as ``python -m engine caption --json``) and ``OUT/captions.txt``;
3. ``train``: two-stage training on the scene's label polygons into ``OUT/run/``
   (:func:`engine.training.train_demo`, at the engine's default settings; a few minutes
   on 2 CPU cores), reporting the validation scores of the held-out blocks;
4. ``predict``: inference over the whole scene with the best checkpoint:
   ``OUT/prediction.tif`` (classes + confidence) and ``OUT/changes.gpkg`` (captioned
   change polygons and chip captions);
5. ``evaluate``: scores of the prediction against ``truth.tif`` (``OUT/scores.json``), for
   the held-out validation chips and for the whole scene (which includes the training
   area, so it is optimistic);
6. ``preview``: ``OUT/preview.png``, before | after | prediction | truth in the class colours.

The output folder is marked with
``.masktalk-demo`` so that a re-run may overwrite it, while a non-empty folder that the
demo did not make is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import InputError
from ..progress import SubProgress

HELP = "run the whole job on the embedded demo scene: scene, captions, training, prediction, scores, preview"
MARKER = ".masktalk-demo"
CAPTION_CHIP = 256


def configure(parser) -> None:
    from ..options import bounded, one_line_errors, path

    one_line_errors(parser)
    parser.add_argument("--out", default="demo-output", type=path, help="output folder (default demo-output/)")
    parser.add_argument("--size", type=int, default=1024, help="scene side in pixels at 0.5 m (default 1024, at least 128)")
    parser.add_argument("--seed", type=bounded(int, 0), default=0, help="seed of the scene and of the caption templates (default 0)")
    parser.add_argument("--json", action="store_true", help="print the result (paths written) as JSON")
    parser.add_argument("--steps", type=bounded(int, 1), default=None, help="override the training steps (default: train's own default for the labelled area)")
    parser.add_argument("--chip", type=bounded(int, 16), default=None, help="override the demo's model chip size (pixels)")
    parser.add_argument("--skip", action="append", choices=("train", "predict", "evaluate", "preview"),
                        help="leave out a step and those that need it (repeatable): e.g. --skip train for the scene and captions only")


@dataclass
class DemoContext:
    """What the steps share: settings, the progress reporter and what earlier steps made."""

    out: Path
    size: int
    seed: int
    progress: Any
    scene: Any = None  # engine.scene.DemoScene once the scene step ran
    train_result: dict[str, Any] | None = None
    train_overrides: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)


def step_scene(ctx: DemoContext) -> dict[str, Any]:
    """Generate the demo scene into ``OUT/scene/``."""
    from ..scene import make_demo_scene

    ctx.scene = make_demo_scene(ctx.out / "scene", size=ctx.size, seed=ctx.seed)
    s = ctx.scene
    return {"before": str(s.before), "after": str(s.after), "truth": str(s.truth), "labels": str(s.labels), "aoi": str(s.aoi), "schema": s.schema}


def step_captions(ctx: DemoContext) -> dict[str, Any]:
    """Caption the truth raster in 256-pixel chips: ``captions.json`` and ``captions.txt``."""
    from ..captions import caption_raster_windows
    from ..schema import load_preset
    from .caption import read_label

    schema = load_preset(ctx.scene.schema)
    truth = read_label(ctx.scene.truth, schema=schema)
    chips = list(caption_raster_windows(truth, schema, chip=CAPTION_CHIP, rng=ctx.seed, where=str(ctx.scene.truth)))
    json_path, txt_path = ctx.out / "captions.json", ctx.out / "captions.txt"
    json_path.write_text(json.dumps(chips, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    lines = [f"S2M captions of {ctx.scene.truth.name} ({schema.name} classes), {CAPTION_CHIP}-pixel chips, seed {ctx.seed}", ""]
    for chip in chips:
        w = chip["window"]
        lines.append(f"chip at row {w['row_off']}, column {w['col_off']} ({w['height']}x{w['width']} px):")
        lines += [f"  - {s}" for s in chip["sentences"]]
    txt_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"captions_json": str(json_path), "captions_txt": str(txt_path), "caption_chips": len(chips)}


def step_train(ctx: DemoContext) -> dict[str, Any]:
    """Two-stage training on the demo labels into ``OUT/run/``."""
    from ..training import train_demo

    overrides = {k: v for k, v in ctx.train_overrides.items() if v is not None}
    result = train_demo(ctx.scene, ctx.out / "run", ctx.progress, seed=ctx.seed, **overrides)
    ctx.train_result = result
    best = result.get("best_metrics") or {}
    shown = {k: round(float(best[k]), 4) for k in ("SeK", "Fscd", "mIoU", "F1") if isinstance(best.get(k), (int, float))}
    ctx.progress.log(f"validation scores of the kept model ({result.get('rule')}): " + ", ".join(f"{k} {v:.4f}" for k, v in shown.items()))
    return {"run": str(ctx.out / "run"), "best": result.get("best"), "validation": shown}


def step_predict(ctx: DemoContext) -> dict[str, Any]:
    """Scene-wide inference with the best checkpoint: GeoTIFF + captioned GeoPackage."""
    from ..predict import PredictConfig, predict

    raster, vectors = ctx.out / "prediction.tif", ctx.out / "changes.gpkg"
    # the demo's own folder: a re-run replaces its outputs, and only once the new ones are complete
    config = PredictConfig(before=str(ctx.scene.before), after=str(ctx.scene.after), model=str(ctx.out / "run"),
                           out=str(raster), vectors=str(vectors), device="auto", overwrite=True)
    result = predict(config, ctx.progress)
    return {"prediction": str(raster), "changes": str(vectors), "pixels_changed": result.get("pixels_changed")}


def _scores(pred, truth, num_classes: int, names: list[str]) -> dict[str, Any]:
    from ..metrics import ConfusionMatrix

    cm = ConfusionMatrix(num_classes)
    cm.update(pred, truth)
    return cm.scores(names)


def step_evaluate(ctx: DemoContext) -> dict[str, Any]:
    """Scores of the prediction against the truth raster: held-out chips and whole scene."""
    import numpy as np
    import rasterio

    from ..schema import load_preset

    schema = load_preset(ctx.scene.schema)
    names = [c.name for c in schema.classes]
    with rasterio.open(ctx.out / "prediction.tif") as src:
        pred = src.read(1)
    with rasterio.open(ctx.scene.truth) as src:
        truth = src.read(1)
    scores: dict[str, Any] = {"scene": _scores(pred, truth, schema.num_classes, names)}
    val_windows = (getattr(ctx, "train_result", None) or {}).get("val_windows") or []
    if val_windows:
        mask = np.zeros(truth.shape, bool)
        for w in val_windows:
            mask[w["row_off"]:w["row_off"] + w["height"], w["col_off"]:w["col_off"] + w["width"]] = True
        held_out = np.where(mask, truth, 255).astype(np.uint8)
        scores["validation"] = _scores(pred, held_out, schema.num_classes, names)
    path = ctx.out / "scores.json"
    path.write_text(json.dumps(scores, indent=2) + "\n", encoding="utf-8")
    for part, values in scores.items():
        ctx.progress.log(f"{part} scores: " + ", ".join(f"{k} {values[k]:.4f}" for k in ("SeK", "Fscd", "mIoU", "OA", "F1")))
    keys = ("SeK", "Fscd", "mIoU", "OA", "Precision", "Recall", "F1", "IoU")
    return {"scores": str(path), **{f"{part}_scores": {k: round(v[k], 4) for k in keys} for part, v in scores.items()}}


def step_preview(ctx: DemoContext) -> dict[str, Any]:
    """``preview.png``: before | after | prediction | truth, classes in the schema colours."""
    import numpy as np
    import rasterio
    from matplotlib.patches import Patch

    from ..plotting import pyplot
    from ..schema import load_preset

    plt = pyplot()
    schema = load_preset(ctx.scene.schema)
    palette = np.zeros((256, 3), np.uint8)
    for c in schema.classes:
        palette[c.id] = c.rgb()
    palette[255] = (128, 128, 128)

    def rgb(path):
        with rasterio.open(path) as src:
            return np.moveaxis(src.read([1, 2, 3]), 0, -1)

    after = rgb(ctx.scene.after)
    backdrop = (after.mean(axis=-1, keepdims=True) * 0.4).astype(np.uint8).repeat(3, axis=-1)

    def classes(path):
        """Class colours over the dimmed *after* image (no change shows the backdrop)."""
        with rasterio.open(path) as src:
            ids = src.read(1)
        return np.where(((ids > 0) & (ids < 255))[..., None], palette[ids], backdrop)

    panels = [("before", rgb(ctx.scene.before)), ("after", after),
              ("prediction", classes(ctx.out / "prediction.tif")), ("truth", classes(ctx.scene.truth))]
    fig, axes = plt.subplots(1, 4, figsize=(20, 5.6), dpi=100)
    for ax, (title, img) in zip(axes, panels):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    handles = [Patch(color=np.array(c.rgb()) / 255, label=c.name) for c in schema.change_classes]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path = ctx.out / "preview.png"
    fig.savefig(path)
    plt.close(fig)
    return {"preview": str(path)}


#: The job, in order, with each step's share of the progress bar.
STEPS: list[tuple[str, Callable[[DemoContext], dict[str, Any]], float]] = [
    ("scene", step_scene, 0.02),
    ("captions", step_captions, 0.02),
    ("train", step_train, 0.86),
    ("predict", step_predict, 0.06),
    ("evaluate", step_evaluate, 0.02),
    ("preview", step_preview, 0.02),
]
#: step -> the step whose output it reads (in STEPS order, so one pass closes the chain)
NEEDS = {"predict": "train", "evaluate": "predict", "preview": "predict"}


def prepare_out(out: Path, size: int, seed: int) -> None:
    """Create ``out`` or check that it is empty or a previous demo output; mark it.

    Raises:
        InputError: ``out`` is a file, or a non-empty folder the demo did not make.
    """
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder for the demo outputs")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise InputError(
            f"--out {out} is not empty and was not made by `python -m engine demo`; "
            "choose a new or empty folder with --out DIR (or remove that folder's contents)"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text(json.dumps({"made_by": "python -m engine demo", "size": size, "seed": seed}) + "\n", encoding="utf-8")


def run(args, progress) -> dict[str, Any]:
    out = Path(args.out)
    from ..scene import MIN_SIZE

    if args.size < MIN_SIZE:
        raise InputError(f"--size must be at least {MIN_SIZE} pixels, got {args.size}")
    prepare_out(out, args.size, args.seed)
    skipped = set(args.skip or ())
    for name, needs in NEEDS.items():  # a step whose input is skipped is skipped too
        if needs in skipped:
            skipped.add(name)
    steps = [s for s in STEPS if s[0] not in skipped]
    total = sum(share for _, _, share in steps)
    ctx = DemoContext(out=out, size=args.size, seed=args.seed, progress=progress,
                      train_overrides={"steps": args.steps, "chip": args.chip})
    done = 0.0
    for i, (name, step, share) in enumerate(steps):
        progress.check()
        progress.report(done / total, f"{name} ({i + 1}/{len(steps)})", step=name)
        ctx.progress = SubProgress(progress, done / total, (done + share) / total, prefix=name, step=name)
        ctx.outputs.update(step(ctx))
        ctx.progress = progress
        done += share
        progress.log(f"demo step {name}: done")
    progress.report(1.0, "done", step="done")
    result = {"out": str(out), "size": args.size, "seed": args.seed, **ctx.outputs}
    if not args.json and args.progress != "jsonl":
        print(f"MaskTalk demo written to {out}/")
        width = max(len(k) for k in result)
        for key, value in result.items():
            print(f"  {key:<{width}}  {value}")
    return result
