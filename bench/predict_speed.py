"""Scene inference figures: throughput against the bare model, seams, a peer pipeline, memory.

Run from the repository root in the engine environment::

    env -u PROJ_DATA -u PROJ_LIB .venv/bin/python bench/predict_speed.py [--model RUN_OR_CKPT]
        [--device cpu|cuda] [--backbones efficientnet_lite0,dinov3_vits16] [--json out.json]

Figures (each ratio measured within this run, on this machine):

- **throughput**: output megapixels per second over a 2048 x 2048 scene at the default chip
  and overlap, reading, blending and writing included, with ``--runtime`` (default
  ``auto``: ONNX Runtime on the CPU, PyTorch on CUDA), divided by the megapixels per second
  of that runtime alone on chips already in memory (512 px or the pipeline's chip, the
  faster; target >= 0.8). Best of ``--repeat`` runs of each, interleaved, so both see the
  same machine load. Also the **data path** alone: chip megapixels per second the reading
  threads deliver without a model (target on CUDA: >= 4x the model's).
- **seams**: the same scene twice, the second time with the chip grid shifted by half a
  chip: class agreement overall (target >= 99 %) and the disagreement within 8 px of a
  chip border of either run against the disagreement elsewhere (target <= 2x). Uses the
  model given with ``--model`` (the one ``make demo`` trains); without it a random-weight
  model, which the output says.
- **peer pipeline**: the same model, chip and overlap through torchgeo's
  ``GridGeoSampler`` + ``DataLoader`` (probabilities averaged into a full-scene array,
  then written). torchgeo is not an engine dependency: it runs in the Python given by
  ``--torchgeo-python`` (default ``$MASKTALK_TORCHGEO_PYTHON``), an environment of its
  own; the comparison is skipped, saying why, when there is none.
- **memory**: peak RSS of a child process predicting a 2048 and an 8192 px scene (target:
  the larger within 1.25x of the smaller).
- with ``--device cuda``: megapixels per second, the GPU busy fraction (time in the
  model over wall time, and NVML utilisation when available), peak GPU memory and the
  class agreement of autocast (bf16/fp16) with fp32 on the scene's chips; windows are
  read by 4 threads (``--readers``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

SCENE = 2048
TRAIN_CHIP = 512


def log(msg: str) -> None:
    print(msg, flush=True)


# ----------------------------------------------------------------------------- scenes


def make_scene(work: Path, size: int) -> tuple[Path, Path]:
    """The demo scene at ``size`` px (generated once), or tiled from it for big sizes."""
    from engine.scene import make_demo_scene

    base = work / f"scene{min(size, SCENE)}"
    if not (base / "before.tif").exists():
        make_demo_scene(base, size=min(size, SCENE), seed=0)
    if size <= SCENE:
        return base / "before.tif", base / "after.tif"
    big = work / f"scene{size}"
    big.mkdir(exist_ok=True)
    import rasterio
    from rasterio.windows import Window

    for name in ("before.tif", "after.tif"):
        target = big / name
        if target.exists():
            continue
        with rasterio.open(base / name) as src:
            data = src.read()
            profile = src.profile
            profile.update(width=size, height=size, tiled=True, blockxsize=256, blockysize=256, compress="deflate", BIGTIFF="IF_SAFER")
            with rasterio.open(target, "w", **profile) as dst:
                for r in range(0, size, SCENE):
                    for c in range(0, size, SCENE):
                        h, w = min(SCENE, size - r), min(SCENE, size - c)
                        dst.write(data[:, :h, :w], window=Window(c, r, w, h))
    return big / "before.tif", big / "after.tif"


# ----------------------------------------------------------------------------- models


def random_checkpoint(work: Path, backbone: str) -> Path:
    """A random-weight change model for ``backbone`` saved as a checkpoint (seed 0)."""
    import torch

    from engine.checkpoint import make_card, save_checkpoint
    from engine.models.change import S2MChangeModel
    from engine.models.registry import create_backbone
    from engine.schema import load_preset

    path = work / f"ckpt_{backbone}"
    if (path / "card.json").exists():
        return path
    torch.manual_seed(0)
    schema = load_preset("gaza")
    model = S2MChangeModel(create_backbone(backbone, weights="random"), schema.num_classes).eval()
    card = make_card(model, schema, [128.0] * 3, [64.0] * 3, chip_size=TRAIN_CHIP)
    return save_checkpoint(path, model, card)


def bare_runner(ckpt, model, card, chip: int, device, batch: int, runtime: str):
    """The runner ``predict --runtime RUNTIME`` would use for this checkpoint and chip."""
    import types

    from engine.inference.backend import make_runner

    job = types.SimpleNamespace(config=types.SimpleNamespace(batch_size=batch), card=card, chip=chip, checkpoint=Path(ckpt),
                                device=device.type, torch_model=lambda: model)
    return make_runner(runtime, job, lambda *a, **k: None)


def bare_mps(runner, card, device, batch: int, chips: int, chip: int) -> float:
    """Megapixels per second of the runner alone on random in-memory chips of ``chip`` px."""
    import torch

    x = np.random.default_rng(0).standard_normal((batch, int(card.in_bands), chip, chip)).astype(np.float32)
    runner(x[:1], x[:1])  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    done = 0
    while done < chips:
        n = min(batch, chips - done)
        runner(x[:n], x[:n])
        done += n
    if device.type == "cuda":
        torch.cuda.synchronize()
    return chips * chip * chip / 1e6 / (time.perf_counter() - t)


def pipeline(ckpt, before, after, out, device, batch: int, runtime: str = "auto", **kw) -> dict:
    from engine.predict import PredictConfig, predict

    cfg = PredictConfig(before=str(before), after=str(after), model=str(ckpt), out=str(out), batch_size=batch,
                        device=device.type, runtime=runtime, overwrite=True, **kw)
    return predict(cfg)


def read_plan(before, after, card, chip: int):
    """The reader's plan over the whole scene at ``chip`` px (default overlap)."""
    from engine.inference.model import mean_std
    from engine.inference.reader import ReadPlan
    from engine.tiling import chip_grid

    mean, std = mean_std(card)
    return ReadPlan(str(before), str(after), int(card.in_bands), chip_grid(SCENE, SCENE, chip, 32), (0, 0), mean, std)


