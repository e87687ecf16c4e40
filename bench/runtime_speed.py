"""Runtimes on the CPU: torch fp32 vs ONNX Runtime fp32 vs int8 (and OpenVINO when installed).

Run from the repository root in the engine environment::

    env -u PROJ_DATA -u PROJ_LIB .venv/bin/python bench/runtime_speed.py
        [--backbones efficientnet_lite0,dinov3_vits16] [--model RUN_OR_CKPT] [--json out.json]

For each backbone (a random-weight checkpoint, or the model given with ``--model``), on
the 2048 x 2048 demo scene (:func:`engine.scene.make_demo_scene`) at the default chip and
overlap, in one run:

- **bare runtime**: megapixels per second of the model alone on real scene chips already
  in memory (normalised; best of 2 after a warm-up), for PyTorch fp32, ONNX Runtime fp32, ONNX Runtime int8
  (calibrated on 8 scene chips) and, when the ``openvino`` package is installed, OpenVINO
  fp32 on the same ONNX file; each with its class agreement with PyTorch on those chips
  (target for the default path: >= 1.5x PyTorch at >= 99.5 % agreement);
- **pipeline**: the whole ``predict`` over the scene (reading, blending, writing
  included) with ``--runtime auto``, which runtime that picked, and its megapixels per
  second over the bare runtime it uses, the two measured in turn ``--repeat`` times and
  the best of each kept (target >= 0.8; the 32 px overlap on 512 px chips caps it near
  0.88).

The export and int8 files are cached in the checkpoint's ``onnx-cache/``; their one-off
cost is printed, not counted in the speeds.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.predict_speed import SCENE, make_scene, random_checkpoint  # noqa: E402


def log(msg: str) -> None:
    print(msg, flush=True)


def scene_chips(before, after, card, chip: int, n: int):
    """``n`` normalised chips of the scene, spread over it: ``(before, after, valid)`` arrays."""
    from engine.inference.reader import ChipReader, ReadPlan
    from engine.inference.model import mean_std
    from engine.tiling import chip_grid

    grid = chip_grid(SCENE, SCENE, chip, 32)
    chips = list(grid.indices())
    step = max(1, len(chips) // n)
    mean, std = mean_std(card)
    plan = ReadPlan(str(before), str(after), int(card.in_bands), grid, (0, 0), mean, std)
    reader = ChipReader(plan, chips[::step][:n], n, 1, prefetch=1)
    try:
        batch = next(iter(reader))
    finally:
        reader.close()
    return batch.before, batch.after, batch.valid


def timed(runner, b, a, batch: int, repeat: int = 2) -> tuple[float, np.ndarray]:
    """(megapixels per second, output) of ``runner`` over the chips in batches, best of ``repeat``,
    after a warm-up on a whole batch (every thread of the runtime has run once)."""
    runner(b[:batch], a[:batch])
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = np.concatenate([runner(b[k : k + batch], a[k : k + batch]) for k in range(0, len(b), batch)])
        best = min(best, time.perf_counter() - t)
    return b.shape[0] * b.shape[-1] * b.shape[-2] / 1e6 / best, out


def agreement(ref: np.ndarray, out: np.ndarray, valid: np.ndarray) -> float:
    return float((ref.argmax(1) == out.argmax(1))[valid].mean())


class OpenVinoRunner:
    """OpenVINO on the CPU, on the same ONNX file (for the comparison only)."""

    def __init__(self, path: Path, threads: int) -> None:
        import openvino as ov

        core = ov.Core()
        self.compiled = core.compile_model(core.read_model(str(path)), "CPU",
                                           {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"})
        self.request = self.compiled.create_infer_request()
        self.version = ov.__version__

    def __call__(self, b, a):
        return self.request.infer({"before": b, "after": a})[self.compiled.output(0)].copy()


def runtimes(backbone: str, ckpt: Path, before, after, batch: int, n_chips: int) -> dict:
    """Bare speed and agreement of each runtime on real chips of the scene."""
    import torch

    from engine.checkpoint import load_checkpoint
    from engine.inference.export import onnx_int8_model, onnx_model
    from engine.inference.model import default_chip, size_multiple
    from engine.inference.runner import OnnxRunner, TorchRunner

    model, card = load_checkpoint(ckpt)
    chip = default_chip(card, 32, size_multiple(model))
    b, a, v = scene_chips(before, after, card, chip, n_chips)
    row: dict = {"backbone": backbone, "chip": chip, "chips_timed": int(len(b)), "threads": torch.get_num_threads()}
    t = time.perf_counter()
    job = types.SimpleNamespace(card=card, chip=chip, checkpoint=ckpt, torch_model=lambda: model)  # what onnx_model reads
    fp32 = onnx_model(job)
    row["export_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    calibration = [(b[k : k + 1], a[k : k + 1], v[k : k + 1]) for k in range(len(b))]
    int8, int8_agree = onnx_int8_model(fp32, lambda: calibration)
    if int8 is None:  # predict would not use it; time it anyway, for the figures
        from engine.inference.export import _quantize

        int8 = fp32.with_name(fp32.name.replace("-fp32.onnx", "-int8-bench.onnx"))
        _quantize(fp32, int8, calibration)
        row["int8_refused_by_predict"] = f"class agreement with fp32 {int8_agree:.4f} < 0.995: predict runs fp32"
    row["int8_quantise_s"] = round(time.perf_counter() - t, 1)
    mps, ref = timed(TorchRunner(model, torch.device("cpu"), batch), b, a, batch)
    row["torch_fp32"] = {"mps": round(mps, 4), "agreement": 1.0}
    candidates = [("onnx_fp32", lambda: OnnxRunner(fp32, batch, threads=torch.get_num_threads()))]
    candidates.append(("onnx_int8", lambda: OnnxRunner(int8, batch, threads=torch.get_num_threads(), precision="int8")))
    try:
        import openvino  # noqa: F401

        candidates.append(("openvino_fp32", lambda: OpenVinoRunner(fp32, torch.get_num_threads())))
    except ImportError:
        row["openvino_fp32"] = {"skipped": "openvino is not installed"}
    for name, make in candidates:
        mps, out = timed(make(), b, a, batch)
        row[name] = {"mps": round(mps, 4), "agreement": round(agreement(ref, out, v), 5),
                     "speedup": round(mps / row["torch_fp32"]["mps"], 3)}
    torch_runner, onnx_runner = TorchRunner(model, torch.device("cpu"), batch), candidates[0][1]()

    def bare(runtime: str) -> float:
        return timed(onnx_runner if runtime.startswith("ONNX") else torch_runner, b, a, batch, repeat=1)[0]

    return row, bare


def pipeline(ckpt: Path, before, after, work: Path, batch: int, bare, repeat: int) -> dict:
    """``predict --runtime auto`` over the scene, interleaved with the bare runtime it picked
    (best of ``repeat`` each: both see the same machine load).

    Args:
        bare: ``bare(runtime_description) -> MP/s`` of that runtime alone.
    """
    from engine.predict import PredictConfig, predict

    cfg = PredictConfig(before=str(before), after=str(after), model=str(ckpt), out=str(work / "pipeline.tif"),
                        batch_size=batch, device="cpu", runtime="auto", overwrite=True)
    runs, bares = [], []
    for _ in range(repeat):
        res = predict(cfg)
        runs.append(res)
        bares.append(bare(res["runtime"]))
    res = min(runs, key=lambda r: r["seconds"])
    mps = SCENE * SCENE / 1e6 / res["seconds"]
    return {"runtime": res["runtime"], "mps": round(mps, 4), "bare_mps": round(max(bares), 4), "ratio": round(mps / max(bares), 3),
            "seconds": res["seconds"], "read_s": res["read_seconds"], "model_s": res["model_seconds"]}


def report(row: dict) -> None:
    log(f"== {row['backbone']} (chip {row['chip']}, {row['chips_timed']} scene chips, {row['threads']} threads; "
        f"one-off: export {row['export_s']} s, int8 {row['int8_quantise_s']} s)")
    for name in ("torch_fp32", "onnx_fp32", "onnx_int8", "openvino_fp32"):
        r = row.get(name, {})
        if "mps" in r:
            extra = f", {r['speedup']:.2f}x torch" if "speedup" in r else ""
            note = f" ({row['int8_refused_by_predict']})" if name == "onnx_int8" and "int8_refused_by_predict" in row else ""
            log(f"  {name:<14} {r['mps']:.3f} MP/s, class agreement with torch {r['agreement']:.2%}{extra}{note}")
        else:
            log(f"  {name:<14} {r.get('refused') or r.get('skipped')}")
    p = row["pipeline"]
    log(f"  pipeline (auto -> {p['runtime']}): {p['mps']:.3f} MP/s over {SCENE}^2 = {p['ratio']:.3f} of that bare runtime "
        f"({p['bare_mps']:.3f} MP/s measured alongside; target >= 0.8; read {p['read_s']} s, model {p['model_s']} s of {p['seconds']} s)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backbones", default="efficientnet_lite0,dinov3_vits16")
    p.add_argument("--model", default=None, help="time this checkpoint instead of random-weight ones (one backbone)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--chips", type=int, default=8, help="scene chips timed per runtime (default 8)")
    p.add_argument("--repeat", type=int, default=2, help="pipeline runs, each beside a run of its bare runtime (best of each; default 2)")
    p.add_argument("--work", default=None, help="folder for the scene and outputs (default: a temporary one)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = p.parse_args()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="masktalk-runtime-"))
    work.mkdir(parents=True, exist_ok=True)
    before, after = make_scene(work, SCENE)
    models = [("model", Path(args.model))] if args.model else [(b, random_checkpoint(work, b)) for b in args.backbones.split(",") if b]
    rows = []
    for backbone, ckpt in models:
        row, bare = runtimes(backbone, ckpt, before, after, args.batch_size, args.chips)
        row["pipeline"] = pipeline(ckpt, before, after, work, args.batch_size, bare, args.repeat)
        report(row)
        rows.append(row)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
