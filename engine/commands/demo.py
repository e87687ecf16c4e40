"""``python -m engine demo``: the main job on the embedded demo scene.

The job is a list of named steps (:data:`STEPS`) that share a :class:`DemoContext`; each
step returns the paths it wrote, which end up in the result. Steps today:

1. ``scene``: generate the seeded demo scene into ``OUT/scene/`` (:mod:`engine.scene`);
2. ``captions``: caption its truth raster in 256-pixel chips into ``OUT/captions.json``
   (the same list as ``python -m engine caption --json``) and ``OUT/captions.txt``.

Training and inference join as further steps. The output folder is marked with
``.masktalk-demo`` so that a re-run may overwrite it, while a non-empty folder that the
demo did not make is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import InputError

HELP = "run the whole job on the embedded demo scene (generate the scene, caption its labels)"
MARKER = ".masktalk-demo"
CAPTION_CHIP = 256


def configure(parser) -> None:
    parser.add_argument("--out", default="demo-output", help="output folder (default demo-output/)")
    parser.add_argument("--size", type=int, default=1024, help="scene side in pixels at 0.5 m (default 1024, at least 128)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the scene and of the caption templates (default 0)")
    parser.add_argument("--json", action="store_true", help="print the result (paths written) as JSON")


@dataclass
class DemoContext:
    """What the steps share: settings, the progress reporter and what earlier steps made."""

    out: Path
    size: int
    seed: int
    progress: Any
    scene: Any = None  # engine.scene.DemoScene once the scene step ran
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


#: The job, in order. Later issues append ("train", step_train), ("predict", ...).
STEPS: list[tuple[str, Callable[[DemoContext], dict[str, Any]]]] = [
    ("scene", step_scene),
    ("captions", step_captions),
]


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
    ctx = DemoContext(out=out, size=args.size, seed=args.seed, progress=progress)
    for i, (name, step) in enumerate(STEPS):
        progress.check()
        progress.report(i / len(STEPS), f"{name} ({i + 1}/{len(STEPS)})", step=name)
        ctx.outputs.update(step(ctx))
        progress.log(f"demo step {name}: done")
    progress.report(1.0, "done", step="done")
    result = {"out": str(out), "size": args.size, "seed": args.seed, **ctx.outputs}
    if not args.json and args.progress != "jsonl":
        print(f"MaskTalk demo written to {out}/")
        width = max(len(k) for k in result)
        for key, value in result.items():
            print(f"  {key:<{width}}  {value}")
    return result