def data_path_mps(before, after, card, chip: int, threads: int, batch: int) -> float:
    """Chip megapixels per second the reading threads deliver alone (no model): read + normalise."""
    from engine.inference.reader import ChipReader

    plan = read_plan(before, after, card, chip)
    chips = list(plan.grid.indices())
    t = time.perf_counter()
    reader = ChipReader(plan, chips, batch, threads, prefetch=2 * threads)
    try:
        n = sum(len(b.chips) for b in reader)
    finally:
        reader.close()
    return n * chip * chip / 1e6 / (time.perf_counter() - t)


def amp_agreement(model, card, before, after, chip: int, device, batch: int) -> float:
    """Class agreement of autocast (bf16/fp16) with fp32 on the scene's chips (valid pixels)."""
    from engine.inference.reader import ChipReader
    from engine.inference.runner import TorchRunner

    plan = read_plan(before, after, card, chip)
    amp, fp32 = TorchRunner(model, device, batch), TorchRunner(model, device, batch, amp=False)
    same = total = 0
    reader = ChipReader(plan, list(plan.grid.indices()), batch, 4, prefetch=8)
    try:
        for b in reader:
            if b.chips:
                eq = amp(b.before, b.after).argmax(1) == fp32(b.before, b.after).argmax(1)
                same, total = same + int(eq[b.valid].sum()), total + int(b.valid.sum())
    finally:
        reader.close()
    return same / max(total, 1)


# ----------------------------------------------------------------------------- figures


