"""Two-stage S2M training (paper §3.2–3.3), counted in optimizer steps.

Stage 1 trains the visual change model with ``L_seg = 0.4 focal + 0.3 dice + 0.3 lovasz``.
Stage 2 continues from it with the S2M captions of every crop: the frozen text encoder's
token states of the crop's sentences are the keys and values of the text-guided
alignment (eq. 4), and the bidirectional InfoNCE (eq. 6–8, tau 0.7, lambda 0.5) pulls the
crop's global visual feature (pooled over its changed pixels) towards the embedding of its
captions; crops with the same *set of quadruples* are positives of each other whatever
template their sentences drew.

Train/inference match (our choice; the paper infers without text but does not say how
the decoder copes): every stage-2 step decodes the same encoder features twice, with
text and without it, and both are supervised, so the text-free model that prediction
runs gets the same segmentation gradient as without text and the text terms come on top;
only the text-free pass updates BatchNorm statistics. Stage-2 loss:
``L_seg(no text) + L_seg(text) + lambda L_cot``. (Averaging the two segmentation terms
halved the text-free model's gradient: measured on LEVIR-CD it scored below the no-text
ablation.)
``--text-mode none`` is the paper's ablation: the same schedule, stage 2 without text.

The kept model (``RUN/best``) is the exponential moving average of the weights
(:mod:`.ema`): the best-scoring one over the validations when the validation is
trustworthy (:mod:`.split`), else the one at the end of training, so that with little
labelled data the choice does not hinge on one small validation area. Validation runs
every ``val_every`` steps; each writes ``last/`` (resumable, bit-exact) and a line of
``metrics.jsonl``. Cancelling (SIGINT/SIGTERM or the progress callback) is checked before
every step and keeps ``last/``.

Several processes (``torchrun --nproc_per_node N -m engine train ...``): DDP with NCCL
on CUDA and gloo on the CPU; each rank draws its own share of every step's crops;
losses and confusion matrices are summed across ranks; only rank 0 writes files.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from .. import runtime
from ..errors import Cancelled
from ..progress import BaseProgress, NullProgress
from . import state as st
from .setup import Prepared, chips_summary, describe, prepare

log = logging.getLogger(__name__)

METRIC_KEYS = ("SeK", "Fscd", "mIoU", "OA", "Precision", "Recall", "F1", "IoU")


class _RankProgress(BaseProgress):
    """Ranks other than 0: silent, but honour the cancel flag and callback."""

    def __init__(self, inner: BaseProgress) -> None:
        super().__init__(None)
        self._inner = inner

    def is_cancelled(self) -> bool:
        return self._inner.is_cancelled()


def train(config, progress: BaseProgress | None = None) -> dict[str, Any]:
    """Train a change model (see the module docstring and :mod:`.state` for the run folder).

    Returns:
        ``{"run_dir", "best", "last", "best_metrics", "best_step", "steps", "score",
        "seconds", "train_px", "val_regions", "val_trusted", "val_windows", ...}``.

    Raises:
        InputError: bad data or settings (nothing is written then).
        ModelError: unusable weights.
        Cancelled: stopped by the user; ``last/`` holds the last validated step.
    """
    progress = progress or NullProgress()
    kind = runtime.device_kind(config.device)
    dist = runtime.init_distributed(kind)
    try:
        prepared = prepare(config, dist.world)
        return Trainer(prepared, progress, kind, dist).run()
    finally:
        runtime.close_distributed(dist)


class Trainer:
    """The loop over optimizer steps; each hook is one step of the method."""

    def __init__(self, p: Prepared, progress: BaseProgress, kind: str, dist: runtime.Dist) -> None:
        import torch

        self.p, self.cfg, self.dist = p, p.config, dist
        self.progress = progress if dist.main else _RankProgress(progress)
        self.device = torch.device(f"cuda:{dist.local_rank}" if kind == "cuda" else "cpu")
        self.amp_dtype = runtime.amp_dtype(kind, self.cfg.amp)
        self.model = p.model.to(self.device)
        if p.text_encoder is not None:
            p.text_encoder.to(self.device)
        self.binary = p.schema.num_classes == 2
        self.score_key = "F1" if self.binary else "SeK"
        self.val_every = self.cfg.val_every or max(25, p.schedule.total // 8)

    # -- parts ---------------------------------------------------------------------------
    def configure_losses(self):
        from ..losses import InfoNCELoss, SegmentationLoss

        self.seg_loss = SegmentationLoss(self.cfg.alpha, self.cfg.beta, self.cfg.gamma)
        self.cot_loss = InfoNCELoss(self.cfg.tau)

    def configure_optimizer(self, stage: int):
        """AdamW over the parts that train in ``stage`` (text modules only in stage 2 with
        text): the backbone at ``lr``, the newly initialised parts at ``lr * head_lr_scale``."""
        import torch

        from ..models.change import is_text_key

        backbone, rest = [], []
        for key, prm in self.model.named_parameters():
            if is_text_key(key):
                prm.requires_grad_(stage == 2 and self.p.text_encoder is not None)
            if prm.requires_grad:
                (backbone if key.startswith("backbone.") else rest).append(prm)
        groups = [{"params": backbone, "lr_scale": 1.0}, {"params": rest, "lr_scale": float(self.cfg.head_lr_scale)}]
        self.optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.net = self.model
        if self.dist.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DDP(self.model, device_ids=ids, find_unused_parameters=True)

    def loader(self, start_step: int, stage: int):
        from torch.utils.data import DataLoader

        from .dataset import CropDataset, collate

        cfg, p = self.cfg, self.p
        ds = CropDataset(p.source, p.sampler, p.normalization.mean, p.normalization.std, cfg.batch_size, p.schema, seed=cfg.seed,
                         world=self.dist.world, rank=self.dist.rank, photometric=cfg.photometric,
                         captions=stage == 2 and p.text_encoder is not None, drop=cfg.drop_elements, quantity_scale=cfg.quantity_scale)
        end = p.schedule.stage1 if stage == 1 else p.schedule.total
        indices = range(start_step * cfg.batch_size, end * cfg.batch_size)
        return DataLoader(_Subset(ds, indices), batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.workers,
                          collate_fn=collate, pin_memory=self.device.type == "cuda")

    def text_inputs(self, batch):
        """Token states ``(B, T, D)`` of each crop's sentences, their padding mask, the
        crops' caption embeddings ``(B, D)`` and the InfoNCE positives ``(B, B)``."""
        import torch

        from ..losses import same_quadruple_mask

        flat = sorted({s for ss in batch["sentences"] for s in ss})
        sent, tok, pad = self.p.text_encoder.encode_tokens(flat)
        where = {s: i for i, s in enumerate(flat)}
        rows, masks, glob = [], [], []
        for ss in batch["sentences"]:
            idx = [where[s] for s in ss]
            rows.append(torch.cat([tok[i][~pad[i]] for i in idx], 0))
            glob.append(sent[idx].mean(0))
        t = max(r.shape[0] for r in rows)
        tokens = tok.new_zeros((len(rows), t, tok.shape[-1]))
        mask = torch.ones((len(rows), t), dtype=torch.bool)
        for i, r in enumerate(rows):
            tokens[i, : r.shape[0]] = r
            mask[i, : r.shape[0]] = False
        positives = same_quadruple_mask(batch["quads"])
        return tokens.to(self.device), mask.to(self.device), torch.stack(glob).to(self.device), positives.to(self.device)

    def training_step(self, batch, stage: int) -> dict[str, float]:
        import torch

        before, after = batch["before"].to(self.device), batch["after"].to(self.device)
        label = batch["label"].to(self.device)
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            if stage == 2 and self.p.text_encoder is not None:
                tokens, mask, glob, positives = self.text_inputs(batch)
                changed = (label > 0) & (label != 255)
                out = self.net(before, after, text=tokens, text_mask=mask, text_global=glob, pool_mask=changed, plain=True)
            else:
                out = self.net(before, after)
        seg = self.seg_loss(out["logits"].float(), label)
        cot = seg.new_zeros(())
        if out.get("plain_logits") is not None:
            seg = seg + self.seg_loss(out["plain_logits"].float(), label)
            cot = self.cot_loss(out["visual"].float(), out["text"].float(), positives)
        loss = seg + self.cfg.lam * cot
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return {"loss": float(loss.detach()), "seg": float(seg.detach()), "cot": float(cot.detach())}

    def validate(self, model) -> dict[str, Any]:
        import torch

        from ..metrics import ConfusionMatrix, scores_from_matrix
        from .calibrate import ThresholdHistogram, calibrate
        from .dataset import ValDataset

        if not hasattr(self, "_val"):
            p = self.p
            regions = p.split.val[self.dist.rank :: self.dist.world]
            self._val = ValDataset(p.source, regions, p.normalization.mean, p.normalization.std, self.cfg.chip, self.model.backbone.size_multiple)
        cm = ConfusionMatrix(self.p.schema.num_classes)
        hist = ThresholdHistogram(self.p.schema.num_classes)
        model.eval()
        with torch.no_grad():
            for t in range(len(self._val)):
                item = self._val[t]
                with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
                    logits = model(item["before"][None].to(self.device), item["after"][None].to(self.device))["logits"]
                cm.update(logits.argmax(1).cpu(), item["label"][None])
                hist.update(logits.float().softmax(1).cpu().numpy(), item["label"][None].numpy())
        matrix = runtime.all_sum(cm.matrix.astype("float64"), self.dist, self.device).numpy().round().astype("int64")
        hist.counts = runtime.all_sum(hist.counts.astype("float64"), self.dist, self.device).numpy().round().astype("int64")
        scores = scores_from_matrix(matrix, [c.name for c in self.p.schema.classes])
        out = {k: v for k, v in scores.items() if k != "per_class"}
        out["per_class_IoU"] = {k: v["IoU"] for k, v in scores["per_class"].items()}
        out["pixels"] = int(matrix.sum())
        if self.cfg.calibrate:
            out["calibration"] = calibrate(hist, matrix, self.score_key)
        return json.loads(json.dumps(out, default=float).replace("NaN", "null"))

    # -- state ---------------------------------------------------------------------------
    def card(self, stage: int, extra: dict | None = None):
        from ..checkpoint import make_card

        cfg = self.cfg
        text = cfg.text_encoder if (stage == 2 and self.p.text_encoder is not None) else None
        res, crs = getattr(self.p.source, "res", None), getattr(self.p.source, "crs", None)
        if res and crs:  # the ground resolution trained at (the dock's default resolution for web layers)
            extra = {"pixel_size": res, "crs": crs, **(extra or {})}
        return make_card(self.ema.model, self.p.schema, self.p.normalization.mean, self.p.normalization.std, cfg.chip, stage=stage,
                         text_encoder=text, extra=extra, normalization=self.p.normalization.to_dict())

    def save_last(self, state: dict) -> None:
        st.save_last(self.p.run, self.model, self.card(state["stage"], {"step": state["step"]}), self.ema.state_dict(),
                     self.optimizer if hasattr(self, "optimizer") else None, getattr(self, "scaler", None), state)

    def save_best(self, state: dict) -> None:
        from ..checkpoint import save_checkpoint

        extra = {"step": state["best_step"], "metrics": state["best_metrics"], "rule": state["rule"],
                 "validation": chips_summary(self.p), "trained_steps": state["step"]}
        calibration = state.get("best_calibration")
        if calibration:
            extra["calibration"] = calibration
            if calibration.get("threshold") is not None:
                extra["threshold"] = calibration["threshold"]  # what predict applies (predict --threshold overrides)
        save_checkpoint(self.p.run / "best", self.ema.model, self.card(state["stage"], extra))

    def check_cancel(self) -> None:
        flag = runtime.all_sum([1.0 if self.progress.is_cancelled() else 0.0], self.dist)[0]
        if float(flag):
            raise Cancelled("training cancelled by the user; the last validated step is kept in last/")

    # -- loop ----------------------------------------------------------------------------
    def begin(self) -> dict:
        from .ema import EMA

        run, cfg = self.p.run, self.cfg
        state = {"version": st.STATE_VERSION, "step": 0, "stage": 1, "best_score": None, "best_step": None, "best_metrics": None,
                 "history": [], "rule": "best validation" if self.p.split.trusted else "last (moving average)"}
        self.ema = EMA(self.model, cfg.ema)
        self._opt_state = None
        if cfg.resume and (run / "last" / st.STATE_FILE).is_file():
            state, self._opt_state, ema = st.load_last(run, self.model, self.device)
            if ema is not None:
                self.ema.load_state_dict(ema)
            self.progress.log(f"resuming {run} after step {state['step']} of {self.p.schedule.total}")
        if self.dist.main:
            if cfg.resume:
                st.recover_run_dir(run)
            run.mkdir(parents=True, exist_ok=True)
            st.atomic_write_text(run / "config.json", cfg.to_json())
            if state["step"] == 0:
                self.save_last(state)  # a loadable last/ from the very start
        runtime.barrier(self.dist)
        return state

    def run(self) -> dict[str, Any]:
        t0 = time.time()
        self.configure_losses()
        for note in self.p.notes:
            self.progress.log(note, "warning")
        self.progress.log(describe(self.p) + f"; device {self.device}; {self.dist.world} process(es)")
        bb = self.model.backbone
        self.progress.log(f"backbone {bb.name}, weights {getattr(bb, 'weights_source', 'unknown')}; text "
                          f"{self.cfg.text_encoder if self.p.text_encoder is not None else 'none'}; normalisation {self.p.normalization.convention}")
        state = self.begin()
        sched = self.p.schedule
        for stage in (1, 2):
            first = state["step"] if stage == 1 else max(state["step"], sched.stage1)
            last = sched.stage1 if stage == 1 else sched.total
            if first >= last:
                continue
            self.run_stage(stage, first, state)
        if state["best_step"] is None or not self.p.split.trusted:
            self.keep_final(state)
        self.log_calibration(state.get("best_calibration"))
        return self.result(state, time.time() - t0)

    def log_calibration(self, calibration: dict | None) -> None:
        if not calibration:
            return
        if calibration.get("threshold") is not None:
            self.progress.log(f"change threshold {calibration['threshold']:g} calibrated on the validation area "
                              f"({calibration['reason']}); predict applies it unless --threshold is given")
        else:
            self.progress.log(f"change decision: the most probable class ({calibration.get('reason', '')})")

    def run_stage(self, stage: int, first: int, state: dict) -> None:
        import torch

        self.configure_optimizer(stage)
        if self._opt_state and self._opt_state.get("optimizer") and state["stage"] == stage:
            self.optimizer.load_state_dict(self._opt_state["optimizer"])
            if self.scaler is not None and self._opt_state.get("scaler"):
                self.scaler.load_state_dict(self._opt_state["scaler"])
        self._opt_state = None
        if stage == 2:
            self.progress.log("stage 2: " + ("text-guided alignment with the contrastive loss" if self.p.text_encoder is not None else "without text (ablation)"))
        sums = [0.0, 0.0, 0.0, 0]
        self.model.train()
        for k, batch in enumerate(self.loader(first, stage)):
            step = first + k
            self.check_cancel()
            torch.manual_seed(self.cfg.seed * 1_000_003 + step)
            for group in self.optimizer.param_groups:
                group["lr"] = self.cfg.lr * self.p.schedule.lr_factor(step) * group["lr_scale"]
            parts = self.training_step(batch, stage)
            self.ema.update(self.model)
            sums = [sums[0] + parts["loss"], sums[1] + parts["seg"], sums[2] + parts["cot"], sums[3] + 1]
            state.update(step=step + 1, stage=stage)
            self.progress.report((step + 1) / self.p.schedule.total, f"stage {stage} step {step + 1}/{self.p.schedule.total}",
                                 step=step + 1, steps=self.p.schedule.total)
            if (step + 1) % self.val_every == 0 or step + 1 in (self.p.schedule.stage1, self.p.schedule.total):
                self.validation_round(state, stage, sums)
                sums = [0.0, 0.0, 0.0, 0]
                self.model.train()

    def validation_round(self, state: dict, stage: int, sums: list) -> None:
        n = runtime.all_sum(sums, self.dist)
        count = max(float(n[3]), 1.0)
        scores = self.validate(self.ema.model)
        record = {"step": state["step"], "epoch": state["step"], "stage": stage, "lr": self.optimizer.param_groups[0]["lr"],
                  "loss": float(n[0]) / count, "seg": float(n[1]) / count, "cot": float(n[2]) / count, **scores}
        state["history"].append(record)
        score = scores.get(self.score_key)
        improved = score is not None and (state["best_score"] is None or score > state["best_score"])
        if improved and self.p.split.trusted:
            state.update(best_score=float(score), best_step=state["step"], best_metrics={k: record.get(k) for k in METRIC_KEYS},
                         best_calibration=record.get("calibration"))
        if self.dist.main:
            if improved and self.p.split.trusted:
                self.save_best(state)
            self.save_last(state)
            self.write_metrics(state["history"])
        runtime.barrier(self.dist)
        self.progress.event("metrics", **{k: record.get(k) for k in ("step", "epoch", "stage", "loss", *METRIC_KEYS)})

    def keep_final(self, state: dict) -> None:
        record = state["history"][-1] if state["history"] else {}
        state.update(best_score=record.get(self.score_key), best_step=state["step"], best_metrics={k: record.get(k) for k in METRIC_KEYS},
                     best_calibration=record.get("calibration"))
        if self.dist.main:
            self.save_best(state)
            self.save_last(state)
        runtime.barrier(self.dist)

    def write_metrics(self, history: list[dict]) -> None:
        from .plots import plot_history

        st.atomic_write_text(self.p.run / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history))
        try:
            plot_history(history, self.p.run / "metrics.png", self.p.schedule.stage1)
        except Exception as exc:  # noqa: BLE001 - a plot must never stop training
            log.warning("could not draw metrics.png: %s", exc)

    def result(self, state: dict, seconds: float) -> dict[str, Any]:
        run, p = self.p.run, self.p
        regions = [{"image": i, "row_off": r + p.source.images[i].origin[0], "col_off": c + p.source.images[i].origin[1], "height": h, "width": w}
                   for i, r, c, h, w in p.split.val]
        return {"run_dir": str(run), "best": str(run / "best"), "last": str(run / "last"), "best_metrics": state["best_metrics"],
                "best_step": state["best_step"], "best_epoch": state["best_step"], "rule": state["rule"], "score": self.score_key,
                "calibration": state.get("best_calibration"),
                "steps": p.schedule.total, "seconds": round(seconds, 1), **chips_summary(p),
                "val_windows": regions if p.config.before else []}


class _Subset:
    """Samples ``indices`` of a map-style dataset, in order."""

    def __init__(self, ds, indices) -> None:
        self.ds, self.indices = ds, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.ds[self.indices[i]]
