"""Which runtime runs the chips: ``--runtime auto|torch|onnx|onnx-int8``.

``auto`` takes the fastest runtime available for the device and backbone, as
``bench/runtime_speed.py`` measured them on 2 CPU cores (2048 px scene, 544 px chips):

- EfficientNet-Lite0: ONNX Runtime fp32 2.9-4.7x PyTorch fp32 (2.20 vs 0.73 MP/s on a
  quiet machine), 100 % class agreement -> ONNX Runtime;
- DINOv3-S/16: ONNX Runtime 0.95-1.15x on three of four CPUs (1.6x on one), its int8
  model 0.95-1.0x, OpenVINO 1.15-2.2x PyTorch (0.10-0.24 MP/s; attention with RoPE is not
  fused) -> PyTorch, which needs no export (30-60 s once) and no cached copy of the weights.

So: ONNX Runtime fp32 on the CPU for the backbones in :data:`ONNX_FASTER` when
``onnxruntime`` is installed and the model comes from a checkpoint (the export is cached
beside it); PyTorch otherwise (CUDA, another backbone, a model passed in memory, no
``onnxruntime``, or an export that failed, which is logged as a warning). int8 is never
picked by ``auto``: ask for it with ``onnx-int8``. The log says which runtime runs and why.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Callable

from ..errors import InputError, ModelError
from .config import TTA_FLIPS

#: Backbone name prefixes that ONNX Runtime runs faster than PyTorch on the CPU (measured).
ONNX_FASTER = ("efficientnet",)


def onnxruntime_available() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None


def make_runner(runtime: str, job, log: Callable[..., None], calibration: Callable[[], list] | None = None):
    """Build the runner for ``runtime`` (see the module doc) and log the choice.

    Args:
        runtime: ``auto``, ``torch``, ``onnx`` or ``onnx-int8``.
        job: the :class:`~engine.inference.predict.Job` (card, chip, device, batch size,
            checkpoint; ``job.torch_model()`` loads the PyTorch model when needed).
        log: ``log(message, level="info")``.
        calibration: for ``onnx-int8``, a function returning ``(before, after, valid)``
            batches of the scene.

    Raises:
        InputError: an ONNX runtime asked for on CUDA or without ``onnxruntime``.
        ModelError: the export failed or disagrees with PyTorch (explicit ``onnx`` only).
    """
    from .runner import OnnxRunner, TorchRunner

    batch = job.config.batch_size
    path, reason = _onnx_path(runtime, job, log)
    if path is None:
        import torch

        runner = TorchRunner(job.torch_model(), torch.device(job.device), batch)
    else:
        precision = "fp32"
        if runtime == "onnx-int8":
            path, precision = _int8(path, calibration, log)
        runner = OnnxRunner(path, batch, threads=cpu_threads(), precision=precision)
    flips = TTA_FLIPS[job.config.tta]
    if len(flips) > 1:
        from .runner import FlipAveraged

        runner = FlipAveraged(runner, flips)
    log(f"runtime: {runner.describe()}" + (f" ({reason})" if reason else ""))
    return runner


def cpu_threads() -> int:
    """Intra-op threads for ONNX Runtime: ``OMP_NUM_THREADS`` when set (as PyTorch), else 0 (one per core)."""
    try:
        return max(0, int(os.environ.get("OMP_NUM_THREADS", "0") or 0))
    except ValueError:
        return 0


def _onnx_path(runtime: str, job, log) -> tuple[Path | None, str]:
    """The fp32 export to run, or None for PyTorch; and why, for the log."""
    from .export import onnx_model

    if runtime == "torch":
        return None, ""
    explicit = runtime != "auto"
    if job.device != "cpu":
        if explicit:
            raise InputError(f"--runtime {runtime} runs on the CPU; use --device cpu, or --runtime torch on {job.device}")
        return None, f"auto: PyTorch on {job.device}"
    if not onnxruntime_available():
        if explicit:
            raise InputError(f"--runtime {runtime} needs the onnx and onnxruntime packages in the engine environment "
                             "(pip install -r requirements.txt); or use --runtime torch")
        return None, "auto: onnxruntime is not installed"
    if not explicit and not str(getattr(job.card, "backbone", "")).startswith(ONNX_FASTER):
        return None, f"auto: ONNX Runtime is not faster than PyTorch for {getattr(job.card, 'backbone', 'this backbone')}"
    if job.checkpoint is None and not explicit:
        return None, "auto: the model is not a checkpoint, so there is no place to cache its export"
    try:
        return onnx_model(job, log), "auto: the fastest on the CPU" if not explicit else ""
    except ModelError as exc:
        if explicit:
            raise
        log(f"{exc}; running with PyTorch instead", "warning")
        return None, "auto: the ONNX export failed"


def _int8(fp32: Path, calibration, log) -> tuple[Path, str]:
    from .export import MIN_AGREEMENT, onnx_int8_model

    path, agreement = onnx_int8_model(fp32, calibration or (lambda: []), log)
    if path is None and agreement is None:
        log("no valid chip to calibrate the int8 model on; running the fp32 ONNX model", "warning")
        return fp32, "fp32"
    if path is None:
        log(f"the int8 model agrees with fp32 on only {agreement:.2%} of the calibration pixels (< {MIN_AGREEMENT:.1%}); "
            "running the fp32 ONNX model", "warning")
        return fp32, "fp32"
    log(f"int8 model: {agreement:.2%} class agreement with fp32 on the calibration chips")
    return path, "int8"