def throughput(args, work, before, after, device) -> list[dict]:
    from engine.checkpoint import load_checkpoint

    rows = []
    for backbone in args.backbones:
        ckpt = random_checkpoint(work, backbone)
        model, card = load_checkpoint(ckpt)
        from engine.predict import default_chip, size_multiple

        chip = default_chip(card, 32, size_multiple(model))
        runners = {c: bare_runner(ckpt, model, card, c, device, args.batch_size, args.runtime) for c in (TRAIN_CHIP, chip)}
        pixels_bare, pixels_pipe, tg_runs = [], [], []
        res = None
        for _ in range(args.repeat):  # interleaved, best of each: both see the same machine load
            # the bare runtime on 512 px chips (which tile 2048 exactly) and on the pipeline's
            # chip size: the faster of the two is the baseline (convolutions on power-of-two
            # sizes can be slower on CPUs, which would flatter the ratio)
            n = (SCENE // TRAIN_CHIP) ** 2
            for c, runner in runners.items():
                pixels_bare.append(bare_mps(runner, card, device, args.batch_size, chips=n, chip=c))
            if device.type == "cuda":
                import torch

                torch.cuda.reset_peak_memory_stats()
            res = pipeline(ckpt, before, after, work / f"out_{backbone}.tif", device, args.batch_size, args.runtime, readers=args.readers)
            pixels_pipe.append(SCENE * SCENE / 1e6 / res["seconds"])
            if torchgeo_python(args) and device.type == "cpu":
                tg_runs.append(run_torchgeo(args, ckpt, before, after, work / f"tg_{backbone}.tif", res["chip"], res["overlap"]))
        bare, pipe = max(pixels_bare), max(pixels_pipe)
        row = {
            "backbone": backbone,
            "device": str(device),
            "runtime": res["runtime"],
            "chip": res["chip"],
            "overlap": res["overlap"],
            "chips": res["chips"],
            "chips_skipped": res["chips_skipped"],
            "bare_mps": round(bare, 4),
            "masktalk_mps": round(pipe, 4),
            "ratio": round(pipe / bare, 3),
            "read_s": res["read_seconds"],
            "model_s": res["model_seconds"],
            "total_s": res["seconds"],
        }
        threads = args.readers or (4 if device.type == "cuda" else 1)
        row["data_path_mps"] = round(data_path_mps(before, after, card, chip, threads, args.batch_size), 4)
        row["data_path_over_bare_model"] = round(row["data_path_mps"] / bare, 2)
        log(f"  data path alone ({threads} reading threads, no model): {row['data_path_mps']:.3f} chip MP/s = "
            f"{row['data_path_over_bare_model']:.1f}x the bare model" + (" (target >= 4x on the GPU)" if device.type == "cuda" else ""))
        if device.type == "cuda":
            import torch

            row["amp_vs_fp32_agreement"] = round(amp_agreement(model, card, before, after, chip, device, args.batch_size), 5)
            log(f"  AMP vs fp32 class agreement on the scene's chips: {row['amp_vs_fp32_agreement']:.4%}; "
                f"time in the model / wall time {res['model_seconds'] / res['seconds']:.3f}; "
                f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
            row["gpu_busy_fraction"] = round(res["model_seconds"] / res["seconds"], 3)
            row["gpu_peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
            try:
                row["nvml_utilisation_after_run_pct"] = torch.cuda.utilization()
            except Exception:  # noqa: BLE001 - pynvml missing
                pass
        log(
            f"throughput {backbone} on {device} ({res['runtime']}): bare {bare:.3f} MP/s, MaskTalk {pipe:.3f} MP/s over {SCENE}^2 "
            f"(chip {res['chip']}, overlap {res['overlap']}, {res['chips']} chips) -> ratio {pipe / bare:.3f} (target >= 0.8)"
        )
        if tg_runs:
            ok = [t for t in tg_runs if "seconds" in t]
            tg = min(ok, key=lambda t: t["seconds"]) if ok else tg_runs[-1]
            if "seconds" in tg:
                row["torchgeo_mps"] = round(SCENE * SCENE / 1e6 / tg["seconds"], 4)
                row["masktalk_over_torchgeo"] = round(pipe / row["torchgeo_mps"], 3)
                log(f"  torchgeo GridGeoSampler+DataLoader: {row['torchgeo_mps']:.3f} MP/s -> MaskTalk is {row['masktalk_over_torchgeo']:.2f}x (target >= 1)")
            else:
                row["torchgeo"] = tg
                log(f"  torchgeo comparison failed: {tg.get('error', tg)}")
        rows.append(row)
    return rows


def seams(args, work, before, after, device) -> dict:
    from engine.checkpoint import load_checkpoint

    note = ""
    if args.model:
        ckpt = args.model
        source = args.model
    else:
        ckpt = random_checkpoint(work, "efficientnet_lite0")
        source = "random-weight efficientnet_lite0"
        note = "no --model given: a random-weight model (give the model `make demo` trains for the real figure)"
    model, card = load_checkpoint(ckpt)
    import rasterio

    from engine.predict import default_chip, size_multiple
    from engine.tiling import chip_grid

    chip = default_chip(card, 32, size_multiple(model))
    shift = chip // 2
    pipeline(ckpt, before, after, work / "seam_a.tif", device, args.batch_size, args.runtime)
    pipeline(ckpt, before, after, work / "seam_b.tif", device, args.batch_size, args.runtime, shift=shift)
    with rasterio.open(work / "seam_a.tif") as s:
        ca = s.read(1)
    with rasterio.open(work / "seam_b.tif") as s:
        cb = s.read(1)
    h, w = ca.shape
    valid = (ca != 255) & (cb != 255)
    band = np.zeros((h, w), bool)
    for g in (chip_grid(h, w, chip, 32, 0), chip_grid(h, w, chip, 32, shift)):
        for starts, axis in ((g.row_starts, 0), (g.col_starts, 1)):
            for s0 in starts:
                for edge in (s0, s0 + chip):
                    if 0 < edge < (h if axis == 0 else w):
                        sl = slice(max(edge - 8, 0), edge + 8)
                        if axis == 0:
                            band[sl, :] = True
                        else:
                            band[:, sl] = True
    differ = (ca != cb) & valid
    agree = 1.0 - differ.sum() / max(valid.sum(), 1)
    d_band = differ[band].sum() / max((valid & band).sum(), 1)
    d_else = differ[~band].sum() / max((valid & ~band).sum(), 1)
    ratio = d_band / d_else if d_else > 0 else (0.0 if d_band == 0 else float("inf"))
    row = {
        "model": source,
        "chip": chip,
        "shift": shift,
        "agreement": round(float(agree), 5),
        "disagreement_border_band": round(float(d_band), 5),
        "disagreement_elsewhere": round(float(d_else), 5),
        "border_over_elsewhere": round(float(ratio), 3),
        "changed_fraction": round(float(((ca > 0) & valid).sum() / max(valid.sum(), 1)), 4),
        "note": note,
    }
    log(
        f"seams ({source}, chip {chip}, grid shifted {shift} px): agreement {agree:.4%} (target >= 99%), "
        f"disagreement near borders {d_band:.4%} vs elsewhere {d_else:.4%} -> {ratio:.2f}x (target <= 2)"
        + (f"\n  note: {note}" if note else "")
    )
    return row


def memory(args, work, device) -> dict:
    ckpt = random_checkpoint(work, args.memory_backbone)
    out = {}
    for size in args.memory_sizes:
        before, after = make_scene(work, size)
        cmd = [sys.executable, __file__, "--worker", "memory", "--checkpoint", str(ckpt), "--before", str(before),
               "--after", str(after), "--out", str(work / f"mem{size}.tif"), "--device", device.type, "--batch-size", str(args.batch_size),
               "--runtime", args.runtime]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            log(f"memory run {size} failed:\n{proc.stderr[-2000:]}")
            return {"error": proc.stderr[-500:]}
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        out[size] = res
        log(f"memory {size}^2 ({args.memory_backbone}): peak RSS {res['peak_rss_mib']:.0f} MiB, {res['seconds']:.1f} s, {res['mps']:.3f} MP/s")
    sizes = sorted(out)
    ratio = out[sizes[-1]]["peak_rss_mib"] / out[sizes[0]]["peak_rss_mib"]
    log(f"memory: {sizes[-1]}^2 / {sizes[0]}^2 peak RSS = {ratio:.3f} (target <= 1.25)")
    return {"backbone": args.memory_backbone, "runs": {str(k): v for k, v in out.items()}, "ratio": round(ratio, 3)}


# ----------------------------------------------------------------------------- torchgeo


def torchgeo_python(args) -> str | None:
    return args.torchgeo_python or os.environ.get("MASKTALK_TORCHGEO_PYTHON") or None


def run_torchgeo(args, ckpt, before, after, out, chip, overlap) -> dict:
    py = torchgeo_python(args)
    cmd = [py, __file__, "--worker", "torchgeo", "--checkpoint", str(ckpt), "--before", str(before), "--after", str(after),
           "--out", str(out), "--chip", str(chip), "--overlap", str(overlap), "--batch-size", str(args.batch_size)]
    env = dict(os.environ)
    env.pop("PROJ_DATA", None)
    env.pop("PROJ_LIB", None)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def worker_torchgeo(a) -> None:
    """The peer pipeline: torchgeo samples, DataLoader batches, a full-scene average, one write."""
    import rasterio
    import torch
    from torch.utils.data import DataLoader
    from torchgeo.datasets import IntersectionDataset, RasterDataset, stack_samples
    from torchgeo.samplers import GridGeoSampler

    from engine.checkpoint import load_checkpoint

    torch.set_grad_enabled(False)
    model, card = load_checkpoint(a.checkpoint)
    model.eval()
    mean = torch.tensor(card.mean).view(1, -1, 1, 1)
    std = torch.tensor(card.std).view(1, -1, 1, 1)

    def dataset(path: Path):
        cls = type("One", (RasterDataset,), {"filename_glob": path.name, "is_image": True})
        return cls(paths=str(path.parent))

    t0 = time.perf_counter()
    ds = IntersectionDataset(dataset(Path(a.before)), dataset(Path(a.after)))
    sampler = GridGeoSampler(ds, size=a.chip, stride=a.chip - a.overlap)
    loader = DataLoader(ds, sampler=sampler, batch_size=a.batch_size, collate_fn=stack_samples)
    with rasterio.open(a.before) as src:
        profile, transform, H, W = src.profile, src.transform, src.height, src.width
    K = card.num_classes
    acc = np.zeros((K, H, W), np.float32)
    cnt = np.zeros((H, W), np.float32)
    n = card.in_bands
    with torch.inference_mode():
        for batch in loader:
            img = batch["image"].float()
            b = (img[:, :n] - mean) / std
            af = (img[:, n:] - mean) / std
            probs = torch.softmax(model(b, af)["logits"], 1).numpy()
            for k, q in enumerate(batch["bounds"]):
                xs = q[0]
                ys = q[1]
                col = int(round((xs.start - transform.c) / transform.a))
                row = int(round((ys.stop - transform.f) / transform.e))
                h, w = probs.shape[-2:]
                r0, c0 = max(row, 0), max(col, 0)  # the grid runs from the bottom: chips may overhang the top
                r1, c1 = min(row + h, H), min(col + w, W)
                acc[:, r0:r1, c0:c1] += probs[k, :, r0 - row : r1 - row, c0 - col : c1 - col]
                cnt[r0:r1, c0:c1] += 1
    cls = (acc / np.maximum(cnt, 1)).argmax(0).astype(np.uint8)
    profile.update(count=1, dtype="uint8", nodata=255, tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    with rasterio.open(a.out, "w", **profile) as dst:
        dst.write(cls, 1)
    elapsed = time.perf_counter() - t0
    print(json.dumps({"seconds": elapsed, "chips": len(sampler)}))


def worker_memory(a) -> None:
    import torch

    from engine.predict import PredictConfig, predict

    cfg = PredictConfig(before=a.before, after=a.after, model=a.checkpoint, out=a.out, batch_size=a.batch_size,
                        device=a.device, runtime=a.runtime, overwrite=True)
    res = predict(cfg)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"peak_rss_mib": peak, "seconds": res["seconds"], "mps": res["megapixels_per_second"]}
    if a.device == "cuda":
        out["gpu_peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    print(json.dumps(out))


# ----------------------------------------------------------------------------- main


def main() -> int:
    global SCENE
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--runtime", default="auto", help="predict --runtime for every figure (default auto: what users get)")
    p.add_argument("--readers", type=int, default=0, help="reading threads (default: predict's, 1 on the CPU, 4 on CUDA)")
    p.add_argument("--model", default=None, help="checkpoint or training run folder for the seam figure (make demo's model)")
    p.add_argument("--backbones", default="efficientnet_lite0,dinov3_vits16")
    p.add_argument("--batch-size", type=int, default=None, help="default 4 on the CPU, 16 on CUDA")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--scene", type=int, default=SCENE, help="side of the throughput/seam scene, px (default 2048)")
    p.add_argument("--memory-sizes", default="2048,8192")
    p.add_argument("--memory-backbone", default="efficientnet_lite0")
    p.add_argument("--skip", default="", help="comma-separated figures to skip: throughput,seams,memory")
    p.add_argument("--torchgeo-python", default=None, help="Python of an environment with torchgeo (not the engine's)")
    p.add_argument("--work", default=None, help="folder for scenes and outputs (default: a temporary one)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    # internal: child processes
    p.add_argument("--worker", choices=("memory", "torchgeo"), help=argparse.SUPPRESS)
    p.add_argument("--checkpoint", help=argparse.SUPPRESS)
    p.add_argument("--before", help=argparse.SUPPRESS)
    p.add_argument("--after", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--chip", type=int, help=argparse.SUPPRESS)
    p.add_argument("--overlap", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    SCENE = args.scene
    if args.batch_size is None:
        args.batch_size = 16 if args.device == "cuda" else 4
    if args.worker == "memory":
        worker_memory(args)
        return 0
    if args.worker == "torchgeo":
        worker_torchgeo(args)
        return 0

    import torch

    from engine.predict import resolve_device

    device = resolve_device(args.device)
    args.backbones = [b for b in args.backbones.split(",") if b]
    args.memory_sizes = [int(s) for s in args.memory_sizes.split(",") if s]
    skip = set(filter(None, args.skip.split(",")))
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="masktalk-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    log(f"predict_speed on {device} ({torch.get_num_threads()} torch threads), work folder {work}")
    if not torchgeo_python(args):
        log("torchgeo comparison skipped: no --torchgeo-python / MASKTALK_TORCHGEO_PYTHON (install torchgeo in an environment of its own)")
    before, after = make_scene(work, SCENE)
    figures: dict = {"device": str(device), "scene": SCENE}
    if "throughput" not in skip:
        figures["throughput"] = throughput(args, work, before, after, device)
    if "seams" not in skip:
        figures["seams"] = seams(args, work, before, after, device)
    if "memory" not in skip:
        figures["memory"] = memory(args, work, device)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    log(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
