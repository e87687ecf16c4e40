"""Two-stage S2M training (paper §3.2 and §4) on a labelled scene or a dataset folder.

Stage 1 trains the visual change model alone with the segmentation loss
``0.4 focal + 0.3 dice + 0.3 lovasz``. Stage 2 continues from stage 1's weights, feeds the
frozen text encoder's embedding of each chip's S2M caption (drawn afresh every time the
chip is seen) to the text-guided alignment module, and adds the bidirectional InfoNCE loss
``seg + 0.5 * cot`` (tau 0.7). Each stage has its own AdamW (lr 1e-4, weight decay 0.05)
with a per-epoch cosine decay to 10 % of the rate.

Run folder::

    RUN_DIR/config.json      the TrainConfig (JSON, versioned)
    RUN_DIR/best/            checkpoint with the best validation score: SeK when the schema
                             has several change classes, F1 of change when it is binary
    RUN_DIR/last/            checkpoint after the last finished epoch, plus the training
                             state to resume from (optimizer.pt, train_state.json)
    RUN_DIR/metrics.jsonl    one JSON object per epoch: stage, loss, validation metrics
    RUN_DIR/metrics.png      loss and validation metrics per epoch

Checkpoints are written atomically (a temporary folder renamed into place). The state to
resume (``last/``) is the model (safetensors), the optimizer and AMP scaler state
(``optimizer.pt``: tensors, numbers and lists only, read back with
``torch.load(weights_only=True)``), and ``train_state.json`` (next epoch, best score, the
metrics history). No random-generator state needs saving: every draw of an epoch (shuffle,
augmentation, captions, dropout) is seeded from ``(seed, epoch)``, so ``--resume`` gives the
same weights as a run that was never stopped.

Cancelling (SIGINT/SIGTERM or ``progress``'s callback) is checked before every step; the job
stops there, keeps ``last`` (an initial one is written before the first step) and raises
:class:`~engine.errors.Cancelled`.

Several processes (``torchrun --nproc_per_node N -m engine train ...``): DDP with NCCL on
CUDA and gloo on the CPU; each rank gets a :class:`~torch.utils.data.DistributedSampler`
shard of the training chips and of the validation chips; losses and confusion matrices are
summed across ranks; only rank 0 writes files and reports.

Paper settings for GPU runs: ``--stage1-epochs 150 --stage2-epochs 150`` (the paper trains
150 epochs; it does not split them by stage), chips of 256 or 512 px, a DINOv3 backbone
(``--backbone dinov3_vitl16 --weights DIR``, LoRA rank 8-16 for the LoRA variant), the CLIP
text encoder (``--text-encoder clip-vit-b32``), batch size 8-16. The CPU defaults below
(efficientnet_lite0, 8 + 4 epochs, batch 4) give a useful model on a small labelled area in
minutes on a laptop.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from .config import JobConfig, check_choice, check_positive
from .errors import Cancelled, InputError
from .progress import BaseProgress, NullProgress

log = logging.getLogger(__name__)

STATE_FILE = "train_state.json"
OPTIM_FILE = "optimizer.pt"
STATE_VERSION = 1


@dataclasses.dataclass(frozen=True)
class TrainConfig(JobConfig):
    """Settings of a training run (``python -m engine train``).

    Data (one of): ``dataset`` (folder with ``A/ B/ label/ [list/]``) or ``before`` +
    ``after`` + ``labels`` (polygons in any OGR source, or a class raster).

    Attributes:
        out: run folder.
        dataset: dataset folder.
        before, after: rasters of the two dates (any GDAL format; *after* is aligned on *before*).
        labels: label polygons (``class_field`` holds schema names or ids) or a class raster.
        class_field: attribute of the label polygons holding the class.
        labels_layer: layer of ``labels`` (default: the only one, or ``labels``).
        aoi: optional AOI polygon layer (default: the labels' extent).
        aoi_layer: layer of ``aoi``.
        preset: class schema preset name; ``schema`` (a JSON file) wins when both are given.
        schema: class schema file.
        label_map: raw label value -> class id, ``"255:1"`` for LEVIR-CD.
        backbone: registry name; None = the registry's default (DINOv3 when its weights are
            found, else efficientnet_lite0).
        weights: backbone weights (folder/file, ``"random"``), None = the default ones.
        backbone_options: extra keyword arguments of the backbone factory (e.g. a tiny
            DINOv3 ``{"config": {...}, "out_indices": [...]}``).
        decoder_channels: decoder widths per scale (None = the model's default).
        text_encoder: frozen text encoder of stage 2 (``minilm`` offline default; the
            paper's is CLIP: ``clip-vit-b32``).
        text_weights: local weights of the text encoder.
        stage1_epochs, stage2_epochs: epochs per stage (0 skips a stage).
        chip: chip side in pixels (a multiple of the backbone's, 32 for EfficientNet, 16 for DINOv3).
        stride: step between training chips in pixels (None = ``chip``, no overlap).
        val_fraction: share of the labelled area (or images) kept for validation.
        batch_size: chips per step and process.
        lr, weight_decay: AdamW (paper: 1e-4, 0.05); ``lr`` is the backbone's rate.
        head_lr_scale: the newly initialised parts (fusion, decoder, head, text modules)
            train at ``lr * head_lr_scale``; 10 learns in a few CPU epochs, the paper uses one
            rate for the whole network (1).
        lora_rank: LoRA rank on the backbone's attention (0 = full fine-tuning; DINOv3 only).
        freeze_backbone: keep the backbone's weights fixed (LoRA adapters still train).
        alpha, beta, gamma: focal/dice/lovasz weights (0.4/0.3/0.3).
        lam: weight of the contrastive loss in stage 2 (0.5).
        tau: InfoNCE temperature (0.7).
        jitter: per-date radiometric jitter amplitude (normalised units; 0 = off).
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        amp: mixed precision on CUDA (bfloat16 when supported, else float16 with a scaler).
        seed: seed of the split, the initialisation and every random draw.
        workers: data loader worker processes.
        resume: continue the run in ``out`` from its ``last`` checkpoint.
    """

    out: str = "run"
    dataset: str | None = None
    before: str | None = None
    after: str | None = None
    labels: str | None = None
    class_field: str = "class"
    labels_layer: str | None = None
    aoi: str | None = None
    aoi_layer: str | None = None
    preset: str | None = None
    schema: str | None = None
    label_map: str | None = None
    backbone: str | None = None
    weights: str | None = None
    backbone_options: dict | None = None
    decoder_channels: tuple[int, ...] | None = None
    text_encoder: str = "minilm"
    text_weights: str | None = None
    stage1_epochs: int = 8
    stage2_epochs: int = 4
    chip: int = 256
    stride: int | None = None
    val_fraction: float = 0.2
    batch_size: int = 4
    lr: float = 1e-4
    head_lr_scale: float = 10.0
    weight_decay: float = 0.05
    lora_rank: int = 0
    freeze_backbone: bool = False
    alpha: float = 0.4
    beta: float = 0.3
    gamma: float = 0.3
    lam: float = 0.5
    tau: float = 0.7
    jitter: float = 0.1
    device: str = "auto"
    amp: bool = True
    seed: int = 0
    workers: int = 0
    resume: bool = False

    def __post_init__(self) -> None:
        if not self.resume or self.dataset or self.before:
            if self.dataset and (self.before or self.after or self.labels):
                raise InputError("give either --dataset or --before/--after/--labels, not both")
            if not self.dataset and not (self.before and self.after and self.labels):
                raise InputError("no training data: give --dataset DIR, or --before, --after and --labels")
        for name in ("stage1_epochs", "stage2_epochs", "lora_rank", "workers", "seed"):
            check_positive(name, getattr(self, name), allow_zero=True)
        if self.stage1_epochs + self.stage2_epochs == 0:
            raise InputError("stage1_epochs and stage2_epochs are both 0: nothing to train")
        for name in ("chip", "batch_size", "lr", "tau", "head_lr_scale"):
            check_positive(name, getattr(self, name))
        check_positive("weight_decay", self.weight_decay, allow_zero=True)
        if self.stride is not None:
            check_positive("stride", self.stride)
        if not 0 < self.val_fraction < 1:
            raise InputError(f"val_fraction must be between 0 and 1 (exclusive), got {self.val_fraction}")
        check_choice("device", self.device, ("auto", "cpu", "cuda"))

    @property
    def total_epochs(self) -> int:
        return self.stage1_epochs + self.stage2_epochs


# ----------------------------------------------------------------------------- helpers


@dataclasses.dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    initialised: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device_kind: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    import torch.distributed as dist

    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_initialized():
        return _Dist(rank, world, local, False)
    backend = "nccl" if device_kind == "cuda" else "gloo"
    if device_kind == "cuda":
        import torch

        torch.cuda.set_device(local)
    dist.init_process_group(backend=backend)
    return _Dist(rank, world, local, True)


def _device(config: TrainConfig):
    import torch

    if config.device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but PyTorch sees no CUDA device; use --device cpu or auto")
    kind = "cuda" if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()) else "cpu"
    return kind


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _swap_into_place(staging: Path, target: Path) -> None:
    """Replace ``target`` by the complete folder ``staging`` (two renames; recoverable)."""
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)


def _recover_run_dir(run: Path) -> None:
    """After a crash: put back a ``last``/``best`` left as ``.NAME.old-*`` and drop temporary folders."""
    for name in ("last", "best"):
        target = run / name
        olds = sorted(run.glob(f".{name}.old-*"))
        if not target.exists() and olds:
            olds[-1].rename(target)
    for p in list(run.glob(".*.old-*")) + list(run.glob(".*.tmp-*")) + list(run.glob(".*.staging-*")):
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def _cosine(base: float, epoch: int, epochs: int, floor: float = 0.1) -> float:
    if epochs <= 1:
        return base
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * epoch / epochs)))


def _mean_std(chips, bands: int) -> tuple[list[float], list[float]]:
    """ImageNet statistics (0-255) for 8-bit-range imagery; else measured on the training chips."""
    import numpy as np

    from .models.backbone import default_mean_std

    sample = chips.before[chips.train]
    lo, hi = float(min(sample.min(), chips.after[chips.train].min())), float(max(sample.max(), chips.after[chips.train].max()))
    if lo >= 0 and hi <= 255:
        return default_mean_std(bands)
    both = np.concatenate([chips.before[chips.train], chips.after[chips.train]], axis=0)
    mean = both.mean(axis=(0, 2, 3))
    std = both.std(axis=(0, 2, 3))
    std = np.where(std > 0, std, 1.0)
    log.info("imagery outside 0..255: normalising with measured per-band mean %s and std %s", mean.round(2), std.round(2))
    return [float(v) for v in mean], [float(v) for v in std]


class _RankProgress(BaseProgress):
    """What ranks other than 0 use: silent, but honours the cancel flag and callback."""

    def __init__(self, inner: BaseProgress) -> None:
        super().__init__(None)
        self._inner = inner

    def is_cancelled(self) -> bool:
        return self._inner.is_cancelled()


# ----------------------------------------------------------------------------- train


def load_data(config: TrainConfig, schema, bands: int | None = None):
    """The :class:`~engine.data.ChipSet` the config names."""
    from .data import load_folder, load_scene
    from .schema import parse_label_map

    lmap = parse_label_map(config.label_map)
    stride = config.stride or config.chip
    if config.dataset:
        return load_folder(config.dataset, schema, label_map=lmap, bands=bands, chip=config.chip, stride=stride,
                           val_fraction=config.val_fraction, seed=config.seed)
    return load_scene(config.before, config.after, config.labels, schema, class_field=config.class_field,
                      layer=config.labels_layer, aoi=config.aoi, aoi_layer=config.aoi_layer, label_map=lmap, bands=bands,
                      chip=config.chip, stride=stride, val_fraction=config.val_fraction, seed=config.seed)


def train(config: TrainConfig, progress: BaseProgress | None = None) -> dict[str, Any]:
    """Train a change model; see the module docstring for the run folder.

    Args:
        config: the settings.
        progress: reporter; ``progress.check()`` runs before every step.

    Returns:
        ``{"run_dir", "best", "last", "best_metrics", "best_epoch", "epochs", "score",
        "seconds", "train_chips", "val_chips"}`` (the same on every rank).

    Raises:
        InputError: bad data or settings (nothing is written then).
        ModelError: unusable weights.
        Cancelled: stopped by the user; ``last`` holds the last finished epoch.
    """
    progress = progress or NullProgress()
    kind = _device(config)
    dist_info = _init_distributed(kind)
    try:
        return _Trainer(config, progress, kind, dist_info).run()
    finally:
        if dist_info.initialised:
            import torch.distributed as dist

            dist.destroy_process_group()


class _Trainer:
    def __init__(self, config: TrainConfig, progress: BaseProgress, kind: str, dist_info: _Dist) -> None:
        import torch

        self.run_dir = Path(config.out)
        if config.resume:
            config = self._resumed_config(config)
        self.config = config
        self.dist = dist_info
        self.progress = progress if dist_info.main else _RankProgress(progress)
        self.device = torch.device(f"cuda:{dist_info.local_rank}" if kind == "cuda" else "cpu")
        self.amp_dtype = None
        if kind == "cuda" and config.amp:
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    def _resumed_config(self, config: TrainConfig) -> TrainConfig:
        path = self.run_dir / "config.json"
        if not path.is_file():
            raise InputError(f"cannot resume: {path} does not exist; give the --out folder of an earlier run, or drop --resume")
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise InputError(f"cannot resume: {path} is not valid JSON ({exc})") from None
        saved.update(resume=True, device=config.device, workers=config.workers, out=str(self.run_dir))
        return TrainConfig.from_dict(saved)

    # -- set-up ------------------------------------------------------------------------
    def _setup(self) -> None:
        import torch

        from .checkpoint import make_card
        from .models.change import S2MChangeModel
        from .models.lora import configure_finetuning
        from .models.registry import create_backbone, default_backbone
        from .schema import resolve_schema

        cfg = self.config
        self.schema = resolve_schema(cfg.preset, cfg.schema, default="gaza")
        name, weights = (cfg.backbone, cfg.weights) if cfg.backbone else default_backbone(cfg.weights)
        self.chips = load_data(cfg, self.schema)
        bands = self.chips.bands
        torch.manual_seed(cfg.seed)
        backbone = create_backbone(name, weights, in_bands=bands, **(cfg.backbone_options or {}))
        if cfg.chip % backbone.size_multiple:
            raise InputError(f"--chip {cfg.chip} is not a multiple of {backbone.size_multiple}, required by backbone {name}")
        self.text_encoder = None
        text_dim = None
        if cfg.stage2_epochs:
            from .models.text import create_text_encoder

            self.text_encoder = create_text_encoder(cfg.text_encoder, cfg.text_weights)
            text_dim = self.text_encoder.dim
        self.model = S2MChangeModel(backbone, self.schema.num_classes, text_dim=text_dim,
                                    decoder_channels=list(cfg.decoder_channels) if cfg.decoder_channels else None)
        self.counts = configure_finetuning(self.model, cfg.lora_rank, cfg.freeze_backbone)
        self.model.to(self.device)
        if self.text_encoder is not None:
            self.text_encoder.to(self.device)
        self.mean, self.std = _mean_std(self.chips, bands)
        self.binary = self.schema.num_classes == 2
        self.score_key = "F1" if self.binary else "SeK"
        self._make_card = lambda stage, extra=None: make_card(
            self.model, self.schema, self.mean, self.std, cfg.chip, stage=stage,
            text_encoder=cfg.text_encoder if stage == 2 else None, extra=extra)

    def _trainable(self, stage: int) -> list[dict]:
        """AdamW parameter groups of ``stage`` (text modules train only in stage 2): the
        backbone at ``lr``, the newly initialised parts (fusion, decoder, head, text
        modules) at ``lr * head_lr_scale``."""
        from .models.change import is_text_key

        backbone, rest = [], []
        for key, p in self.model.named_parameters():
            if is_text_key(key):
                p.requires_grad_(stage == 2)
            if p.requires_grad:
                (backbone if key.startswith("backbone.") else rest).append(p)
        groups = [{"params": backbone, "lr_scale": 1.0}, {"params": rest, "lr_scale": float(self.config.head_lr_scale)}]
        return [g for g in groups if g["params"]]

    # -- state -------------------------------------------------------------------------
    def _save_last(self, optimizer, scaler, state: dict) -> None:
        import torch

        from .checkpoint import save_checkpoint

        stage = state["stage"]
        staging = Path(tempfile.mkdtemp(prefix=".last.staging-", dir=self.run_dir))
        try:
            ckpt = staging / "ckpt"
            save_checkpoint(ckpt, self.model, self._make_card(stage, {"epoch": state["epoch"]}))
            torch.save({"optimizer": optimizer.state_dict() if optimizer is not None else None,
                        "scaler": scaler.state_dict() if scaler is not None else None}, ckpt / OPTIM_FILE)
            (ckpt / STATE_FILE).write_text(json.dumps(state, indent=1), encoding="utf-8")
            _swap_into_place(ckpt, self.run_dir / "last")
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _save_best(self, stage: int, epoch: int, metrics: dict) -> None:
        from .checkpoint import save_checkpoint

        save_checkpoint(self.run_dir / "best", self.model, self._make_card(stage, {"epoch": epoch, "metrics": metrics}))

    def _load_last(self) -> tuple[dict, dict | None]:
        import torch
        from safetensors.torch import load_file

        from .checkpoint import WEIGHTS_FILE

        last = self.run_dir / "last"
        state_path = last / STATE_FILE
        if not state_path.is_file():
            raise InputError(f"cannot resume: {last} holds no {STATE_FILE}; the run never finished a step")
        state = json.loads(state_path.read_text(encoding="utf-8"))
        self.model.load_state_dict(load_file(str(last / WEIGHTS_FILE), device="cpu"))
        opt = torch.load(last / OPTIM_FILE, map_location=self.device, weights_only=True)
        return state, opt

    def _write_metrics(self, history: list[dict]) -> None:
        _atomic_write_text(self.run_dir / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history))
        try:
            self._plot(history)
        except Exception as exc:  # noqa: BLE001 - a plot must never stop training
            log.warning("could not draw metrics.png: %s", exc)

    def _plot(self, history: list[dict]) -> None:
        from .plotting import pyplot

        plt = pyplot()

        ep = [h["epoch"] for h in history]
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
        a1.plot(ep, [h["loss"] for h in history], "o-", label="total")
        a1.plot(ep, [h["seg"] for h in history], ".-", label="segmentation")
        if any(h["stage"] == 2 for h in history):
            a1.plot(ep, [h["cot"] if h["stage"] == 2 else float("nan") for h in history], "s--", label="contrastive")
        a1.set_xlabel("epoch")
        a1.set_title("training loss (stage 2 total = seg + lambda * contrastive)")
        a1.legend()
        for key in ("SeK", "Fscd", "mIoU", "F1"):
            a2.plot(ep, [h.get(key) if h.get(key) is not None else float("nan") for h in history], "o-", label=key)
        a2.set_xlabel("epoch")
        a2.set_title("validation")
        a2.set_ylim(min(0.0, *[h.get("SeK") or 0 for h in history]), 1.0)
        a2.legend()
        s1 = self.config.stage1_epochs
        if 0 < s1 < len(history) + 1:
            for ax in (a1, a2):
                ax.axvline(s1 + 0.5, color="grey", lw=0.8, ls=":")
        fig.tight_layout()
        fd, tmp = tempfile.mkstemp(prefix=".metrics.png.tmp-", suffix=".png", dir=self.run_dir)
        os.close(fd)
        try:
            fig.savefig(tmp, dpi=80)
            os.replace(tmp, self.run_dir / "metrics.png")
        finally:
            plt.close(fig)
            if os.path.exists(tmp):
                os.unlink(tmp)

    # -- distributed helpers -----------------------------------------------------------
    def _all_sum(self, values):
        import torch

        t = torch.as_tensor(values, dtype=torch.float64)
        if self.dist.world > 1:
            import torch.distributed as dist

            dev = self.device if self.device.type == "cuda" else torch.device("cpu")
            t = t.to(dev)
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
            t = t.cpu()
        return t

    def _check_cancel(self) -> None:
        flag = 1.0 if self.progress.is_cancelled() else 0.0
        if self.dist.world > 1:
            flag = float(self._all_sum([flag])[0])
        if flag:
            raise Cancelled("training cancelled by the user; the last finished epoch is kept in last/")

    def _barrier(self) -> None:
        if self.dist.world > 1:
            import torch.distributed as dist

            dist.barrier()

    # -- loop --------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        import torch
        from torch.utils.data import DataLoader, DistributedSampler

        from .data import ChangeDataset
        from .losses import S2MLoss, same_text_mask
        from .metrics import ConfusionMatrix

        t0 = time.time()
        cfg = self.config
        run = self.run_dir
        if not cfg.resume and run.exists() and any(p for p in run.iterdir() if not p.name.startswith(".")):
            raise InputError(f"run folder {run} already holds a run; use --resume to continue it or choose another --out")
        self._setup()  # every input is checked before anything is written
        if cfg.resume and self.dist.main:
            _recover_run_dir(run)
        self._barrier()
        if self.dist.main:
            run.mkdir(parents=True, exist_ok=True)
            _atomic_write_text(run / "config.json", cfg.to_json())
        chips = self.chips
        train_ds = ChangeDataset(chips, chips.train, self.schema, self.mean, self.std, train=True, seed=cfg.seed,
                                 captions=bool(cfg.stage2_epochs), jitter=cfg.jitter)
        val_ds = ChangeDataset(chips, chips.val[self.dist.rank :: self.dist.world], self.schema, self.mean, self.std,
                               train=False, seed=cfg.seed, captions=False)
        sampler = DistributedSampler(train_ds, num_replicas=self.dist.world, rank=self.dist.rank, shuffle=True, seed=cfg.seed)
        per_rank = math.ceil(len(train_ds) / self.dist.world)
        loader = DataLoader(train_ds, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.workers,
                            drop_last=per_rank > cfg.batch_size, pin_memory=self.device.type == "cuda")
        val_loader = DataLoader(val_ds, batch_size=cfg.batch_size, num_workers=cfg.workers)
        loss_fn = S2MLoss(cfg.lam, cfg.alpha, cfg.beta, cfg.gamma, tau=cfg.tau)
        schedule = [(1, e, cfg.stage1_epochs) for e in range(cfg.stage1_epochs)] + [(2, e, cfg.stage2_epochs) for e in range(cfg.stage2_epochs)]
        steps_per_epoch = max(len(loader), 1)
        total_steps = steps_per_epoch * len(schedule)

        state = {"version": STATE_VERSION, "epoch": 0, "stage": 1, "best_score": None, "best_epoch": None, "best_metrics": None, "history": []}
        opt_state = None
        if cfg.resume and (run / "last" / STATE_FILE).is_file():
            state, opt_state = self._load_last()
            self.progress.log(f"resuming {run} after epoch {state['epoch']} of {len(schedule)}")
        elif cfg.resume:
            self.progress.log(f"{run} has no last/ checkpoint; starting from the beginning")

        optimizer = scaler = None
        stage_built = None
        ddp_model = self.model
        self.progress.log(
            f"training on {len(chips.train)} chips, validating on {len(chips.val)} ({chips.source}); "
            f"{self.counts['trainable']:,} trainable parameters; device {self.device}; {self.dist.world} process(es)"
        )
        backbone = self.model.backbone
        self.progress.log(f"backbone {backbone.name}, weights {getattr(backbone, 'weights_source', 'unknown')}; "
                          f"text encoder {cfg.text_encoder if cfg.stage2_epochs else 'none (stage 1 only)'}")
        if state["epoch"] == 0 and self.dist.main and not (run / "last").exists():
            self._save_last(None, None, state)  # a loadable last from the very start
        step_done = state["epoch"] * steps_per_epoch
        for g in range(state["epoch"], len(schedule)):
            stage, e, n_stage = schedule[g]
            if stage != stage_built:
                params = self._trainable(stage)
                optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
                scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
                if opt_state is not None and opt_state.get("optimizer") and state["stage"] == stage and e > 0:
                    optimizer.load_state_dict(opt_state["optimizer"])
                    if scaler is not None and opt_state.get("scaler"):
                        scaler.load_state_dict(opt_state["scaler"])
                opt_state = None
                ddp_model = self.model
                if self.dist.world > 1:
                    from torch.nn.parallel import DistributedDataParallel as DDP

                    ddp_model = DDP(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                                    find_unused_parameters=True)
                stage_built = stage
                if stage == 2:
                    self.progress.log("stage 2: text-guided alignment with the contrastive loss")
            lr = _cosine(cfg.lr, e, n_stage)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_scale"]
            torch.manual_seed(cfg.seed * 1_000_003 + g)
            train_ds.set_epoch(g)
            sampler.set_epoch(g)
            self.model.train()
            sums = torch.zeros(4, dtype=torch.float64)  # loss*n, cot*n, seg*n, n
            for i, batch in enumerate(loader):
                self._check_cancel()
                before = batch["before"].to(self.device, non_blocking=True)
                after = batch["after"].to(self.device, non_blocking=True)
                label = batch["label"].to(self.device, non_blocking=True)
                text = mask = None
                if stage == 2:
                    with torch.no_grad():
                        text = self.text_encoder.encode(list(batch["caption"])).to(self.device)
                    mask = same_text_mask(list(batch["caption"])).to(self.device)
                with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
                    out = ddp_model(before, after, text=text)
                out = {k: (v.float() if v is not None else None) for k, v in out.items()}
                parts = loss_fn(out, label, mask)
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(parts["loss"]).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    parts["loss"].backward()
                    optimizer.step()
                n = before.shape[0]
                sums += torch.tensor([float(parts[k].detach()) * n for k in ("loss", "cot", "seg")] + [n], dtype=torch.float64)
                step_done += 1
                self.progress.report(step_done / total_steps, f"stage {stage} epoch {e + 1}/{n_stage}", step=i + 1, steps=len(loader))
            self._check_cancel()
            sums = self._all_sum(sums)
            # validation
            self.model.eval()
            cm = ConfusionMatrix(self.schema.num_classes)
            with torch.no_grad():
                for batch in val_loader:
                    with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
                        logits = self.model(batch["before"].to(self.device), batch["after"].to(self.device))["logits"]
                    cm.update(logits.argmax(1).cpu(), batch["label"])
            matrix = self._all_sum(cm.matrix.astype("float64")).numpy().round().astype("int64")
            from .metrics import scores_from_matrix

            scores = scores_from_matrix(matrix, [c.name for c in self.schema.classes])
            nsum = max(float(sums[3]), 1.0)
            record = {"epoch": g + 1, "stage": stage, "lr": lr, "loss": float(sums[0]) / nsum, "seg": float(sums[2]) / nsum,
                      "cot": float(sums[1]) / nsum, "pixels": int(matrix.sum()), **{k: v for k, v in scores.items() if k != "per_class"},
                      "per_class_IoU": {k: v["IoU"] for k, v in scores["per_class"].items()}}
            record = json.loads(json.dumps(record, default=float).replace("NaN", "null"))
            state["history"].append(record)
            score = scores[self.score_key]
            improved = score == score and (state["best_score"] is None or score > state["best_score"])
            if improved:
                state.update(best_score=float(score), best_epoch=g + 1, best_metrics={k: record[k] for k in ("SeK", "Fscd", "mIoU", "OA", "Precision", "Recall", "F1", "IoU")})
            state.update(epoch=g + 1, stage=stage)
            if self.dist.main:
                if improved:
                    self._save_best(stage, g + 1, state["best_metrics"])
                self._save_last(optimizer, scaler, state)
                self._write_metrics(state["history"])
            self._barrier()
            self.progress.event("metrics", **{k: record[k] for k in ("epoch", "stage", "loss", "SeK", "Fscd", "mIoU", "OA", "Precision", "Recall", "F1", "IoU")})
        return {
            "run_dir": str(run),
            "best": str(run / "best"),
            "last": str(run / "last"),
            "best_metrics": state["best_metrics"],
            "best_epoch": state["best_epoch"],
            "score": self.score_key,
            "epochs": len(schedule),
            "seconds": round(time.time() - t0, 1),
            "train_chips": len(chips.train),
            "val_chips": len(chips.val),
            # held-out chips on before's grid (scene data only), so callers can score a
            # scene prediction on the validation area alone
            "val_windows": [
                {"row_off": int(chips.info["windows"][k][0]), "col_off": int(chips.info["windows"][k][1]),
                 "height": int(chips.labels.shape[1]), "width": int(chips.labels.shape[2])}
                for k in chips.val
            ] if "windows" in chips.info else [],
        }


# ----------------------------------------------------------------------------- demo

#: Settings of the demo's training step: a few minutes on 2 CPU cores for the 1024-px scene.
DEMO_SETTINGS = dict(chip=256, stage1_epochs=12, stage2_epochs=6, batch_size=4)


def train_demo(scene: Any, out: str | os.PathLike, progress: BaseProgress | None = None, seed: int = 0, **overrides: Any) -> dict[str, Any]:
    """Train on the demo scene (:func:`engine.scene.make_demo_scene`) into ``out``.

    A previous run in ``out`` is replaced (the demo folder is the demo's own).

    Args:
        scene: a ``DemoScene`` (``before``, ``after``, ``labels``, ``aoi``, ``schema``).
        out: run folder.
        progress: reporter.
        seed: seed of the split and training.
        **overrides: any :class:`TrainConfig` field (e.g. ``stage1_epochs``).

    Returns:
        :func:`train`'s result.
    """
    out = Path(out)
    if out.exists() and (out / "config.json").is_file():
        shutil.rmtree(out)
    settings = {**DEMO_SETTINGS, **overrides}
    config = TrainConfig(out=str(out), before=str(scene.before), after=str(scene.after), labels=str(scene.labels),
                         aoi=str(scene.aoi) if getattr(scene, "aoi", None) else None, preset=scene.schema, seed=seed, **settings)
    return train(config, progress)
