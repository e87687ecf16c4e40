"""Speed and memory of the S2M change model (prints figures; not a test).

For each backbone (``dinov3_vits16`` with random weights, ``efficientnet_lite0``):
parameters (total / trainable, with LoRA for DINOv3 and a frozen backbone for
EfficientNet), seconds per pair (best of N) for inference at 256² and 512², seconds per training step
(batch 2, 256², text modules + S2M loss + AdamW), peak memory, and the ratio of the full
model without text to the bare siamese backbone forward at 512² (target <= 1.15).

CPU: fp32 (bf16 autocast measured 4-6x slower on CPU). CUDA: autocast (bf16) and
channels_last. Each backbone runs in its own process so peak RSS is its own.

Usage::

    python bench/model_speed.py [--device cpu|cuda] [--threads N] [--backbones a,b] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _timeit(fn, repeats: int, sync, warmup: bool = True) -> float:
    """Best of ``repeats`` timed calls after one warm-up (robust to CPUs shared with others)."""
    if warmup:
        fn()
        sync()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t)
    return best


def measure(name: str, device: str, repeats: int, lora_rank: int) -> dict:
    import torch

    from engine.losses import S2MLoss
    from engine.models.change import S2MChangeModel
    from engine.models.lora import configure_finetuning, count_parameters
    from engine.models.registry import create_backbone

    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    weights = "random" if name.startswith("dinov3_") else None
    if weights is None:
        from engine.models.efficientnet import package_weights_path

        if package_weights_path() is None:  # e.g. the GPU machine: same speed with random weights
            weights = "random"
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)
    fmt = torch.channels_last if cuda else torch.contiguous_format
    res: dict = {"backbone": name, "device": device, "weights": weights or "imagenet (package)", "amp": "bf16 autocast + channels_last" if cuda else "fp32"}
    if cuda:
        res["gpu"] = torch.cuda.get_device_name(0)

    # -- inference: full model without text vs bare siamese backbone -------------------
    model = S2MChangeModel(create_backbone(name, weights=weights), 2).to(device).eval().to(memory_format=fmt)
    res["params_inference"] = count_parameters(model)["total"]
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        x = torch.randn(1, 3, 512, 512, device=device)
        model(x, x)
    full_flops = fc.get_total_flops()
    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        model.backbone(torch.randn(2, 3, 512, 512, device=device))
    res["gflops_per_pair_512"] = round(full_flops / 1e9, 2)
    res["flops_ratio_full_over_backbone_512"] = round(full_flops / fc.get_total_flops(), 3)
    for size in (256, 512):
        x = torch.randn(1, 3, size, size, device=device).to(memory_format=fmt)
        y = torch.randn(1, 3, size, size, device=device).to(memory_format=fmt)
        with torch.inference_mode(), amp:
            # interleaved rounds, best of each: load from other processes hits both alike
            run_full = lambda: model(x, y)  # noqa: E731
            run_bare = lambda: model.backbone(torch.cat([x, y]))  # noqa: E731
            run_full(), run_bare()
            full = bare = float("inf")
            for _ in range(repeats):
                full = min(full, _timeit(run_full, 1, sync, warmup=False))
                bare = min(bare, _timeit(run_bare, 1, sync, warmup=False))
        res[f"infer_s_per_pair_{size}"] = round(full, 4)
        res[f"backbone_s_per_pair_{size}"] = round(bare, 4)
        res[f"ratio_full_over_backbone_{size}"] = round(full / bare, 3)
    del model

    # -- training step: batch 2, 256², stage 2 (text), with LoRA / frozen backbone ------
    model = S2MChangeModel(create_backbone(name, weights=weights), 7, text_dim=384).to(device).train()
    if name.startswith("dinov3_"):
        counts = configure_finetuning(model, lora_rank=lora_rank)
        res["finetuning"] = f"LoRA rank {lora_rank}"
    else:
        counts = configure_finetuning(model, freeze=True)
        res["finetuning"] = "frozen backbone"
    full_counts = count_parameters(S2MChangeModel(create_backbone(name, weights="random"), 7, text_dim=384))
    res["params_total"] = counts["total"]
    res["params_trainable"] = counts["trainable"]
    res["params_trainable_full_finetune"] = full_counts["trainable"]
    model = model.to(device).to(memory_format=fmt)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    loss_fn = S2MLoss()
    xb = torch.randn(2, 3, 256, 256, device=device).to(memory_format=fmt)
    ya = torch.randn(2, 3, 256, 256, device=device).to(memory_format=fmt)
    target = torch.randint(0, 7, (2, 256, 256), device=device)
    text = torch.nn.functional.normalize(torch.randn(2, 384, device=device), dim=1)

    def step():
        opt.zero_grad(set_to_none=True)
        with amp:
            out = model(xb, ya, text=text)
        loss = loss_fn(out, target)["loss"]
        loss.backward()
        opt.step()

    res["train_s_per_step_b2_256"] = round(_timeit(step, repeats, sync), 4)
    res["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if cuda:
        res["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    ap.add_argument("--backbones", default="dinov3_vits16,efficientnet_lite0")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--lora-rank", type=int, default=8)
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.one:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        print(json.dumps(measure(args.one, args.device, args.repeats, args.lora_rank)))
        return

    results = []
    for name in args.backbones.split(","):
        cmd = [sys.executable, __file__, "--one", name, "--device", args.device, "--repeats", str(args.repeats), "--lora-rank", str(args.lora_rank), "--threads", str(args.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        if out.returncode:
            print(f"{name}: failed\n{out.stderr[-3000:]}", file=sys.stderr)
            continue
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))

    for r in results:
        print(f"== {r['backbone']} on {r.get('gpu', r['device'])} ({r['amp']}, weights: {r['weights']})")
        print(f"  params: inference model {r['params_inference']:,}; training {r['params_total']:,} total, "
              f"{r['params_trainable']:,} trainable with {r['finetuning']} (full fine-tune: {r['params_trainable_full_finetune']:,})")
        for size in (256, 512):
            print(f"  inference {size}x{size}: {r[f'infer_s_per_pair_{size}']:.3f} s/pair = {size * size / 1e6 / r[f'infer_s_per_pair_{size}']:.2f} MPix/s "
                  f"(bare siamese backbone {r[f'backbone_s_per_pair_{size}']:.3f} s, ratio {r[f'ratio_full_over_backbone_{size}']:.3f})")
        print(f"  compute at 512x512: {r['gflops_per_pair_512']:.1f} GFLOP/pair, full/backbone FLOP ratio {r['flops_ratio_full_over_backbone_512']:.3f}")
        print(f"  training step batch 2, 256x256, with text: {r['train_s_per_step_b2_256']:.3f} s/step")
        mem = f"  peak RSS {r['peak_rss_mb']:.0f} MB"
        if "peak_cuda_mb" in r:
            mem += f", peak CUDA {r['peak_cuda_mb']:.0f} MB"
        print(mem)
        ratio = r["ratio_full_over_backbone_512"]
        print(f"  full model without text / bare backbone at 512: {ratio:.3f} ({'within' if ratio <= 1.15 else 'ABOVE'} the 1.15 target)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
