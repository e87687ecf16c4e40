"""The text-free inference model as ONNX: exported once per checkpoint, cached beside it.

:func:`onnx_model` returns the path of ``FixedPointModel(model)`` (see
:mod:`engine.inference.runner`) exported for one chip size, with a dynamic batch:

- cache key: a SHA-256 of the weights (names, shapes, dtypes, bytes), the backbone, the
  band count and the chip size; the file sits in ``CHECKPOINT/onnx-cache/`` (a new
  training run replaces the checkpoint folder, and with it the cache) or, where that
  folder cannot be written, in ``$MASKTALK_CACHE`` (default ``~/.cache/masktalk``);
- the export is checked once against PyTorch on two random chips (class agreement
  >= :data:`MIN_AGREEMENT`) and the figure is kept in a JSON file beside the model;
- int8 (:func:`onnx_int8_model`): static per-channel quantisation (QDQ) calibrated on
  chips of the scene it first runs on, kept only when its classes agree with fp32 on
  those chips >= :data:`MIN_AGREEMENT`.

Files are written under temporary names and renamed when complete, so an interrupted
export never leaves a file that looks usable.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import ModelError
from ..outputs import atomic_write_text, probe_writable

log = logging.getLogger(__name__)

#: Class agreement an exported or quantised model must keep with its reference.
MIN_AGREEMENT = 0.995
OPSET = 18
CACHE_DIR = "onnx-cache"


def weights_hash(model) -> str:
    """SHA-256 (hex) of a model's state dict: names, shapes, dtypes and bytes, in key order."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        if t.numel():
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cache_folder(checkpoint: Path | None) -> Path:
    """``CHECKPOINT/onnx-cache`` when it can be written, else the user cache.

    Raises:
        ModelError: neither can be written.
    """
    user = Path(os.environ.get("MASKTALK_CACHE") or Path.home() / ".cache" / "masktalk") / CACHE_DIR
    candidates = ([checkpoint / CACHE_DIR] if checkpoint is not None and checkpoint.is_dir() else []) + [user]
    for folder in candidates:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if probe_writable(folder) is None:
            return folder
    raise ModelError(f"no folder to cache the ONNX export in: {' and '.join(map(str, candidates))} cannot be written "
                     "(set MASKTALK_CACHE to a writable folder); use --runtime torch")


