"""Running the model on batches of chips: PyTorch or ONNX Runtime, same output.

Every runner maps a normalised batch ``(B, C, chip, chip)`` float32 of each date to
fixed-point class probabilities ``(B, K, chip, chip)`` int32 in ``0..PROB_SCALE``
(:class:`FixedPointModel`: the text-free model, softmax, scaling and rounding in one
graph, so the ONNX export computes exactly what PyTorch computes).

- :class:`TorchRunner`: ``torch.inference_mode``; fp32 on the CPU; autocast (bf16/fp16)
  and channels-last on CUDA; a CUDA out-of-memory error halves the batch and retries.
- :class:`OnnxRunner`: an ONNX Runtime session on the exported model
  (:mod:`engine.inference.export`), fp32 or int8, on the CPU.
"""

from __future__ import annotations

import contextlib
import os
from typing import Callable

import numpy as np

from ..errors import ModelError
from ..tiling import PROB_SCALE

LogFn = Callable[..., None]


def import_onnxruntime():
    """``onnxruntime`` with its telemetry off (it would write a session file to the temp
    folder and report to Microsoft; analysts' imagery and runs are nobody else's business)."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime

    return onnxruntime


def _fixed_point_module():
    import torch

    class FixedPointModel(torch.nn.Module):
        """``model(before, after)`` -> fixed-point probabilities ``(B, K, H, W)`` int32."""

        def __init__(self, model) -> None:
            super().__init__()
            self.model = model

        def forward(self, before, after):
            out = self.model(before, after)
            logits = out["logits"] if isinstance(out, dict) else out
            if tuple(logits.shape[-2:]) != tuple(before.shape[-2:]):
                logits = torch.nn.functional.interpolate(logits.float(), size=before.shape[-2:], mode="bilinear", align_corners=False)
            probs = torch.softmax(logits.float(), dim=1)
            return torch.round(probs * PROB_SCALE).to(torch.int32)

    return FixedPointModel


def fixed_point(model):
    """Wrap a change model so that it returns fixed-point probabilities (see the module doc)."""
    return _fixed_point_module()(model).eval()


class TorchRunner:
    """Runs the model with PyTorch (see the module doc).

    Args:
        model: the change model (``model(before, after)["logits"]``).
        device: a ``torch.device``.
        batch_size: chips per forward pass (lowered on CUDA out-of-memory).
        amp: autocast on CUDA (bf16 where supported, else fp16).
    """

    name = "torch"
    streams = 1  # one forward pass at a time (a GPU, or PyTorch's own threads on the CPU)

    def __init__(self, model, device, batch_size: int, amp: bool = True) -> None:
        import torch

        from ..runtime import amp_dtype

        self.torch = torch
        self.device = device
        self.cuda = device.type == "cuda"
        self.batch_size = batch_size
        self.model = fixed_point(model.to(device).eval())
        self.amp_dtype = amp_dtype(device.type, amp)
        if self.cuda:
            self.model = self.model.to(memory_format=torch.channels_last)

    def describe(self) -> str:
        amp = f", autocast {str(self.amp_dtype).replace('torch.', '')}" if self.amp_dtype is not None else ", fp32"
        return f"PyTorch {self.torch.__version__} on {self.device}{amp}"

    def _forward(self, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        torch = self.torch
        b, a = torch.from_numpy(before), torch.from_numpy(after)
        if self.cuda:
            b = b.pin_memory().to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            a = a.pin_memory().to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        ctx = torch.autocast("cuda", dtype=self.amp_dtype) if self.amp_dtype is not None else contextlib.nullcontext()
        with torch.inference_mode(), ctx:
            q = self.model(b, a)
        return q.cpu().numpy()

    def __call__(self, before: np.ndarray, after: np.ndarray, log_fn: LogFn | None = None) -> np.ndarray:
        """Fixed-point probabilities ``(B, K, chip, chip)`` int32 for a normalised batch."""
        torch = self.torch
        n = before.shape[0]
        if n > self.batch_size:
            step = self.batch_size  # fixed here: a retry inside may lower self.batch_size
            return np.concatenate([self(before[k : k + step], after[k : k + step], log_fn) for k in range(0, n, step)])
        try:
            return self._forward(before, after)
        except torch.cuda.OutOfMemoryError:
            if not self.cuda or n == 1:
                raise ModelError("the GPU ran out of memory with one chip per batch; use a smaller --chip or --device cpu") from None
            torch.cuda.empty_cache()
            self.batch_size = max(1, n // 2)
            if log_fn:
                log_fn(f"CUDA out of memory with {n} chips per batch; retrying with {self.batch_size}", "warning")
            return self(before, after, log_fn)


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class OnnxRunner:
    """Runs an exported model with ONNX Runtime on the CPU.

    The session runs ``streams`` batches at the same time (its ``run`` is thread-safe),
    each with ``threads // streams`` intra-op threads: on 2 cores, two single-threaded runs
    gave 6-10 % more than one run on two threads (no barrier between the threads of each
    operator), and they share the cores more smoothly with the reading and blending
    threads. A call splits its batch into ``streams`` parts; a prediction instead runs
    whole batches side by side with :meth:`run_one` (no barrier at the end of each batch,
    see :func:`engine.inference.predict._stream`).

    Args:
        path: the ``.onnx`` file (inputs ``before``/``after``, output ``probs`` int32).
        batch_size: chips per call (the session takes any batch size).
        threads: CPU threads in all (0 = the cores this process may use).
        precision: ``fp32`` or ``int8``, for the log.
    """

    name = "onnx"

    def __init__(self, path, batch_size: int, threads: int = 0, precision: str = "fp32") -> None:
        ort = import_onnxruntime()
        total = threads or usable_cores()
        self.streams = max(1, min(total, batch_size))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = max(1, total // self.streams)
        # no busy-waiting between calls: the reader thread and the blending share the cores
        # (measured on 2 cores: 5-10 % more throughput, bare and in the pipeline)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # no memory pattern: with it, ONNX Runtime traces the first run and pre-allocates the
        # traced pattern on the second, so the first two runs of every session (every
        # prediction) took 1.0 and 0.9 s against 0.35 s for two 544 px chips on one thread;
        # without it the first run takes 0.42 s and the steady speed is the same (measured on 2
        # cores, bench/runtime_speed.py)
        options.enable_mem_pattern = False
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own classes
            raise ModelError(f"ONNX Runtime cannot load {path}: {str(exc).splitlines()[0]}; delete the file to export it again") from None
        self._pool = None
        if self.streams > 1:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.streams, thread_name_prefix="masktalk-onnx")
        self.ort_version = ort.__version__
        self.batch_size = batch_size
        self.precision = precision
        self.path = path

    def describe(self) -> str:
        return f"ONNX Runtime {self.ort_version} on the CPU, {self.precision}"

    def run_one(self, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        """One stream's run of a whole batch in the calling thread (``streams`` callers may
        run at once)."""
        feed = {"before": np.ascontiguousarray(before, np.float32), "after": np.ascontiguousarray(after, np.float32)}
        return self.session.run(["probs"], feed)[0]

    def __call__(self, before: np.ndarray, after: np.ndarray, log_fn: LogFn | None = None) -> np.ndarray:
        """Fixed-point probabilities ``(B, K, chip, chip)`` int32 for a normalised batch."""
        n = before.shape[0]
        if n > self.batch_size:
            step = self.batch_size
            return np.concatenate([self(before[k : k + step], after[k : k + step], log_fn) for k in range(0, n, step)])
        if self._pool is None or n == 1:
            return self.run_one(before, after)
        parts = np.array_split(np.arange(n), min(self.streams, n))
        futures = [self._pool.submit(self.run_one, before[p[0] : p[-1] + 1], after[p[0] : p[-1] + 1]) for p in parts]
        return np.concatenate([f.result() for f in futures])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __del__(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False)


class FlipAveraged:
    """Test-time augmentation around any runner: the model sees each chip as it is and
    flipped (:data:`engine.inference.config.TTA_FLIPS`); its probabilities, flipped back, are averaged in fixed point
    (rounded to the nearest). Costs one model pass per flip. Measured with
    ``bench/fewshot.py --tta`` (figures in README).
    """

    def __init__(self, runner, flips: tuple) -> None:
        self.runner = runner
        self.flips = tuple(flips)

    @property
    def streams(self) -> int:
        return self.runner.streams

    @property
    def batch_size(self) -> int:  # the inner runner's, which CUDA out-of-memory may lower
        return self.runner.batch_size

    def describe(self) -> str:
        return f"{self.runner.describe()}, {len(self.flips)} flips averaged"

    def _average(self, forward, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        total = None
        for axes in self.flips:
            b, a = (np.ascontiguousarray(np.flip(x, axes)) for x in (before, after)) if axes else (before, after)
            out = forward(b, a)
            out = np.flip(out, axes) if axes else out
            total = out.astype(np.int64) if total is None else total + out
        k = len(self.flips)
        return ((total + k // 2) // k).astype(np.int32)

    def run_one(self, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        return self._average(self.runner.run_one, before, after)

    def __call__(self, before: np.ndarray, after: np.ndarray, log_fn: LogFn | None = None) -> np.ndarray:
        return self._average(lambda b, a: self.runner(b, a, log_fn), before, after)
