"""The run folder: checks before anything is written, atomic checkpoints, resume state.

Run folder::

    RUN_DIR/config.json      the TrainConfig (JSON, versioned)
    RUN_DIR/best/            the kept model (what ``predict --model RUN_DIR`` uses), see
                             :mod:`engine.training.loop` for the rule that picks it
    RUN_DIR/last/            the model after the last validation, plus what resuming needs
                             (optimizer.pt: tensors and numbers only, read with
                             ``torch.load(weights_only=True)``; ema.safetensors;
                             train_state.json: next step, best score, history)
    RUN_DIR/metrics.jsonl    one JSON object per validation
    RUN_DIR/metrics.png      loss and validation metrics over the steps

Every file is written under a temporary name and renamed into place; a checkpoint folder
is swapped in with two renames (:func:`swap_into_place`), and :func:`recover_run_dir`
undoes a swap that a crash interrupted.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
from pathlib import Path

from .. import outputs as _outputs
from ..errors import InputError

STATE_FILE = "train_state.json"
OPTIM_FILE = "optimizer.pt"
EMA_FILE = "ema.safetensors"
STATE_VERSION = 2


def check_out_folder(run: Path, resume: bool) -> None:
    """Refuse an ``--out`` that cannot take a new run (or, with ``resume``, holds none).

    Raises:
        InputError: ``run`` is a file, holds a run (without ``resume``), has no run to
            resume, or cannot be written.
    """
    if run.exists() and not run.is_dir():
        raise InputError(f"--out {run} is a file; give a folder for the run")
    if resume:
        if not (run / "config.json").is_file():
            raise InputError(f"cannot resume: {run / 'config.json'} does not exist; give the --out folder of an earlier run, or drop --resume")
    elif run.exists() and any(not p.name.startswith(".") for p in run.iterdir()):
        raise InputError(f"run folder {run} already holds files; use --resume to continue a run there or choose another --out")
    parent = run if run.exists() else _existing_parent(run)
    try:  # a real probe: access() says yes to root on read-only or virtual file systems
        fd, probe = tempfile.mkstemp(prefix=".masktalk-write-test-", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputError(f"cannot write the run folder {run}: {parent} is not writable ({exc.strerror}); choose another --out") from None


def _existing_parent(p: Path) -> Path:
    p = p.absolute()
    while not p.exists():
        p = p.parent
    if not p.is_dir():
        raise InputError(f"cannot create the run folder: {p} is a file")
    return p


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder."""
    _outputs.atomic_write_text(path, text)


def swap_into_place(staging: Path, target: Path) -> None:
    """Replace ``target`` by the complete folder ``staging`` (two renames; recoverable)."""
    _outputs.swap_into_place(staging, target)


def recover_run_dir(run: Path) -> None:
    """After a crash: put back a ``last``/``best`` left as ``.NAME.old-*``; drop temporary files."""
    for name in ("last", "best"):
        olds = sorted(run.glob(f".{name}.old-*"))
        if not (run / name).exists() and olds:
            olds[-1].rename(run / name)
    for p in list(run.glob(".*.old-*")) + list(run.glob(".*.tmp-*")) + list(run.glob(".*.staging-*")):
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def read_saved_config(run: Path) -> dict:
    """The ``config.json`` of a run, for ``--resume``."""
    path = run / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot resume: {path} is not readable JSON ({exc})") from None


def save_last(run: Path, model, card, ema_state: dict | None, optimizer, scaler, state: dict) -> None:
    """Write ``last/`` (model, EMA, optimizer, state) atomically."""
    import torch
    from safetensors.torch import save_file

    from ..checkpoint import save_checkpoint

    staging = Path(tempfile.mkdtemp(prefix=".last.staging-", dir=run))
    try:
        ckpt = staging / "ckpt"
        save_checkpoint(ckpt, model, card)
        if ema_state is not None:
            save_file({k: v.contiguous() for k, v in ema_state.items()}, str(ckpt / EMA_FILE))
        torch.save({"optimizer": optimizer.state_dict() if optimizer is not None else None,
                    "scaler": scaler.state_dict() if scaler is not None else None}, ckpt / OPTIM_FILE)
        (ckpt / STATE_FILE).write_text(json.dumps(state, indent=1), encoding="utf-8")
        swap_into_place(ckpt, run / "last")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_last(run: Path, model, device) -> tuple[dict, dict, dict | None]:
    """``(state, optimizer/scaler state, ema state)`` of ``last/``; loads the model weights.

    Raises:
        InputError: ``last/`` is missing or incomplete (nothing is changed then).
    """
    import torch
    from safetensors.torch import load_file

    from ..checkpoint import WEIGHTS_FILE

    last = run / "last"
    try:
        state = json.loads((last / STATE_FILE).read_text(encoding="utf-8"))
        weights = load_file(str(last / WEIGHTS_FILE), device="cpu")
        opt = torch.load(last / OPTIM_FILE, map_location=device, weights_only=True)
        ema = load_file(str(last / EMA_FILE), device="cpu") if (last / EMA_FILE).is_file() else None
    except (OSError, ValueError, RuntimeError, pickle.UnpicklingError, EOFError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"cannot resume from {last}: a file of it is damaged or missing ({reason}); the run's files are left as they are") from None
    if state.get("version") != STATE_VERSION:
        raise InputError(f"cannot resume from {last}: it was written by another version of the trainer (state version {state.get('version')})")
    model.load_state_dict(weights)
    return state, opt, ema
