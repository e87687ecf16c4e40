"""Device, mixed precision and distributed set-up shared by training and prediction."""

from __future__ import annotations

import dataclasses
import os

from .errors import InputError


def device_kind(requested: str) -> str:
    """``cuda`` or ``cpu`` for ``--device auto|cpu|cuda``.

    Raises:
        InputError: ``cuda`` was asked for but PyTorch sees no CUDA device.
    """
    if requested == "cpu":  # no need to import PyTorch to know that
        return "cpu"
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but PyTorch sees no CUDA device; use --device cpu or auto")
    return "cuda" if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()) else "cpu"


def amp_dtype(kind: str, enabled: bool):
    """bfloat16 on CUDA when supported, else float16; None on the CPU or when disabled."""
    import torch

    if kind != "cuda" or not enabled:
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@dataclasses.dataclass
class Dist:
    """This process's place in a ``torchrun`` job (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    initialised: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(kind: str) -> Dist:
    """Join the process group ``torchrun`` describes (NCCL on CUDA, gloo on the CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch
    import torch.distributed as dist

    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_initialized():
        return Dist(rank, world, local, False)
    if kind == "cuda":
        torch.cuda.set_device(local)
    dist.init_process_group(backend="nccl" if kind == "cuda" else "gloo")
    return Dist(rank, world, local, True)


def close_distributed(info: Dist) -> None:
    if info.initialised:
        import torch.distributed as dist

        dist.destroy_process_group()


def all_sum(values, info: Dist, device=None):
    """Sum a list/array of numbers over all processes (a float64 CPU tensor)."""
    import torch

    t = torch.as_tensor(values, dtype=torch.float64)
    if info.world > 1:
        import torch.distributed as dist

        dev = device if device is not None and device.type == "cuda" else torch.device("cpu")
        t = t.to(dev)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t = t.cpu()
    return t


def barrier(info: Dist) -> None:
    if info.world > 1:
        import torch.distributed as dist

        dist.barrier()