def file_hash(path: Path) -> str:
    """SHA-256 (hex) of a file's bytes, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(4 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_hash(weights: Path, folder: Path) -> str:
    """:func:`file_hash` of a weights file, remembered in ``folder`` by path, size and
    modification time (hashing DINOv3-S's 88 MB takes a quarter of a second every run)."""
    memo_path = folder / "weights-sha256.json"
    try:
        memo = json.loads(memo_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        memo = {}
    st, key = weights.stat(), str(weights.resolve())
    entry = memo.get(key) if isinstance(memo, dict) else None
    if isinstance(entry, dict) and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
        return str(entry["sha256"])
    digest = file_hash(weights)
    memo = {**(memo if isinstance(memo, dict) else {}), key: {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}}
    try:
        atomic_write_text(memo_path, json.dumps(memo, indent=1) + "\n")
    except OSError:
        pass  # a cache of a cache: the next run hashes again
    return digest


def _stem(job, folder: Path) -> str:
    """Cache name: backbone, weights hash, bands and chip (the file's hash for a checkpoint)."""
    from ..checkpoint import WEIGHTS_FILE

    if job.checkpoint is not None:
        key = checkpoint_hash(job.checkpoint / WEIGHTS_FILE, folder)
    else:
        key = weights_hash(job.torch_model())
    return f"{getattr(job.card, 'backbone', 'model')}-{key[:16]}-{int(job.card.in_bands)}b-{job.chip}px"


def onnx_model(job, log_fn=None) -> Path:
    """The cached fp32 export of ``job``'s model for its chip (exported and checked first when missing).

    Args:
        job: card, chip, checkpoint and ``torch_model()`` (loaded only to export).
        log_fn: ``log_fn(message)``.

    Raises:
        ModelError: no writable cache folder, the export failed, or its classes disagree
            with PyTorch.
    """
    folder = cache_folder(job.checkpoint)
    path = folder / f"{_stem(job, folder)}-fp32.onnx"
    if path.is_file() and _info(path).get("agreement", 0) >= MIN_AGREEMENT:
        return path
    if log_fn:
        log_fn(f"exporting the model to ONNX for {job.chip} px chips (once per checkpoint; cached in {folder})")
    model, bands = job.torch_model(), int(job.card.in_bands)
    _export(model, bands, job.chip, path)
    agreement = _check_export(model, path, bands, job.chip)
    if agreement < MIN_AGREEMENT:
        path.unlink(missing_ok=True)
        raise ModelError(f"the ONNX export agrees with PyTorch on only {agreement:.2%} of the pixels (< {MIN_AGREEMENT:.1%}); use --runtime torch")
    _write_info(path, {"precision": "fp32", "chip": job.chip, "agreement": agreement, "checked_on": "2 random chips"})
    if job.checkpoint is not None and folder.parent == job.checkpoint:
        _drop_stale(folder, path.name.split("-fp32")[0])
    return path


def _drop_stale(folder: Path, stem: str) -> None:
    """Remove exports of earlier weights of this checkpoint (same backbone and chip, another hash)."""
    backbone, _, bands, chip = stem.rsplit("-", 3)
    for old in folder.glob(f"{backbone}-*-{bands}-{chip}-*"):
        if not old.name.startswith(stem):
            old.unlink(missing_ok=True)


def _export(model, bands: int, chip: int, path: Path) -> None:
    """``torch.onnx.export`` of the fixed-point model (dynamic batch) to ``path``, atomically."""
    import torch

    from .runner import fixed_point, import_onnxruntime

    import_onnxruntime()  # the exporter's optimiser may load it: telemetry off first
    wrapped = fixed_point(model.cpu().eval())
    # two distinct example tensors: one tensor passed twice is traced as one input
    g = torch.Generator().manual_seed(0)
    b, a = torch.randn(2, bands, chip, chip, generator=g), torch.randn(2, bands, chip, chip, generator=g)
    batch = torch.export.Dim("batch", min=1, max=1024)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.onnx")
    try:
        # the exporter reports on stdout, which carries the plugin's JSON lines
        with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings(), torch.inference_mode(False):
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapped, (b, a), str(tmp), input_names=["before", "after"], output_names=["probs"],
                              dynamic_shapes={"before": {0: batch}, "after": {0: batch}}, opset_version=OPSET,
                              dynamo=True, optimize=True, external_data=False, verbose=False)
        os.replace(tmp, path)
    except Exception as exc:  # noqa: BLE001 - the exporter raises many kinds
        raise ModelError(f"cannot export the model to ONNX ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); use --runtime torch") from None
    finally:
        tmp.unlink(missing_ok=True)


def _check_export(model, path: Path, bands: int, chip: int) -> float:
    """Class agreement of the export with PyTorch on two random chips."""
    from .runner import OnnxRunner, TorchRunner

    import torch

    x = np.random.default_rng(0).standard_normal((2, 2, bands, chip, chip)).astype(np.float32)
    ref = TorchRunner(model, torch.device("cpu"), 2)(x[0], x[1])
    got = OnnxRunner(path, 2)(x[0], x[1])
    return class_agreement(ref, got)


def class_agreement(a: np.ndarray, b: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Share of pixels whose most probable class is the same in two ``(B, K, H, W)`` outputs."""
    same = a.argmax(1) == b.argmax(1)
    if valid is not None:
        return float(same[valid].mean()) if valid.any() else 1.0
    return float(same.mean())


def onnx_int8_model(fp32: Path, calibration: Callable[[], Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]],
                    log_fn=None) -> tuple[Path | None, float | None]:
    """The int8 model of ``fp32`` (quantised and checked first when missing).

    Args:
        fp32: the fp32 export.
        calibration: returns ``(before, after, valid)`` batches of real chips (normalised);
            called only when the int8 model is not cached.
        log_fn: ``log_fn(message, level)``.

    Returns:
        ``(path, agreement)``; path None when the int8 model disagrees with fp32 on more
        than 0.5 % of the calibration pixels (the refusal is remembered beside the fp32
        model), or ``(None, None)`` without calibration chips.
    """
    path = fp32.with_name(fp32.name.replace("-fp32.onnx", "-int8.onnx"))
    info = _info(path)
    if path.is_file() and info.get("agreement", 0) >= MIN_AGREEMENT:
        return path, float(info["agreement"])
    if info.get("refused"):  # measured before: not tried again for these weights and chip
        return None, float(info["agreement"])
    calibration = list(calibration())
    if not calibration:
        return None, None
    if log_fn:
        log_fn(f"quantising the ONNX model to int8 on {sum(len(b) for b, _, _ in calibration)} chips of this scene (once; cached)")
    _quantize(fp32, path, calibration)
    agreement = _int8_agreement(fp32, path, calibration)
    if agreement < MIN_AGREEMENT:
        path.unlink(missing_ok=True)
        _write_info(path, {"precision": "int8", "agreement": agreement, "refused": True, "checked_on": "calibration chips"})
        return None, agreement
    _write_info(path, {"precision": "int8", "agreement": agreement, "checked_on": "calibration chips"})
    return path, agreement


def _quantize(fp32: Path, path: Path, calibration) -> None:
    from .runner import import_onnxruntime

    import_onnxruntime()
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"before": b, "after": a} for b, a, _ in calibration])

        def get_next(self):
            return next(self.items, None)

    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        pre = Path(tmp) / "pre.onnx"
        out = Path(tmp) / "int8.onnx"
        with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
            quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        os.replace(out, path)


def _int8_agreement(fp32: Path, int8: Path, calibration) -> float:
    from .runner import OnnxRunner

    ref, got = OnnxRunner(fp32, 64), OnnxRunner(int8, 64, precision="int8")
    same = total = 0
    for b, a, v in calibration:
        eq = ref(b, a).argmax(1) == got(b, a).argmax(1)
        same += int(eq[v].sum())
        total += int(v.sum())
    return same / max(total, 1)


def _info_path(model_path: Path) -> Path:
    return model_path.with_suffix(".json")


def _info(model_path: Path) -> dict:
    try:
        return json.loads(_info_path(model_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write_info(model_path: Path, info: dict) -> None:
    from .runner import import_onnxruntime

    info = {**info, "onnxruntime": import_onnxruntime().__version__, "opset": OPSET}
    atomic_write_text(_info_path(model_path), json.dumps(info, indent=1) + "\n")


def prepare_onnx(checkpoint, overlap: int = 32, log_fn=None, extent: int | None = None) -> Path | None:
    """Export a checkpoint for ``predict``'s default chip now (e.g. at the end of training),
    so that the first prediction does not wait for it.

    Args:
        checkpoint: checkpoint folder or training run folder.
        overlap: the prediction overlap the chip is sized for (predict's default: 32).
        log_fn: ``log_fn(message)``.
        extent: the longer side of the scenes to be predicted, px (None: scenes larger
            than the default chip); smaller rasters are predicted as one chip of their size.

    Returns:
        The cached export, or None where ``predict --runtime auto`` would not use ONNX
        Runtime (another backbone, or ``onnxruntime`` not installed).

    Raises:
        ModelError: the export failed (predict would then run PyTorch and say so).
    """
    import types

    from ..checkpoint import read_card, resolve_checkpoint
    from .backend import ONNX_FASTER, onnxruntime_available
    from .model import default_chip, load_model

    folder = resolve_checkpoint(checkpoint)
    card = read_card(folder)
    if not onnxruntime_available() or not str(card.backbone).startswith(ONNX_FASTER):
        return None
    chip = default_chip(card, overlap, int(card.size_multiple), extent)
    loaded: list = []

    def torch_model():
        if not loaded:
            loaded.append(load_model(str(folder))[0])
        return loaded[0]

    return onnx_model(types.SimpleNamespace(card=card, chip=chip, checkpoint=folder, torch_model=torch_model), log_fn)
